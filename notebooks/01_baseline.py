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
# # 01 · Baseline EVC (Table 2)
#
# The unintervened model converts neutral TEST utterances (TEST-SEEN and TEST-UNSEEN pooled, as the paper reports
# every result) to each target emotion. We report the paper's three axes: target-emotion match per judge, WER of
# the decoded text against the reference transcript, and naturalness (DNSMOS P.808 MOS in the demo world, every sample;
# UTMOS in the paper), plus the distribution of predicted labels (the paper's neutral bias) and, next to the match
# rate, a continuous measure: the judge's mean posterior of e_tgt.

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
import pandas as pd
from IPython.display import Audio, Markdown, display

import esnlib.experiments as X
from esnlib import plots
from esnlib.notebook import setup

nb = setup("01_baseline", task="evc", params=globals())  # parameters checked, then the world loaded
world, J, n_eval = nb.world, nb.judges, nb.cfg.n_eval
save, table, rows_csv = nb.save, nb.table, nb.rows_csv

# %%
base = X.baseline(world, X.TEST, n=n_eval)
t2 = table(X.baseline_table(base), "table2")
rows_csv(base)
t2

# %%
long = pd.concat([base.assign(judge=j, match=base[f"match_{j}"]) for j in J], ignore_index=True)
save(plots.emotion_match_bars(long, title=f"Baseline emotion match (TEST, {n_eval} sources per e_tgt)"),
     "emotion_match")
dist = pd.concat([base.assign(judge=j, pred=base[f"pred_{j}"]) for j in J], ignore_index=True)
save(plots.label_distribution(dist, title="Predicted labels of the baseline"), "label_distribution")
ld = table(X.label_distribution(base), "label_distribution", latex=False)

# %% [markdown]
# **What the figures show.** Bars: share of conversions that each judge labels with the instructed emotion
# (95 % CIs). Second figure: which labels the judges actually predict. The paper's Qwen2.5-Omni-7B predicts
# *neutral* 57.2 % of the time (emotion2vec); the cell below reads the same numbers from this run.

# %%
avg = t2.set_index("e_tgt").loc["avg"]
wrong = {j: base[(base[f"pred_{j}"] != base.target) & base[f"pred_{j}"].notna()][f"pred_{j}"]
         .value_counts(normalize=True).mul(100) for j in J}
best = t2[t2.e_tgt != "avg"].set_index("e_tgt")[f"match_{J[0]} (%)"]
display(Markdown(
    f"Average emotion match over {len(base)} conversions ({n_eval} sources × 4 targets): "
    + ", ".join(f"{j} {avg[f'match_{j} (%)']:.1f} %" for j in J)
    + f"; WER {avg['WER (%)']:.1f} %; naturalness {avg['naturalness']:.2f} (n = {int(avg['naturalness_n'])} "
    + "clips). Most frequent wrong label: " + ", ".join(
        f"{j} {w.index[0]} ({w.iloc[0]:.0f} % of errors)" for j, w in wrong.items() if len(w))
    + f". Easiest target for {J[0]}: {best.idxmax()} ({best.max():.1f} %), hardest: {best.idxmin()} "
    + f"({best.min():.1f} %). The demo LALM under-expresses a target when the sentence's meaning does not fit "
    + "it, because its training data render emotion that way; these rates are a property of that data, not a "
    + "finding about real LALMs."))

# %%
for _, row in base[base.audio_path.astype(str) != ""].head(3).iterrows():
    display(Markdown(f"**{row.sample_id}** → {row.target}: *{row.hyp}* (judges: "
                     + ", ".join(f"{j}={row[f'pred_{j}']}" for j in J) + ")"))
    display(Audio(filename=row.audio_path))
