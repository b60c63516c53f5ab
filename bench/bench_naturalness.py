"""Per-clip cost of the DNSMOS scoring modes (esnlib.judges.dnsmos), side by side in one run, and their agreement.

Modes: ``p808`` (the notebooks' default: one batched P.808 window per clip), ``fast`` (one batched P.835 OVRL window
per clip, the default until 2026-12-01) and ``reference`` (speechmos' windows, P.835 + P.808; its OVRL is compared).
Clips: demo-world speech (espeak-ng, the five emotion profiles, 2-5 s), the kind the notebooks score. The modes run
in turn within each repeat (ABC ABC ...); per-clip wall and CPU time of each pass; medians and IQR of the per-repeat
ratios fast / p808 and reference / fast. Agreement: Pearson r of OVRL between fast and reference, and of P.808 with
fast OVRL.

    .venv/bin/python bench/bench_naturalness.py [--clips 48] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from esnlib import tts  # noqa: E402
from esnlib.corpora.sentences import CORPUS_VOICES, make_sentences  # noqa: E402
from esnlib.judges.dnsmos import DNSMOSJudge  # noqa: E402


def _iqr(x) -> list[float]:
    return [float(np.percentile(x, 25)), float(np.percentile(x, 75))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "naturalness.json"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    sents = make_sentences(a.clips, "corpus")
    voices = list(CORPUS_VOICES.values())
    clips = [tts.synthesize(s, voices[i % len(voices)], tts.sample_prosody(tts.EMOTIONS[i % 5], rng, 1.0))
             for i, s in enumerate(sents)]
    judges = {m: DNSMOSJudge(mode=m) for m in ("p808", "fast", "reference")}
    judges["p808"].score(clips[:2])  # imports and first-call set-up outside the timing
    wall = {m: [] for m in judges}
    cpu = {m: [] for m in judges}
    scores = {}
    for _ in range(a.repeats):
        for m, j in judges.items():
            t, c = time.perf_counter(), time.process_time()
            scores[m] = np.array(j.score(clips))
            wall[m].append((time.perf_counter() - t) / len(clips))
            cpu[m].append((time.process_time() - c) / len(clips))
    fast_p808 = np.array(wall["fast"]) / np.array(wall["p808"])
    ref_fast = np.array(wall["reference"]) / np.array(wall["fast"])
    res = {
        "clips": len(clips), "clip_seconds_mean": float(np.mean([len(c) for c in clips]) / 16000),
        "repeats": a.repeats, "order": "p808, fast, reference within each repeat",
        **{f"{m}_wall_s_per_clip_median": float(np.median(wall[m])) for m in judges},
        **{f"{m}_wall_s_per_clip_iqr": _iqr(wall[m]) for m in judges},
        **{f"{m}_cpu_s_per_clip_median": float(np.median(cpu[m])) for m in judges},
        "ratio_fast_over_p808_median": float(np.median(fast_p808)), "ratio_fast_over_p808_iqr": _iqr(fast_p808),
        "ratio_reference_over_fast_median": float(np.median(ref_fast)), "ratio_reference_over_fast_iqr": _iqr(ref_fast),
        "ovrl_fast_vs_reference_pearson_r": float(np.corrcoef(scores["fast"], scores["reference"])[0, 1]),
        "ovrl_fast_vs_reference_mean_abs_diff": float(np.mean(np.abs(scores["fast"] - scores["reference"]))),
        "p808_vs_ovrl_fast_pearson_r": float(np.corrcoef(scores["p808"], scores["fast"])[0, 1]),
        "p808_mean": float(np.mean(scores["p808"])), "ovrl_fast_mean": float(np.mean(scores["fast"])),
        "load_average": list(os.getloadavg()), "machine": platform.processor() or platform.machine(),
        "ort_intra_op_threads": 2,
    }
    print(json.dumps(res, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
