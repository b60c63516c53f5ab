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
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Explorer
#
# One condition at a time: pick the model, the evaluation split, the selector, e_mask, r, c, the intervention kind
# and α, then press **Show**. A condition already in the result store (for instance one that `make paper` computed)
# is read and nothing is generated; a missing one is generated with a progress bar and stored under the same keys
# as the notebooks use, so notebooks 01-07 reuse it. You see
#
# - the mask's distribution over layers (bars: the chosen e_mask; lines: the other emotions' masks),
# - Δ emotion match against the unintervened baseline per judge: self (e_tgt = e_mask) and cross (e_tgt ≠ e_mask),
#   each with its 95 % cluster-bootstrap CI over sources and its number of pairs n, McNemar's p, Δ posterior, ΔWER,
# - baseline and intervened clips of the sources you choose, side by side, with each judge's label and posteriors
#   (a clip the store did not keep is re-rendered on demand: two samples).
#
# The sizes follow the notebooks: `sources n` and `cross n` default to notebook 02's headline conditions
# (`X.defaults()`), so the defaults read what `make paper` stored. The explorer is `esnlib.explorer`: the same
# calls work without widgets (last cell).

# %% tags=["parameters"]
# Parameters (papermill overrides these). The explorer loads the model on the first Show, not here.
model = "demo"                    # preselected model (esnlib.models.registry name, or "package.module:factory")
corpus_root = "data/demo_corpus"  # ESD layout: real ESD or the demo corpus (built there if missing)
corpus = None                     # "demo" or "esd"; None: the folder's layout (docs/notebooks.md)
corpus_n_utts = None              # sentences per speaker when the demo corpus is built here (None: mode default)
judges = "prosody,spectral"       # emotion judges; the first one filters identification successes
max_wer = 0.15                    # success filter: WER threshold (the paper's tau_wer)
naturalness = "dnsmos-p808"
results_dir = "data/results"
stats_dir = None                  # None: next to results_dir (esnlib.experiments.run_dirs)
device = "cpu"
seed = 0
smoke = False                     # tiny default sizes (tests)

# %%
from esnlib.explorer import Explorer, ExplorerUI, Settings
from esnlib.params import validate_params

validate_params(globals())  # every parameter above; a bad one is a ParameterError before anything is loaded
explorer = Explorer(smoke=smoke, seed=seed, max_wer=max_wer, corpus_root=corpus_root, corpus=corpus,
                    corpus_n_utts=corpus_n_utts, judges=judges, naturalness=naturalness, results_dir=results_dir,
                    stats_dir=stats_dir, device=device)
ui = ExplorerUI(explorer, Settings(model=model))
ui

# %% [markdown]
# Without widgets, the same in code (uncomment; `exp.rows` / `exp.base` are the per-sample rows):
#
# ```python
# exp = explorer.run(Settings(model=model, selector="CAS", e_mask="sad", kind="steer"))
# exp.delta_table()                                  # self / cross with 95 % CIs and n, per judge
# pairs = explorer.listen(exp, exp.sources()["utt_id"][:2])
# ```
