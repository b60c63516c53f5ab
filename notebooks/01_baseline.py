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
# the decoded text against the reference transcript, and naturalness (DNSMOS OVRL in the demo world, every sample;
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
naturalness = "dnsmos"          # naturalness judge (UTMOS in the paper)
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
NB = "01_baseline"
TASK = "evc"  # the corpora it takes: esnlib.corpora.registry
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import Audio, Markdown, display

import esnlib
import esnlib.experiments as X
from esnlib import plots
from esnlib.evaluation import self_cross
from esnlib.params import validate_params

validate_params(globals())  # every parameter above; a bad one is a ParameterError before anything is loaded
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
S = X.defaults(smoke)
demo = model in ("demo", "demo-lalm")
r = (X.DEMO_RATE if demo else X.PAPER_RATE) if r is None else r
alpha = (X.DEMO_ALPHA if demo else X.PAPER_ALPHA) if alpha is None else alpha
n_eval = S["n_eval"] if n_eval is None else n_eval
n_cross = S["n_cross"] if n_cross is None else n_cross
n_sweep = S["n_sweep"] if n_sweep is None else n_sweep
n_id = S["n_id"] if n_id is None else n_id
world = X.load_world(model=model, corpus_root=corpus_root, judges=judges, naturalness=naturalness,
                     results_dir=results_dir, stats_dir=stats_dir, device=device, seed=seed,
                     batch_size=batch_size or S["batch_size"], shard_size=S["shard_size"],
                     naturalness_per_shard=S["naturalness_per_shard"], n_utts=corpus_n_utts or S["corpus_n_utts"],
                     executor=executor, ray_address=ray_address, num_workers=num_workers, rowwise=rowwise,
                     corpus=corpus, task=TASK)
J = list(world.judges)
N_LM = sum(s.width for s in world.sites("lm"))


def save(fig, name):
    """Save a figure as figures/<notebook>_<name>.{pdf,png}."""
    plots.save(fig, f"{NB}_{name}", figures_dir)
    display(fig)
    import matplotlib.pyplot as plt
    plt.close(fig)


def table(df, name, latex=True):
    X.save_table(df, f"{NB}_{name}", figures_dir, latex=latex)
    return df


def rows_csv(*frames):
    """The per-sample rows behind this notebook's tables: figures/tables/<notebook>_rows.csv."""
    return X.export_rows(frames, f"{NB}_rows", figures_dir)


def listen(base_rows, rows, k=2):
    """Inline audio: baseline vs intervened for a few samples."""
    for _, p in X.audio_pairs(base_rows, rows, k=k).iterrows():
        display(Markdown(f"**{p.sample_id}** (e_tgt = {p.target}, e_mask = {p.mask_emotion}) — "
                         f"baseline: *{p.hyp_base}* / intervened: *{p.hyp}*"))
        display(Audio(filename=p.audio_path_base), Audio(filename=p.audio_path))


print(f"model {world.adapter.describe()} | corpus {world.corpus} ({world.corpus_kind}, {len(world.utts)} utterances) | "
      f"judges {J} | "
      f"N(lm) = {N_LM} | r = {r:.4f} -> {int(np.floor(r * N_LM))} neurons per emotion | c = {c} | alpha = {alpha} | "
      f"evaluation: {n_eval} sources (cross cells {n_cross}), sweeps {n_sweep}")

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
