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
from IPython.display import Markdown, display

import esnlib.experiments as X
from esnlib import plots
from esnlib.notebook import setup

nb = setup("09_selector_validity", task="evc", params=globals())  # parameters checked, then the world loaded
world, S, r, n_id = nb.world, nb.cfg.sizes, nb.cfg.r, nb.cfg.n_id
save, table = nb.save, nb.table

# %%
m = X.identify(world, "CAS", rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
cand = X.candidate_neurons(m.P, rate=r, n_random=S["n_candidates"] // 3, seed=seed,
                           per_emotion=max(1, S["n_candidates"] // (4 * 4)))
display(Markdown(f"{len(cand)} candidate neurons, each ablated on {S['n_causal']} DEVELOPMENT sources × "
                 f"{len(m.emotions)} targets."))
causal = X.causal_effects(world, cand, split="DEVELOPMENT", n=S["n_causal"])
table(causal, "causal_effects", latex=False)
val = table(X.selector_validity(m.P, m.emotions, causal, rate=r), "validity")
val

# %%
import matplotlib.pyplot as plt
import seaborn as sns

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
sns.barplot(data=val, x="selector", y="precision", hue="emotion", ax=axes[0])
axes[0].set_title("precision@N_sel vs causal top set")
sns.barplot(data=val, x="selector", y="spearman", hue="emotion", ax=axes[1])
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set_title("Spearman ρ(selector score, causal effect)")
fig.tight_layout()
save(fig, "validity")
piv = causal.pivot(index="neuron", columns="e_tgt", values="effect")
fig2, ax = plt.subplots(figsize=(6, 3.5))
sns.histplot(causal, x="effect", hue="e_tgt", ax=ax, element="step")
ax.set_title("single-neuron ablation effects on emotion_score")
save(fig2, "causal_effects")
s = val.groupby("selector")[["precision", "chance", "spearman"]].mean()
display(Markdown("Mean over emotions: " + "; ".join(
    f"{k}: precision {v.precision:.2f} (chance {v.chance:.2f}), ρ {v.spearman:+.2f}" for k, v in s.iterrows())
                 + f". Largest single-neuron effect: {causal.effect.abs().max():.3f} emotion-score units."))
