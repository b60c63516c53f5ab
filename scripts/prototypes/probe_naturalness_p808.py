"""Prototype: DNSMOS's P.808 head as the demo world's naturalness score, against the P.835 OVRL it would replace
(issue 11: score *every* evaluated sample, and make it cheap).

The notebooks score naturalness with DNSMOS P.835 OVRL on one 9.01 s window per clip (~0.13-0.2 s of CPU a clip), so
only the first 16 samples of each shard are scored. speechmos bundles a second DNSMOS head, P.808 (``model_v8.onnx``),
trained on ITU-T P.808 ACR ratings of overall quality -- the same kind of target as the paper's UTMOS (a MOS from
absolute category ratings) -- whose network runs on a 120-band log-mel spectrogram and is ~20x cheaper. This probe
measures, on demo-world speech (espeak-ng, the five emotion profiles):

* cost: seconds of CPU per clip of OVRL (fast mode, batched) and of P.808 (mel features + network, batched), ABAB;
* exactness of the batched P.808 path against speechmos' own per-window code (same window, same features);
* agreement: Pearson / Spearman r between P.808 and OVRL over clips of every emotion and intensity;
* validity: both scores under graded degradations of the same clips (white noise at falling SNR, hard clipping,
  a 2 kHz low-pass, extreme prosody at the renderer's limits), with the mean change and its 95 % bootstrap CI
  (``esnlib.evaluation.bootstrap_ci``; the recorded bench/results/naturalness_p808_2026-12-01.json came from an
  earlier copy of the same percentile bootstrap with other random draws).

    .venv/bin/python scripts/prototypes/probe_naturalness_p808.py --out bench/results/naturalness_p808.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt
from scipy.stats import pearsonr, spearmanr

from esnlib import tts
from esnlib.corpora.sentences import CORPUS_VOICES, make_sentences
from esnlib.evaluation import bootstrap_ci
from esnlib.judges.dnsmos import DNSMOSJudge


def _boot_ci(d: np.ndarray) -> list[float]:
    ci = bootstrap_ci(d)
    return [ci.low, ci.high]


def _noise(a, snr_db, rng):
    p = np.mean(a ** 2)
    return np.clip(a + rng.normal(0, np.sqrt(p / 10 ** (snr_db / 10)), a.shape), -1, 1).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    sents = make_sentences(a.sentences, "corpus")
    voices = list(CORPUS_VOICES.values())
    clips, meta = [], []
    for i, s in enumerate(sents):
        for e in tts.EMOTIONS:
            for inten in ((0.5, 1.0) if e != "neutral" else (0.0,)):
                clips.append(tts.synthesize(s, voices[i % len(voices)], tts.sample_prosody(e, rng, inten)))
                meta.append((i, e, inten))
    neutral = [c for c, m in zip(clips, meta) if m[1] == "neutral"]
    judge = DNSMOSJudge(mode="fast")
    p808 = DNSMOSJudge(mode="p808")

    # cost, ABAB
    t_ovrl, t_p808 = [], []
    for _ in range(a.repeats):
        t = time.process_time()
        s_ovrl = np.array(judge.score(clips))
        t_ovrl.append((time.process_time() - t) / len(clips))
        t = time.process_time()
        s_p808 = np.array(p808.score(clips))
        t_p808.append((time.process_time() - t) / len(clips))
    ratio = np.array(t_ovrl) / np.array(t_p808)

    # exactness against speechmos' per-window code on the same 9.01 s window
    import speechmos.dnsmos as sd
    n = int(sd.INPUT_LENGTH * 16000)
    ref = []
    for c in clips[:20]:
        w = np.resize(c, n) if len(c) < n else c[:n]
        f = np.array(p808._dnsmos.audio_melspec(audio=w[:-160])).astype("float32")[None]
        ref.append(float(p808._dnsmos.p808_onnx_sess.run(None, {"input_1": f})[0][0][0]))
    exact = float(np.max(np.abs(np.array(ref) - s_p808[:20])))

    # agreement over every emotion and intensity
    agree = {"n_clips": len(clips), "pearson_r": float(pearsonr(s_ovrl, s_p808)[0]),
             "spearman_r": float(spearmanr(s_ovrl, s_p808)[0])}
    by_emotion = {e: {"ovrl": float(np.mean([s for s, m in zip(s_ovrl, meta) if m[1] == e])),
                      "p808": float(np.mean([s for s, m in zip(s_p808, meta) if m[1] == e]))} for e in tts.EMOTIONS}

    # validity: graded degradations of the neutral clips
    sos = butter(6, 2000, "low", fs=16000, output="sos")
    lim_lo = tts.Prosody(**{f: lo for f, (lo, hi) in tts.LIMITS.items() if f != "tilt"}, tilt=0.0)
    lim_hi = tts.Prosody(**{f: hi for f, (lo, hi) in tts.LIMITS.items() if f != "tilt"}, tilt=0.0)
    degr = {
        "noise_30dB": [_noise(c, 30, rng) for c in neutral],
        "noise_20dB": [_noise(c, 20, rng) for c in neutral],
        "noise_10dB": [_noise(c, 10, rng) for c in neutral],
        "noise_0dB": [_noise(c, 0, rng) for c in neutral],
        "clip_x8": [np.clip(c * 8, -1, 1).astype(np.float32) for c in neutral],
        "lowpass_2kHz": [sosfilt(sos, c).astype(np.float32) for c in neutral],
        "prosody_at_low_limits": [tts.synthesize(s, voices[i % len(voices)], lim_lo) for i, s in enumerate(sents)],
        "prosody_at_high_limits": [tts.synthesize(s, voices[i % len(voices)], lim_hi) for i, s in enumerate(sents)],
    }
    base_o, base_p = np.array(judge.score(neutral)), np.array(p808.score(neutral))
    validity = {}
    for k, cs in degr.items():
        do, dp = np.array(judge.score(cs)) - base_o, np.array(p808.score(cs)) - base_p
        validity[k] = {"n": len(cs), "d_ovrl": float(do.mean()), "d_ovrl_ci": _boot_ci(do),
                       "d_p808": float(dp.mean()), "d_p808_ci": _boot_ci(dp)}
    res = {
        "clips": len(clips), "clip_seconds_mean": float(np.mean([len(c) for c in clips]) / 16000),
        "repeats": a.repeats,
        "ovrl_cpu_s_per_clip": [float(x) for x in t_ovrl], "p808_cpu_s_per_clip": [float(x) for x in t_p808],
        "cost_ratio_ovrl_over_p808_median": float(np.median(ratio)),
        "cost_ratio_iqr": [float(np.percentile(ratio, 25)), float(np.percentile(ratio, 75))],
        "p808_max_abs_diff_vs_speechmos_window": exact,
        "agreement": agree, "mean_by_emotion": by_emotion,
        "neutral_mean": {"ovrl": float(base_o.mean()), "p808": float(base_p.mean()), "n": len(neutral)},
        "validity": validity,
        "load_average": list(os.getloadavg()),
    }
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
