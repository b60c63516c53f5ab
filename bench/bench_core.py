"""Side-by-side wall time of bare generate, esnlib.capture and an esnlib edit (steer 256 neurons x 8 layers).

Reference model: Qwen2, 8 layers, hidden 256, intermediate 1024; prompt 32, 64 new tokens greedy (min_new_tokens so
every row runs 64 steps), batch 1 and 4. Modes are interleaved per repeat; medians; ratios to bare generate are
printed and written to bench/results/core.json.

    .venv/bin/python bench/bench_core.py [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from esnlib.capture import capture  # noqa: E402
from esnlib.intervention import Intervention, generate  # noqa: E402
from esnlib.sites import find_sites  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "core.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    m = Qwen2ForCausalLM(Qwen2Config(vocab_size=1000, hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
                                     num_attention_heads=4, num_key_value_heads=2)).eval()
    sites = find_sites(m)
    rng = np.random.default_rng(0)
    idx = np.concatenate([s.offset + rng.choice(s.width, 256, replace=False) for s in sites])
    iv = Intervention(idx, "steer", 1.0)
    gen = dict(max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0)
    modes = {
        "bare": lambda x: m.generate(**x, **gen),
        "capture": lambda x: capture(m, x, sites=sites, **gen),
        "edit": lambda x: generate(m, x, iv, sites=sites, **gen),
    }
    results = {}
    for b in (1, 4):
        x = dict(input_ids=torch.randint(1, 1000, (b, 32)), attention_mask=torch.ones(b, 32, dtype=torch.long))
        for f in modes.values():  # warm-up
            f(x)
        times = {k: [] for k in modes}
        for _ in tqdm(range(a.repeats), desc=f"batch {b}"):
            for k, f in modes.items():
                t0 = time.perf_counter()
                with torch.no_grad():
                    f(x)
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        results[f"batch{b}"] = {"median_s": med, "ratio": {k: med[k] / med["bare"] for k in modes},
                                "times_s": times}
        print(f"batch {b}: bare {med['bare']*1e3:.0f} ms | capture {med['capture']/med['bare']:.3f}x | "
              f"edit {med['edit']/med['bare']:.3f}x")
    results["setup"] = {"threads": a.threads, "repeats": a.repeats, "torch": torch.__version__,
                        "machine": platform.machine(), "model": "Qwen2 8x(256, 1024)", "prompt": 32, "new_tokens": 64}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
