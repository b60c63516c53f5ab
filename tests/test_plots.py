import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from esnlib import plots

EMOS = ["angry", "happy", "sad", "surprise"]


def _check(fig, name, tmp_path):
    assert isinstance(fig, Figure)
    paths = plots.save(fig, name, outdir=tmp_path)
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    assert paths[0].read_bytes()[:4] == b"%PDF" and paths[1].read_bytes()[:4] == b"\x89PNG"
    return fig


def _effect(seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0, 3, (4, 4)) + 5 * np.eye(4), index=pd.Index(EMOS, name="e_mask"),
                        columns=pd.Index(EMOS, name="e_tgt"))


def test_emotion_match_bars(tmp_path):
    df = pd.DataFrame({"target": EMOS * 6, "judge": ["e2v"] * 12 + ["qwen3"] * 12,
                       "match": [True, False, True, False] * 6})
    fig = _check(plots.emotion_match_bars(df), "match", tmp_path)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if p.get_height() > 0)
    # angry and sad always match (100%), the average is 50%
    assert heights.count(100.0) == 4 and heights.count(50.0) == 2
    with pytest.raises(KeyError, match="match"):
        plots.emotion_match_bars(df.drop(columns="match"))


def test_label_distribution(tmp_path):
    df = pd.DataFrame({"pred": ["neutral"] * 6 + ["sad", None], "judge": ["e2v"] * 8})
    fig = _check(plots.label_distribution(df), "labels", tmp_path)
    heights = sorted(round(p.get_height(), 3) for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == [12.5, 12.5, 75.0]
    two = pd.concat([df, df.head(4).assign(judge="spectral")], ignore_index=True)  # each judge's n in the legend
    fig = plots.label_distribution(two)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["e2v (n=8)", "spectral (n=4)"]


def test_effect_heatmaps(tmp_path):
    fig = _check(plots.effect_heatmaps({"LAP": _effect(0), "CAS": _effect(1), "MAD": _effect(2)}), "heat", tmp_path)
    panels = [ax for ax in fig.axes if ax.get_title() in {"LAP", "CAS", "MAD"}]
    assert len(panels) == 3
    meshes = [c for ax in panels for c in ax.collections]
    lims = {m.get_clim() for m in meshes}
    assert len(lims) == 1  # one shared scale
    lo, hi = lims.pop()
    assert lo == -hi  # centred at 0
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 16 and all(t[0] in "+-" for t in texts)
    _check(plots.effect_heatmaps(_effect(3)), "heat1", tmp_path)
    with pytest.raises(ValueError):
        plots.effect_heatmaps({})


def test_effect_heatmaps_draw_each_cells_n_and_outline_the_significant_cells(tmp_path):
    from matplotlib.patches import Rectangle

    from esnlib.evaluation import attach_cells

    t = _effect(4)
    cells = t.stack().rename("delta").reset_index()
    cells["n"] = np.where(cells.e_mask == cells.e_tgt, 80, 8)
    cells["mcnemar_p"] = np.where(cells.e_mask == cells.e_tgt, 0.01, 0.5)
    cells.loc[(cells.e_mask == "sad") & (cells.e_tgt == "sad"), "mcnemar_p"] = 0.05  # not below 0.05
    cells.loc[(cells.e_mask == "happy") & (cells.e_tgt == "angry"), "mcnemar_p"] = np.nan  # unknown: not outlined
    fig = _check(plots.effect_heatmaps({"CAS": attach_cells(t, cells)}), "heat_cells", tmp_path)
    ax = fig.axes[0]
    texts = {tuple(np.floor(tx.get_position()).astype(int)): tx.get_text() for tx in ax.texts}
    assert texts[(0, 0)] == f"{t.iloc[0, 0]:+.1f}\nn=80" and texts[(1, 0)] == f"{t.iloc[0, 1]:+.1f}\nn=8"
    boxed = {(int(p.get_x()), int(p.get_y())) for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()}
    assert boxed == {(i, i) for i in range(4)} - {(2, 2)}  # (column, row): the diagonal but sad
    assert "McNemar p < 0.05" in fig.get_supxlabel() and "n: paired samples per cell" in fig.get_supxlabel()
    # a table rescaled after its cells were attached is drawn without them (they would be stale)
    fig = plots.effect_heatmaps({"CAS": attach_cells(t, cells) / 100})
    assert all("n=" not in tx.get_text() for tx in fig.axes[0].texts)
    assert not [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and not p.get_fill()]
    # cells with n but no test: n drawn, nothing outlined, and the caption says only what is drawn
    fig = plots.effect_heatmaps({"CAS": attach_cells(_effect(4), cells.drop(columns="mcnemar_p"))})
    assert any(tx.get_text().endswith("n=80") for tx in fig.axes[0].texts) and "outlined" not in fig.get_supxlabel()


def test_selector_summary(tmp_path):
    rows = []
    for sel, s in [("LAP", -2.1), ("LAPE", 1.8), ("MAD", 2.6), ("CAS", 4.3)]:
        for j in ("e2v", "qwen3"):
            rows.append({"selector": sel, "judge": j, "self": s, "cross": 0.3, "gap": s - 0.3,
                         "d_wer": 0.05, "d_naturalness": -0.01})
    fig = _check(plots.selector_summary(pd.DataFrame(rows)), "selectors", tmp_path)
    assert len([a for a in fig.axes if a.get_visible()]) == 5
    # the Δnaturalness panel says how many scored pairs it rests on, and when they are few
    few = plots.selector_summary(pd.DataFrame(rows).assign(naturalness_n=2))
    assert few.axes[4].get_title() == "Δnaturalness (n=2, few clips)"
    many = plots.selector_summary(pd.DataFrame(rows).assign(naturalness_n=[40, 40, 48, 48, 40, 40, 40, 40]))
    assert many.axes[4].get_title() == "Δnaturalness (n=40-48)"


def test_tradeoff(tmp_path):
    df = pd.DataFrame({"alpha": [0.3, 0.5, 1.0, 2.0] * 2, "self": [0.8, 2.0, 4.3, 8.9, 0.4, 1.1, 3.6, 20.7],
                       "wer": [0.19, 0.21, 0.30, 2.04] * 2, "judge": ["e2v"] * 4 + ["qwen3"] * 4})
    fig = _check(plots.tradeoff(df, hue="judge"), "alpha", tmp_path)
    wer_line = fig.axes[1].lines[0]
    np.testing.assert_allclose(wer_line.get_ydata(), [19, 21, 30, 204])
    kinds = pd.DataFrame({"kind": ["steer", "add", "clamp", "deactivate"], "self": [4, 1, 0.5, -3],
                          "wer": [0.3, 0.2, 0.2, 0.19]})
    _check(plots.tradeoff(kinds, x="kind"), "kinds", tmp_path)


def test_layer_heatmap(tmp_path):
    counts = pd.DataFrame({"angry": [0, 3, 5], "sad": [1, 0, 7]}, index=pd.Index([0, 1, 2], name="layer"))
    fig = _check(plots.layer_heatmap({"demo": counts, "other": counts * 2}), "layers", tmp_path)
    assert fig.axes[0].collections[0].get_array().max() == 7


def test_seen_unseen(tmp_path):
    df = pd.DataFrame({"emotion": EMOS * 2, "split": ["seen"] * 4 + ["unseen"] * 4,
                       "delta": [4, 3, 5, 2, 3, 2, 6, 1], "low": [1, 0, 2, -1, 0, -1, 3, -2],
                       "high": [7, 6, 8, 5, 6, 5, 9, 4]})
    _check(plots.seen_unseen(df), "seen", tmp_path)
    fig = plots.seen_unseen(df.assign(n=[43] * 4 + [37] * 3 + [36]))  # each split's n in the legend
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["seen (n=43 per emotion)",
                                                                           "unseen (n=36-37 per emotion)"]
    with pytest.raises(ValueError, match="inside"):
        plots.seen_unseen(df.assign(low=10))


def test_winrate_bars(tmp_path):
    df = pd.DataFrame({"emotion": EMOS, "win": [54, 69, 62, 63], "tie": [12, 10, 11, 11], "loss": [34, 21, 27, 26]})
    fig = _check(plots.winrate_bars(df), "win", tmp_path)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][-1] == "average"
    with pytest.raises(ValueError, match="non-negative"):
        plots.winrate_bars(df.assign(win=-1))


def test_tradeoff_draws_the_tables_cis_and_n(tmp_path):
    df = pd.DataFrame({"alpha": [0.5, 1.0, 4.0] * 2, "self": [3.8, 5.0, 2.2, 0.6, 0.0, 0.3],
                       "self_lo": [0.9, 1.9, -3.1, -0.9, -1.9, -4.1], "self_hi": [6.9, 8.4, 7.8, 2.2, 1.9, 4.7],
                       "wer": [0.012, 0.018, 0.408] * 2, "d_wer": [0.003, 0.009, 0.398] * 2,
                       "d_wer_lo": [-0.002, 0.001, 0.345] * 2, "d_wer_hi": [0.010, 0.022, 0.452] * 2,
                       "n_pairs": [320] * 6, "judge": ["prosody"] * 3 + ["spectral"] * 3})
    fig = _check(plots.tradeoff(df, hue="judge"), "alpha_ci", tmp_path)
    ax, ax2 = fig.axes
    (leg,) = fig.legends
    assert [t.get_text() for t in leg.get_texts()] == ["self (prosody), n=320", "self (spectral), n=320", "WER"]
    fig.canvas.draw()  # the legend sits below the axes, so it covers none of the curves or CIs
    assert leg.get_window_extent().y1 <= ax.get_tightbbox().y0 + 1
    assert len(ax.containers) == 2 and len(ax2.containers) == 1  # one set of CI bars per judge, one on WER
    segs = ax.containers[0].lines[2][0].get_segments()  # the prosody judge's bars, in α order
    np.testing.assert_allclose([s[:, 1] for s in segs], [[0.9, 6.9], [1.9, 8.4], [-3.1, 7.8]])
    wer_segs = ax2.containers[0].lines[2][0].get_segments()
    np.testing.assert_allclose([s[:, 1] for s in wer_segs], [[0.7, 1.9], [1.0, 3.1], [35.5, 46.2]], atol=1e-9)
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [1.2, 1.8, 40.8])
    assert ax.get_xlabel() == "α" and [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "1", "4"]


def test_emotion_match_bars_draw_each_rates_ci_and_n(tmp_path):
    from esnlib.evaluation import rate_ci

    df = pd.DataFrame({"target": ["angry"] * 10 + ["sad"] * 10, "judge": "e2v",
                       "utt_id": [f"u{i}" for i in range(10)] * 2, "match": [True] * 8 + [False] * 2 + [True] * 3 + [False] * 7})
    fig = _check(plots.emotion_match_bars(df), "match_ci", tmp_path)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["angry\nn=10", "sad\nn=10", "avg\nn=20"]
    segs = ax.containers[1].lines[2][0].get_segments()  # the error bars, in group order
    want = [rate_ci([1] * 8 + [0] * 2), rate_ci([1] * 3 + [0] * 7),
            rate_ci(df["match"].astype(float), df["utt_id"])]  # avg: a bootstrap over the 10 sources
    np.testing.assert_allclose([s[:, 1] for s in segs], [[100 * c.low, 100 * c.high] for c in want])
    assert [round(p.get_height(), 6) for p in ax.patches] == [80.0, 30.0, 55.0]


def test_selector_summary_draws_the_tables_cis_and_each_selectors_n(tmp_path):
    rows = []
    for sel, s, n in [("LAP", -2.0, 32), ("CAS", 5.0, 320)]:
        for j, dj in (("prosody", 0.0), ("spectral", 1.0)):
            rows.append({"selector": sel, "judge": j, "self": s + dj, "self_lo": s + dj - 3, "self_hi": s + dj + 4,
                         "cross": 0.5, "gap": s - 0.5, "n_pairs": n, "d_wer": 0.1, "d_wer_lo": 0.05, "d_wer_hi": 0.2})
    fig = _check(plots.selector_summary(pd.DataFrame(rows)), "selectors_ci", tmp_path)
    self_ax, cross_ax, _, wer_ax = fig.axes
    assert [t.get_text() for t in self_ax.get_xticklabels()] == ["LAP\nn=32", "CAS\nn=320"]
    assert self_ax.get_title() == "self (pp), 95 % CI" and cross_ax.get_title() == "cross (pp)"
    # one bar per (selector, judge), each with its own CI at its centre
    bars = [(round(p.get_x() + p.get_width() / 2, 6), round(p.get_height(), 6))
            for c in self_ax.containers if not hasattr(c, "has_yerr") for p in c]
    ci = sorted((round(c.lines[2][0].get_segments()[0][0, 0], 6), round(c.lines[2][0].get_segments()[0][1, 1], 6))
                for c in self_ax.containers if hasattr(c, "has_yerr"))
    assert len(ci) == 4
    for (x, top), (bx, h) in zip(ci, sorted(bars)):
        assert x == bx and top == h + 4  # the upper end sits 4 pp above its own bar
    np.testing.assert_allclose(wer_ax.containers[1].lines[2][0].get_segments()[0][:, 1], [5, 20])
    assert not cross_ax.containers[2:]  # no CI columns for cross: no error bars


def test_error_bars_survive_a_ci_that_misses_its_estimate_and_missing_cis(tmp_path):
    # a percentile CI from few pairs need not contain its estimate; a condition without pairs has NaN bounds
    df = pd.DataFrame({"alpha": [0.5, 1.0], "self": [2.0, 1.0], "self_lo": [2.5, float("nan")],
                       "self_hi": [4.0, float("nan")], "wer": [0.01, 0.02], "n_pairs": [2, 0]})
    fig = _check(plots.tradeoff(df), "odd_ci", tmp_path)
    lo_end = fig.axes[0].containers[0].lines[2][0].get_segments()[0][0, 1]
    assert lo_end == 2.0  # drawn from the estimate up, not below it


def test_selector_validity_draws_chance_rho_cis_and_n(tmp_path):
    from esnlib.validity import spearman_ci

    rows = []
    for sel, rho in (("LAP", 0.1), ("CAS", -0.2), ("ATTR", 0.7)):
        for e in EMOS:
            lo, hi = spearman_ci(rho, 42)
            rows.append({"selector": sel, "emotion": e, "precision": 0.5, "chance": 0.2, "spearman": rho,
                         "spearman_lo": lo, "spearman_hi": hi, "n_candidates": 42})
    rows += [{"selector": "random", "emotion": e, "precision": np.nan, "chance": 0.0, "spearman": np.nan,
              "spearman_lo": np.nan, "spearman_hi": np.nan, "n_candidates": 42} for e in EMOS]
    fig = _check(plots.selector_validity(pd.DataFrame(rows)), "validity", tmp_path)
    left, right = fig.axes
    assert "n = 42 candidate neurons" in left.get_title() and "95 % CI" in right.get_title()
    segs = np.concatenate([c.get_segments() for c in left.collections])  # the chance ticks, one per bar
    assert len(segs) == 16 and np.allclose([s[0, 1] for s in segs], [0.2, 0.2, 0.2, 0.0] * 4)  # per emotion
    bars = right.containers[1::2]  # the ρ error bars, one container per emotion; their ends are the CIs
    ends = [s[:, 1] for s in bars[0].lines[2][0].get_segments() if len(s)]  # random's NaN draws nothing
    np.testing.assert_allclose(ends, [spearman_ci(0.1, 42), spearman_ci(-0.2, 42), spearman_ci(0.7, 42)])
    assert any("no mask neuron" in t.get_text() for t in right.texts)
    with pytest.raises(KeyError, match="chance"):
        plots.selector_validity(pd.DataFrame(rows).drop(columns="chance"))
