"""Prototype: does the demo thinker copy the quoted sentence better under another EVC prompt? (issue 11, WER)

The demo LALM's baseline WER is the frozen SmolLM2-135M's copying: the renderer speaks the decoded text and WER is
computed on that text, so the thinker alone decides it. This probe generates only the thinker's answer (greedy,
batched as the notebooks batch it, no talker, no rendering) for every (neutral source, e_tgt) pair of a split under
a few prompt variants and reports the WER as the pipeline computes it (``esnlib.evaluation.sample_wer``), with a
source-clustered bootstrap 95 % CI, the share of samples with any error, and how the bad answers end (cut by the
token cap or by an early stop).

Only the prompt changes; the talker is trained on the thinker's hidden states under its prompt, so adopting a
variant means retraining it (``make demo-model``) and re-checking DEMO_RATE / DEMO_ALPHA / attr_alpha on DEVELOPMENT.

    python scripts/prototypes/probe_copy_prompt.py --split DEVELOPMENT --out /tmp/copy_dev.csv
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from esnlib.constants import TARGET_EMOTIONS
from esnlib.evaluation import sample_wer
from esnlib.models import demo as D
from esnlib.world import load_world

EXAMPLE = D.EVC_EXAMPLE  # the adopted worked exchange
SHORT_EXAMPLE = "It is raining."
VARIANTS = {
    "no_example": {},  # the EVC prompt until 02e7dc5 (before the worked exchange landed in DemoOmni)
    "strict_system": {"system": D.SYSTEM_EVC + " Copy every word in order, then stop."},
    "one_shot": {"example": EXAMPLE},  # adopted: DemoOmni.prompt_text builds this prompt (EVC_EXAMPLE)
    "one_shot_short": {"example": SHORT_EXAMPLE},
    "cap32": {"max_new_tokens": 32},
}


def run_variant(adapter, pairs, name: str, spec: dict, batch: int) -> pd.DataFrame:
    m = adapter.model
    system, example = spec.get("system", D.SYSTEM_EVC), spec.get("example")  # no "example": no worked exchange
    cap = spec.get("max_new_tokens", m.config.max_new_tokens)
    orig = m.prompt_text
    audio = D.AUDIO_TOKEN * m.config.n_audio_tokens
    m.prompt_text = lambda task, target=None, text=None, degree="": (
        orig(task, target, text, degree) if task != "evc"
        else D.evc_prompt(audio, D.evc_instruction(target, text, degree), system, example))
    rows = []
    try:
        for i in range(0, len(pairs), batch):
            bu = pairs[i: i + batch]
            inputs = m.prepare_inputs([adapter._feats(u) for u, _ in bu], "evc", [t for _, t in bu],
                                      [u.text for u, _ in bu])
            with torch.no_grad():
                out = m.generate(**inputs, max_new_tokens=cap, return_audio=False)
            for (u, t), seq in zip(bu, out.sequences):
                ids = [int(x) for x in seq.tolist()]
                stopped = any(x in m.stop_ids for x in ids)
                hyp = m.decode_text(ids)
                rows.append({"variant": name, "utt_id": u.id, "speaker": u.speaker, "split": u.split, "e_tgt": t,
                             "text": u.text, "hyp": hyp, "wer": sample_wer(u.text, hyp), "stopped": stopped,
                             "n_ref_words": len(u.text.split()), "n_hyp_words": len(hyp.split())})
    finally:
        m.prompt_text = orig
    return pd.DataFrame(rows)


def cluster_ci(df: pd.DataFrame, col: str, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % CI of the mean of ``col`` by resampling sources (their four targets together)."""
    g = df.groupby("utt_id")[col].agg(["sum", "count"])
    s, c = g["sum"].to_numpy(float), g["count"].to_numpy(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(g), size=(n_boot, len(g)))
    means = s[idx].sum(1) / c[idx].sum(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (v, t), g in list(df.groupby(["variant", "e_tgt"])) + [((v, "all"), g) for v, g in df.groupby("variant")]:
        g = g.assign(err=(g.wer > 0).astype(float))
        lo, hi = cluster_ci(g, "wer")
        bad = g[g.wer > 0]
        out.append({"variant": v, "e_tgt": t, "n": len(g), "wer_%": 100 * g.wer.mean(), "wer_lo": 100 * lo,
                    "wer_hi": 100 * hi, "any_error_%": 100 * g.err.mean(), "bad_cut_by_cap": int((~bad.stopped).sum()),
                    "bad_short": int((bad.n_hyp_words < bad.n_ref_words).sum())})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus-root", default="data/demo_corpus")
    ap.add_argument("--split", default="DEVELOPMENT")
    ap.add_argument("--n", type=int, default=None, help="sources (None: the whole split)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default=None, help="per-sample rows (CSV)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    w = load_world(corpus_root=a.corpus_root, results_dir="/tmp/probe_copy_results", naturalness=None,
                   build_corpus=False, progress=False)
    utts = w.split(a.split, a.n)
    pairs = [(u, t) for u in utts for t in TARGET_EMOTIONS]
    frames = []
    for v in a.variants:
        t0 = time.time()
        frames.append(run_variant(w.adapter, pairs, v, VARIANTS[v], a.batch))
        print(f"{v}: {len(pairs)} pairs in {time.time() - t0:.0f} s", flush=True)
    df = pd.concat(frames, ignore_index=True)
    if a.out:
        df.to_csv(a.out, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 100):
        print(summarize(df).round(1).to_string(index=False))


if __name__ == "__main__":
    main()
