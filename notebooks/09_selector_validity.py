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
# # 09 · Selector validity (demo model)
#
# Does a selector's ranking point at neurons that *cause* the emotion? On the demo model we can measure it:
# each candidate neuron (the union of every selector's masks plus random neurons, so the pool is not only
# selector picks) is deactivated alone on DEVELOPMENT utterances, and we measure the drop of the talker's prosody
# along the neutral → e_tgt direction (`X.emotion_score`: 0 = neutral, 1 = the corpus's full emotion profile).
# Then precision@N_sel (share of each selector's mask among the candidates with the largest causal effects) and
# Spearman ρ between selector score and causal effect. Caveat: single-neuron ablations of a distributed code
# are small effects; read ρ together with its sign across emotions.
#
# Next to the paper's four activation selectors stands **ATTR** (`esnlib.attribution`, not one of the paper's): it
# ranks neurons by activation × gradient of the talker's emotion score over the same success sets, i.e. by the
# first-order effect that steering a neuron has on what the talker renders. The last section steers its masks.

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
attr_alpha = 0.1                # ATTR's α: the largest with ΔWER ≤ 10 pp on DEVELOPMENT (docs/demo_world.md)

# %%
from IPython.display import Markdown, display

import esnlib.experiments as X
from esnlib import plots
from esnlib.notebook import setup

nb = setup("09_selector_validity", task="evc", params=globals())  # parameters checked, then the world loaded
world, S, r, n_id = nb.world, nb.cfg.sizes, nb.cfg.r, nb.cfg.n_id
save, table, rows_csv = nb.save, nb.table, nb.rows_csv

# %%
m = X.identify(world, "CAS", rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
attr = X.identify(world, "ATTR", rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)  # same success sets
cand = X.candidate_neurons(m.P, rate=r, n_random=S["n_candidates"] // 3, seed=seed,
                           per_emotion=max(1, S["n_candidates"] // (4 * 4)), extra_scores=[attr.scores])
display(Markdown(f"{len(cand)} candidate neurons, each ablated on {S['n_causal']} DEVELOPMENT sources × "
                 f"{len(m.emotions)} targets."))
causal = X.causal_effects(world, cand, split="DEVELOPMENT", n=S["n_causal"])
table(causal, "causal_effects", latex=False)
val = table(X.selector_validity(m.P, m.emotions, causal, rate=r,
                                extra={"ATTR": (attr.scores, [attr.masks[e] for e in m.emotions])}), "validity")
val

# %% [markdown]
# Left: how much of each selector's mask (among the candidates) lies in the causal top set, against the chance
# level of a random pick of the same size (black ticks). Right: Spearman ρ with its 95 % CI over the candidate
# neurons (n in the titles); a ρ whose CI contains 0 is no evidence either way.

# %%
import matplotlib.pyplot as plt
import seaborn as sns

save(plots.selector_validity(val), "validity")
fig2, ax = plt.subplots(figsize=(6, 3.5))
sns.histplot(causal, x="effect", hue="e_tgt", ax=ax, element="step")
ax.set_title(f"single-neuron ablation effects on emotion_score (n = {causal.neuron.nunique()} neurons per e_tgt)")
save(fig2, "causal_effects")
s = val.groupby("selector")[["precision", "chance", "spearman"]].mean()
display(Markdown("Mean over emotions: " + "; ".join(
    f"{k}: precision {v.precision:.2f} (chance {v.chance:.2f}), ρ {v.spearman:+.2f}" for k, v in s.iterrows())
                 + f". Largest single-neuron effect: {causal.effect.abs().max():.3f} emotion-score units."))


# %% [markdown]
# ## ATTR: the neurons the talker reads, steered
#
# The activation selectors ask which neurons fire *differently* per emotion; ATTR asks which neurons the rest of
# the model *reads* when it renders the emotion. Below: how much the two kinds of mask share, and Δ emotion match
# (pp, 95 % cluster-bootstrap CIs over sources, n = self pairs) on pooled TEST when ATTR's masks are steered
# ×(1 + α) at `attr_alpha` and twice that (the largest α whose ΔWER stayed ≤ 10 pp on DEVELOPMENT, and the
# trade-off above it), or deactivated; the controls are a random mask of the same size at the same α and CAS at
# the demo's default α (notebook 02's row).

# %%
import numpy as np
import pandas as pd

layer_of = np.concatenate([np.full(s.width, s.layer) for s in world.sites("lm")])
late = layer_of >= (2 * (layer_of.max() + 1)) // 3  # the last third of the LM layers
share = pd.DataFrame([{"emotion": e, "n_ATTR": len(attr.masks[e]), "n_CAS": len(m.masks[e]),
                       "shared": len(set(attr.masks[e].tolist()) & set(m.masks[e].tolist())),
                       "ATTR in last third (%)": round(100 * float(late[attr.masks[e]].mean()), 1),
                       "CAS in last third (%)": round(100 * float(late[m.masks[e]].mean()), 1)}
                      for e in m.emotions])
table(share, "attr_vs_cas", latex=False)

# %% [markdown]
# Why the two kinds of mask differ. Steering ×(1 + α) scales a neuron's activation, so what a mask can do depends
# on how *strongly* its neurons fire, not only on how *differently* they fire per emotion (what LAP, LAPE, MAD and
# CAS rank). Below, from the stored statistics of the same success sets (nothing is generated): each mask's mean
# activation on its own emotion's successes and on the others', and the first-order change of the talker's emotion
# score per unit α that ATTR's attributions predict for it (1 = the full profile). A third mask, **ACTΔ** (not one
# of the paper's selectors), takes the neurons whose mean activation rises most for the emotion, level included:
# if firing strength were all CAS lacks, ACTΔ would steer.

# %%
acts, emos_a = X.success_activations(world, cap=c, seed=seed, n=n_id, max_wer=max_wer)
assert list(emos_a) == list(attr.emotions) == list(m.emotions)
both = {"CAS": m.masks, "ACTΔ": X.contrast_masks(acts, emos_a, r), "ATTR": attr.masks}
anat = table(X.mask_anatomy(both, acts, emos_a, attr.scores), "mask_anatomy", latex=False)
save(plots.mask_anatomy(acts, emos_a, both, seed=seed), "mask_anatomy")
g = anat.groupby("selector")[["act_own", "contrast", "abs_act_all", "d_score_per_alpha"]].agg(["min", "max"])
rng_ = lambda sel, col, f="{:+.3f}": f"{f.format(g.loc[sel, (col, 'min')])} to {f.format(g.loc[sel, (col, 'max')])}"
display(Markdown(
    f"Mean activation on their own emotion's successes (contrast to the others'): CAS {rng_('CAS', 'act_own')} "
    f"({rng_('CAS', 'contrast')}), ACTΔ {rng_('ACTΔ', 'act_own')} ({rng_('ACTΔ', 'contrast')}), ATTR "
    f"{rng_('ATTR', 'act_own')} ({rng_('ATTR', 'contrast')}); the mean |activation| of all neurons is "
    f"{rng_('CAS', 'abs_act_all', '{:.3f}')}. First-order Δ emotion score per unit α: CAS "
    f"{rng_('CAS', 'd_score_per_alpha')}, ACTΔ {rng_('ACTΔ', 'd_score_per_alpha')}, ATTR "
    f"{rng_('ATTR', 'd_score_per_alpha')}."))
anat.round(4)

# %%
rnd = X.identify(world, "random", rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
alpha = nb.cfg.alpha  # CAS at the demo's own default (notebook 02's Table 3 row; read from the store after 02)
settings = [(attr, "steer", attr_alpha), (attr, "steer", 2 * attr_alpha), (rnd, "steer", attr_alpha),
            (attr, "deactivate", 0.0), (m, "steer", alpha)]
labels = [("ATTR", "steer", attr_alpha), ("ATTR", "steer", 2 * attr_alpha), ("random", "steer", attr_alpha),
          ("ATTR", "deactivate", None), ("CAS", "steer", alpha)]
base = X.baseline(world, X.TEST, n=S["n_eval"])
outs = X.evaluate_settings(world, settings, X.TEST, n=S["n_eval"], n_cross=S["n_cross"])
steer = table(pd.concat([X.summarize(o, base, selector=sel, kind=k, alpha=a) for o, (sel, k, a) in zip(outs, labels)],
                        ignore_index=True), "attr_steering")
rows_csv(base, *outs)
steer[["selector", "kind", "alpha", "judge", "self", "self_lo", "self_hi", "cross", "gap", "n_pairs", "self_textok",
       "d_post", "d_wer"]].round(3)

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
lab = (steer["selector"] + " " + steer["kind"] + steer["alpha"].map(lambda a: "" if pd.isna(a) else f" α={a:g}")
       + " (n = " + steer["n_pairs"].astype(int).astype(str) + ")")
for k, (j, g) in enumerate(steer.assign(lab=lab).groupby("judge", sort=False)):
    y = np.arange(len(g)) + 0.18 * (k - 0.5)
    ax.errorbar(g["self"], y, xerr=[g["self"] - g["self_lo"], g["self_hi"] - g["self"]], fmt="o", capsize=3, label=j)
ax.set_yticks(np.arange(len(g)), g["lab"])
ax.axvline(0, color="k", lw=0.8)
ax.set_xlabel(f"self-effect Δ emotion match (pp), r = {100 * r:g} %, pooled TEST")
ax.legend(title="judge")
fig.tight_layout()
save(fig, "attr_steering")
a = steer[(steer.selector == "ATTR") & (steer.kind == "steer") & (steer.alpha == attr_alpha)].set_index("judge")
cas_ = steer[(steer.selector == "CAS")].set_index("judge")
fmt = lambda v: f"{v.self:+.1f} pp [{v.self_lo:+.1f}, {v.self_hi:+.1f}]"
display(Markdown(
    f"ATTR at α = {attr_alpha:g}: self-effect " + " / ".join(f"{fmt(v)} ({j})" for j, v in a.iterrows())
    + f", self − cross gap " + " / ".join(f"{v.gap:+.1f}" for _, v in a.iterrows())
    + f" pp, ΔWER {100 * a.d_wer.iloc[0]:+.1f} pp, on the text-preserving pairs "
    + " / ".join(f"{v.self_textok:+.1f}" for _, v in a.iterrows()) + f" pp (n = {int(a.n_textok.iloc[0])}); "
    + f"CAS at α = {alpha:g}: " + " / ".join(fmt(v) for _, v in cas_.iterrows())
    + f" (n = {int(a.n_pairs.iloc[0])} self pairs each). ATTR's masks share "
    + ", ".join(f"{e} {k}" for e, k in zip(share.emotion, share.shared)) + f" of their {len(attr.masks[m.emotions[0]])} "
    "neurons with CAS's."))
