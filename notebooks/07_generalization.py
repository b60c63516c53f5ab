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
# # 07 · Generalization (Figure 10, mask transfer)
#
# CAS masks identified on IDENTIFICATION speakers, applied to TEST-SEEN (seen speakers, unseen sentences) and
# TEST-UNSEEN (unseen speakers): the pooled TEST rows of notebook 02's headline condition, split by speaker set,
# self effect per emotion with paired bootstrap 95 % CIs over source utterances.
# Then **mask transfer across corpora**: a second demo corpus built with another seed (other sentences drawn from
# the corpus pool and other per-utterance prosody; the same ten corpus voices, because the other voice sets are
# reserved for the model's and the judges' training) — the masks from corpus A are applied to corpus B's TEST
# and compared with masks identified on corpus B itself.

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

nb = setup("07_generalization", task="evc", params=globals())  # parameters checked, then the world loaded
world, J, cfg = nb.world, nb.judges, nb.cfg
S, r, alpha, n_id = cfg.sizes, cfg.r, cfg.alpha, cfg.n_id
n_eval, n_cross, n_sweep = cfg.n_eval, cfg.n_cross, cfg.n_sweep
save, table, rows_csv = nb.save, nb.table, nb.rows_csv

# %%
m = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
base = X.baseline(world, X.TEST, n=n_eval)
rows = X.evaluate_masks(world, m, kind="steer", alpha=alpha, n=n_eval, n_cross=n_cross)
parts = [X.effect_ci(rows[rows.split == sp], base[base.split == sp], J[0]).assign(split=sp)
         for sp in ("TEST-SEEN", "TEST-UNSEEN")]
fig10 = table(pd.concat(parts, ignore_index=True), "fig10")
rows_csv(base, rows)
save(plots.seen_unseen(fig10, title=f"Self effect, seen vs unseen speakers ({J[0]}, 95 % CI)"), "seen_unseen")
fig10

# %%
# only for the demo world: a second demo corpus next to the first one (notebook 08 uses the same one)
if world.corpus_kind == "demo":
    world_b = X.second_demo_world(world, n_utts=S["second_corpus_n_utts"], seed=seed)
    base_b = X.baseline(world_b, X.TEST, n=n_sweep)
    m_b = X.identify(world_b, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
    rows_ab, rows_bb = X.evaluate_settings(world_b, [(m, "steer", alpha), (m_b, "steer", alpha)], n=n_sweep)
    tr = table(pd.concat([X.summarize(rows_ab, base_b, masks_from="A (transfer)"),
                          X.summarize(rows_bb, base_b, masks_from="B (in-corpus)")], ignore_index=True),
               "transfer")
    save(plots.effect_heatmaps({"masks from A → B": X.effect_tables(rows_ab, base_b)[J[0]],
                                "masks from B → B": X.effect_tables(rows_bb, base_b)[J[0]]},
                               title=f"Mask transfer across demo corpora ({J[0]})"), "transfer")
    g = tr[tr.judge == J[0]].set_index("masks_from")
    display(Markdown(f"Gap on corpus B with transferred masks {g['gap'].iloc[0]:+.1f} pp vs in-corpus masks "
                     f"{g['gap'].iloc[1]:+.1f} pp ({n_sweep} sources per cell). Both corpora share voices, so "
                     "this is a weak transfer test; the SER paper reports only partial cross-dataset transfer "
                     "for real corpora."))
    display(tr)
else:
    display(Markdown("Mask transfer needs a second corpus; with a real corpus, run this notebook again with "
                     "`corpus_root` pointing to it and compare the masks (see docs/notebooks.md)."))
