"""Paper-style figures from tidy result tables (EVC paper: Table 2, Figures 3-10).

Every function takes a pandas table, returns a ``matplotlib.figure.Figure`` (built without pyplot, so nothing
depends on the interactive backend and figures are not kept alive by a global registry) and draws only what
is in the table. ``save(fig, name)`` writes ``<outdir>/<name>.pdf`` and ``.png``.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = [
    "save",
    "emotion_match_bars",
    "label_distribution",
    "effect_heatmaps",
    "selector_summary",
    "tradeoff",
    "layer_heatmap",
    "seen_unseen",
    "winrate_bars",
    "selector_validity",
]

DIVERGING = "RdBu_r"


def _require(df: pd.DataFrame, cols: Sequence[str], fn: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{fn}: expected a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"{fn}: table lacks columns {missing} (has {list(df.columns)}).")
    if df.empty:
        raise ValueError(f"{fn}: the table is empty; nothing to plot.")


def _order(values) -> list:
    from .selection import _emotion_order

    vals = [v for v in pd.unique(pd.Series(list(values))) if not (isinstance(v, float) and np.isnan(v))]
    try:
        return sorted(vals, key=_emotion_order)
    except TypeError:
        return vals


def _sns():
    import seaborn as sns

    return sns


def _yerr(v, lo, hi) -> list:
    """Error-bar extents below and above ``v`` from CI bounds; NaN stays NaN (nothing drawn), and an extent below 0
    (a percentile CI that does not contain its estimate, possible with few samples) is drawn as 0."""
    v, lo, hi = (np.asarray(a, dtype=float) for a in (v, lo, hi))
    return [np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)]


def save(fig: Figure, name: str, outdir: str | os.PathLike = "figures", dpi: int = 200) -> list[Path]:
    """Write ``fig`` as ``<outdir>/<name>.pdf`` and ``<outdir>/<name>.png``; returns both paths."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.pdf", out / f"{name}.png"]
    for p in paths:
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
    return paths


def emotion_match_bars(
    df: pd.DataFrame, target_col: str = "target", judge_col: str = "judge", match_col: str = "match",
    title: str | None = None,
) -> Figure:
    """Table 2 style: emotion match rate (%) per target emotion and judge, with an "avg" group (all samples pooled,
    as Table 2's), each bar with its 95 % CI (:func:`esnlib.evaluation.rate_ci`; a bootstrap over ``utt_id`` for
    "avg" when the rows carry it) and each group's n under its name.

    ``df``: one row per judged sample with the instructed target, the judge name and ``match`` (bool/0-1).
    """
    from .evaluation import rate_ci

    _require(df, [target_col, judge_col, match_col], "emotion_match_bars")
    order = _order(df[target_col])
    judges = list(pd.unique(df[judge_col]))
    groups = [(t, df[df[target_col] == t]) for t in order] + [("avg", df)]
    fig = Figure(figsize=(1.2 * (len(order) + 1) + 2, 3.4))
    ax = fig.add_subplot()
    width = 0.8 / len(judges)
    for i, j in enumerate(judges):
        cis = []
        for _, g in groups:
            g = g[g[judge_col] == j]
            cis.append(rate_ci(g[match_col].astype(float), g["utt_id"] if "utt_id" in g else None))
        x = np.arange(len(groups)) + (i - (len(judges) - 1) / 2) * width
        y = np.array([100 * c.estimate for c in cis])
        bars = ax.bar(x, y, width, label=str(j), color=f"C{i}")
        ax.errorbar(x, y, yerr=_yerr(y, [100 * c.low for c in cis], [100 * c.high for c in cis]), fmt="none",
                    ecolor="k", capsize=2, lw=0.8)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2, label_type="center")
    ns = [len(g[g[judge_col] == judges[0]]) for _, g in groups]
    ax.set_xticks(range(len(groups)), [f"{t}\nn={n}" for (t, _), n in zip(groups, ns)])
    ax.set_xlabel("target emotion")
    ax.set_ylabel("emotion match (%), 95 % CI")
    ax.set_ylim(0, 105)
    ax.legend(title=judge_col, fontsize=8)
    ax.set_title(title or "Emotion match rate")
    return fig


def label_distribution(
    df: pd.DataFrame, pred_col: str = "pred", judge_col: str | None = "judge", title: str | None = None
) -> Figure:
    """Distribution (%) of predicted labels per judge: shows the neutral bias of the baseline (section 5.1).

    Missing predictions are shown as "none"; each judge's number of samples is in the legend.
    """
    _require(df, [pred_col] + ([judge_col] if judge_col else []), "label_distribution")
    d = pd.DataFrame({"label": df[pred_col].where(df[pred_col].notna(), "none").astype(str)})
    d["judge"] = df[judge_col].astype(str).to_numpy() if judge_col else "judge"
    counts = d["judge"].value_counts()
    d["judge"] = d["judge"].map(lambda j: f"{j} (n={counts[j]})")
    share = d.groupby("judge")["label"].value_counts(normalize=True).mul(100).rename("share (%)").reset_index()
    order = _order(share["label"])
    fig = Figure(figsize=(1.1 * len(order) + 2, 3.4))
    ax = fig.add_subplot()
    _sns().barplot(data=share, x="label", y="share (%)", hue="judge", order=order, ax=ax)
    for c in ax.containers:
        ax.bar_label(c, fmt="%.1f", fontsize=7)
    ax.set_xlabel("predicted label")
    ax.set_title(title or "Predicted label distribution")
    return fig


def effect_heatmaps(
    tables: pd.DataFrame | Mapping[str, pd.DataFrame], vmax: float | None = None, ncols: int | None = None,
    fmt: str = "+.1f", title: str | None = None,
) -> Figure:
    """One or several e_mask x e_tgt heatmaps of Δ emotion match (pp) (Figures 3 right, 4-7).

    ``tables``: an ``evaluation.effect_table`` or a mapping panel title -> table. Diverging colormap centred at
    0 with one colour scale shared by all panels (``vmax`` defaults to the largest |value|); cells annotated. A
    table that carries its cells (``attrs["cells"]``: ``effect_table``, ``tables.ser_effect_table``,
    ``tables.cell_table``) has each cell's n under its value and the cells whose paired change is significant
    (exact McNemar p < 0.05, which stays valid with the few sources of a sweep's cell, where a bootstrap CI does
    not) outlined.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    if isinstance(tables, pd.DataFrame):
        tables = {"": tables}
    if not tables:
        raise ValueError("effect_heatmaps: no tables given.")
    for k, t in tables.items():
        if not isinstance(t, pd.DataFrame) or t.empty:
            raise ValueError(f"effect_heatmaps: panel {k!r} is not a non-empty e_mask x e_tgt DataFrame.")
    vals = np.concatenate([t.to_numpy(dtype=float).ravel() for t in tables.values()])
    if vmax is None:
        finite = np.abs(vals[np.isfinite(vals)])
        vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    n = len(tables)
    ncols = ncols or min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(3.1 * ncols + 1.0, 3.1 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    sns = _sns()
    with_n = with_p = False
    for i, (name, t) in enumerate(tables.items()):
        ax = axes.flat[i]
        v = t.to_numpy(dtype=float)
        cell_n, p = _cells(t)
        annot = [["" if not np.isfinite(x) else format(x, fmt) for x in row] for row in v]
        if cell_n is not None:
            annot = [[a + (f"\nn={int(k)}" if np.isfinite(k) else "") for a, k in zip(ra, rk)]
                     for ra, rk in zip(annot, cell_n)]
        sns.heatmap(t.astype(float), ax=ax, cmap=DIVERGING, center=0, vmin=-vmax, vmax=vmax, annot=np.array(annot),
                    fmt="", annot_kws={"fontsize": 7 if cell_n is not None else 8}, cbar=False, square=True,
                    linewidths=0.5)
        if p is not None:
            for r_, c_ in zip(*np.nonzero(p < 0.05)):
                ax.add_patch(Rectangle((c_, r_), 1, 1, fill=False, edgecolor="k", lw=1.8, clip_on=False))
        with_n, with_p = with_n or cell_n is not None, with_p or p is not None
        ax.set_title(textwrap.fill(str(name), 32))
        ax.set_xlabel(t.columns.name or "e_tgt")
        ax.set_ylabel(t.index.name or "e_mask")
        ax.tick_params(axis="y", labelrotation=0)  # emotion names side by side would overlap when vertical
        if t.shape[1] > 4:  # five emotion names side by side overlap
            ax.tick_params(axis="x", labelrotation=35)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.colorbar(ScalarMappable(Normalize(-vmax, vmax), DIVERGING), ax=list(axes.flat)[:n], label="Δ (pp)",
                 shrink=0.8)
    if title:
        fig.suptitle(title)
    if with_n:
        fig.supxlabel("n: paired samples per cell" + ("; outlined: a significant change (exact McNemar p < 0.05)"
                                                       if with_p else ""), fontsize=8)
    return fig


def _cells(t: pd.DataFrame):
    """The (n, McNemar p) arrays aligned with ``t`` from ``t.attrs["cells"]`` (``evaluation.attach_cells``); None
    for what is not known, and both None when the cells no longer describe ``t`` (a table rescaled or edited
    since)."""
    cells = t.attrs.get("cells")
    keys = [t.index.name, t.columns.name]
    if not isinstance(cells, pd.DataFrame) or not set(keys + ["delta", "n"]) <= set(cells.columns):
        return None, None
    wide = {c: cells.pivot_table(index=keys[0], columns=keys[1], values=c, aggfunc="first", dropna=False)
                 .reindex(index=t.index, columns=t.columns).to_numpy(dtype=float)
            for c in ("delta", "n", "mcnemar_p") if c in cells.columns}
    if not np.allclose(wide["delta"], t.to_numpy(dtype=float), rtol=1e-9, atol=1e-9, equal_nan=True):
        return None, None
    return wide["n"], wide.get("mcnemar_p")


def selector_summary(
    df: pd.DataFrame, selector_col: str = "selector", judge_col: str = "judge",
    metrics: Sequence[str] = ("self", "cross", "gap"), extra: Sequence[str] = ("d_wer", "d_naturalness"),
    title: str | None = None,
) -> Figure:
    """Table 3 / Figure 3 left: self, cross and gap (pp) per selector and judge, plus ΔWER and Δnaturalness.

    ``df``: one row per (selector, judge) with the ``metrics`` columns; ``extra`` columns (ΔWER as a fraction,
    shown in pp; Δnaturalness in MOS) are taken per selector and drawn if present. A metric with ``<metric>_lo`` /
    ``_hi`` columns (the summary tables' 95 % CIs) gets error bars; with ``n_pairs`` each selector's name carries
    its number of self pairs.
    """
    _require(df, [selector_col, judge_col, *metrics], "selector_summary")
    extra = [c for c in extra if c in df.columns]
    order = list(pd.unique(df[selector_col]))
    judges = list(pd.unique(df[judge_col]))
    names = order
    if "n_pairs" in df:
        n = df.groupby(selector_col, sort=False)["n_pairs"].first().reindex(order)
        names = [f"{s}\nn={int(v)}" if pd.notna(v) else s for s, v in n.items()]
    k = len(metrics) + len(extra)
    fig = Figure(figsize=(3.0 * k, 3.5 if "n_pairs" in df else 3.3))
    axes = fig.subplots(1, k, squeeze=False)[0]
    sns = _sns()
    cell = df.set_index([selector_col, judge_col])
    for ax, m in zip(axes, metrics):
        sns.barplot(data=df, x=selector_col, y=m, hue=judge_col, order=order, hue_order=judges, ax=ax)
        if {f"{m}_lo", f"{m}_hi"} <= set(df.columns):
            for j, bars in zip(judges, ax.containers):
                for s, bar in zip(order, bars):
                    if (s, j) not in cell.index or pd.isna(cell.loc[(s, j), f"{m}_lo"]):
                        continue
                    v, lo, hi = (float(cell.loc[(s, j), c]) for c in (m, f"{m}_lo", f"{m}_hi"))
                    ax.errorbar(bar.get_x() + bar.get_width() / 2, v, yerr=_yerr([v], [lo], [hi]), fmt="none",
                                ecolor="k", capsize=2, lw=0.8)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"{m} (pp)" + (", 95 % CI" if f"{m}_lo" in df.columns else ""))
        ax.set_ylabel("")
        ax.set_xticks(range(len(order)), names, fontsize=8)
        ax.set_xlabel("")
    per_sel = df.groupby(selector_col, sort=False).first().reindex(order) if extra else None
    for ax, m in zip(axes[len(metrics):], extra):
        scale = 100 if m == "d_wer" else 1
        v = per_sel[m].astype(float).to_numpy() * scale
        ax.bar(range(len(order)), v, color="0.5")
        if {f"{m}_lo", f"{m}_hi"} <= set(per_sel.columns):
            lo, hi = (per_sel[c].astype(float).to_numpy() * scale for c in (f"{m}_lo", f"{m}_hi"))
            ax.errorbar(range(len(order)), v, yerr=_yerr(v, lo, hi), fmt="none", ecolor="k", capsize=2, lw=0.8)
        ax.set_xticks(range(len(order)), names, fontsize=8)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title("ΔWER (pp)" if m == "d_wer" else (_nat_title(df) if m == "d_naturalness" else m))
    for ax in axes[1:len(metrics)]:
        if ax.get_legend():
            ax.get_legend().remove()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _nat_title(df: pd.DataFrame) -> str:
    """"Δnaturalness" with the number of scored pairs it rests on (``naturalness_n`` of esnlib.experiments.summarize)
    and "few clips" under esnlib.evaluation.MIN_NATURALNESS_N."""
    from .evaluation import MIN_NATURALNESS_N

    if "naturalness_n" not in df.columns or df["naturalness_n"].isna().all():
        return "Δnaturalness"
    lo, hi = int(df["naturalness_n"].min()), int(df["naturalness_n"].max())
    n = f"n={lo}" if lo == hi else f"n={lo}-{hi}"
    return f"Δnaturalness ({n}{', few clips' if lo < MIN_NATURALNESS_N else ''})"


def tradeoff(
    df: pd.DataFrame, x: str = "alpha", gain: str = "self", wer: str = "wer", hue: str | None = None,
    title: str | None = None,
) -> Figure:
    """Table 4 / Figure 7: emotion gain (pp, left axis) and WER (%, right axis) over α or intervention kind.

    ``df``: one row per x value (and ``hue`` group, e.g. judge) with ``gain`` in pp and ``wer`` as a fraction;
    WER does not depend on the judge, so it is read from the first row of each x value. Numeric x is drawn on a
    numeric axis, anything else as categories in table order. With the summary tables' CI columns the points carry
    their 95 % CIs: ``<gain>_lo``/``<gain>_hi`` on the gain, ``d_wer``/``d_wer_lo``/``d_wer_hi`` on WER (the CI of the
    change, placed on the steered WER: the baseline is shared); ``n_pairs`` goes into the legend.
    """
    _require(df, [x, gain, wer] + ([hue] if hue else []), "tradeoff")
    numeric = pd.api.types.is_numeric_dtype(df[x])
    cats = None if numeric else list(pd.unique(df[x]))
    has_ci = {f"{gain}_lo", f"{gain}_hi"} <= set(df.columns)

    def xs(s):
        return s.to_numpy(dtype=float) if numeric else np.array([cats.index(v) for v in s], dtype=float)

    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.add_subplot()
    groups = list(df.groupby(hue, sort=False)) if hue else [("gain", df)]
    span = (float(df[x].max() - df[x].min()) if numeric else len(cats) - 1) or 1.0
    for i, (name, g) in enumerate(groups):
        g = g.sort_values(x) if numeric else g
        label = f"{gain} ({name})" if hue else gain
        if "n_pairs" in g:
            n = sorted(set(g["n_pairs"].astype(int)))
            label += f", n={n[0]}" if len(n) == 1 else f", n={n[0]}-{n[-1]}"
        y = g[gain].to_numpy(dtype=float)
        (line,) = ax.plot(xs(g[x]), y, marker="o", label=label)
        if has_ci:  # groups side by side, so their bars do not hide each other
            dx = (i - (len(groups) - 1) / 2) * 0.015 * span
            err = _yerr(y, g[f"{gain}_lo"], g[f"{gain}_hi"])
            ax.errorbar(xs(g[x]) + dx, y, yerr=err, fmt="none", ecolor=line.get_color(), capsize=3, lw=1)
    w = df.drop_duplicates(x).sort_values(x) if numeric else df.drop_duplicates(x)
    ax2 = ax.twinx()
    wy = w[wer].to_numpy(dtype=float) * 100
    ax2.plot(xs(w[x]), wy, marker="s", ls="--", color="tab:red", label="WER")
    if {"d_wer", "d_wer_lo", "d_wer_hi"} <= set(w.columns):
        d = w["d_wer"].to_numpy(dtype=float)
        err = _yerr(d * 100, w["d_wer_lo"] * 100, w["d_wer_hi"] * 100)
        ax2.errorbar(xs(w[x]), wy, yerr=err, fmt="none", ecolor="tab:red", capsize=3, lw=1)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel({"alpha": "α", "rate": "r"}.get(x, x))
    if numeric and df[x].nunique() <= 8:  # the swept values themselves as ticks (a rate in %)
        ticks = sorted(df[x].unique())
        ax.set_xticks(ticks, [f"{100 * v:g} %" if x == "rate" else f"{v:g}" for v in ticks])
    ax.set_ylabel("Δ emotion match (pp)" + (", 95 % CI" if has_ci else ""))
    ax2.set_ylabel("WER (%)", color="tab:red")
    if not numeric:
        ax.set_xticks(range(len(cats)), [str(c) for c in cats])
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    # below the axes: inside, it would cover the CIs wherever they fall
    fig.legend(h1 + h2, l1 + l2, fontsize=8, loc="outside lower center", ncol=min(3, len(h1 + h2)), frameon=False)
    ax.set_title(title or "Emotion gain vs. content preservation")
    return fig


def layer_heatmap(counts: pd.DataFrame | Mapping[str, pd.DataFrame], title: str | None = None) -> Figure:
    """Figure 9: number of selected ESNs per layer (rows) and emotion (columns), one panel per model.

    ``counts``: an ``evaluation.layer_counts`` frame or a mapping panel title -> frame.
    """
    if isinstance(counts, pd.DataFrame):
        counts = {"": counts}
    if not counts or any(not isinstance(c, pd.DataFrame) or c.empty for c in counts.values()):
        raise ValueError("layer_heatmap: pass non-empty layer_counts frames.")
    n = len(counts)
    rows = max(len(c) for c in counts.values())
    fig = Figure(figsize=(2.6 * n + 0.8, max(3.0, 0.22 * rows + 1.2)))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, c) in zip(axes, counts.items()):
        c = c.copy()
        c.index = [" ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in c.index]
        _sns().heatmap(c.astype(float), ax=ax, cmap="viridis", annot=len(c) <= 40, fmt=".0f",
                       annot_kws={"fontsize": 6}, cbar_kws={"label": "ESN count"})
        ax.set_title(str(name))
        ax.set_xlabel("emotion")
        ax.set_ylabel("layer")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def seen_unseen(
    df: pd.DataFrame, emotion_col: str = "emotion", split_col: str = "split", value_col: str = "delta",
    low_col: str = "low", high_col: str = "high", title: str | None = None,
) -> Figure:
    """Figure 10: Δ emotion match (pp) per emotion for seen vs unseen speakers with CI error bars.

    ``df``: one row per (emotion, split) with the estimate and its CI bounds (e.g. from
    ``evaluation.paired_bootstrap_ci``, in pp); with an ``n`` column each split's n goes into the legend.
    """
    _require(df, [emotion_col, split_col, value_col, low_col, high_col], "seen_unseen")
    if ((df[low_col] > df[value_col]) | (df[high_col] < df[value_col])).any():
        raise ValueError("seen_unseen: every estimate must lie inside its [low, high] interval.")
    emos = _order(df[emotion_col])
    splits = list(pd.unique(df[split_col]))
    width = 0.8 / len(splits)
    fig = Figure(figsize=(1.3 * len(emos) + 2, 3.4))
    ax = fig.add_subplot()
    for i, s in enumerate(splits):
        g = df[df[split_col] == s].set_index(emotion_col).reindex(emos)
        pos = np.arange(len(emos)) - 0.4 + width * (i + 0.5)
        v = g[value_col].to_numpy(dtype=float)
        err = np.vstack([v - g[low_col].to_numpy(dtype=float), g[high_col].to_numpy(dtype=float) - v])
        label = str(s)
        if "n" in g and g["n"].notna().any():
            n = sorted(set(g["n"].dropna().astype(int)))
            label += f" (n={n[0]} per emotion)" if len(n) == 1 else f" (n={n[0]}-{n[-1]} per emotion)"
        ax.bar(pos, v, width, yerr=err, capsize=3, label=label)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(emos)), emos)
    ax.set_ylabel("Δ emotion match (pp)")
    ax.legend(fontsize=8)
    ax.set_title(title or "Seen vs. unseen speakers (95% CI)")
    fig.tight_layout()
    return fig


def winrate_bars(
    df: pd.DataFrame, emotion_col: str = "emotion", cols: Sequence[str] = ("win", "tie", "loss"),
    average: bool = True, title: str | None = None, n_col: str = "n",
) -> Figure:
    """Figure 8: stacked win / tie / loss bars (%) per emotion (and their average) of intervened vs baseline.

    ``df``: one row per emotion with counts or rates in ``cols``; each row is normalized to 100%. A row named
    ``"all"`` (``listening.winrate``'s pooled row) is drawn last, as "all (pooled)", instead of the unweighted
    ``average``; with an ``n_col`` column each bar's label carries its n (judgments).
    """
    _require(df, [emotion_col, *cols], "winrate_bars")
    t = df.set_index(emotion_col)[list(cols)].astype(float)
    if (t < 0).any().any() or (t.sum(axis=1) <= 0).any():
        raise ValueError("winrate_bars: win/tie/loss must be non-negative with a positive total per emotion.")
    t = t.div(t.sum(axis=1), axis=0) * 100
    t = t.reindex(_order([e for e in t.index if e != "all"]) + (["all"] if "all" in t.index else []))
    if average and "all" not in t.index:
        t.loc["average"] = t.mean()
    names = {"all": "all (pooled)"}
    if n_col in df:
        n = df.set_index(emotion_col)[n_col]
        names = {e: f"{names.get(e, e)} (n={int(n[e])})" for e in t.index if e in n.index}
    t.index = [names.get(e, e) for e in t.index]
    fig = Figure(figsize=(6.0, 0.5 * len(t) + 1.2))
    ax = fig.add_subplot()
    left = np.zeros(len(t))
    colors = {"win": "tab:green", "tie": "0.7", "loss": "tab:red"}
    for c in cols:
        v = t[c].to_numpy()
        bars = ax.barh(range(len(t)), v, left=left, label=c, color=colors.get(c))
        ax.bar_label(bars, labels=[f"{x:.0f}%" if x >= 5 else "" for x in v], label_type="center", fontsize=8)
        left += v
    ax.set_yticks(range(len(t)), list(t.index))
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of judgments (%)")
    ax.legend(ncols=len(cols), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    if title:
        ax.set_title(title, pad=24)
    fig.tight_layout()
    return fig


def mask_anatomy(mean_act: np.ndarray, emotions: Sequence[str], masks: Mapping[str, Mapping[str, Sequence[int]]],
                 n_background: int = 4000, seed: int = 0, title: str | None = None) -> Figure:
    """One panel per emotion e: every neuron's mean activation on e's success set (y) against its contrast, that
    minus its mean on the other emotions' sets (x); a random sample of all neurons in grey, each selector's mask
    for e on top. Where a selector's picks sit says what it ranks: contrast (how differently a neuron fires per
    emotion) or level (how strongly it fires, which is what steering x(1 + α) scales)."""
    from .validity import activation_contrast, checked_mean_act

    emotions = list(emotions)
    mean_act = checked_mean_act(mean_act, emotions, "mask_anatomy")
    rng = np.random.default_rng(seed)
    bg = rng.choice(mean_act.shape[1], size=min(n_background, mean_act.shape[1]), replace=False)
    contrasts = activation_contrast(mean_act)
    fig = Figure(figsize=(2.9 * len(emotions) + 0.6, 3.2))
    axes = fig.subplots(1, len(emotions), squeeze=False, sharey=True)[0]
    for k, (ax, e) in enumerate(zip(axes, emotions)):
        contrast = contrasts[k]
        ax.scatter(contrast[bg], mean_act[k, bg], s=2, c="0.75", label=f"all ({len(bg)} shown)", rasterized=True)
        for sel, by_e in masks.items():
            if e in by_e:
                ix = np.asarray(by_e[e], dtype=np.int64)
                ax.scatter(contrast[ix], mean_act[k, ix], s=5, alpha=0.7, label=f"{sel} ({len(ix)})")
        ax.axvline(0, color="k", lw=0.6)
        ax.set_yscale("symlog", linthresh=0.1)  # the activation levels span 0.01 to 10
        ax.set_title(e)
        ax.set_xlabel("contrast: own − others")
    axes[0].set_ylabel("mean activation on e's successes")
    axes[-1].legend(fontsize=7, markerscale=2, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def selector_validity(val: pd.DataFrame, title: str | None = None) -> Figure:
    """Notebook 09: each selector's ranking against single-neuron causal effects, per emotion — precision@N_sel
    with the chance level of a random pick of the same size (a black tick), and Spearman ρ with its 95 % CI
    (``spearman_lo`` / ``_hi`` when present); n (candidate neurons) in the panel titles. ``val``:
    ``validity.selector_validity``'s table."""
    _require(val, ["selector", "emotion", "precision", "chance", "spearman"], "selector_validity")
    sels, emos = list(pd.unique(val["selector"])), _order(val["emotion"])
    v = val.set_index(["selector", "emotion"])
    fig = Figure(figsize=(10, 3.9), layout="constrained")
    axes = fig.subplots(1, 2)
    width = 0.8 / len(emos)
    n = sorted(set(val["n_candidates"].astype(int))) if "n_candidates" in val else []
    n_txt = f"n = {n[0]} candidate neurons" if len(n) == 1 else "n = " + ", ".join(map(str, n))
    has_ci = {"spearman_lo", "spearman_hi"} <= set(val.columns)
    for j, e in enumerate(emos):
        x = np.arange(len(sels)) + (j - (len(emos) - 1) / 2) * width
        rows = v.reindex([(s_, e) for s_ in sels])
        bars = axes[0].bar(x, rows["precision"].to_numpy(dtype=float), width, label=e)
        axes[0].hlines(rows["chance"].to_numpy(dtype=float), x - width / 2, x + width / 2, colors="k", lw=1.5,
                       label="chance" if j == 0 else None)
        rho = rows["spearman"].to_numpy(dtype=float)
        axes[1].bar(x, rho, width, color=bars.patches[0].get_facecolor())
        if has_ci:
            axes[1].errorbar(x, rho, yerr=_yerr(rho, rows["spearman_lo"], rows["spearman_hi"]), fmt="none",
                             ecolor="k", capsize=2, lw=0.8)
    for ax, t in zip(axes, ("precision@N_sel vs the causal top set", "Spearman ρ(selector score, causal effect)"
                            + (", 95 % CI" if has_ci else ""))):
        for i, s_ in enumerate(sels):  # e.g. random: none of its neurons is a candidate, so nothing to rank
            if v.loc[s_, "precision"].isna().all() and v.loc[s_, "spearman"].isna().all():
                ax.text(i, 0.02, "no mask neuron\namong the\ncandidates", ha="center", va="bottom", fontsize=7,
                        transform=ax.get_xaxis_transform())
        ax.set_xticks(np.arange(len(sels)), sels)
        ax.set_title(f"{t}\n({n_txt} per emotion)" if n else t, fontsize=10)
        ax.set_xlabel("selector")
    axes[0].set_ylabel("precision")
    axes[1].set_ylabel("Spearman ρ")
    axes[1].axhline(0, color="k", lw=0.8)
    h, lab = axes[0].get_legend_handles_labels()
    fig.legend(h, lab, loc="outside lower center", ncol=len(h), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig
