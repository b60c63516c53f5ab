"""What one nnsight visit costs, and so the lowest overhead nnsight can reach on a model: the floor behind #15.

On the reference model (Qwen2 8 layers, hidden 256, intermediate 1024; prompt 32, 64 greedy tokens) every decoding
step is ~9 ms and an edit must visit each edited layer's ``act_fn`` on each step. This measures, side by side in one
ABAB run (``bench_core.measure``: bare, X, bare, ... with modes shuffled per round; median and IQR of per-pair CPU-time
ratios, one torch thread):

* ``nnsight k``: a trace through esnlib's own probe envoy (``capture._envoy``, as ``esnlib.generate`` uses it) that
  reads ``act_fn.output`` of the first k layers on every step and does nothing with it (k = 0: the trace and its
  step loop alone);
* ``hooks k``: plain forward hooks on the same k modules that do nothing;
* ``steer`` / ``hooks steer``: the real edit (256 neurons x 8 layers, ``esnlib.generate`` and ``bench/hook_floor.py``).

The slope of (ratio - 1) x bare time per step over k is the CPU cost of one visit; ``nnsight 8`` is the overhead an
edit of every layer pays before it does any work. Results: ``bench/results/visit_cost.json``.

    .venv/bin/python bench/visit_cost.py [--repeats 10] [--batches 1,4] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import _machine, measure  # noqa: E402
from esnlib.capture import _envoy, _generator_path  # noqa: E402
from esnlib.intervention import Intervention, generate  # noqa: E402
from esnlib.sites import find_sites  # noqa: E402
from hook_floor import hook_run  # noqa: E402

KS = (0, 1, 2, 4, 8)
STEPS = 64


def nnsight_reads(model, sites, x, gen, k):
    """Generate under a trace that reads the first k sites' outputs on every step and does nothing with them."""
    env, acts, _ = _envoy(model, [s.path for s in sites], [_generator_path(model, sites[0].path)])
    box = {}

    def run(*a, **kw):
        box["out"] = model.generate(*a, **kw)
        return box["out"]

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was never reached.*")
        with env.trace(fn=run, **x, **gen) as tracer:
            if k:
                for _ in tracer.iter[:]:
                    for a in acts[:k]:
                        g = a.output
                        del g
    return box["out"]


def hook_reads(model, sites, x, gen, k):
    """Generate with k no-op forward hooks on the first k sites."""
    hs = [s.module.register_forward_hook(lambda mod, args, out: None) for s in sites[:k]]
    try:
        return model.generate(**x, **gen)
    finally:
        for h in hs:
            h.remove()


def per_visit_us(res, bare_step_s, prefix):
    """Least-squares slope of (median CPU ratio - 1) x bare step time over k, in microseconds per visit."""
    ks = [k for k in KS if f"{prefix} {k}" in res["cpu"]]
    ys = [(res["cpu"][f"{prefix} {k}"]["median"] - 1) * bare_step_s * 1e6 for k in ks]
    slope, icpt = np.polyfit(ks, ys, 1)
    return float(slope), float(icpt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10, help="ABAB rounds")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "visit_cost.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    m = Qwen2ForCausalLM(Qwen2Config(vocab_size=1000, hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
                                     num_attention_heads=4, num_key_value_heads=2)).eval()
    gen = dict(max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False, pad_token_id=0)
    sites = find_sites(m)
    idx = np.concatenate([s.offset + np.random.default_rng(0).choice(s.width, 256, replace=False) for s in sites])
    iv = Intervention(idx, "steer", 1.0)
    out = {"setup": {"threads": a.threads, "repeats": a.repeats, "torch": torch.__version__, "start": _machine(),
                     "model": "Qwen2 8x(256,1024), prompt 32, 64 tokens", "steps": STEPS}}
    t0 = time.perf_counter()
    with torch.no_grad():
        for b in (int(v) for v in a.batches.split(",")):
            x = dict(input_ids=torch.randint(1, 1000, (b, 32), generator=torch.Generator().manual_seed(b)),
                     attention_mask=torch.ones(b, 32, dtype=torch.long))
            modes = {f"nnsight {k}": (lambda k=k: nnsight_reads(m, sites, x, gen, k)) for k in KS}
            modes.update({f"hooks {k}": (lambda k=k: hook_reads(m, sites, x, gen, k)) for k in KS if k})
            modes["steer"] = lambda: generate(m, x, iv, sites=sites, **gen)
            modes["hooks steer"] = lambda: hook_run(m, x, sites, iv, capture=False, **gen)[0]
            pairs = [(f"nnsight {k}", f"hooks {k}") for k in KS if k] + [("steer", "hooks steer")]
            res = measure(f"visit b{b}", lambda: m.generate(**x, **gen), modes, pairs, a.repeats)
            step_s = res["bare_s"]["cpu_median"] / STEPS
            nn_slope, nn_icpt = per_visit_us(res, step_s, "nnsight")
            hk_slope, _ = per_visit_us(res, step_s, "hooks")
            res["per_visit_us"] = {"nnsight": nn_slope, "nnsight_trace_fixed": nn_icpt, "hooks": hk_slope}
            res["bare_step_ms"] = step_s * 1e3
            out[f"batch{b}"] = res
            print(f"batch {b}: bare {step_s * 1e3:.2f} ms a step (CPU); identical to hooks: "
                  f"{res['identical_to_hooks']}")
            for k, v in res["cpu"].items():
                print(f"  {k:12s} {v['median']:.3f}x [{v['q25']:.3f}, {v['q75']:.3f}]")
            print(f"  per visit: nnsight {nn_slope:.0f} us, hooks {hk_slope:.0f} us; nnsight's fixed cost a step "
                  f"(k = 0 intercept) {nn_icpt:.0f} us", flush=True)
    out["setup"]["end"] = _machine()
    out["setup"]["wall_s"] = time.perf_counter() - t0
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out} ({out['setup']['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
