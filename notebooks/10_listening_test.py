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
# # 10 · Listening test (Figure 8) and human filtering (CAS-H)
#
# Section 5.4 of the EVC paper: raters hear pairs of clips — the unintervened baseline and the ESN-intervened output of
# the same source utterance and instruction — and pick the one that better matches the target emotion, or
# "No difference". Win/tie/loss is counted from the intervened system's point of view (Figure 8). A second page mode,
# "does this clip sound <emotion>?", is the human filtering pass whose majority vote replaces the SER judge when
# identifying CAS-H masks.
#
# This notebook (1) exports a blind, self-contained page (open `page/index.html` from disk; send the `page/` folder to
# raters, keep `key.json`), (2) imports answer files, (3) scores win rates with bootstrap CIs, rater agreement and
# attention checks, (4) draws Figure 8, and (5) turns filter answers into a human success set.
# See `docs/listening_test.md` for the protocol.
#
# **Unless `pairs_path` / `answers_glob` are given, the clips and the raters below are SIMULATED** (espeak-ng
# stand-in clips and programmatic raters): they exercise the pipeline and are not a result.

# %% tags=["parameters"]
# Parameters (papermill overrides these; `smoke=True` shrinks every run for tests)
pairs_path = None          # parquet/csv: pair_id, target, utt_id, audio_a_path (baseline), audio_b_path (intervened), conditions
answers_glob = None        # glob of real answer files saved by the page, JSON or CSV. None: SIMULATED raters
filter_answers_glob = None # same for the filter-mode page
filter_clips_path = None   # csv/parquet: utt_id, target, audio_path of IDENTIFICATION outputs (X.identification_clips); None: the stand-ins
out_dir = "data/listening"
n_per_emotion = 25         # pairs per target emotion (the paper: 25)
attention_checks = 2
n_simulated_raters = 20    # the paper: 20 participants
seed = 0
smoke = False
figures_dir = "figures"

# %%
from glob import glob
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import esnlib
from esnlib import listening as L
from esnlib.params import validate_params

validate_params(globals())  # every parameter above; a bad one is a ParameterError before anything is read
if smoke:
    n_per_emotion, n_simulated_raters = min(n_per_emotion, 2), min(n_simulated_raters, 3)
out_dir, figures_dir = Path(out_dir), Path(figures_dir)
figures_dir.mkdir(parents=True, exist_ok=True)
simulated_pairs = pairs_path is None
simulated_raters = answers_glob is None


# %% [markdown]
# ## 1 · The pairs
# With `pairs_path`, one row per (baseline, intervened) pair from the generation runs. Without it we build
# **SIMULATED stand-in pairs**: espeak-ng renders each sentence once with the target emotion's prosody at low intensity
# ("baseline") and once at higher intensity ("intervened"). No model is involved; they only exercise the page.

# %%
def simulated_pairs_frame(root, n, seed=0):
    """SIMULATED stand-in pairs rendered with espeak-ng (not model outputs)."""
    import soundfile as sf
    from esnlib import tts
    from esnlib.corpora.sentences import make_sentences

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    texts = make_sentences(n * len(esnlib.TARGET_EMOTIONS), pool="corpus", seed=seed)
    rows = []
    for e_i, emo in enumerate(esnlib.TARGET_EMOTIONS):
        for i in range(n):
            uid = f"sim_{emo}_{i:03d}"
            p = tts.sample_prosody(emo, rng)
            paths = {}
            for side, inten in (("baseline", 0.25), ("intervened", 0.9)):
                paths[side] = root / f"{uid}_{side}.wav"
                if not paths[side].exists():
                    sf.write(paths[side], tts.synthesize(texts[e_i * n + i], prosody=tts.with_intensity(p, inten)),
                             tts.SAMPLE_RATE)
            rows.append({"pair_id": uid, "target": emo, "utt_id": uid, "audio_a_path": str(paths["baseline"]),
                         "audio_b_path": str(paths["intervened"]), "selector": "SIMULATED", "alpha": np.nan})
    return pd.DataFrame(rows)


if simulated_pairs:
    pairs = simulated_pairs_frame(out_dir / "simulated_clips", n_per_emotion, seed)
else:
    pairs = pd.read_parquet(pairs_path) if str(pairs_path).endswith(".parquet") else pd.read_csv(pairs_path)
pairs.groupby("target").size().rename("pairs").to_frame().T

# %% [markdown]
# ## 2 · Export the blind A/B page
# The page loads only `data.js` (opaque ids + target emotion) and `audio/<opaque id>.wav` (loudness-normalized to
# -23 dBFS RMS). Each rater's trial order and A/B sides are shuffled in the browser from (page seed, rater id).
# An existing export in the same folder is reused, so answers already collected keep matching their key.

# %%
ab_dir = out_dir / (f"ab_seed{seed}" + ("_smoke" if smoke else ""))
if (ab_dir / "key.json").exists():
    key = L.load_key(ab_dir)
    test = L.ListeningExport(ab_dir, ab_dir / "page", key["test_id"], key["mode"], len(key["page"]["items"]))
    print("reusing the existing export (delete the folder to re-export)")
else:
    test = L.export_ab_test(pairs, ab_dir, n_per_emotion=n_per_emotion, seed=seed, attention_checks=attention_checks)
print(f"test {test.test_id}: {test.n_items} trials; open {test.index_html.resolve().as_uri()}")
print("send to raters:", test.page_dir, "| keep private:", test.key_dir / "key.json")

# %% [markdown]
# ## 3 · Answers — SIMULATED rater session unless `answers_glob` is given
# `L.simulate_answers` writes answer files in exactly the page's format for **SIMULATED raters** (win/tie/loss drawn
# with fixed probabilities; one simulated rater is careless and fails attention checks). These are not human
# judgments.

# %%
if simulated_raters:
    sim_dir = ab_dir / "answers_SIMULATED"
    files = []
    for i in range(n_simulated_raters):
        careless = i == n_simulated_raters - 1
        files.append(L.simulate_answers(test.key_dir, f"SIM{i:02d}", sim_dir / f"SIM{i:02d}.json",
                                        p=(0.6, 0.12, 0.28), seed=seed + i, attention=0.0 if careless else 1.0))
    display(Markdown("**SIMULATED raters** — the numbers below test the pipeline, they are not a result."))
else:
    files = sorted(glob(answers_glob))
df = L.read_answers(files, test.key_dir)
L.attention_report(df).T

# %%
wr = L.winrate(df, drop_flagged=True, seed=seed)
agree = L.rater_agreement(df[~df["rater_flagged"]])
print(f"Fleiss' kappa = {agree['fleiss_kappa']:.3f} over {agree['n_items']} pairs x {agree['n_raters']} raters; "
      f"mean pairwise agreement = {agree['mean_pairwise']:.3f}")
wr.round(3)

# %%
tag = "_SIMULATED" if (simulated_pairs or simulated_raters) else ""
fig = L.plot_winrate(wr, title="Figure 8 · win/tie/loss of intervened vs baseline (95% CI)"
                     + (" — SIMULATED" if tag else ""))
from esnlib import plots
plots.save(fig, f"10_listening_test_fig8{tag}", figures_dir)
fig

# %% [markdown]
# ## 4 · Human filtering pass (CAS-H)
# The filter page asks "does this clip sound <emotion>?" per clip; a strict majority of "yes" marks a human success.
# `esnlib.experiments.success_frame(world, rows, human=success)` uses the result in place of the SER judge.
# For CAS-H the clips must be the IDENTIFICATION conversions of the world notebooks 02 and 06 run on (`filter_clips_path`, e.g. `X.identification_clips(world).to_csv(...)`); the result is saved as a filter file, `human_filter.csv`, which notebooks 02 and 06 take as `-p human_filter <path>` (CAS-H rows in Tables 3 and 5).
# Without `filter_clips_path` the clips are the intervened stand-ins, and the raters are **SIMULATED** unless `filter_answers_glob` is given; such a file matches no world's identification outputs.

# %%
if filter_clips_path is None:
    clips = pairs.rename(columns={"audio_b_path": "audio_path"})[["utt_id", "target", "audio_path"]]
else:
    clips = (pd.read_parquet(filter_clips_path) if str(filter_clips_path).endswith(".parquet")
             else pd.read_csv(filter_clips_path))[["utt_id", "target", "audio_path"]]
f_dir = out_dir / (f"filter_seed{seed}" + ("_identification" if filter_clips_path else "")
                   + ("_smoke" if smoke else ""))
if (f_dir / "key.json").exists():
    key = L.load_key(f_dir)
    ftest = L.ListeningExport(f_dir, f_dir / "page", key["test_id"], key["mode"], len(key["page"]["items"]))
else:
    ftest = L.export_filter_test(clips, f_dir, seed=seed, attention_checks=attention_checks)
if filter_answers_glob is None:
    ffiles = [L.simulate_answers(ftest.key_dir, f"SIM{i:02d}", f_dir / "answers_SIMULATED" / f"SIM{i:02d}.json",
                                 p=(0.55, 0.45, 0.0), seed=seed + i) for i in range(max(3, n_simulated_raters // 4))]
else:
    ffiles = sorted(glob(filter_answers_glob))
success = L.read_filter_answers(ffiles, ftest.key_dir)
filter_file = L.save_filter_file(success, f_dir / "human_filter.csv")
print(f"filter file for notebooks 02 and 06 (-p human_filter): {filter_file}"
      + (" — SIMULATED raters" if success.attrs.get("simulated") else ""))
print("raters flagged by repeat checks:", success.attrs["flagged"])
success.groupby("target")["human_success"].agg(["sum", "size"]).rename(columns={"sum": "human successes",
                                                                                "size": "clips"})
