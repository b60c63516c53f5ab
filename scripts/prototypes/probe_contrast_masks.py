"""ACTΔ steered on DEVELOPMENT: the top r·N neurons by the rise of their mean activation for an emotion (level
included; `X.contrast_masks`, not one of the paper's selectors) steered x(1 + α). Does firing strength make a
contrast mask steer? (docs/demo_world.md, fifth round: barely; the talker does not read these neurons.)

    .venv/bin/python scripts/prototypes/probe_contrast_masks.py N r alpha[,alpha2] <corpus root> <results dir> [stats dir]
"""
import dataclasses
import sys
import time

import pandas as pd
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from esnlib import experiments as X  # noqa: E402

torch.set_num_threads(2)
N_DEV, RATE = int(sys.argv[1]), float(sys.argv[2])
ALPHAS = [float(a) for a in sys.argv[3].split(",")]
CORPUS, RESULTS = sys.argv[4:6]
STATS = sys.argv[6] if len(sys.argv) > 6 else None
w = X.load_world(corpus_root=CORPUS, results_dir=RESULTS, stats_dir=STATS, build_corpus=False, progress=True,
                 batch_size=64, shard_size=16, naturalness_per_shard=16)
t0 = time.time()
cas = X.identify(w, "CAS", rate=RATE, cap=50)  # its success sets, P and condition fields; the masks are replaced
acts, emos = X.success_activations(w, cap=50)
act = dataclasses.replace(cas, masks=X.contrast_masks(acts, emos, RATE), selector="ACTD", source="contrast_masks")
base = X.baseline(w, "DEVELOPMENT", n=N_DEV)
outs = X.evaluate_settings(w, [(act, "steer", a) for a in ALPHAS], "DEVELOPMENT", n=N_DEV, n_cross=4)
tab = pd.concat([X.summarize(o, base, setting=f"ACTD r={RATE:g} a={a:g}") for o, a in zip(outs, ALPHAS)])
pd.set_option("display.width", 250)
cols = ["setting", "judge", "self", "self_lo", "self_hi", "cross", "gap", "n_pairs", "self_textok", "n_textok",
        "d_post", "d_wer", "wer"]
print(tab[[c for c in cols if c in tab.columns]].round(3).to_string())
print("seconds", round(time.time() - t0))
