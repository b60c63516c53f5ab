"""Per-clip cost and agreement of the two DNSMOS scoring modes (esnlib.judges.dnsmos), side by side in one run.

Clips: demo-world speech (espeak-ng, the five emotion profiles, 2-5 s), the kind the notebooks score. Modes are
interleaved per repeat (ABAB); the per-clip time is each pass's wall time over the clips; medians and IQR of the
ratio reference / fast. Agreement: Pearson r and mean |difference| of OVRL between the modes.

    .venv/bin/python bench/bench_naturalness.py [--clips 24] [--repeats 3]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "naturalness.json"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    sents = make_sentences(a.clips, "corpus")
    voices = list(CORPUS_VOICES.values())
    clips = [tts.synthesize(s, voices[i % len(voices)], tts.sample_prosody(tts.EMOTIONS[i % 5], rng, 1.0))
             for i, s in enumerate(sents)]
    fast, ref = DNSMOSJudge(mode="fast"), DNSMOSJudge(mode="reference")
    t_fast, t_ref = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        s_fast = fast.score(clips)
        t_fast.append((time.perf_counter() - t) / len(clips))
        t = time.perf_counter()
        s_ref = ref.score(clips)
        t_ref.append((time.perf_counter() - t) / len(clips))
    ratio = np.array(t_ref) / np.array(t_fast)
    res = {
        "clips": len(clips), "clip_seconds_mean": float(np.mean([len(c) for c in clips]) / 16000),
        "repeats": a.repeats,
        "fast_seconds_per_clip_median": float(np.median(t_fast)),
        "reference_seconds_per_clip_median": float(np.median(t_ref)),
        "speedup_median": float(np.median(ratio)),
        "speedup_iqr": [float(np.percentile(ratio, 25)), float(np.percentile(ratio, 75))],
        "ovrl_pearson_r": float(np.corrcoef(s_fast, s_ref)[0, 1]),
        "ovrl_mean_abs_diff": float(np.mean(np.abs(np.array(s_fast) - np.array(s_ref)))),
        "ovrl_fast_mean": float(np.mean(s_fast)), "ovrl_reference_mean": float(np.mean(s_ref)),
        "load_average": list(os.getloadavg()), "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(res, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
