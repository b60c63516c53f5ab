import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from esnlib.selection import (
    activation_probabilities,
    is_success,
    masks_to_frame,
    n_selected,
    probabilities_from_store,
    select,
    success_sets,
)


# ---------------------------------------------------------------------------------------------------- stage 2
def test_is_success_vectorized():
    pred = ["angry", "happy", None, "sad", "sad", float("nan")]
    tgt = ["angry", "sad", "angry", "sad", "sad", "sad"]
    wer = [0.0, 0.0, 0.0, 0.15, 0.16, 0.0]
    assert is_success(pred, tgt, wer).tolist() == [True, False, False, True, False, False]
    assert is_success(pred, tgt, wer, max_wer=0.2).tolist() == [True, False, False, True, True, False]
    assert not is_success(["sad"], ["sad"], [float("nan")])[0]
    with pytest.raises(ValueError, match="same shape"):
        is_success(["a"], ["a", "b"], [0.0])


def _pool(n_per=30):
    rows = []
    for emo in ("angry", "happy", "sad"):
        for i in range(n_per):
            rows.append({"utt_id": f"{emo}_{i:03d}", "target": emo, "success": i % 3 != 0})
    rows.append({"utt_id": "x", "target": "surprise", "success": False})
    return pd.DataFrame(rows)


def test_success_sets_cap_nested_deterministic():
    df = _pool()
    full = success_sets(df, cap=None, emotions=["angry", "happy", "sad"])
    assert all(len(v) == 20 for v in full.values())
    ok_ids = set(df.loc[df.success, "utt_id"])
    assert all(set(v) <= ok_ids for v in full.values())
    s10 = success_sets(df, cap=10, seed=3, emotions=["angry", "happy", "sad"])
    s15 = success_sets(df, cap=15, seed=3, emotions=["angry", "happy", "sad"])
    for emo in s10:
        assert len(s10[emo]) == 10 and len(set(s10[emo])) == 10
        assert s15[emo][:10] == s10[emo]  # nested: a larger c adds evidence
        assert all(i.startswith(emo) for i in s10[emo])
    assert success_sets(df, cap=10, seed=3, emotions=["angry"])["angry"] == s10["angry"]  # deterministic
    other = success_sets(df, cap=10, seed=4, emotions=["angry"])["angry"]
    assert other != s10["angry"]  # the seed matters
    # shuffling the frame's rows does not change the draw
    shuffled = df.sample(frac=1.0, random_state=1)
    assert success_sets(shuffled, cap=10, seed=3, emotions=["angry"])["angry"] == s10["angry"]


def test_success_sets_sampling_is_roughly_uniform():
    df = pd.DataFrame({"utt_id": [f"u{i}" for i in range(20)], "target": "sad", "success": True})
    hits = np.zeros(20)
    for seed in range(400):
        for i in success_sets(df, cap=5, seed=seed)["sad"]:
            hits[int(i[1:])] += 1
    # each id expected 100 times out of 400 draws of 5/20
    assert hits.min() > 60 and hits.max() < 140


def test_success_sets_empty_emotion_errors():
    df = _pool()
    with pytest.raises(ValueError, match="surprise.*Raise the identification pool"):
        success_sets(df, cap=10)
    out = success_sets(df, cap=10, allow_empty=True)
    assert out["surprise"] == [] and list(out) == ["angry", "happy", "sad", "surprise"]
    with pytest.raises(ValueError, match="duplicated ids"):
        success_sets(pd.concat([df, df]), cap=10, emotions=["angry"])
    with pytest.raises(KeyError, match="column 'nope'"):
        success_sets(df, cap=10, success_col="nope")
    with pytest.raises(ValueError, match="cap"):
        success_sets(df, cap=0)


# ---------------------------------------------------------------------------------------------------- P
def test_activation_probabilities():
    K = np.array([[1, 2, 0], [4, 4, 4]])
    np.testing.assert_allclose(activation_probabilities(K, [4, 8]), [[0.25, 0.5, 0], [0.5, 0.5, 0.5]])
    T = np.array([[4, 4, 2], [8, 8, 8]])
    np.testing.assert_allclose(activation_probabilities(K, T)[0], [0.25, 0.5, 0.0])
    with pytest.raises(ValueError, match=r"T == 0.*row\(s\) \[1\]"):
        activation_probabilities(K, [4, 0])
    with pytest.raises(ValueError, match="0 <= K <= T"):
        activation_probabilities(K, [1, 8])
    with pytest.raises(ValueError, match="2-D"):
        activation_probabilities([1, 2], [1, 2])


class _Stats:
    """In-test stand-in with the StatsStore interface: per-sample counts K and positions T."""

    def __init__(self, ids, K, T):
        self.ids, self.K, self.T = list(ids), np.asarray(K), np.asarray(T)

    def index_of(self, ids):
        return np.array([self.ids.index(i) for i in ids])

    def aggregate(self, rows):
        return self.K[rows].sum(0), self.T[rows].sum(0)


def test_probabilities_from_store():
    K = np.array([[1, 0, 2], [3, 1, 0], [0, 0, 5]])
    T = np.array([[4, 4, 4], [4, 4, 4], [6, 6, 6]])
    st = _Stats(["a", "b", "c"], K, T)
    P, emos = probabilities_from_store(st, {"sad": ["a", "b"], "angry": ["c"]})
    assert emos == ["sad", "angry"]
    np.testing.assert_allclose(P, [[4 / 8, 1 / 8, 2 / 8], [0, 0, 5 / 6]])
    with pytest.raises(ValueError, match="'angry' is empty"):
        probabilities_from_store(st, {"sad": ["a"], "angry": []})


# ---------------------------------------------------------------------------------------------------- selectors
P3 = np.array(
    [  # 3 emotions x 10 neurons
        [0.9, 0.1, 0.5, 0.5, 0.0, 0.3, 0.6, 0.2, 0.2, 0.8],
        [0.1, 0.9, 0.5, 0.4, 0.0, 0.3, 0.1, 0.7, 0.2, 0.8],
        [0.1, 0.1, 0.5, 0.3, 0.0, 0.3, 0.1, 0.1, 0.9, 0.7],
    ]
)


def test_n_selected_floor():
    assert n_selected(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996 in floating point
    assert n_selected(0.005, 1000) == 5
    assert n_selected(0.0999, 10) == 0


def test_lap_top_and_ties():
    m = select(P3, "LAP", 0.3)
    assert [x.tolist() for x in m] == [[0, 6, 9], [1, 7, 9], [2, 8, 9]]
    # tie at 0.5 between neurons 2 and 3 in row 0 for k=4: lower index wins
    m4 = select(P3, "lap", 0.4)[0]
    assert m4.tolist() == [0, 2, 6, 9]
    assert all(x.dtype == np.int64 and np.all(np.diff(x) > 0) for x in m)


def test_mad_hand_computed():
    m = select(P3, "MAD", 0.2)
    dev = np.abs(P3 - P3.mean(0))
    for e in range(3):
        want = np.argsort(-dev[e], kind="stable")[:2]
        assert m[e].tolist() == sorted(want.tolist())
    assert m[0].tolist() == [0, 6]  # |0.9 - 0.3667| and |0.6 - 0.2667|


def test_cas_only_top_emotion_and_fewer_than_nsel():
    m = select(P3, "CAS", 0.3)
    top = P3.argmax(0)
    for e, mask in enumerate(m):
        assert all(top[i] == e for i in mask)
    # margins: n0 .8 (e0), n1 .8 (e1), n3 .1 (e0), n6 .5 (e0), n7 .5 (e1), n8 .7 (e2); ties n2,n4,n5,n9 excluded
    assert m[0].tolist() == [0, 3, 6] and m[1].tolist() == [1, 7] and m[2].tolist() == [8]
    assert len(m[1]) < n_selected(0.3, 10)  # fewer, never padded
    # a neuron tied for top (n9: 0.8 / 0.8) has no unique top emotion and is never selected
    assert all(9 not in x for x in select(P3, "CAS", 0.9))


def _lape_reference(P, rate, q):
    """Loop re-implementation of the paper's LAPE text, for cross-checking."""
    E, N = P.shape
    H = {}
    for n in range(N):
        s = sum(P[e, n] for e in range(E))
        if s == 0:
            continue
        H[n] = -sum((P[e, n] / s) * math.log(P[e, n] / s) for e in range(E) if P[e, n] > 0)
    tau = np.percentile(P, q)
    kept = [n for n in H if any(P[e, n] > tau for e in range(E))]
    pool = sorted(kept, key=lambda n: (H[n], n))[: int(math.floor(min(1, 5 * rate) * N + 1e-9))]
    n_sel = int(math.floor(rate * N + 1e-9))
    return [sorted(sorted(pool, key=lambda n: (-P[e, n], n))[:n_sel]) for e in range(E)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lape_matches_reference(seed):
    rng = np.random.default_rng(seed)
    P = rng.random((4, 200)) ** 3
    P[:, :5] = 0.0  # never-active neurons: undefined entropy, must be excluded
    for rate, q in [(0.05, 95.0), (0.1, 50.0), (0.02, 80.0)]:
        got = select(P, "LAPE", rate, lape_percentile=q)
        assert [g.tolist() for g in got] == _lape_reference(P, rate, q)
        assert all(not np.isin(np.arange(5), g).any() for g in got)


def test_lape_hand_example():
    P = np.array([[0.9, 0.5, 0.0, 0.3], [0.0, 0.5, 0.0, 0.05]])
    # entropies: n0 0, n1 log2, n2 undefined, n3 low; tau_p = percentile 50 = 0.175 -> kept n0, n1, n3
    # rate 0.25: N_sel 1, pool floor(1.25 * 4) -> 4 capped at N -> all kept
    m = select(P, "LAPE", 0.25, lape_percentile=50)
    assert [x.tolist() for x in m] == [[0], [1]]
    # percentile 90: tau = 0.62 -> only n0 kept; emotion 1 still gets the pool's best (n0), never n2
    m = select(P, "LAPE", 0.25, lape_percentile=90)
    assert [x.tolist() for x in m] == [[0], [0]]


def test_random_same_for_all_and_seeded():
    m = select(P3, "random", 0.5, seed=7)
    assert all(np.array_equal(m[0], x) for x in m) and len(m[0]) == 5 and len(set(m[0].tolist())) == 5
    assert np.array_equal(select(P3, "random", 0.5, seed=7)[0], m[0])
    draws = {tuple(select(np.zeros((2, 50)), "random", 0.1, seed=s)[0]) for s in range(10)}
    assert len(draws) > 5


def test_select_errors():
    with pytest.raises(ValueError, match=r"unknown method 'XYZ'.*LAP.*CAS"):
        select(P3, "XYZ", 0.1)
    with pytest.raises(ValueError, match=r"rate r must be in \(0, 1\)"):
        select(P3, "LAP", 1.0)
    with pytest.raises(ValueError, match="smallest rate.*0.1"):
        select(P3, "LAP", 0.05)
    with pytest.raises(ValueError, match="2-D"):
        select(P3[0], "LAP", 0.1)
    with pytest.raises(ValueError, match="at least 2 rows"):
        select(P3[:1], "CAS", 0.1)
    bad = P3.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        select(bad, "MAD", 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        select(P3 * 10, "LAP", 0.1)
    assert len(select(P3[:1], "LAP", 0.1)) == 1  # LAP works with one emotion


def test_masks_to_frame_with_sites():
    sites = [SimpleNamespace(offset=0, width=4, layer=0, side="lm"),
             SimpleNamespace(offset=4, width=4, layer=1, side="lm"),
             SimpleNamespace(offset=8, width=2, layer=0, side="talker")]
    f = masks_to_frame([np.array([0, 5, 9]), np.array([3])], ["angry", "sad"], sites)
    assert f["emotion"].tolist() == ["angry"] * 3 + ["sad"]
    assert f["layer"].tolist() == [0, 1, 0, 0]
    assert f["side"].tolist() == ["lm", "lm", "talker", "lm"]
    assert f["neuron"].tolist() == [0, 1, 1, 3]
    with pytest.raises(ValueError, match="outside every site"):
        masks_to_frame([np.array([10])], ["angry"], sites)


def test_probabilities_from_real_statsstore(tmp_path):
    """End to end with esnlib.capture.StatsStore: T is per neuron (its site's positions), sides may differ."""
    capture = pytest.importorskip("esnlib.capture")
    from esnlib.sites import Site

    sites = [Site(path="lm.0.act_fn", layer=0, width=3, side="lm", offset=0),
             Site(path="talker.0.act_fn", layer=0, width=2, side="talker", offset=3)]
    store = capture.StatsStore.create(tmp_path / "stats", sites)
    pos = np.array([[1, 2, 0, 4, 0], [3, 0, 1, 0, 2], [2, 2, 2, 1, 1]], dtype=np.uint32)
    site_tokens = np.array([[4, 5], [4, 5], [2, 3]], dtype=np.uint32)
    zeros = np.zeros(pos.shape, np.float32)
    store.append(capture.CaptureStats(pos, zeros, zeros, site_tokens[:, 0], site_tokens, sites), ["a", "b", "c"])
    P, emos = probabilities_from_store(store, {"angry": ["a", "b"], "sad": ["c"]})
    assert emos == ["angry", "sad"]
    np.testing.assert_allclose(P, [[4 / 8, 2 / 8, 1 / 8, 4 / 10, 2 / 10], [1, 1, 1, 1 / 3, 1 / 3]])
    # margins: n3 is the only angry-top neuron (.4 vs .333); sad: n2 .875, n1 .75, n0 .5, n4 .133
    assert [m.tolist() for m in select(P, "CAS", 0.4)] == [[3], [1, 2]]


# ------------------------------------------------------------------------------------- bad input, named up front
def test_select_rejects_transposed_P():
    rng = np.random.default_rng(0)
    P = rng.uniform(0, 1, size=(5, 1000))
    with pytest.raises(ValueError, match=r"P has more rows \(1000\) than columns \(5\).*transposed.*P\.T"):
        select(P.T, "CAS", 0.5)
    with pytest.raises(ValueError, match=r"P has 5 rows but 4 emotions were given"):
        select(P, "LAP", 0.01, emotions=["angry", "happy", "sad", "surprise"])
    with pytest.raises(ValueError, match=r"P has 1000 rows but 5 emotions were given.*transposed"):
        X_scores(P.T, emotions=list("abcde"))
    assert len(select(P, "LAP", 0.01, emotions=list("abcde"))) == 5


def X_scores(P, emotions):
    from esnlib.selection import selector_scores

    return selector_scores(P, "LAP", 0.5, emotions=emotions)


@pytest.mark.parametrize("rate", ["0.5", None, True, [0.5]])
def test_select_rate_must_be_a_number(rate):
    with pytest.raises(ValueError, match=r"rate r must be a number in \(0, 1\), got .* \((str|NoneType|bool|list)\)"):
        select(P3, "LAP", rate)


def test_select_rejects_P_without_neurons_or_all_zero():
    with pytest.raises(ValueError, match=r"P has no neurons \(shape \(3, 0\)\)"):
        select(np.zeros((3, 0)), "LAP", 0.1)
    with pytest.raises(ValueError, match=r"P has no emotion rows \(shape \(0, 10\)\)"):
        select(np.zeros((0, 10)), "LAP", 0.1)
    for method in ("LAP", "LAPE", "MAD", "CAS"):
        with pytest.raises(ValueError, match=r"P is all zero.*no neuron was ever active.*capture"):
            select(np.zeros((4, 100)), method, 0.05)
    assert len(select(np.zeros((4, 100)), "random", 0.05)[0]) == 5  # random does not read P
