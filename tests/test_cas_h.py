"""CAS-H (EVC paper, Table 3 and Table 5): a filter-mode listening test on the identification outputs, imported with
esnlib.listening, saved as the filter file notebooks 02 and 06 take (``human_filter``), and turned into masks."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import esnlib.experiments as X
from esnlib import TARGET_EMOTIONS
from esnlib import listening as L
from test_experiments import _NoModel, shared_corpus


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from esnlib.models.demo import DemoAdapter

    tmp = tmp_path_factory.mktemp("cash")
    # the committed demo LALM (the tiny random-weight one decodes no text, so nothing would be rendered to rate);
    # audio_per_shard = shard_size: every identification conversion keeps its waveform, so every one can be rated
    return X.load_world(adapter=DemoAdapter(), corpus_root=shared_corpus(tmp_path_factory),
                        judges="prosody", naturalness=None, results_dir=tmp / "results", shard_size=4,
                        audio_per_shard=4, progress=False)


@pytest.fixture(scope="module")
def filter_file(world, tmp_path_factory):
    """Clips -> filter page -> three SIMULATED raters' answer files -> read_filter_answers -> save_filter_file."""
    tmp = tmp_path_factory.mktemp("filter")
    clips = X.identification_clips(world, n=4)
    exp = L.export_filter_test(clips, tmp / "page", seed=0, attention_checks=1)
    files = [L.simulate_answers(exp.key_dir, f"R{i}", tmp / f"R{i}.json", p=(0.5, 0.5, 0.0), seed=i) for i in range(3)]
    success = L.read_filter_answers(files, exp.key_dir)
    return L.save_filter_file(success, tmp / "human_filter.csv"), clips, success


def test_identification_clips_are_the_identification_conversions(world, filter_file):
    _, clips, success = filter_file
    ids = {u.id for u in world.split("IDENTIFICATION", 4)}
    assert set(clips["utt_id"]) <= ids and set(clips["target"]) <= set(TARGET_EMOTIONS)
    assert len(clips) >= 8 and clips["audio_path"].map(lambda p: p != "").all()
    assert sorted(zip(success.utt_id, success.target)) == sorted(zip(clips.utt_id, clips.target))


def test_filter_file_round_trip(filter_file):
    path, _, success = filter_file
    hf = L.read_filter_file(path)
    assert list(hf.columns[:3]) == ["utt_id", "target", "human_success"] and hf["human_success"].dtype == bool
    assert hf["simulated"].all()  # SIMULATED raters stay marked in the file
    assert dict(zip(zip(hf.utt_id, hf.target), hf.human_success)) == \
        dict(zip(zip(success.utt_id, success.target), success.human_success))
    assert 0 < hf["human_success"].sum() < len(hf)


def test_cas_h_masks_from_the_human_success_sets(world, filter_file):
    path, _, _ = filter_file
    hf = L.read_filter_file(path)
    m = X.identify(world, "CAS", rate=0.05, cap=None, n=4, human=hf, max_wer=100.0)
    want = hf[hf.human_success].groupby("target").size()
    assert m.filter_judge == "human"
    assert m.n_success_all == {e: int(want.get(e, 0)) for e in TARGET_EMOTIONS}  # every human yes, nothing else
    # the Table 3 row
    base = X.baseline(world, X.TEST, n=2)
    rows = X.evaluate_settings(world, [(m, "steer", 1.0)], n=2)[0]
    t3 = X.summarize(rows, base, selector="CAS-H")
    assert list(t3["selector"]) == ["CAS-H"] and int(t3["n_pairs"].iloc[0]) == 2 * len(m.masks)
    # the Table 5 rows: identical sets are identical; another filter gives other masks
    sites = world.sites("lm")
    same = X.mask_similarity(m, m, sites)
    assert (same["jaccard"] == 1).all() and np.allclose(same["jsd"], 0)
    everyone = hf.assign(human_success=True)
    m_all = X.identify(world, "CAS", rate=0.05, cap=None, n=4, human=everyone, max_wer=100.0)
    t5 = X.mask_similarity(m, m_all, sites)
    assert set(t5["emotion"]) == set(m.masks) and t5["jaccard"].between(0, 1).all()
    assert any(not np.array_equal(m.masks[e], m_all.masks[e]) for e in m.masks)


def test_bad_filter_files_are_named(world, filter_file, tmp_path):
    path, _, _ = filter_file
    with pytest.raises(L.ListeningError, match="does not exist; write it with esnlib.listening.save_filter_file"):
        L.read_filter_file(tmp_path / "none.csv")
    df = L.read_filter_file(path)
    df.drop(columns="human_success").to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(L.ListeningError, match=r"lacks column\(s\) \['human_success'\]"):
        L.read_filter_file(tmp_path / "a.csv")
    df.assign(human_success="maybe").to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(L.ListeningError, match="human_success must be True/False"):
        L.read_filter_file(tmp_path / "b.csv")
    # a filter from another corpus: refused before anything is generated
    other = df.assign(utt_id="9999_000001")
    with pytest.raises(ValueError, match="rates none of the .* identification conversions"):
        X.identify(dataclasses.replace(world, adapter=_NoModel()), "CAS", rate=0.05, n=4, human=other)
    with pytest.raises(ValueError, match="only .* have successful samples"):
        X.identify(world, "CAS", rate=0.05, n=4, human=df.assign(human_success=False), max_wer=100.0)
