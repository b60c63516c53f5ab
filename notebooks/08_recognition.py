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
# # 08 · Recognition neurons (SER paper)
#
# The SER paper's setting: the LALM itself answers a five-way emotion question. ESNs are identified from
# correctly recognized IDENTIFICATION utterances (all five emotions), then (a) deactivated — recall of the mask's
# own emotion should drop most — and (b) amplified (steering) — predictions should move toward the mask's emotion.
# Evaluated on TEST (seen + unseen pooled). Then label-free ways to apply masks when the true label is unknown
# (this project's reading of the paper's 2-pass / mix / union strategies, `esnlib.experiments.ser_label_free`), and
# the paper's **cross-dataset transfer**: masks identified on corpus A (this notebook's corpus) deactivated on
# corpus B's TEST items, next to masks identified on B itself. On the demo world B is the second demo corpus that
# notebook 07 builds (same voices, other sentences and prosody: a weak test); on real data any pair
# (`corpus_root`/`corpus` for A, `transfer_corpus_root`/`transfer_corpus` for B; IEMOCAP, MELD, MSP-Podcast, ESD).

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
transfer_corpus_root = None     # corpus B of the cross-corpus transfer; None: the second demo corpus (demo world)
transfer_corpus = None          # its kind (demo, esd, iemocap, meld, msp-podcast); None: its layout

# %%
import pandas as pd
from IPython.display import Markdown, display

import esnlib.experiments as X
from esnlib import plots
from esnlib.evaluation import self_cross
from esnlib.notebook import setup

nb = setup("08_recognition", task="ser", params=globals())  # parameters checked, then the world loaded
world, S, r, alpha, n_id = nb.world, nb.cfg.sizes, nb.cfg.r, nb.cfg.alpha, nb.cfg.n_id
save, table, rows_csv = nb.save, nb.table, nb.rows_csv

# %%
n_ser = S["n_ser"]
base = X.ser_baseline(world, X.TEST, n=n_ser)
acc = base.groupby("emotion")["correct"].mean().mul(100).rename("recall (%)")
display(Markdown(f"SER baseline accuracy on TEST: {100 * base.correct.mean():.1f} % over {len(base)} items."))
m = X.identify_ser(world, selector, rate=r, seed=seed, n=n_id)
display(Markdown(f"Correctly recognized identification items per emotion: {m.n_success_all}"))
acc.to_frame()

# %%
deact = X.ser_effects(world, m, kind="deactivate", alpha=0.0, n=n_ser)
amp = X.ser_effects(world, m, kind="steer", alpha=alpha, n=n_ser)
t_d = table(X.ser_effect_table(deact, base, "accuracy"), "deactivation")
t_a = table(X.ser_effect_table(amp, base, "predicted"), "amplification")
ci = table(X.ser_effect_ci(deact, base), "deactivation_ci", latex=False)
rows_csv(base, deact, amp)  # the stored rows carry kind and α
save(plots.effect_heatmaps({"deactivate: Δ recall": t_d, f"steer α={alpha}: Δ predicted as e_mask": t_a},
                           title="SER: e_mask (rows) × true emotion (columns), pp"), "effects")
sd, sa, per_emotion = X.ser_self_other(deact, base), self_cross(t_a), self_cross(t_d)["self"]
display(Markdown(
    f"Deactivation: own emotion's recall {sd['self']:+.1f} pp [{sd['self_lo']:+.1f}, {sd['self_hi']:+.1f}] "
    f"(pooled over {sd['n_self']} items, each under its own emotion's mask; the mean of the per-emotion Δ is "
    f"{per_emotion:+.1f} pp), other emotions {sd['other']:+.1f} pp [{sd['other_lo']:+.1f}, {sd['other_hi']:+.1f}] "
    f"({sd['n_other']} item-mask pairs; the paper: −13.5 to −36.8 % on the own emotion). Amplification: self "
    f"{sa['self']:+.1f} pp vs cross {sa['cross']:+.1f} pp."))
ci

# %%
from esnlib.evaluation import layer_counts

counts = layer_counts([m.masks[e] for e in m.masks], list(m.masks), world.sites("lm"))
table(counts, "layer_counts", latex=False)
save(plots.layer_heatmap({"SER masks": counts}, title=f"{selector} SER ESNs per layer (r={r:.2%})"),
     "layer_counts")
lf = table(X.ser_label_free(world, m, base, deact, kind="deactivate", alpha=0.0, n=n_ser), "label_free")
piv = X.cell_table(lf, "strategy", "emotion")  # each cell's n drawn in the heatmap
save(plots.effect_heatmaps({"Δ recall under deactivation": piv}, title="Label-free strategies (pp)"),
     "label_free")
piv

# %%
# cross-dataset transfer: corpus A's masks (m) and corpus B's own masks, deactivated on B's TEST items
if transfer_corpus_root is not None:
    world_b = X.with_corpus(world, transfer_corpus_root, corpus=transfer_corpus, task=nb.task)
elif world.corpus_kind == "demo":
    world_b = X.second_demo_world(world, n_utts=S["second_corpus_n_utts"], seed=seed)
else:
    world_b = None
    display(Markdown("Cross-dataset transfer needs a second corpus: pass `transfer_corpus_root` (and "
                     "`transfer_corpus`)."))
if world_b is not None:
    n_b = S["n_ser_transfer"]  # fewer items than corpus A's tables (each costs 11 SER passes): a secondary table
    base_b = X.ser_baseline(world_b, X.TEST, n=n_b)
    m_b = X.identify_ser(world_b, selector, rate=r, seed=seed, n=n_id)
    A, B = world.corpus, world_b.corpus
    tr, cells = X.ser_transfer(world_b, {f"A → B ({A} masks)": m, f"B → B ({B} masks)": m_b}, base_b,
                               n=n_b, seed=seed)
    table(tr, "transfer", latex=False)
    table(pd.concat(cells.values(), ignore_index=True), "transfer_ci", latex=False)
    table(X.mask_similarity(m, m_b, world.sites("lm")).set_index("emotion"), "transfer_overlap", latex=False)
    save(plots.effect_heatmaps({k: X.cell_table(v, "e_mask", "emotion") for k, v in cells.items()},
                               title=f"SER transfer: Δ recall on {B} under deactivation (pp)"), "transfer")
    a, b = tr.iloc[0], tr.iloc[1]
    display(Markdown(
        f"On {B} ({int(a.n_items)} TEST items, baseline accuracy {100 * base_b.correct.mean():.1f} %): "
        f"masks from {A} move the own emotion's recall by {a['self']:+.1f} pp [{a.self_lo:+.1f}, "
        f"{a.self_hi:+.1f}] (n = {a.n_self} item-mask pairs) and the other emotions' by {a.other:+.1f} pp "
        f"[{a.other_lo:+.1f}, {a.other_hi:+.1f}] (n = {a.n_other}); {B}'s own masks: self {b['self']:+.1f} pp "
        f"[{b.self_lo:+.1f}, {b.self_hi:+.1f}], other {b.other:+.1f} pp [{b.other_lo:+.1f}, {b.other_hi:+.1f}]. "
        "The SER paper reports partial cross-dataset transfer."))
    display(tr)
