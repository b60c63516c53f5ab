"""CAS steered at the generated positions only (the prompt untouched) on DEVELOPMENT: does sparing the prompt let a
larger alpha add emotion before the text breaks? (docs/demo_world.md, fifth round: no.)

    .venv/bin/python scripts/prototypes/probe_positions.py N r generated|all alpha[,alpha2] <corpus root> <results dir>
"""
import sys
import time

import pandas as pd
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from esnlib import experiments as X  # noqa: E402

torch.set_num_threads(2)
N_DEV, RATE, POS = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ALPHAS = [float(a) for a in sys.argv[4].split(",")]
CORPUS, RESULTS = sys.argv[5:7]
world = X.load_world(corpus_root=CORPUS, results_dir=RESULTS, build_corpus=False, progress=True)
t0 = time.time()
m = X.identify(world, "CAS", rate=RATE, cap=50)
base = X.baseline(world, "DEVELOPMENT", n=N_DEV)
outs = X.evaluate_settings(world, [(m, "steer", a) for a in ALPHAS], "DEVELOPMENT", n=N_DEV, n_cross=4, positions=POS)
tab = pd.concat([X.summarize(o, base, setting=f"CAS r={RATE:g} {POS} a={a:g}") for o, a in zip(outs, ALPHAS)])
cols = ["setting", "judge", "self", "self_lo", "self_hi", "cross", "gap", "n_pairs", "self_textok", "n_textok",
        "d_post", "d_wer", "wer"]
pd.set_option("display.width", 250)
print(tab[[c for c in cols if c in tab.columns]].round(3).to_string())
print("seconds", round(time.time() - t0))
