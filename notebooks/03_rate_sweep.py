# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Selection rate r (Figure 4)
#
# CAS masks at the paper's rates 0.1, 0.3, 0.5 and 1.0 % (scaled by r / 0.5 % when the default r differs), c and
# α fixed, on `n_sweep` TEST sources per cell.

# %% tags=["parameters"]
# Parameters (papermill overrides these; `smoke=True` shrinks every run for tests)
model = "demo"                  # esnlib.models.registry name or path
corpus_root = "data/demo_corpus"  # the corpus folder (the demo corpus is built here if missing)
corpus = None                   # "demo", "esd", "iemocap", "meld", "msp-podcast"; None: the folder's layout.
                                # EVC notebooks take demo/esd, notebook 08 (SER) all five (docs/notebooks.md)
corpus_n_utts = None            # sentences per speaker when the demo corpus is built here (None: mode default)
judges = "prosody,spectral"     # emotion judges (esnlib.judges.registry), the first one filters successes
naturalness = "dnsmos-p808"     # naturalness judge (UTMOS in the paper)
selector = "CAS"
r = None                        # selection rate; None: the paper's 0.5 % (X.PAPER_RATE), X.DEMO_RATE on the demo LALM
c = 50                          # success-set cap
max_wer = 0.15                  # success filter: WER threshold (the paper's tau_wer)
alpha = None                    # steering strength; None: the paper's 1.0, X.DEMO_ALPHA on the demo LALM
kind = "steer"
n_id = None                     # identification sources (neutral utterances); None: the whole split
n_eval = None                   # evaluation sources (pooled TEST-SEEN + TEST-UNSEEN); None: mode default
n_cross = None                  # sources for the off-diagonal (cross) cells of headline conditions; None: mode default
n_sweep = None                  # sources for the other conditions (sweeps, secondary selectors); None: mode default
device = "cpu"
seed = 0
smoke = False
batch_size = None
results_dir = "data/results"
stats_dir = None                # per-sample activation statistics; None: next to results_dir (esnlib.experiments.run_dirs)
figures_dir = "figures"
executor = "local"              # "local" or "ray": generation units run on a Ray cluster (esnlib.grid)
ray_address = None              # an existing Ray cluster ("ray://head:10001" or "auto"); None: start a local one
num_workers = None              # Ray actors (None: one per GPU, else one per CPU)
rowwise = True                  # a sweep's conditions share generate calls (one edit per batch row); False: one call each

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import esnlib.experiments as X
from esnlib import plots
from esnlib.notebook import setup

nb = setup("03_rate_sweep", task="evc", params=globals())  # parameters checked, then the world loaded
world, J, N_LM, cfg = nb.world, nb.judges, nb.n_lm, nb.cfg
S, r, alpha, n_id, n_eval, n_sweep = cfg.sizes, cfg.r, cfg.alpha, cfg.n_id, cfg.n_eval, cfg.n_sweep
save, table, rows_csv = nb.save, nb.table, nb.rows_csv

# %%
base = X.baseline(world, X.TEST, n=n_eval)
paper_rates = S["paper_rates"]
rates = [x * r / X.PAPER_RATE for x in paper_rates]
ms = [X.identify(world, selector, rate=rr, cap=c, seed=seed, n=n_id, max_wer=max_wer) for rr in rates]
frames = X.evaluate_settings(world, [(m, "steer", alpha) for m in ms], n=n_sweep)  # one pass, all r
heat, summ = {}, []
for paper_r, rr, rows in zip(paper_rates, rates, frames):
    label = f"r={rr:.2%} (paper {paper_r:.1%}), {int(np.floor(rr * N_LM))} neurons"
    heat[label] = X.effect_tables(rows, base)[J[0]]
    summ.append(X.summarize(rows, base, rate=rr, paper_rate=paper_r))
sweep = table(pd.concat(summ, ignore_index=True), "rate_sweep")
rows_csv(base, *frames)
save(plots.effect_heatmaps(heat, title=f"{selector}: Δ emotion match (pp) vs r, judge {J[0]}"), "heatmaps")
save(plots.tradeoff(sweep[sweep.judge == J[0]], x="rate", gain="self", wer="wer",
                    title="Self effect and WER vs r"), "tradeoff")
sweep

# %%
g = sweep[sweep.judge == J[0]].set_index("rate")
mono = bool(np.all(np.diff(g["self"].to_numpy()) >= 0))
display(Markdown(f"Self effect by r ({J[0]}, {int(g.n_pairs.iloc[0])} self pairs each): " + ", ".join(
    f"{k:.2%}: {v.self:+.1f} pp [{v.self_lo:+.1f}, {v.self_hi:+.1f}]" for k, v in g.iterrows())
                 + f". Monotonic over the sweep: **{mono}** (the paper reports a largely monotonic trend "
                 "within 0.1-1.0 %, with more off-diagonal change at 1.0 %)."))
