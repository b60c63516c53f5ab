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
# roughly comparable, `X.KIND_ALPHAS`), then steering over the α sweep (the paper's 0.3-2; on the demo LALM
# `X.DEMO_ALPHAS`, 0.5-2 and 4, since its text first breaks at α = 4 where the paper's broke at 2), and the
# emotion-vs-WER trade-off. Deactivation and the α sweep are headline conditions (`n_eval` sources on the
# diagonal); add and clamp use `n_sweep` sources.

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
from IPython.display import Markdown, display

import esnlib.experiments as X
from esnlib import plots
from esnlib.notebook import setup

nb = setup("05_intervention", task="evc", params=globals())  # parameters checked, then the world loaded
world, J, cfg = nb.world, nb.judges, nb.cfg
S, demo, r, alpha, n_id = cfg.sizes, cfg.demo, cfg.r, cfg.alpha, cfg.n_id
n_eval, n_cross, n_sweep = cfg.n_eval, cfg.n_cross, cfg.n_sweep
save, table, rows_csv, listen = nb.save, nb.table, nb.rows_csv, nb.listen

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
