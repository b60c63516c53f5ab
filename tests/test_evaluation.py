from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from esnlib.evaluation import (
    bootstrap_ci,
    delta,
    direct_match,
    effect_table,
    emotion_match,
    jaccard,
    jsd,
    layer_counts,
    layer_distribution,
    normalize_text,
    paired_bootstrap_ci,
    sample_wer,
    self_cross,
    wer,
)


# ---------------------------------------------------------------------------------------------------- WER
def test_normalize_text():
    assert normalize_text("Hello, World!") == "hello world"
    assert normalize_text(None) == ""
    with pytest.raises(TypeError):
        normalize_text(3)


def test_wer_values():
    assert sample_wer("The cat sat.", "the cat sat") == 0.0  # punctuation and case normalized away
    assert sample_wer("a b c d", "a x c d") == 0.25
    assert sample_wer("a b", "a b c d e") == 1.5  # insertions: can exceed 1
    assert sample_wer("a b", None) == 1.0 and sample_wer("a b", "") == 1.0
    # corpus level = total edits / total words, not the mean of per-sample WERs
    assert wer(["a b c d", "e f"], ["a x c d", ""]) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="empty after normalization"):
        wer(["a", "!!"], ["a", "b"])
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])


# ---------------------------------------------------------------------------------------------------- emotion
def test_emotion_match_and_delta():
    assert emotion_match(["sad", "sad", None, "angry"], ["sad", "happy", "sad", "angry"]) == 0.5
    assert emotion_match(["sad", "sad", "happy"], "sad") == pytest.approx(2 / 3)
    assert delta(0.3, 0.1) == pytest.approx(0.2)
    np.testing.assert_allclose(delta(np.array([1.0, 2.0]), np.array([0.5, 3.0])), [0.5, -1.0])
    with pytest.raises(ValueError):
        emotion_match([], [])


def _effect_frames():
    emos = ["angry", "sad"]
    utts = ["u1", "u2", "u3", "u4"]
    base = pd.DataFrame([(u, t, "neutral") for u in utts for t in emos], columns=["utt_id", "target", "pred_j"])
    base.loc[(base.utt_id == "u1") & (base.target == "sad"), "pred_j"] = "sad"  # baseline sad match 1/4
    rows = []
    for m in emos:
        for t in emos:
            for i, u in enumerate(utts):
                # self cells: 3 of 4 match; cross cells: 1 of 4 match (u1)
                hit = (i < 3) if m == t else (i == 0)
                rows.append((u, t, m, t if hit else "neutral"))
    df = pd.DataFrame(rows, columns=["utt_id", "target", "mask_emotion", "pred_j"])
    return df, base


def test_effect_table_and_self_cross():
    df, base = _effect_frames()
    t = effect_table(df, base, "pred_j")
    assert list(t.index) == ["angry", "sad"] and list(t.columns) == ["angry", "sad"]
    # angry: baseline 0% -> self 75, cross 25; sad: baseline 25% -> self 50, cross 0
    np.testing.assert_allclose(t.to_numpy(), [[75.0, 0.0], [25.0, 50.0]])
    sc = self_cross(t)
    assert sc == pytest.approx({"self": 62.5, "cross": 12.5, "gap": 50.0})
    # the baseline is restricted to the same utterances as the intervened cell
    t2 = effect_table(df[df.utt_id != "u1"], base, "pred_j")
    assert t2.loc["sad", "sad"] == pytest.approx(100 * (2 / 3 - 0.0))


def test_effect_table_carries_each_cells_n_and_ci():
    df, base = _effect_frames()
    t = effect_table(df, base, "pred_j")
    cells = t.attrs["cells"].set_index(["e_mask", "e_tgt"])
    assert set(cells.index) == {(m, e) for m in t.index for e in t.columns}
    assert (cells["n"] == 4).all()  # four sources in every cell, one pair each
    for (m, e), c in cells.iterrows():
        assert c["delta"] == pytest.approx(t.loc[m, e])
        assert c["low"] <= c["delta"] <= c["high"]
    # angry x angry: three of four sources gain a match, none loses one: the bootstrap CI lies above 0, but three
    # discordant pairs are no evidence by the exact test (p = 2 / 2**3), which is what the heatmaps outline by
    assert cells.loc[("angry", "angry"), "low"] > 0
    assert cells.loc[("angry", "angry"), "mcnemar_p"] == pytest.approx(0.25)
    assert cells.loc[("angry", "sad"), "mcnemar_p"] == 1.0  # no source changed
    # sad x angry: one source gains, the three others are unchanged: with n = 4 the CI reaches 0
    assert cells.loc[("sad", "angry"), "low"] == 0 and cells.loc[("sad", "angry"), "high"] > 0
    # the same bootstrap as the summaries' (a source resampled whole), so the bounds are that CI's
    from esnlib.evaluation import clustered_mean_ci

    g = df[(df.mask_emotion == "angry") & (df.target == "angry")]
    d = (g.pred_j == "angry").astype(float).to_numpy() - 0.0
    ci = clustered_mean_ci(d, g.utt_id.to_numpy())
    assert cells.loc[("angry", "angry"), ["low", "high"]].tolist() == [100 * ci.low, 100 * ci.high]


def test_effect_table_errors():
    df, base = _effect_frames()
    with pytest.raises(ValueError, match="no baseline sample"):
        effect_table(df, base[base.utt_id != "u2"], "pred_j")
    with pytest.raises(ValueError, match="filter it to one condition"):
        effect_table(pd.concat([df, df]), base, "pred_j")
    with pytest.raises(KeyError, match="pred_x"):
        effect_table(df, base, "pred_x")


def test_self_cross_nan_and_rect():
    t = pd.DataFrame([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]], index=["a", "b"], columns=["a", "b", "c"])
    assert self_cross(t) == pytest.approx({"self": 3.0, "cross": 13 / 3, "gap": 3.0 - 13 / 3})


# ---------------------------------------------------------------------------------------------------- CIs
def test_bootstrap_ci():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.0, 400)
    ci = bootstrap_ci(x, n_boot=1000)
    assert ci.low < ci.estimate < ci.high and ci.estimate == pytest.approx(x.mean())
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert (ci.high - ci.low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci(x, n_boot=500, seed=1) == bootstrap_ci(x, n_boot=500, seed=1)
    med = bootstrap_ci(x, stat=lambda v: float(np.median(v)), n_boot=200)  # a stat without axis=
    assert med.low < med.high
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(x, level=1.5)


def test_paired_bootstrap_tighter_than_unpaired():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 300)
    treated = base + 0.2 + rng.normal(0, 0.1, 300)  # strongly paired
    ci = paired_bootstrap_ci(treated, base, n_boot=1000)
    assert ci.estimate == pytest.approx(treated.mean() - base.mean())
    assert ci.low > 0.15 and ci.high < 0.25
    unpaired_width = 2 * 1.96 * np.sqrt(treated.var() / 300 + base.var() / 300)
    assert (ci.high - ci.low) < unpaired_width / 4
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap_ci(treated[:-1], base)


# ---------------------------------------------------------------------------------------------------- similarity
def test_jaccard_direct_match_table5_relation():
    a = np.arange(0, 100)
    b = np.arange(70, 170)
    J = jaccard(a, b)
    assert J == pytest.approx(30 / 170)
    assert direct_match(a, b) == pytest.approx(0.30)
    assert direct_match(a, b) == pytest.approx(2 * J / (1 + J))  # equal sizes
    assert 2 * 0.217 / 1.217 == pytest.approx(0.3571, abs=5e-4)  # Table 5, angry
    with pytest.raises(ValueError):
        jaccard([], [])
    with pytest.raises(ValueError):
        direct_match([], [1])


SITES = [SimpleNamespace(offset=0, width=5, layer=0, side="lm"),
         SimpleNamespace(offset=5, width=5, layer=1, side="lm"),
         SimpleNamespace(offset=10, width=5, layer=2, side="lm")]


def test_layer_distribution_and_jsd():
    d = layer_distribution([0, 1, 6, 12], SITES)
    np.testing.assert_allclose(d, [0.5, 0.25, 0.25])
    np.testing.assert_allclose(layer_distribution([0, 1, 6, 12], SITES, normalize=False), [2, 1, 1])
    rng = np.random.default_rng(0)
    for _ in range(5):
        p, q = rng.random(7), rng.random(7)
        q[2] = 0.0
        assert jsd(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)
    assert jsd([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jsd([1, 2], [2, 4]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lengths"):
        jsd([1, 2], [1, 2, 3])


def test_layer_counts():
    c = layer_counts([np.array([0, 6, 7]), np.array([11, 12, 13, 14])], ["angry", "sad"], SITES)
    assert c.index.name == "layer" and list(c.index) == [0, 1, 2]
    assert c["angry"].tolist() == [1, 2, 0] and c["sad"].tolist() == [0, 0, 4]
    two = SITES[:2] + [SimpleNamespace(offset=10, width=5, layer=0, side="talker")]
    c2 = layer_counts([np.array([12])], ["sad"], two)
    assert c2.loc[("talker", 0), "sad"] == 1 and c2.index.names == ["side", "layer"]


def test_rate_ci_wilson_for_independent_samples_and_a_cluster_bootstrap_otherwise():
    from esnlib.evaluation import rate_ci

    ci = rate_ci([1] * 8 + [0] * 2)  # the textbook case: 8 of 10, Wilson 95 % = [0.490, 0.943]
    assert ci.estimate == 0.8 and abs(ci.low - 0.4902) < 1e-3 and abs(ci.high - 0.9433) < 1e-3
    assert rate_ci([1] * 5).high == 1.0 and rate_ci([0] * 5).low == 0.0  # bounded, not Wald's [1, 1]
    assert rate_ci([1] * 8 + [0] * 2, clusters=range(10)) == ci  # one sample per cluster: independent
    # 40 sources x 4 targets where a source matches all or none of its targets: 40 independent units, not 160
    m = np.repeat(np.arange(40) % 2, 4)
    clustered = rate_ci(m, clusters=np.repeat(np.arange(40), 4))
    naive = rate_ci(m)
    assert clustered.estimate == naive.estimate == 0.5
    assert clustered.high - clustered.low > 1.6 * (naive.high - naive.low)
    with pytest.raises(ValueError, match="no samples"):
        rate_ci([])


def test_baseline_table_carries_each_match_rates_ci():
    from esnlib.tables import baseline_table

    rows = pd.DataFrame({"utt_id": np.repeat([f"u{i}" for i in range(10)], 2), "target": ["angry", "sad"] * 10,
                         "pred_j": ["angry"] * 8 + ["neutral"] * 12, "wer": 0.0, "naturalness": 3.0})
    t = baseline_table(rows).set_index("e_tgt")
    assert list(t.columns[-2:]) == ["match_j_lo (%)", "match_j_hi (%)"]
    assert t.loc["angry", "match_j (%)"] == 40.0
    assert abs(t.loc["angry", "match_j_lo (%)"] - 16.8) < 0.1 and abs(t.loc["angry", "match_j_hi (%)"] - 68.7) < 0.1
    assert t.loc["avg", "match_j_lo (%)"] <= t.loc["avg", "match_j (%)"] <= t.loc["avg", "match_j_hi (%)"]
