"""Train the two demo SER judges on held-out speech and write their weights to esnlib/assets/judges/.

Training speech: the JUDGE_VOICES and the "judge" sentence pool (never used by the demo corpus or the demo LALM),
rendered with tts.sample_prosody at intensity U(0.5, 1.2). Evaluation: held-out judge sentences (same judge voices)
and, when present, the demo corpus (other voices, other sentences). Accuracies go to esnlib/assets/judges/report.json.

    python scripts/train_judges.py                  # ~3-5 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from esnlib.audio import load_wav
from esnlib.corpora.sentences import JUDGE_VOICES, make_sentences
from esnlib.judges.demo import (ASSETS, LABELS, synthesize_judge_set, train_prosody_judge,
                                train_spectral_judge)

ROOT = Path(__file__).resolve().parents[1]
#: intensity bands of the held-out evaluation; "full intensity" is the last one
INTENSITY_BANDS = ((0.2, 0.5), (0.5, 0.8), (0.9, 1.1))


def evaluate(judge, clips, labels) -> dict:
    pred = judge.predict(clips)
    y = np.array(labels)
    p = np.array(pred, dtype=object)
    conf = {t: {q: int(((y == t) & (p == q)).sum()) for q in LABELS} for t in LABELS}
    per = {t: float((p[y == t] == t).mean()) for t in LABELS if (y == t).any()}
    return {"n": len(labels), "accuracy": float((p == y).mean()), "per_emotion_recall": per, "confusion": conf}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=40, help="judge sentences for training (x 6 voices x 5 emotions)")
    ap.add_argument("--n-test", type=int, default=12, help="held-out judge sentences for testing")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--demo-corpus", default=str(ROOT / "data" / "demo_corpus"))
    ap.add_argument("--demo-max", type=int, default=1000, help="demo-corpus clips to evaluate on (random sample)")
    ap.add_argument("--out", default=str(ASSETS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sents = make_sentences(args.n_train + args.n_test, "judge", args.seed)
    train_x, train_y = synthesize_judge_set(sents[: args.n_train], JUDGE_VOICES, seed=args.seed)
    test_x, test_y = synthesize_judge_set(sents[args.n_train:], JUDGE_VOICES, seed=args.seed + 1)
    # the same held-out sentences by intensity band (neutral clips are intensity 0 in every band)
    bands = {f"{lo:.1f}-{hi:.1f}": synthesize_judge_set(sents[args.n_train:], JUDGE_VOICES, seed=args.seed + 2 + k,
                                                        intensity=(lo, hi))
             for k, (lo, hi) in enumerate(INTENSITY_BANDS)}
    t_data = time.perf_counter() - t0

    out = Path(args.out)
    report = {"seed": args.seed, "n_train": len(train_y), "n_test": len(test_y), "voices": list(JUDGE_VOICES),
              "data_seconds": round(t_data, 1), "judges": {}}
    t = time.perf_counter()
    pj = train_prosody_judge(train_x, train_y)
    pj.save(out / "prosody_judge.json")
    t_p = time.perf_counter() - t
    t = time.perf_counter()
    sj = train_spectral_judge(train_x, train_y, epochs=args.epochs, seed=args.seed)
    sj.save(out / "spectral_judge.pt")
    t_s = time.perf_counter() - t

    demo = None
    root = Path(args.demo_corpus)
    if (root / "demo_corpus.json").is_file():
        from esnlib.corpora.esd import load_esd

        utts = load_esd(root)
        rng = np.random.default_rng(args.seed)
        pick = sorted(rng.choice(len(utts), size=min(args.demo_max, len(utts)), replace=False))
        demo = ([load_wav(utts[i].path) for i in pick], [utts[i].emotion for i in pick])
    for name, judge, secs in (("prosody", pj, t_p), ("spectral", sj, t_s)):
        r = {"train_seconds": round(secs, 1), "held_out_judge_sentences": evaluate(judge, test_x, test_y),
             "by_intensity": {b: evaluate(judge, *xy) for b, xy in bands.items()}}
        if demo is not None:
            r["demo_corpus"] = evaluate(judge, *demo)
        report["judges"][name] = r
        print(f"{name}: held-out acc {r['held_out_judge_sentences']['accuracy']:.3f}, by intensity "
              + ", ".join(f"{b}: {v['accuracy']:.3f}" for b, v in r["by_intensity"].items())
              + (f", demo-corpus acc {r['demo_corpus']['accuracy']:.3f} (n={r['demo_corpus']['n']})" if demo else "")
              + f", trained in {secs:.0f} s")
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"weights and report in {out} ({report['total_seconds']} s in all)")


if __name__ == "__main__":
    main()
