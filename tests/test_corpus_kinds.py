"""The ``corpus`` parameter (demo, esd, iemocap, meld, msp-podcast) through ``load_world``, the call every notebook
makes, on fixture folders in each corpus's real layout (tiny generated audio); layout and task errors; the SER
cross-corpus transfer summary."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import esnlib.experiments as X
from esnlib.corpora import registry
from test_corpora_real import make_iemocap, make_meld, make_msp, needs_ffmpeg
from test_esd import _official
from test_experiments import _NoModel, shared_corpus

SPEAKERS = tuple(f"{i:04d}" for i in range(11, 21))
IEMO = {s: [(f"Ses0{s}F_impro01_F000", "neu"), (f"Ses0{s}F_impro01_M000", "ang"), (f"Ses0{s}F_impro01_F001", "exc"),
            (f"Ses0{s}F_impro01_M001", "sad"), (f"Ses0{s}F_impro01_F002", "fru")] for s in range(1, 6)}
MSP = [("MSP-PODCAST_0001_0001.wav", "N", "Train", "1"), ("MSP-PODCAST_0001_0002.wav", "A", "Train", "1"),
       ("MSP-PODCAST_0002_0001.wav", "H", "Train", "2"), ("MSP-PODCAST_0002_0002.wav", "S", "Train", "2"),
       ("MSP-PODCAST_0003_0001.wav", "U", "Development", "3"), ("MSP-PODCAST_0004_0001.wav", "S", "Test1", "4"),
       ("MSP-PODCAST_0004_0002.wav", "H", "Test1", "4"), ("MSP-PODCAST_0005_0001.wav", "N", "Test2", "5"),
       ("MSP-PODCAST_0006_0001.wav", "F", "Test1", "6")]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """One fixture folder per corpus kind, in the corpus's own layout."""
    tmp = tmp_path_factory.mktemp("kinds")
    out = {"demo": shared_corpus(tmp_path_factory),
           "esd": _official(tmp / "Emotion Speech Dataset", speakers=SPEAKERS),
           "iemocap": make_iemocap(tmp / "IEMOCAP_full_release", IEMO),
           "msp-podcast": make_msp(tmp / "MSP-PODCAST-Publish-1.11", MSP)}
    if shutil.which("ffmpeg"):
        out["meld"] = make_meld(tmp / "MELD.Raw")
    return out


@pytest.fixture(scope="module")
def adapter():
    import torch

    from esnlib.models.demo import DemoAdapter, DemoOmni

    torch.manual_seed(0)
    return DemoAdapter(model=DemoOmni.tiny(), evc_stat_positions="all")  # its answers are one token long


def _world(root, kind, adapter, tmp, task="ser", **kw):
    return X.load_world(adapter=adapter, corpus_root=root, corpus=kind, task=task, judges="prosody", naturalness=None,
                        results_dir=tmp / "results", progress=False, **kw)


KIND_PARAMS = ["demo", "esd", "iemocap", pytest.param("meld", marks=needs_ffmpeg), "msp-podcast"]


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_every_corpus_loads_into_a_world_and_runs_ser(roots, adapter, tmp_path, kind):
    w = _world(roots[kind], kind, adapter, tmp_path)
    assert w.corpus_kind == kind
    assert {u.split for u in w.utts} <= set(X.SPLITS)
    assert {u.emotion for u in w.utts} <= set(adapter.labels)
    ident, test = w.split("IDENTIFICATION", emotion=None), w.split(X.TEST, emotion=None)
    assert ident and test and not {u.id for u in ident} & {u.id for u in test}
    assert all(Path(u.path).is_file() for u in w.utts)
    # the corpus's own split behind each World subset
    if kind == "iemocap":
        assert {u.speaker[:5] for u in test} == {"Ses05"} and {u.speaker[:5] for u in ident} == {"Ses01", "Ses02",
                                                                                                 "Ses03"}
        assert {u.emotion for u in w.utts} == {"neutral", "angry", "happy", "sad"}  # exc -> happy, fru dropped
    if kind == "msp-podcast":
        assert {u.id for u in test} == {"MSP-PODCAST_0004_0001", "MSP-PODCAST_0004_0002", "MSP-PODCAST_0005_0001"}
    if kind == "meld":  # fear is not in the five-way question: left out
        assert {u.id for u in test} == {"test_dia2_utt0"} and "fear" not in {u.emotion for u in w.utts}
    if kind in ("demo", "esd"):
        assert {u.split for u in w.utts} == set(X.SPLITS)
    rows = X.ser_baseline(w, X.TEST, n=2)
    assert len(rows) == min(2, len(test)) and set(rows["emotion"]) <= set(adapter.labels)
    assert list(rows["utt_id"]) == [u.id for u in test[:2]]
    # corpus=None reads the kind from the folder's layout
    assert X.corpus_kind(roots[kind]) == kind


@pytest.mark.parametrize("kind", ["demo", "esd"])
def test_evc_notebooks_take_esd_like_corpora(roots, adapter, tmp_path, kind):
    w = _world(roots[kind], kind, adapter, tmp_path, task="evc")
    assert len(w.split(X.TEST)) > 0 and {u.emotion for u in w.split(X.TEST)} == {"neutral"}


@pytest.mark.parametrize("kind", ["iemocap", "msp-podcast"])
def test_evc_task_on_a_ser_corpus_names_the_accepted_corpora_before_loading(roots, tmp_path, monkeypatch, kind):
    monkeypatch.setattr(registry, "load", lambda *a, **k: pytest.fail("the corpus was read before the task check"))
    for corpus in (kind, None):  # asked for, or read from the folder's layout
        with pytest.raises(X.CorpusError, match=rf"EVC notebooks .* corpus 'demo' or 'esd'; .* is '{kind}'\. "
                                                r"The SER notebook 08 accepts every corpus"):
            X.load_world(adapter=_NoModel(), corpus_root=roots[kind], corpus=corpus, task="evc", judges="prosody",
                         naturalness=None, results_dir=tmp_path / "r")


@pytest.mark.parametrize("asked,actual", [("esd", "iemocap"), ("iemocap", "msp-podcast"), ("msp-podcast", "esd"),
                                          ("meld", "iemocap"), ("demo", "msp-podcast")])
def test_wrong_layout_names_the_expected_one(roots, asked, actual):
    expected = re.escape(registry.LAYOUTS[asked].split(":")[0])
    with pytest.raises(X.CorpusError, match=rf"is not a {asked} corpus folder: expected {expected}.*it has the "
                                            rf"{actual} layout: pass corpus='{actual}'"):
        X.load_corpus(roots[actual], corpus=asked)


def test_unknown_layout_and_nested_folder(roots, tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    with pytest.raises(X.CorpusError, match=r"has none of the corpus layouts esnlib reads \(ESD: .*IEMOCAP: .*MELD"):
        X.load_corpus(tmp_path / "stuff")
    with pytest.raises(X.CorpusError, match=r"not a iemocap corpus folder.*IEMOCAP_full_release has the iemocap "
                                            r"layout: point corpus_root there"):
        X.load_corpus(roots["iemocap"].parent, corpus="iemocap")
    with pytest.raises(ValueError, match="unknown corpus kind 'iemocap4'.*'msp-podcast'"):
        X.load_corpus(roots["iemocap"], corpus="iemocap4")


def test_msp_podcast_older_label_file_spelling(tmp_path):
    root = make_msp(tmp_path / "msp", MSP)
    (root / "Labels" / "labels_consensus.csv").rename(root / "Labels" / "labels_concensus.csv")
    assert registry.detect(root) == "msp-podcast"
    assert len(X.load_corpus(root, corpus="msp-podcast")) == 7  # F (fear) is not in the 4-class set


@needs_ffmpeg
def test_meld_missing_clip_is_skipped_with_a_warning(tmp_path):
    root = make_meld(tmp_path / "MELD.Raw")
    (root / "train_splits" / "dia0_utt1.mp4").unlink()
    with pytest.warns(UserWarning, match=r"MELD: 1 clip\(s\) missing .*train/dia0_utt1"):
        utts = X.load_corpus(root, corpus="meld")
    assert "train_dia0_utt1" not in {u.id for u in utts}


def test_with_corpus_keeps_model_judges_and_stores(roots, adapter, tmp_path):
    a = _world(roots["esd"], "esd", adapter, tmp_path)
    b = X.with_corpus(a, roots["iemocap"], corpus="iemocap", task="ser")
    assert b.adapter is a.adapter and b.judges is a.judges and b.store is a.store
    assert (b.corpus, b.corpus_kind) == ("IEMOCAP_full_release", "iemocap") and b.corpus_fp != a.corpus_fp
    assert b.spec["corpus_root"] == str(roots["iemocap"]) and a.spec["corpus_root"] == str(roots["esd"])
    with pytest.raises(ValueError, match="second demo corpus belongs to the demo world"):
        X.second_demo_world(a)


def _random_masks(world, seed=0, k=40):
    rng = np.random.default_rng(seed)
    n = sum(s.width for s in world.sites("lm"))
    return X.MaskSet(masks={e: np.sort(rng.choice(n, k, replace=False)) for e in ("neutral", "angry", "happy", "sad")},
                     selector="random", rate=k / n, cap=None, filter_judge="none", source=world.corpus, seed=seed)


def test_ser_transfer_summary_matches_the_rows(roots, adapter, tmp_path):
    """Masks 'identified' on corpus A (random masks stand in: the tiny model recognizes nothing) applied to corpus B:
    the summary's self/other Δ recall and n equal what the per-item rows give."""
    a = _world(roots["esd"], "esd", adapter, tmp_path)
    b = X.with_corpus(a, roots["msp-podcast"], corpus="msp-podcast")
    ms_a, ms_b = _random_masks(a, 0), _random_masks(b, 1)
    base = X.ser_baseline(b, X.TEST)
    tr, cells = X.ser_transfer(b, {"A->B": ms_a, "B->B": ms_b}, base, n_boot=200)
    assert list(tr["masks"]) == ["A->B", "B->B"] and list(tr["identified_on"]) == [a.corpus, b.corpus]
    assert (tr["applied_to"] == b.corpus).all() and (tr["n_items"] == 3).all()
    rows = X.ser_effects(b, ms_a)  # cached: the same rows the summary used
    own = rows[rows.mask_emotion == rows.emotion]
    before = base.set_index("utt_id").loc[own.utt_id, "pred"].to_numpy() == own.emotion.to_numpy()
    row = tr.iloc[0]
    assert row.n_self == len(own) == 3  # each test item has exactly one own-emotion mask (sad, happy, neutral)
    assert row["self"] == pytest.approx(100 * ((own.pred == own.emotion).to_numpy().astype(float) - before).mean())
    assert row.n_other == 3 * 4 - 3 and row.self_lo <= row["self"] <= row.self_hi
    c = cells["A->B"]
    assert set(c["e_mask"]) == set(ms_a.masks) and set(c["emotion"]) == {"neutral", "happy", "sad"}
    assert (c["n"] >= 1).all() and isinstance(c, pd.DataFrame)
