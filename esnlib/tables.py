"""Stage 5 as tables: the numbers of the papers' tables from stored rows (pure functions of frames, no model).

EVC: :func:`baseline_table` (Table 2), :func:`label_distribution`, :func:`effect_tables` (e_mask x e_tgt),
:func:`summarize` (self / cross / gap with CIs, ΔWER, Δnaturalness), :func:`effect_ci`, :func:`effect_pairs`. SER:
:func:`ser_effect_table`, :func:`ser_effect_ci`, :func:`ser_self_other`. Output: :func:`save_table` (CSV and LaTeX),
:func:`export_rows` and :func:`export_ser_rows` (the per-sample rows under the paper's names, ``PAPER_NAMES``),
:func:`audio_pairs`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .constants import EMOTIONS, PAPER_NAMES, TARGET_EMOTIONS
from .evaluation import naturalness_note, rate_ci
from .fsutil import atomic_write_bytes
from .world import MAX_WER

def judge_names(rows: pd.DataFrame) -> list[str]:
    """Judges present in a frame of EVC rows (from the pred_<judge> columns)."""
    return [c[len("pred_"):] for c in rows.columns if c.startswith("pred_")]


def baseline_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 2: per e_tgt (and 'avg') the emotion match rate (%) per judge, WER (%) and naturalness, with the number
    of clips the naturalness rests on (``naturalness_n``) and a note where that is under MIN_NATURALNESS_N; then each
    match rate's 95 % CI (``match_<judge>_lo (%)`` / ``_hi``, :func:`esnlib.evaluation.rate_ci`: Wilson per e_tgt,
    a bootstrap over sources for 'avg', where each source is converted to every e_tgt)."""
    judges = judge_names(rows)
    out = []
    for tgt, g in list(rows.groupby("target", sort=False)) + [("avg", rows)]:
        rec = {"e_tgt": tgt, "n": len(g)}
        for j in judges:
            rec[f"match_{j} (%)"] = 100.0 * float((g[f"pred_{j}"] == g["target"]).mean())
        rec["WER (%)"] = 100.0 * float(g["wer"].mean())
        rec["naturalness"] = float(g["naturalness"].mean())  # pandas skips NaN (unscored rows)
        scored = g[g["naturalness"].notna()]
        rec["naturalness_n"], rec["naturalness_note"] = len(scored), naturalness_note(scored, "clip")
        clusters = g["utt_id"] if "utt_id" in g else None
        for j in judges:
            ci = rate_ci(g[f"pred_{j}"] == g["target"], clusters)
            rec[f"match_{j}_lo (%)"], rec[f"match_{j}_hi (%)"] = 100.0 * ci.low, 100.0 * ci.high
        out.append(rec)
    order = {e: i for i, e in enumerate(EMOTIONS)}
    df = pd.DataFrame(out)
    df["_o"] = df["e_tgt"].map(lambda e: order.get(e, 99))
    return df.sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)


def label_distribution(rows: pd.DataFrame) -> pd.DataFrame:
    """Predicted-label distribution (%) per judge and e_tgt (the neutral bias of Table 2's discussion)."""
    recs = []
    for j in judge_names(rows):
        for tgt, g in rows.groupby("target"):
            vc = g[f"pred_{j}"].fillna("none").value_counts(normalize=True) * 100
            for lab, pct in vc.items():
                recs.append({"judge": j, "e_tgt": tgt, "label": lab, "percent": float(pct)})
    return pd.DataFrame(recs)


def effect_tables(rows: pd.DataFrame, base: pd.DataFrame, targets: Sequence[str] = TARGET_EMOTIONS) -> dict:
    """judge -> the e_mask x e_tgt table of Δ emotion match (pp) of ``rows`` against the baseline ``base``."""
    return {j: _effect(rows, base, j, targets) for j in judge_names(rows)}


def _effect(rows, base, judge, targets):
    from .evaluation import effect_table

    cols = ["utt_id", "target", "mask_emotion", f"pred_{judge}"]
    b = base[["utt_id", "target", f"pred_{judge}"]].drop_duplicates(["utt_id", "target"])
    return effect_table(rows[cols], b, f"pred_{judge}", emotions=list(targets))


def effect_pairs(rows: pd.DataFrame, base: pd.DataFrame, judge: str) -> pd.DataFrame:
    """Intervened rows joined to the unintervened baseline of the same (source, e_tgt): one row per (source, e_tgt,
    e_mask) with match / match_base, post / post_base (the judge's posterior of e_tgt) and wer / wer_base."""
    keys = ["utt_id", "target"]
    cols = keys + [c for c in (f"pred_{judge}", f"post_{judge}", "wer") if c in base.columns]
    b = base.drop_duplicates(keys)[cols]
    m = rows.merge(b, on=keys, suffixes=("", "_b"))
    out = pd.DataFrame({"utt_id": m["utt_id"], "target": m["target"], "mask_emotion": m["mask_emotion"],
                        "match": (m[f"pred_{judge}"] == m["target"]).astype(int),
                        "match_base": (m[f"pred_{judge}_b"] == m["target"]).astype(int),
                        "wer": m["wer"], "wer_base": m["wer_b"]})
    if f"post_{judge}" in m.columns and f"post_{judge}_b" in m.columns:
        out["post"], out["post_base"] = m[f"post_{judge}"].astype(float), m[f"post_{judge}_b"].astype(float)
    return out


def summarize(rows: pd.DataFrame, base: pd.DataFrame, targets: Sequence[str] = TARGET_EMOTIONS, max_wer: float = MAX_WER,
              **labels) -> pd.DataFrame:
    """Per judge: self / cross / gap of Δ emotion match (pp) with 95 % cluster-bootstrap CIs over source utterances
    (``self_lo`` .. ``cross_hi``), ``n_pairs`` (self pairs, the diagonal) and ``n_cross_pairs``, McNemar's p of the
    self pairs, Δ posterior of e_tgt (``d_post``, pp, with CI), the self-effect on the text-preserving pairs only
    (both WERs <= ``max_wer``: ``self_textok`` with CI and ``n_textok``), plus ΔWER (fraction) and Δnaturalness over
    every pair (self and cross), each with the same cluster-bootstrap CI (``d_wer_lo`` .. ``d_naturalness_hi``;
    ``naturalness_n``: the pairs where both sides were scored, and its note) and the intervened WER (fraction).

    ``labels`` (e.g. selector="CAS", alpha=1.0) are added as columns so several summaries concatenate into a table.
    """
    from .evaluation import clustered_mean_ci, paired_effects

    keys = ["utt_id", "target"]
    rows = rows[rows["target"].isin(targets)]
    b = base.drop_duplicates(keys).set_index(keys)
    r = rows.set_index(keys)
    wer_pairs = (r["wer"] - b["wer"].reindex(r.index)).dropna()
    nat_pairs = (r["naturalness"] - b["naturalness"].reindex(r.index)).dropna()
    # the same cluster bootstrap over source utterances as the match effects
    w_ci, n_ci = (clustered_mean_ci(x.to_numpy(float), x.index.get_level_values("utt_id"))
                  for x in (wer_pairs, nat_pairs))
    d_wer, d_nat = w_ci.estimate, n_ci.estimate
    nat_note = naturalness_note(nat_pairs.reset_index(), "pair")
    recs = []
    for j in judge_names(rows):
        pairs = effect_pairs(rows, base, j)
        eff = paired_effects(pairs)
        ok = (pairs["mask_emotion"] == pairs["target"]) & (pairs["wer"] <= max_wer) & (pairs["wer_base"] <= max_wer)
        tk = clustered_mean_ci((pairs["match"] - pairs["match_base"])[ok].to_numpy(float), pairs["utt_id"][ok])
        recs.append({**labels, "judge": j, **eff, "self_textok": 100 * tk.estimate, "self_textok_lo": 100 * tk.low,
                     "self_textok_hi": 100 * tk.high, "n_textok": int(ok.sum()), "d_wer": d_wer,
                     "d_wer_lo": w_ci.low, "d_wer_hi": w_ci.high, "d_naturalness": d_nat,
                     "d_naturalness_lo": n_ci.low, "d_naturalness_hi": n_ci.high,
                     "naturalness_n": len(nat_pairs), "naturalness_note": nat_note,
                     "wer": float(r["wer"].mean())})
    return pd.DataFrame(recs)


def effect_ci(rows: pd.DataFrame, base: pd.DataFrame, judge: str, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Self-effect per e_tgt (rows with e_mask == e_tgt) with a paired bootstrap 95% CI over source utterances
    (pp), McNemar's p and the Δ posterior of e_tgt (pp)."""
    from .evaluation import paired_effects

    pairs = effect_pairs(rows[rows["mask_emotion"] == rows["target"]], base, judge)
    out = []
    for tgt, g in pairs.groupby("target"):
        e = paired_effects(g, n_boot=n_boot, seed=seed)
        out.append({"emotion": tgt, "delta": e["self"], "low": e["self_lo"], "high": e["self_hi"],
                    "n": e["n_pairs"], "mcnemar_p": e["mcnemar_p"], "d_post": e.get("d_post", float("nan")),
                    "d_post_lo": e.get("d_post_lo", float("nan")), "d_post_hi": e.get("d_post_hi", float("nan"))})
    return pd.DataFrame(out)


#: condition columns a frame may lack (a baseline has no mask): their values in the exported rows
_ROW_DEFAULTS = (("selector", "none"), ("mask_emotion", "none"), ("kind", "none"), ("alpha", 0.0),
                 ("rate", float("nan")), ("cap", float("nan")))


def _filled(frames: Sequence[pd.DataFrame]):
    """Copies of the non-empty frames with every condition column of :data:`_ROW_DEFAULTS` (selector ``none`` where
    missing or NaN)."""
    for df in frames:
        if df is None or df.empty:
            continue
        df = df.copy()
        for col, default in _ROW_DEFAULTS:
            if col not in df.columns:
                df[col] = default
        df["selector"] = df["selector"].fillna("none")
        yield df


def _write_rows(parts: list[pd.DataFrame], name: str, figures_dir, columns=None) -> Path:
    out = Path(figures_dir) / "tables" / f"{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    atomic_write_bytes(out, data.to_csv(index=False).encode())
    return out


def export_rows(frames: Sequence[pd.DataFrame], name: str, figures_dir: str | Path = "figures") -> Path:
    """The tidy per-sample rows a notebook's tables were computed from, one row per (sample, judge), as
    ``<figures_dir>/tables/<name>.csv``: sample_id, utt_id (source), speaker, split, e_tgt, selector, e_mask, kind,
    alpha, r, c, judge, pred, post (posterior of e_tgt), match, wer, naturalness. Baseline rows have selector
    ``none``. Anyone can recompute every table from it. Columns carry the paper's names (``PAPER_NAMES``)."""
    P = PAPER_NAMES
    parts = []
    for df in _filled(frames):
        for j in judge_names(df):
            parts.append(pd.DataFrame({
                "sample_id": df["sample_id"], "utt_id": df["utt_id"], "speaker": df["speaker"], "split": df["split"],
                P["target"]: df["target"], "selector": df["selector"],
                P["mask_emotion"]: df["mask_emotion"], "kind": df["kind"], "alpha": df["alpha"],
                P["rate"]: df["rate"], P["cap"]: df["cap"], "judge": j,
                "pred": df[f"pred_{j}"], "post": df.get(f"post_{j}", pd.Series(np.nan, index=df.index)),
                "match": df[f"pred_{j}"] == df["target"], "wer": df["wer"], "naturalness": df["naturalness"]}))
    return _write_rows(parts, name, figures_dir)


def export_ser_rows(frames: Sequence[pd.DataFrame], name: str, figures_dir: str | Path = "figures") -> Path:
    """:func:`export_rows` for SER (notebook 08): one row per (item, condition) as ``<figures_dir>/tables/<name>.csv``:
    sample_id, utt_id, speaker, split, emotion (the true label), selector, e_mask, kind, alpha, r, pred, correct.
    Baseline rows have selector ``none``; the deactivation and Δ-predicted tables are recomputed from them."""
    P = PAPER_NAMES
    cols = ["sample_id", "utt_id", "speaker", "split", "emotion", "selector", P["mask_emotion"], "kind", "alpha",
            P["rate"], "pred", "correct"]
    parts = [df.rename(columns={"mask_emotion": P["mask_emotion"], "rate": P["rate"]})[cols] for df in _filled(frames)]
    return _write_rows(parts, name, figures_dir, cols)


def ser_effect_table(rows: pd.DataFrame, base: pd.DataFrame, measure: str = "accuracy") -> pd.DataFrame:
    """e_mask x true-emotion table (pp) against the SER baseline on the same utterances.

    measure="accuracy": Δ recall of each true emotion (deactivation: self cells should drop most).
    measure="predicted": Δ share of items predicted as e_mask (amplification: self-steering toward e_mask).
    Each cell's n (items), paired bootstrap 95 % CI over items and exact McNemar p ride along in
    ``attrs["cells"]`` (``evaluation.attach_cells``; drawn by ``plots.effect_heatmaps``).
    """
    if measure not in ("accuracy", "predicted"):
        raise ValueError(f"measure must be 'accuracy' or 'predicted', got {measure!r}")
    return cell_table(_ser_cells(rows, base, measure), "e_mask", "emotion")


def cell_table(cells: pd.DataFrame, index: str, columns: str, value: str = "delta") -> pd.DataFrame:
    """The wide ``index`` x ``columns`` table of ``value`` from a long per-cell table (e.g. ``ser_effect_ci``'s,
    ``ser_label_free``'s), carrying the cells' ``n`` and, where present, ``low`` / ``high`` and ``mcnemar_p`` for
    ``plots.effect_heatmaps`` (``evaluation.attach_cells``)."""
    from .evaluation import attach_cells

    missing = [c for c in (index, columns, value, "n") if c not in cells.columns]
    if missing:
        raise KeyError(f"cell_table: cells lack columns {missing} (has {list(cells.columns)}).")

    def order(labels):  # emotions in esnlib.EMOTIONS order, other labels (strategies, ...) as they come
        labels = list(pd.unique(labels))
        return [e for e in EMOTIONS if e in labels] + [x for x in labels if x not in EMOTIONS]

    t = cells.pivot(index=index, columns=columns, values=value)
    t = t.reindex(index=order(cells[index]), columns=order(cells[columns]))
    keep = [c for c in ("low", "high", "n", "mcnemar_p") if c in cells.columns]
    return attach_cells(t, cells[[index, columns, *keep]].assign(delta=cells[value]))


def ser_effect_ci(rows: pd.DataFrame, base: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The long companion of :func:`ser_effect_table` (accuracy): per (e_mask, true emotion) Δ recall (pp) with a
    paired bootstrap 95 % CI over items, n and McNemar's p."""
    lost = sorted(set(rows["utt_id"]) - set(base["utt_id"]))
    if lost:
        raise KeyError(f"ser_effect_ci: {len(lost)} items have no baseline row (e.g. {lost[:3]}); run the SER "
                       "baseline on the same items.")
    c = _ser_cells(rows, base, "accuracy", n_boot, seed)
    return c.assign(delta=c["mean_diff"])[["e_mask", "emotion", "delta", "low", "high", "n", "mcnemar_p"]]


def _ser_cells(rows, base, measure, n_boot=2000, seed=0) -> pd.DataFrame:
    """Per (e_mask, true emotion): the change of the item's hit (its true emotion for ``accuracy``, e_mask for
    ``predicted``) against the baseline of the same items, pp: ``delta`` (difference of the two rates, the tables'
    value) and ``mean_diff`` (mean paired change, the CI's estimate: the same number to float rounding), ``low`` /
    ``high`` (bootstrap over items), ``n`` and McNemar's p. An item without a baseline row counts as a baseline
    miss."""
    from .evaluation import clustered_mean_ci, mcnemar_p

    b = base.drop_duplicates("utt_id").set_index("utt_id")["pred"]
    recs = []
    for (e_mask, emo), g in rows.groupby(["mask_emotion", "emotion"]):
        label = emo if measure == "accuracy" else e_mask
        hit, hit_base = (g["pred"] == label).to_numpy(), (b.reindex(g["utt_id"]) == label).to_numpy()
        ci = clustered_mean_ci(hit.astype(float) - hit_base, g["utt_id"].to_numpy(), n_boot, seed=seed)
        recs.append({"e_mask": e_mask, "emotion": emo, "delta": 100.0 * float(hit.mean() - hit_base.mean()),
                     "mean_diff": 100 * ci.estimate, "low": 100 * ci.low, "high": 100 * ci.high, "n": len(g),
                     "mcnemar_p": mcnemar_p(hit, hit_base)})
    return pd.DataFrame(recs)


def ser_self_other(rows: pd.DataFrame, base: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean Δ recall (pp) of each mask's own emotion ("self", items whose true emotion is e_mask) and of the other
    emotions ("other"), with 95 % cluster-bootstrap CIs over items."""
    from .evaluation import clustered_mean_ci

    b = base.drop_duplicates("utt_id").set_index("utt_id")
    d = (rows["pred"] == rows["emotion"]).astype(float).to_numpy() - \
        (b.loc[rows["utt_id"], "pred"].to_numpy() == rows["emotion"].to_numpy()).astype(float)
    own = (rows["mask_emotion"] == rows["emotion"]).to_numpy()
    out = {}
    for name, sel in (("self", own), ("other", ~own)):
        ci = clustered_mean_ci(d[sel], rows["utt_id"].to_numpy()[sel], n_boot, seed=seed)
        out.update({name: 100 * ci.estimate, f"{name}_lo": 100 * ci.low, f"{name}_hi": 100 * ci.high,
                    f"n_{name}": int(sel.sum())})
    return out


def save_table(df: pd.DataFrame, name: str, figures_dir: str | Path = "figures", latex: bool = True,
               float_format: str = "%.4g") -> list[Path]:
    """Write a result table as CSV (full precision: it is data) and LaTeX (``float_format``, 4 significant
    digits so small rates such as r = 0.004 survive) under ``<figures_dir>/tables/``."""
    out = Path(figures_dir) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.csv"]
    df.to_csv(paths[0])
    if latex:
        paths.append(out / f"{name}.tex")
        paths[-1].write_text(df.to_latex(float_format=lambda v: float_format % v, na_rep="--"), encoding="utf-8")
    return paths


def audio_pairs(base: pd.DataFrame, rows: pd.DataFrame, k: int = 2, self_only: bool = True) -> pd.DataFrame:
    """Up to ``k`` (baseline, intervened) sample pairs that both kept their waveform, for listening in notebooks."""
    b = base[base["audio_path"].astype(str) != ""][["sample_id", "target", "hyp", "audio_path"]]
    r = rows[rows["audio_path"].astype(str) != ""]
    if self_only and "mask_emotion" in r.columns:
        r = r[r["mask_emotion"] == r["target"]]
    m = r[["sample_id", "mask_emotion", "hyp", "audio_path"]].merge(b, on="sample_id", suffixes=("", "_base"))
    return m.drop_duplicates("sample_id").head(k).reset_index(drop=True)
