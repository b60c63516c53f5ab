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
# # 05 · Intervention design (Figure 6, Table 4, Figure 7)
#
# The same CAS masks under the four intervention kinds (steer, add, clamp, deactivate; α per kind chosen to be
# roughly comparable, `X.KIND_ALPHAS`), then steering over the α sweep (`X.DEMO_ALPHAS` on the demo LALM, the
# paper's 0.3-2 otherwise), and the emotion-vs-WER trade-off. Deactivation and the α sweep are headline conditions
# (`n_eval` sources on the diagonal); add and clamp use `n_sweep` sources.

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
NB = "05_intervention"
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
m = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
kind_alphas = {**X.KIND_ALPHAS, "steer": alpha}
kind_settings = [(m, k, a) for k, a in kind_alphas.items()]
alphas = S["alphas"] if demo else X.ALPHAS
alpha_settings = [(m, "steer", a) for a in alphas]
light = [st for st in kind_settings if st[1] in ("add", "clamp")]
heavy = [st for st in kind_settings if st not in light] + alpha_settings
# each call is one pass: its conditions share generate calls (row-wise edits)
fr = dict(zip([(k, a) for _, k, a in heavy], X.evaluate_settings(world, heavy, n=n_eval, n_cross=n_cross)))
fr.update(zip([(k, a) for _, k, a in light], X.evaluate_settings(world, light, n=n_sweep)))
heat, summ = {}, []
for _, k, a in kind_settings:
    heat[k if k == "deactivate" else f"{k} α={a}"] = X.effect_tables(fr[(k, a)], base)[J[0]]
    summ.append(X.summarize(fr[(k, a)], base, kind=k, alpha=a))
kinds = table(pd.concat(summ, ignore_index=True), "kinds")
rows_csv(base, *fr.values())
save(plots.effect_heatmaps(heat, title=f"Intervention kinds, judge {J[0]}"), "kinds_heatmaps")
kinds

# %%
heat, summ = {}, []
for a in alphas:
    heat[f"α={a}"] = X.effect_tables(fr[("steer", a)], base)[J[0]]
    summ.append(X.summarize(fr[("steer", a)], base, alpha=a))
t4 = table(pd.concat(summ, ignore_index=True), "table4")
save(plots.effect_heatmaps(heat, title=f"Steering strength α, judge {J[0]}"), "alpha_heatmaps")
save(plots.tradeoff(t4, x="alpha", gain="self", wer="wer", hue="judge",
                    title="Emotion gain vs WER over α"), "tradeoff")
t4

# %%
g = t4[t4.judge == J[0]].set_index("alpha")
d = kinds[(kinds.kind == "deactivate") & (kinds.judge == J[0])].iloc[0]
display(Markdown(f"Self effect over α ({J[0]}, {int(g.n_pairs.iloc[0])} self pairs each): " + ", ".join(
    f"{k}: {v.self:+.1f} pp [{v.self_lo:+.1f}, {v.self_hi:+.1f}]" for k, v in g.iterrows())
                 + "; WER: " + ", ".join(f"{k}: {100 * v:.1f} %" for k, v in g['wer'].items())
                 + f". Deactivation: self {d.self:+.1f} pp [{d.self_lo:+.1f}, {d.self_hi:+.1f}], cross "
                 f"{d.cross:+.1f} pp. The paper (Table 4) sees self effects grow with α while WER rises, and "
                 "a negative diagonal under deactivation."))
listen(base, fr[("steer", max(alphas))])
