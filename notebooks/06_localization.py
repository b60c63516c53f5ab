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
# # 06 · Localization (Figure 9, Table 6, Table 5)
#
# Where the CAS ESNs sit (count per decoder layer and emotion), the same pipeline on the talker (speech-generation
# side, Table 6, every selector), and how similar masks identified with the two judges' success filters are
# (Table 5: Jaccard, direct match, JSD of the layer distributions; the paper compares human- vs SER-filtered sets —
# here the two demo judges stand in for the two supervision signals, and with `human_filter` (a filter-mode
# listening test's CSV, docs/listening_test.md) the CAS-H masks are compared with the judge-filtered ones too).

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
human_filter = None             # CSV from a filter-mode listening test (esnlib.listening.save_filter_file): CAS-H rows

# %%
import pandas as pd
from IPython.display import Markdown, display

import esnlib.experiments as X
from esnlib import plots
from esnlib.notebook import setup

nb = setup("06_localization", task="evc", params=globals())  # parameters checked, then the world loaded
world, J, cfg = nb.world, nb.judges, nb.cfg
S, r, alpha, n_id, n_eval, n_sweep = cfg.sizes, cfg.r, cfg.alpha, cfg.n_id, cfg.n_eval, cfg.n_sweep
save, table, rows_csv = nb.save, nb.table, nb.rows_csv

# %%
from esnlib.evaluation import layer_counts

m = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
counts = layer_counts([m.masks[e] for e in m.masks], list(m.masks), world.sites("lm"))
table(counts, "layer_counts", latex=False)
save(plots.layer_heatmap({world.adapter.describe().get("model", "model"): counts},
                         title=f"{selector} ESNs per layer (r={r:.2%})"), "layer_counts")
counts

# %%
base = X.baseline(world, X.TEST, n=n_eval)
mts = [X.identify(world, s, rate=r, cap=c, seed=seed, n=n_id, scope="talker", max_wer=max_wer)
       for s in S["talker_selectors"]]
frames = X.evaluate_settings(world, [(mt, "steer", alpha) for mt in mts], n=n_sweep)
summ = [X.summarize(rows, base, selector=s, side="talker") for s, rows in zip(S["talker_selectors"], frames)]
t6 = table(pd.concat(summ, ignore_index=True), "table6")
rows_csv(base, *frames)
save(plots.selector_summary(t6, title="Steering ESNs of the talker"), "talker_summary")
t6

# %%
if len(J) < 2 and human_filter is None:
    raise ValueError("Table 5 compares masks from two success filters: pass two judges or a human_filter file")
sites = world.sites("lm")
ma = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, filter_judge=J[0], max_wer=max_wer)
parts = []
if len(J) >= 2:
    mb = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, filter_judge=J[1], max_wer=max_wer)
    parts.append(X.mask_similarity(ma, mb, sites).assign(comparison=f"{J[0]} vs {J[1]}"))
if human_filter is None:
    display(Markdown("No `human_filter` given: Table 5 has no CAS-H rows (human- vs judge-filtered masks)."))
else:
    from esnlib import listening as L

    hf = L.read_filter_file(human_filter)
    mh = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer, human=hf)
    who = "human (SIMULATED raters)" if hf["simulated"].any() else "human"
    parts.append(X.mask_similarity(mh, ma, sites).assign(comparison=f"{who} (CAS-H) vs {J[0]}"))
t5 = table(pd.concat(parts, ignore_index=True).set_index(["comparison", "emotion"]), "table5")
means = t5.groupby(level="comparison")[["jaccard", "jsd"]].mean()
display(Markdown("Mean over emotions: " + "; ".join(
    f"{k}: Jaccard {v.jaccard:.3f}, JSD of layer distributions {v.jsd:.3f}" for k, v in means.iterrows())
    + " (paper, human vs SER filter: Jaccard 0.13-0.22, JSD 0.021)."))
t5
