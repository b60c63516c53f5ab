"""esnlib.experiments: the notebook steps. Pure parts on hand-made tables; the pipeline end to end on the demo LALM
(random-weight tiny config of the real DemoOmni, real judges where their weights exist) with a tiny demo corpus."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import esnlib.experiments as X
from esnlib import TARGET_EMOTIONS
from esnlib.corpora.base import Utterance
from esnlib.selection import select
from test_notebooks import _runner  # scripts/run_notebooks.py as a module

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ pure helpers
def test_fingerprint_stable_and_order_sensitive():
    assert X.fingerprint([1, 2, 3]) == X.fingerprint(np.array([1, 2, 3]))
    assert X.fingerprint({"a": 1, "b": 2}) == X.fingerprint({"b": 2, "a": 1})
    assert X.fingerprint([1, 2]) != X.fingerprint([2, 1])
    assert X.mask_fingerprint(np.array([3, 1, 2])) == X.mask_fingerprint([1, 2, 3])
    assert X.mask_fingerprint(None) == "none"


@pytest.mark.parametrize("method", ["LAP", "LAPE", "MAD", "CAS", "random"])
def test_selector_scores_agree_with_select(method):
    rng = np.random.default_rng(0)
    P = rng.uniform(0, 1, size=(4, 400))
    rate = 0.02
    scores = X.selector_scores(P, method, rate, seed=3)
    masks = select(P, method, rate, seed=3)
    for e in range(4):
        row = scores[e]
        fin = np.nonzero(np.isfinite(row))[0]
        top = np.sort(fin[np.argsort(-row[fin], kind="stable")[: len(masks[e])]])
        np.testing.assert_array_equal(top, masks[e])


def test_emotion_score_zero_at_neutral_one_at_profile():
    from esnlib import tts

    for e in TARGET_EMOTIONS:
        assert X.emotion_score(tts.PROFILES["neutral"].as_dict(), e) == pytest.approx(0.0)
        assert X.emotion_score(tts.PROFILES[e].as_dict(), e) == pytest.approx(1.0)
        half = tts.with_intensity(tts.PROFILES[e], 0.5).as_dict()
        assert X.emotion_score(half, e) == pytest.approx(0.5)
    # sad prosody points away from happy
    assert X.emotion_score(tts.PROFILES["sad"].as_dict(), "happy") < 0


def _utts(n_spk=10, n_idx=7):
    from esnlib.corpora.esd import table1_split

    us = [Utterance(id=f"{s:04d}_{i:06d}", corpus="esd", speaker=f"{s:04d}", emotion="neutral", text="the dog",
                    path="/nonexistent", index=i) for s in range(11, 11 + n_spk) for i in range(1, n_idx + 1)]
    parts = table1_split(us)
    from dataclasses import replace

    split_of = {u.id: k for k, v in parts.items() for u in v}
    return [replace(u, split=split_of[u.id]) for u in us]


def _world(utts, tmp_path):
    from esnlib.store import ResultStore

    return X.World(adapter=None, utts=utts, judges={}, naturalness=None, store=ResultStore(tmp_path / "r"),
                   stats_dir=tmp_path / "s", corpus="c", corpus_fp="fp")


def test_split_subsample_nested_and_spread(tmp_path):
    w = _world(_utts(), tmp_path)
    full = w.split("IDENTIFICATION")
    assert len(full) == 6 * 4  # 6 identification speakers x round(200*7/350) = 4 indices
    assert [u.id for u in w.split("IDENTIFICATION", 10)] == [u.id for u in full[:10]]
    assert len({u.speaker for u in w.split("IDENTIFICATION", 6)}) == 6  # round robin over speakers
    assert {u.split for u in w.split("TEST-UNSEEN")} == {"TEST-UNSEEN"}
    with pytest.raises(ValueError, match="unknown split"):
        w.split("TEST-ALL")


def test_pooled_test_split_keeps_the_seen_unseen_mix(tmp_path):
    """"TEST" pools TEST-SEEN and TEST-UNSEEN as the paper does: every utterance of both once, nested draws, and any
    prefix mixes the two in proportion to their sizes."""
    w = _world(_utts(), tmp_path)
    seen, unseen, pooled = w.split("TEST-SEEN"), w.split("TEST-UNSEEN"), w.split("TEST")
    assert sorted(u.id for u in pooled) == sorted(u.id for u in seen + unseen)
    assert [u.id for u in w.split("TEST", 9)] == [u.id for u in pooled[:9]]
    share = len(unseen) / len(pooled)
    for k in (5, 10, len(pooled)):
        got = sum(u.split == "TEST-UNSEEN" for u in pooled[:k])
        assert abs(got - share * k) <= 1, (k, got, share)


class _NoModel:
    """An adapter that must not be called: bad input has to fail before any generation."""

    has_talker = False

    def __getattr__(self, name):
        raise AssertionError(f"the model was used ({name}) before the bad input was reported")


def test_identify_checks_selector_and_rate_before_generating(tmp_path):
    w = _world(_utts(), tmp_path)
    w.adapter = _NoModel()
    with pytest.raises(ValueError, match=r"identify: rate r must be a number in \(0, 1\), got '0.02' \(str\)"):
        X.identify(w, "CAS", rate="0.02")
    with pytest.raises(ValueError, match=r"identify: unknown method 'CASS'"):
        X.identify(w, "CASS")
    with pytest.raises(ValueError, match=r"identify_ser: rate r must be in \(0, 1\), got 5"):
        X.identify_ser(w, "CAS", rate=5)


class _Built(Exception):
    pass


@pytest.fixture
def fake_builder(monkeypatch):
    """build_demo_corpus replaced by a recorder that stops the load (nothing is rendered)."""
    import esnlib.corpora.synthetic as syn

    calls = []

    def fake(root, **kw):
        calls.append(Path(root).resolve())
        raise _Built(str(root))

    monkeypatch.setattr(syn, "build_demo_corpus", fake)
    return calls


def test_missing_corpus_root_is_an_error_not_a_demo_corpus(tmp_path, fake_builder):
    typo = tmp_path / "nonexistent"
    with pytest.raises(X.CorpusError,
                       match=rf"corpus root {re.escape(str(typo))} does not exist; check the path.*corpus='demo'"):
        X.load_world(corpus_root=typo, adapter=_NoModel(), judges="prosody", naturalness=None,
                     results_dir=tmp_path / "results")
    (tmp_path / "empty").mkdir()
    with pytest.raises(X.CorpusError, match=r"empty is an empty folder; check the path"):
        X.load_corpus(tmp_path / "empty")
    with pytest.raises(X.CorpusError, match="does not exist"):
        X.load_corpus(typo, corpus="esd")
    assert not typo.exists() and not fake_builder


def test_demo_corpus_built_only_where_asked(tmp_path, fake_builder, monkeypatch):
    with pytest.raises(_Built):  # explicitly asked for
        X.load_corpus(tmp_path / "mine", corpus="demo", n_utts=1)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(_Built):  # the default data folder
        X.load_world(adapter=_NoModel(), judges="prosody", naturalness=None, results_dir=tmp_path / "results")
    with pytest.raises(X.CorpusError):  # build_corpus=False never builds
        X.load_corpus(X.DEFAULT_CORPUS_ROOT, build=False)
    with pytest.raises(_Built):  # notebook 07's second demo corpus next to the default one
        X.load_corpus(ROOT / "data" / "demo_corpus_b-test-only")
    with pytest.raises(X.CorpusError, match="does not exist"):  # where real ESD goes: never a synthetic corpus
        X.load_corpus(ROOT / "data" / "esd-test-only")
    with pytest.raises(ValueError, match="unknown corpus kind 'ESD2'"):
        X.load_corpus(tmp_path / "x", corpus="ESD2")
    assert fake_builder == [(tmp_path / "mine").resolve(), (tmp_path / X.DEFAULT_CORPUS_ROOT).resolve(),
                            (ROOT / "data" / "demo_corpus_b-test-only").resolve()]


def _tiny_esd(root, speakers=("0011",)):
    """An ESD-layout folder, one sentence per speaker and emotion (0.1 s tones)."""
    from esnlib.audio import save_wav

    tone = (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    for spk in speakers:
        lines = []
        for k, emo in enumerate(["Neutral", "Angry", "Happy", "Sad", "Surprise"]):
            uid = f"{spk}_{k * 350 + 1:06d}"
            save_wav(root / spk / emo / f"{uid}.wav", tone)
            lines.append(f"{uid}\tthe dog\t{emo}\n")
        (root / spk / f"{spk}.txt").write_text("".join(lines))
    return root


def test_truncated_corpus_wav_is_named_at_load(tmp_path):
    root = _tiny_esd(tmp_path / "esd")
    bad = root / "0011" / "Sad" / "0011_001051.wav"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(X.CorpusError, match=r"0011_001051\.wav is truncated"):
        X.load_corpus(root, corpus="esd")


def test_run_files_follow_results_dir(tmp_path, monkeypatch):
    """Statistics and listening pages of a run with its own results_dir stay inside it; data/results keeps data/."""
    assert X.run_dirs("data/results") == {"stats": Path("data/stats"), "listening": Path("data/listening")}
    assert X.run_dirs("data/results_smoke") == {"stats": Path("data/results_smoke/_stats"),
                                                "listening": Path("data/results_smoke/_listening")}
    import esnlib.world as W

    monkeypatch.setattr(W, "_load_judge", lambda name, device="cpu": object())  # load_world lives in esnlib.world
    root = _tiny_esd(tmp_path / "esd", [f"{s:04d}" for s in range(11, 21)])
    w = X.load_world(corpus_root=root, corpus="esd", adapter=_NoModel(), judges="prosody", naturalness=None,
                     results_dir=tmp_path / "smoke")
    assert w.stats_dir == tmp_path / "smoke" / "_stats" and w.stats_dir.is_dir()
    assert not (tmp_path / "stats").exists()
    rn = _runner()
    p = {"smoke": True, "results_dir": "data/results_smoke"}
    assert rn.notebook_parameters(p, "10_listening_test.ipynb")["out_dir"] == str(Path("data/results_smoke/_listening"))
    assert rn.notebook_parameters({**p, "out_dir": "mine"}, "10_listening_test.ipynb")["out_dir"] == "mine"
    assert "out_dir" not in rn.notebook_parameters(p, "01_baseline.ipynb")


def _rows(pred_fn, mask=True, seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for u in range(12):
        for t in TARGET_EMOTIONS:
            for m in (TARGET_EMOTIONS if mask else ["none"]):
                recs.append({"utt_id": f"u{u}", "sample_id": f"u{u}|{t}", "target": t, "mask_emotion": m,
                             "pred_j": pred_fn(t, m, rng), "wer": 0.1, "naturalness": 3.0, "audio_path": ""})
    return pd.DataFrame(recs)


def test_summarize_measures_self_and_cross():
    base = _rows(lambda t, m, rng: "neutral", mask=False)
    # the mask of e makes every sample with target e match and nothing else
    rows = _rows(lambda t, m, rng: t if t == m else "neutral")
    rows["wer"] = 0.2
    s = X.summarize(rows, base, selector="X").iloc[0]
    assert s["self"] == pytest.approx(100.0) and s["cross"] == pytest.approx(0.0)
    assert s["gap"] == pytest.approx(100.0) and s["d_wer"] == pytest.approx(0.1)
    assert s["selector"] == "X" and s["judge"] == "j"
    t2 = X.baseline_table(base)
    assert list(t2["e_tgt"]) == [*TARGET_EMOTIONS, "avg"] and (t2["match_j (%)"] == 0).all()


def test_naturalness_reported_with_its_n():
    base = _rows(lambda t, m, rng: "neutral", mask=False)  # 12 utterances x 4 targets, every clip scored
    t2 = X.baseline_table(base).set_index("e_tgt")
    cols = list(t2.columns)
    assert cols[cols.index("naturalness") + 1: cols.index("naturalness") + 3] == ["naturalness_n", "naturalness_note"]
    assert t2.loc["avg", "naturalness_n"] == 48 and t2.loc["avg", "naturalness_note"] == ""
    assert t2.loc["sad", "naturalness_n"] == 12
    assert t2.loc["sad", "naturalness_note"] == "(n=12 clips of 12 sources, few clips)"
    # Table 2's "2.91" case: only two clips of one source were scored
    few = base.assign(naturalness=np.nan)
    few.loc[(few["utt_id"] == "u0") & few["target"].isin(["angry", "happy"]), "naturalness"] = 2.91
    t2 = X.baseline_table(few).set_index("e_tgt")
    assert t2.loc["avg", "naturalness"] == pytest.approx(2.91) and t2.loc["avg", "naturalness_n"] == 2
    assert t2.loc["avg", "naturalness_note"] == "(n=2 clips of 1 source, few clips)"
    assert t2.loc["sad", "naturalness_n"] == 0 and t2.loc["sad", "naturalness_note"] == "(no clip scored)"
    rows = _rows(lambda t, m, rng: "neutral")
    rows.loc[rows["utt_id"] != "u3", "naturalness"] = np.nan
    s = X.summarize(rows, base).iloc[0]
    assert s["naturalness_n"] == 16 and s["naturalness_note"] == "(n=16 pairs of 1 source, few clips)"
    cols = list(X.summarize(rows, base).columns)
    assert cols[cols.index("d_naturalness"):cols.index("d_naturalness") + 4] == \
        ["d_naturalness", "d_naturalness_lo", "d_naturalness_hi", "naturalness_n"]


def test_summarize_gives_wer_and_naturalness_changes_a_cluster_ci():
    """ΔWER and Δnaturalness carry a 95 % CI from resampling source utterances, which brackets the estimate, is
    a point where every pair changed alike, and is wide where one source carries the change."""
    base = _rows(lambda t, m, rng: "neutral", mask=False)
    rows = _rows(lambda t, m, rng: "neutral")
    rows["naturalness"] = 2.5  # every pair -0.5
    rows.loc[rows["utt_id"] == "u0", "wer"] = 1.0  # one source of 12 breaks its text
    s = X.summarize(rows, base).iloc[0]
    assert s["d_naturalness"] == s["d_naturalness_lo"] == s["d_naturalness_hi"] == pytest.approx(-0.5)
    assert s["d_wer"] == pytest.approx(0.9 / 12)
    assert s["d_wer_lo"] == pytest.approx(0.0) and s["d_wer_hi"] > 2 * s["d_wer"]


def test_effect_ci_brackets_estimate():
    base = _rows(lambda t, m, rng: "neutral", mask=False)
    rows = _rows(lambda t, m, rng: t if rng.random() < 0.5 else "neutral")
    ci = X.effect_ci(rows, base, "j", n_boot=200)
    assert set(ci["emotion"]) == set(TARGET_EMOTIONS)
    assert ((ci["low"] <= ci["delta"]) & (ci["delta"] <= ci["high"])).all()


def test_selector_validity_recovers_known_causal_ranking():
    from esnlib.validity import spearman_ci

    rng = np.random.default_rng(1)
    P = rng.uniform(0.05, 0.95, size=(4, 300))
    emos = list(TARGET_EMOTIONS)
    cand = np.arange(300)
    # ground truth: causal effect on e equals the LAP score for e -> LAP must be perfect, random near zero
    causal = pd.DataFrame([{"neuron": n, "e_tgt": e, "effect": P[i, n]} for i, e in enumerate(emos) for n in cand])
    val = X.selector_validity(P, emos, causal, rate=0.05, selectors=("LAP", "random"))
    lap = val[val.selector == "LAP"]
    assert (lap["precision"] == 1.0).all() and (lap["spearman"] > 0.99).all()
    rnd = val[val.selector == "random"]
    assert rnd["precision"].mean() < 0.3
    assert (val["n_candidates"] == 300).all() and (lap["spearman_lo"] > 0.99).all()
    assert spearman_ci(1.0, 300) == (1.0, 1.0)  # a perfect ranking: no spread
    ok = val["spearman"].notna()
    assert ((val.spearman_lo <= val.spearman) & (val.spearman <= val.spearman_hi))[ok].all()


def test_spearman_ci_is_fishers_z_with_fiellers_standard_error():
    from esnlib.validity import spearman_ci

    # rho = 0.5, n = 30: atanh(0.5) = 0.5493 +- 1.96 * sqrt(1.06 / 27) = 0.3884 -> tanh: [0.160, 0.734]
    assert spearman_ci(0.5, 30) == pytest.approx((0.1596, 0.7339), abs=5e-4)
    lo, hi = spearman_ci(0.0, 12)
    assert lo == pytest.approx(-hi) and hi > 0.5  # few neurons, a wide interval
    assert np.isnan(spearman_ci(float("nan"), 30)).all() and np.isnan(spearman_ci(0.3, 3)).all()


def test_ser_effect_table_signs():
    base = pd.DataFrame({"utt_id": ["a", "b", "c", "d"], "emotion": ["angry", "angry", "sad", "sad"],
                         "pred": ["angry", "angry", "sad", "sad"]})
    rows = pd.concat([
        base.assign(mask_emotion="angry", pred=["neutral", "neutral", "sad", "sad"]),
        base.assign(mask_emotion="sad", pred=["angry", "angry", "sad", "neutral"]),
    ])
    t = X.ser_effect_table(rows, base, "accuracy")
    assert t.loc["angry", "angry"] == -100 and t.loc["angry", "sad"] == 0
    assert t.loc["sad", "sad"] == -50 and t.loc["sad", "angry"] == 0
    cells = t.attrs["cells"].set_index(["e_mask", "emotion"])  # each cell's n and CI, for the heatmaps
    assert (cells["n"] == 2).all()
    assert (cells["low"] <= cells["delta"]).all() and (cells["delta"] <= cells["high"]).all()
    assert cells.loc[("angry", "angry"), ["low", "high"]].tolist() == [-100, -100]  # both items lost: no spread
    assert cells.loc[("angry", "angry"), "mcnemar_p"] == pytest.approx(0.5)  # but two items prove nothing
    amp = X.ser_effect_table(rows, base, "predicted")  # share predicted as e_mask: the sad mask's neutral item
    assert amp.loc["sad", "sad"] == -50 and amp.attrs["cells"].set_index(["e_mask", "emotion"]).loc[
        ("sad", "sad"), "delta"] == -50
    with pytest.raises(ValueError, match="accuracy' or 'predicted"):
        X.ser_effect_table(rows, base, "recall")
    ci = X.ser_effect_ci(rows, base).set_index(["e_mask", "emotion"])  # the long companion: the same cells
    assert list(ci.columns) == ["delta", "low", "high", "n", "mcnemar_p"]
    pd.testing.assert_frame_equal(ci[["low", "high", "n", "mcnemar_p"]],
                                  cells[["low", "high", "n", "mcnemar_p"]].sort_index(), check_names=False)
    assert ci["delta"].to_numpy() == pytest.approx(cells["delta"].sort_index().to_numpy())
    with pytest.raises(KeyError, match="no baseline row"):
        X.ser_effect_ci(rows, base[base.utt_id != "a"])


def test_cell_table_orders_emotions_and_keeps_the_cells():
    long = pd.DataFrame({"strategy": ["oracle", "oracle", "2pass", "2pass"],
                         "emotion": ["surprise", "angry", "surprise", "angry"],
                         "delta": [-50.0, 0.0, -45.0, 1.0], "n": [73, 86, 73, 86]})
    t = X.cell_table(long, "strategy", "emotion")
    assert list(t.index) == ["oracle", "2pass"] and list(t.columns) == ["angry", "surprise"]
    assert t.loc["2pass", "surprise"] == -45 and list(t.attrs["cells"]["n"]) == [73, 86, 73, 86]
    with pytest.raises(KeyError, match=r"cells lack columns \['n'\]"):
        X.cell_table(long.drop(columns="n"), "strategy", "emotion")


def test_save_table_writes_csv_and_latex(tmp_path):
    paths = X.save_table(pd.DataFrame({"a": [1.0, 2.0]}), "nb_t", tmp_path)
    assert [p.name for p in paths] == ["nb_t.csv", "nb_t.tex"]
    assert "tabular" in paths[1].read_text()


def test_runner_parses_values_and_selects_notebooks():
    rn = _runner()
    assert rn.parse_value("0.5") == 0.5 and rn.parse_value("True") is True and rn.parse_value("None") is None
    assert rn.parse_value("prosody,spectral") == "prosody,spectral"
    assert [p.name[:2] for p in rn.notebooks()] == [f"{i:02d}" for i in range(1, 11)]
    assert [p.name[:2] for p in rn.notebooks(["03", "01_baseline"])] == ["01", "03"]
    with pytest.raises(SystemExit, match="unknown notebooks"):
        rn.notebooks(["42"])


# ------------------------------------------------------------------------------- pipeline on the demo LALM (tiny)
def shared_corpus(tmp_path_factory) -> Path:
    """A tiny demo corpus (10 speakers x 5 emotions x 7 sentences), built once per test session."""
    from esnlib.corpora.synthetic import build_demo_corpus

    root = tmp_path_factory.getbasetemp() / "demo_corpus_small"
    if not (root / "demo_corpus.json").exists():
        build_demo_corpus(root, n_utts=7, seed=0, workers=2, progress=False)
    return root


class CountingAdapter:
    """Wraps the real DemoAdapter and counts generated samples (to check caching and resuming)."""

    def __init__(self, inner):
        self.inner, self.evc_samples, self.ser_samples, self.evc_calls = inner, 0, 0, 0
        self.name, self.labels, self.has_talker = inner.name, inner.labels, inner.has_talker

    def sites(self, scope="lm"):
        return self.inner.sites(scope)

    def describe(self):
        return {**self.inner.describe(), "test": "tiny-random"}

    def stat_positions(self, task):
        return self.inner.stat_positions(task)

    def evc(self, utts, targets, **kw):
        self.evc_samples += len(utts)
        self.evc_calls += 1
        return self.inner.evc(utts, targets, **kw)

    def ser(self, utts, **kw):
        self.ser_samples += len(utts)
        return self.inner.ser(utts, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch

    from esnlib.models.demo import DemoAdapter, DemoOmni

    torch.manual_seed(0)
    # the random tiny model stops at once (answers of one token), so its EVC statistics count the whole generation
    adapter = CountingAdapter(DemoAdapter(model=DemoOmni.tiny(), evc_stat_positions="all"))
    tmp = tmp_path_factory.mktemp("exp")
    return X.load_world(adapter=adapter, corpus_root=shared_corpus(tmp_path_factory), judges="prosody",
                        naturalness=None, results_dir=tmp / "results", shard_size=4, progress=False)


def _human(world, n):
    # every identification conversion counts as a success (the human-filter path of CAS-H)
    return pd.DataFrame([{"utt_id": u.id, "target": t, "human_success": True}
                         for u in world.split("IDENTIFICATION", n) for t in TARGET_EMOTIONS])


def test_baseline_rows_and_cache(world):
    before = world.adapter.evc_samples
    base = X.baseline(world, "TEST-SEEN", n=3)
    assert len(base) == 3 * 4 and world.adapter.evc_samples - before == 12
    for col in ("utt_id", "sample_id", "speaker", "split", "target", "text", "hyp", "wer", "pred_prosody",
                "match_prosody", "naturalness", "audio_path", "model", "corpus_fp", "shard"):
        assert col in base.columns, col
    assert set(base["split"]) == {"TEST-SEEN"} and set(base["target"]) == set(TARGET_EMOTIONS)
    kept = base[base["audio_path"] != ""]
    assert len(kept) <= 4  # only the first utterance of each shard keeps its waveforms
    assert all(Path(p).exists() for p in kept["audio_path"])
    assert kept["hyp"].str.len().gt(0).all()  # no text -> nothing rendered -> nothing kept
    again = X.baseline(world, "TEST-SEEN", n=3)
    assert world.adapter.evc_samples - before == 12  # cached: nothing generated again
    pd.testing.assert_frame_equal(base, again)


def test_resume_regenerates_only_the_missing_shard(world):
    base = X.baseline(world, "TEST-SEEN", n=6)  # shards of 4 utterances: 2 units
    units = sorted((world.store.root / "evc").glob("*.parquet"))
    cond = {k: base[k].iloc[-1] for k in ("shard",)}
    victim = [u for u in units if pd.read_parquet(u)["shard"].iloc[0] == cond["shard"]][0]
    victim.unlink()  # a killed run: this unit never got written
    before = world.adapter.evc_samples
    again = X.baseline(world, "TEST-SEEN", n=6)
    assert world.adapter.evc_samples - before == 2 * 4  # the 2 utterances of the missing shard x 4 targets
    assert len(again) == len(base) == 24 and not again.duplicated(["sample_id"]).any()


def test_answer_only_statistics_are_stored_apart_and_empty_answers_are_a_clear_error(world, tmp_path,
                                                                                       tmp_path_factory):
    """The demo adapter's answer-only EVC statistics (evc_stat_positions="generated"): a store keyed apart from the
    whole generation's (the default), and a model whose answers are one token long (the random tiny one) gets the
    selection's clear error naming the cause, not a silent P of 0 / 0."""
    from esnlib.models.demo import DemoAdapter

    inner, corpus = world.adapter.inner, shared_corpus(tmp_path_factory)
    w = X.load_world(adapter=DemoAdapter(model=inner.model, evc_stat_positions="generated"), corpus_root=corpus,
                     judges="prosody",
                     naturalness=None, results_dir=tmp_path / "results", shard_size=4, progress=False)
    w_all = X.load_world(adapter=DemoAdapter(model=inner.model),
                         corpus_root=corpus, judges="prosody", naturalness=None,
                         results_dir=tmp_path / "results", shard_size=4, progress=False)
    assert w.stats("evc").path != w_all.stats("evc").path and w.stats("ser").path == w_all.stats("ser").path
    with pytest.raises(ValueError, match="no counted positions.*stat_positions"):
        X.identify(w, "CAS", rate=0.05, cap=3, n=2, max_wer=100.0, human=_human(w, 2))


def test_identify_evaluate_summarize(world):
    human = _human(world, 4)
    before = world.adapter.evc_samples
    m = X.identify(world, "CAS", rate=0.05, cap=3, n=4, human=human, max_wer=100.0)
    assert world.adapter.evc_samples - before == 16  # identification generations with capture, once
    assert set(m.masks) == set(TARGET_EMOTIONS) and m.n_success == {e: 3 for e in TARGET_EMOTIONS}
    assert m.n_success_all == {e: 4 for e in TARGET_EMOTIONS}
    n_lm = sum(s.width for s in world.sites("lm"))
    assert all(len(v) <= int(0.05 * n_lm) and v.max() < n_lm for v in m.masks.values())
    # cap and selector sweeps re-aggregate the stored statistics: no new generation
    before = world.adapter.evc_samples
    m2 = X.identify(world, "LAP", rate=0.05, cap=2, n=4, human=human, max_wer=100.0)
    mt = X.identify(world, "CAS", rate=0.05, cap=3, n=4, human=human, max_wer=100.0, scope="talker")
    assert world.adapter.evc_samples == before
    n_talker = sum(s.width for s in world.sites("talker"))
    assert all(v.max() < n_talker for v in mt.masks.values() if len(v))
    assert m2.n_success == {e: 2 for e in TARGET_EMOTIONS}
    # P sliced from the shared both-sides capture equals P from a talker-only capture of the same generations
    import dataclasses

    w2 = dataclasses.replace(world, share_capture=False, _stats={})
    mt2 = X.identify(w2, "CAS", rate=0.05, cap=3, n=4, human=human, max_wer=100.0, scope="talker")
    np.testing.assert_allclose(mt2.P, mt.P)
    assert all(np.array_equal(mt.masks[e], mt2.masks[e]) for e in mt.masks)
    rows = X.evaluate_masks(world, m, kind="steer", alpha=2.0, n=2)
    assert len(rows) == 2 * 4 * 4 and set(rows["mask_emotion"]) == set(TARGET_EMOTIONS)
    base = X.baseline(world, "TEST-SEEN", n=2)
    s = X.summarize(rows, base, selector="CAS")
    assert list(s["judge"]) == ["prosody"] and np.isfinite(s[["self", "cross", "gap", "d_wer"]].to_numpy()).all()


def test_random_masks_generated_once(world):
    human = _human(world, 4)
    m = X.identify(world, "random", rate=0.05, cap=3, n=4, human=human, max_wer=100.0)
    before = world.adapter.evc_samples
    rows = X.evaluate_masks(world, m, kind="deactivate", alpha=0.0, n=2)
    assert world.adapter.evc_samples - before == 2 * 4  # one mask shared by the four e_mask labels
    assert len(rows) == 2 * 4 * 4


def test_rowwise_sweep_equals_one_call_per_condition(world, tmp_path):
    """A sweep whose conditions share generate calls (one RowwiseIntervention edit per row, batches cut across
    conditions) stores the same units with the same rows as one call per condition, in fewer calls."""
    import dataclasses

    from esnlib.store import ResultStore

    human = _human(world, 4)
    cas = X.identify(world, "CAS", rate=0.05, cap=3, n=4, human=human, max_wer=100.0)
    rnd = X.identify(world, "random", rate=0.05, cap=3, n=4, human=human, max_wer=100.0)
    n_t = sum(s.width for s in world.sites("talker"))
    talker = X.MaskSet(masks={"angry": np.arange(0, n_t, 2), "sad": np.arange(1, n_t, 2)}, selector="half",
                       rate=0.5, cap=None, filter_judge="none", scope="talker")
    settings = [(cas, "steer", 2.0), (cas, "deactivate", 0.0), (rnd, "add", 3.0), (talker, "clamp", 20.0),
                (talker, "steer", 4.0)]
    got = {}
    for rowwise in (True, False):
        # batch 8: a condition's 12 rows are 8 + 4, so the row-wise batches cut across conditions; no batch has
        # fewer than 4 rows: torch's CPU matmul takes another kernel for 1-3 rows on some machines (AMD EPYC, AVX2),
        # whose last bits differ from the same rows' in a larger batch (2026-12-01; with batch 5 a 2-row batch did)
        w = dataclasses.replace(world, store=ResultStore(tmp_path / f"rowwise-{rowwise}"), rowwise=rowwise,
                                batch_size=8)
        calls, samples = world.adapter.evc_calls, world.adapter.evc_samples
        frames = X.evaluate_settings(w, settings, n=3)  # one shard of 3 utterances x 4 targets
        got[rowwise] = (frames, world.adapter.evc_calls - calls, world.adapter.evc_samples - samples,
                        sorted(p.name for p in (w.store.root / "evc").glob("*.parquet")))
    # 2 x 4 CAS masks + 1 random mask (shared by its 4 e_mask labels) on the LM side, 2 x 2 talker masks
    assert got[True][2] == got[False][2] == (8 + 1 + 4) * 12
    assert (got[True][1], got[False][1]) == (2, 13)  # one call per scope against one per distinct condition
    assert got[True][3] == got[False][3] and len(got[True][3]) == 3 * 4 + 2 * 2  # the same units (keys)
    for a, b in zip(got[True][0], got[False][0]):
        assert (a["audio_path"] != "").equals(b["audio_path"] != "")
        pd.testing.assert_frame_equal(a.drop(columns="audio_path"), b.drop(columns="audio_path"))
    # the conditions really differ, so a row given another row's edit would show
    tok = [f.groupby("mask_emotion")["prosody"].apply(tuple) for f in got[True][0][3:]]
    assert tok[0]["angry"] != tok[0]["sad"] and tok[0]["angry"] != tok[1]["angry"]


def test_rowwise_ser_effects_equal_one_call_per_mask(world, tmp_path):
    import dataclasses

    from esnlib.store import ResultStore

    n_lm = sum(s.width for s in world.sites("lm"))
    ms = X.MaskSet(masks={e: np.arange(k, n_lm, 3) for k, e in enumerate(("angry", "sad", "happy"))},
                   selector="thirds", rate=0.33, cap=None, filter_judge="none", scope="lm")
    got = {}
    for rowwise in (True, False):
        w = dataclasses.replace(world, store=ResultStore(tmp_path / f"ser-{rowwise}"), rowwise=rowwise, batch_size=4)
        got[rowwise] = X.ser_effects(w, ms, kind="clamp", alpha=20.0, n=10)
    pd.testing.assert_frame_equal(got[True], got[False])
    answers = got[True].groupby("mask_emotion")["answer"].apply(tuple)
    assert len(set(answers)) > 1  # the masks act differently, so misaligned rows would show


def test_intervention_reaches_the_model(world):
    """The intervention reaches the model through the adapter: clamping every talker neuron at a high floor changes
    the talker's speech tokens (a tiny random model's text is often empty, so we look at the talker)."""
    n_t = sum(s.width for s in world.sites("talker"))
    full = X.MaskSet(masks={"angry": np.arange(n_t)}, selector="all", rate=0.99, cap=None, filter_judge="none",
                     scope="talker")
    rows = X.evaluate_masks(world, full, kind="clamp", alpha=50.0, n=2)
    base = X.baseline(world, "TEST-SEEN", n=2)
    m = rows.merge(base, on="sample_id", suffixes=("", "_b"))
    assert (m["prosody"] != "").all()
    assert ((m["hyp"] != m["hyp_b"]) | (m["prosody"] != m["prosody_b"])).any()


def test_ser_rows(world):
    rows = X.ser_baseline(world, "TEST-SEEN", n=5)
    assert len(rows) == 5 and set(rows.columns) >= {"utt_id", "emotion", "pred", "correct"}
    assert rows["pred"].map(lambda p: p is None or p in X.EMOTIONS).all()


def test_causal_effects_shape(world):
    cand = np.array([0, 5])
    eff = X.causal_effects(world, cand, split="DEVELOPMENT", n=1)
    assert len(eff) == 2 * 4 and set(eff["neuron"]) == {0, 5} and np.isfinite(eff["effect"]).all()


def test_precision_ties_give_chance_level():
    eff = np.zeros(10)
    in_mask = np.zeros(10, bool)
    in_mask[:3] = True
    assert X._precision_with_ties(eff, in_mask) == pytest.approx(0.3)
    eff[:3] = 1.0
    assert X._precision_with_ties(eff, in_mask) == pytest.approx(1.0)
    eff[:] = 0
    eff[5:8] = 1.0
    assert X._precision_with_ties(eff, in_mask) == pytest.approx(0.0)
