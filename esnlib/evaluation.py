"""Stage 5 of the EVC paper (section 3.5): emotion match, WER, deltas, the e_mask x e_tgt effect table,
self/cross effect and gap, bootstrap CIs, and mask similarity (Jaccard, direct match, layer JSD; Table 5).

WER is a fraction in code (0.19, not 19%); effect tables are in percentage points (pp), as in the paper.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "normalize_text",
    "wer",
    "sample_wer",
    "emotion_match",
    "delta",
    "effect_table",
    "attach_cells",
    "self_cross",
    "CI",
    "bootstrap_ci",
    "paired_bootstrap_ci",
    "rate_ci",
    "jaccard",
    "direct_match",
    "layer_distribution",
    "jsd",
    "layer_counts",
    "MIN_NATURALNESS_N",
    "naturalness_note",
]


# ----------------------------------------------------------------------------------------------------------------
# Content preservation: WER after whisper normalization
# ----------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_text(s: str | None) -> str:
    """Whisper English normalization (lower case, punctuation, numbers, spellings). ``None`` -> ""."""
    if s is None:
        return ""
    if not isinstance(s, str):
        raise TypeError(f"normalize_text: expected a string, got {type(s).__name__}.")
    return " ".join(_normalizer()(s).split())


def _counts(refs: Sequence[str], hyps: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair (edits, reference words) after normalization; raises on an empty normalized reference."""
    import jiwer

    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"wer: {len(refs)} references but {len(hyps)} hypotheses.")
    if not refs:
        raise ValueError("wer: no pairs given.")
    edits = np.zeros(len(refs))
    words = np.zeros(len(refs))
    for i, (r, h) in enumerate(zip(refs, hyps)):
        if r is None:
            raise ValueError(f"wer: reference {i} is None; every sample needs its source transcript.")
        rn, hn = normalize_text(r), normalize_text(h)
        if not rn.split():
            raise ValueError(
                f"wer: reference {i} ({r!r}) is empty after normalization, so WER is undefined; drop that "
                "utterance or fix its transcript."
            )
        words[i] = len(rn.split())
        if not hn.split():
            edits[i] = words[i]  # every reference word deleted
            continue
        o = jiwer.process_words(rn, hn)
        edits[i] = o.substitutions + o.deletions + o.insertions
    return edits, words


def wer(refs: Sequence[str], hyps: Sequence[str | None]) -> float:
    """Corpus-level WER (total edits / total reference words) after whisper normalization; can exceed 1.0.

    A ``None`` or empty hypothesis counts as all reference words deleted. An empty normalized reference raises.
    """
    edits, words = _counts(refs, hyps)
    return float(edits.sum() / words.sum())


def sample_wer(ref: str, hyp: str | None) -> float:
    """WER of one sample (edits / reference words) after whisper normalization; can exceed 1.0."""
    edits, words = _counts([ref], [hyp])
    return float(edits[0] / words[0])


# ----------------------------------------------------------------------------------------------------------------
# Emotion shift
# ----------------------------------------------------------------------------------------------------------------
def _match(pred, target) -> np.ndarray:
    pred = np.asarray(pred, dtype=object).ravel()
    target = np.asarray(target, dtype=object).ravel()
    if target.size == 1 and pred.size != 1:
        target = np.repeat(target, pred.size)
    if pred.shape != target.shape:
        raise ValueError(f"emotion_match: {pred.size} predictions but {target.size} targets.")
    return np.array([isinstance(p, str) and p == t for p, t in zip(pred, target)], dtype=bool)


def emotion_match(pred, target) -> float:
    """Emotion match rate: the fraction of samples whose predicted label equals the target (a fraction in
    [0, 1]). ``target`` may be one label for all. A missing prediction (None/NaN) counts as a miss."""
    m = _match(pred, target)
    if m.size == 0:
        raise ValueError("emotion_match: no samples.")
    return float(m.mean())


def delta(value, baseline):
    """Change relative to the baseline: ``value - baseline`` (scalars, arrays or pandas objects alike)."""
    return value - baseline


def effect_table(
    df: pd.DataFrame,
    baseline: pd.DataFrame,
    judge_col: str,
    mask_col: str = "mask_emotion",
    target_col: str = "target",
    id_col: str = "utt_id",
    emotions: Sequence[str] | None = None,
    scale: float = 100.0,
) -> pd.DataFrame:
    """The e_mask x e_tgt table of Δ emotion match (pp) of an intervention relative to the unintervened baseline.

    ``df``: one row per intervened sample with columns ``id_col`` (utterance), ``target_col`` (instructed
    e_tgt), ``mask_col`` (e_mask whose ESNs were edited) and ``judge_col`` (that judge's predicted label).
    ``baseline``: one row per unintervened sample with ``id_col``, ``target_col`` and ``judge_col``.
    Cell (e_mask, e_tgt) = scale * (match rate of the intervened samples in that cell - match rate of the
    baseline on exactly the same (utt_id, e_tgt) pairs). Both frames must hold a single condition (one row per
    key); a missing prediction counts as a miss. Rows: e_mask, columns: e_tgt, both in ``emotions`` order
    (default: the labels present, in esnlib.EMOTIONS order; labels outside ``emotions`` are dropped). Cells
    without samples are NaN. Each cell's n, paired bootstrap 95 % CI (over sources: one pair a source in a cell)
    and exact McNemar p ride along in ``attrs["cells"]`` (:func:`attach_cells`; drawn by ``plots.effect_heatmaps``).
    """
    for name, frame, cols in (
        ("df", df, (id_col, target_col, mask_col, judge_col)),
        ("baseline", baseline, (id_col, target_col, judge_col)),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise KeyError(f"effect_table: {name} lacks columns {missing} (has {list(frame.columns)}).")
    if df.duplicated([id_col, target_col, mask_col]).any():
        raise ValueError(
            "effect_table: df has several rows for the same (utt_id, target, mask_emotion); filter it to one "
            "condition (selector, r, c, alpha, kind, ...) first."
        )
    if baseline.duplicated([id_col, target_col]).any():
        raise ValueError("effect_table: baseline has several rows for the same (utt_id, target); filter it first.")
    base = baseline[[id_col, target_col, judge_col]].rename(columns={judge_col: "_base_pred"})
    merged = df[[id_col, target_col, mask_col, judge_col]].merge(base, on=[id_col, target_col], how="left",
                                                                 indicator=True)
    lost = merged["_merge"] != "both"
    if lost.any():
        ex = merged.loc[lost, [id_col, target_col]].head(3).to_dict("records")
        raise ValueError(
            f"effect_table: {int(lost.sum())} intervened samples have no baseline sample (e.g. {ex}); run the "
            "baseline on the same utterances and targets."
        )
    merged["_d"] = _match(merged[judge_col], merged[target_col]).astype(float) - _match(
        merged["_base_pred"], merged[target_col]
    ).astype(float)
    groups = merged.groupby([mask_col, target_col])
    table = groups["_d"].mean().unstack(target_col) * scale
    cells = []
    for (e_mask, e_tgt), g in groups:
        d = g["_d"].to_numpy()
        ci = clustered_mean_ci(d, g[id_col].to_numpy())
        cells.append({"e_mask": e_mask, "e_tgt": e_tgt, "delta": scale * ci.estimate, "low": scale * ci.low,
                      "high": scale * ci.high, "n": len(g), "mcnemar_p": mcnemar_p(d > 0, d < 0)})
    if emotions is None:
        from .selection import _emotion_order

        rows = sorted(table.index, key=_emotion_order)
        cols = sorted(table.columns, key=_emotion_order)
    else:
        rows = cols = list(emotions)
    table = table.reindex(index=rows, columns=cols)
    table.index.name, table.columns.name = "e_mask", "e_tgt"
    return attach_cells(table, pd.DataFrame(cells, columns=["e_mask", "e_tgt", "delta", "low", "high", "n",
                                                           "mcnemar_p"]))


def attach_cells(table: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``cells`` in ``table.attrs["cells"]``: a long frame, one row per cell, keyed by the table's
    index and column names (e.g. e_mask, e_tgt), with ``delta`` (the cell's value), ``n`` (its samples) and, where
    known, ``low`` / ``high`` (its 95 % CI) and ``mcnemar_p`` (the exact paired test of its change; for changes that
    are not 0/1, the sign test on them). ``plots.effect_heatmaps`` draws them while they still describe the table's
    values (a table rescaled or edited afterwards is drawn without them)."""
    keys = [table.index.name, table.columns.name]
    missing = [c for c in (*keys, "delta", "n") if c not in cells.columns]
    if missing:
        raise KeyError(f"attach_cells: cells lack columns {missing} (has {list(cells.columns)}); they are keyed by "
                       f"the table's index and column names {keys}.")
    table.attrs["cells"] = cells.reset_index(drop=True)
    return table


def self_cross(table: pd.DataFrame) -> dict[str, float]:
    """Self effect (mean of cells with e_mask == e_tgt), cross effect (mean of the other cells) and
    gap = self - cross, from an ``effect_table``. NaN cells are ignored."""
    t = table.to_numpy(dtype=float)
    diag = np.array([[r == c for c in table.columns] for r in table.index], dtype=bool)
    if not diag.any():
        raise ValueError("self_cross: no row label equals a column label; is this an e_mask x e_tgt table?")
    s = float(np.nanmean(t[diag])) if np.isfinite(t[diag]).any() else float("nan")
    off = t[~diag]
    c = float(np.nanmean(off)) if np.isfinite(off).any() else float("nan")
    return {"self": s, "cross": c, "gap": s - c}


# ----------------------------------------------------------------------------------------------------------------
# Uncertainty
# ----------------------------------------------------------------------------------------------------------------
class CI(NamedTuple):
    """A point estimate with a percentile bootstrap interval."""

    estimate: float
    low: float
    high: float


def _boot_stat(stat: Callable, x: np.ndarray) -> np.ndarray:
    try:
        out = np.asarray(stat(x, axis=1), dtype=float)
        if out.shape == (x.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([stat(row) for row in x], dtype=float)


def _check_boot(n: int, n_boot: int, level: float):
    if n == 0:
        raise ValueError("bootstrap_ci: no values.")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci: n_boot must be >= 1, got {n_boot}.")
    if not (0 < level < 1):
        raise ValueError(f"bootstrap_ci: level must be in (0, 1), got {level}.")


def bootstrap_ci(values, stat: Callable = np.mean, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> CI:
    """Percentile bootstrap CI of ``stat(values)`` (values resampled with replacement)."""
    x = np.asarray(values, dtype=float).ravel()
    _check_boot(x.size, n_boot, level)
    rng = np.random.default_rng(seed)
    boots = _boot_stat(stat, x[rng.integers(0, x.size, size=(n_boot, x.size))])
    a = (1 - level) / 2
    return CI(float(stat(x)), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)))


def rate_ci(match, clusters=None, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> CI:
    """A match rate (a proportion, 0-1) with its CI: the Wilson score interval when the samples are independent
    (``clusters`` None, or one sample per cluster: a Table 2 cell, one conversion per source), else
    :func:`clustered_mean_ci`, which resamples whole clusters (the "avg" cell: a source converted to every e_tgt
    counts once)."""
    from statistics import NormalDist

    m = np.asarray(match, dtype=float).ravel()
    if m.size == 0:
        raise ValueError("rate_ci: no samples.")
    if not (0 < level < 1):
        raise ValueError(f"rate_ci: level must be in (0, 1), got {level}.")
    if clusters is not None and len(pd.unique(np.asarray(clusters))) < m.size:
        return clustered_mean_ci(m, clusters, n_boot, level, seed)
    p, n = float(m.mean()), m.size
    z = NormalDist().inv_cdf(0.5 + level / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = float(max(0.0, centre - half)), float(min(1.0, centre + half))
    return CI(p, 0.0 if p == 0 else lo, 1.0 if p == 1 else hi)


def paired_bootstrap_ci(
    treated, baseline, stat: Callable = np.mean, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> CI:
    """CI of Δ = stat(treated) - stat(baseline) for two conditions on the same utterances.

    Entry i of both arrays belongs to the same utterance; utterances are resampled (the same indices for both
    conditions), which keeps the pairing and gives tighter intervals than independent resampling.
    """
    t = np.asarray(treated, dtype=float).ravel()
    b = np.asarray(baseline, dtype=float).ravel()
    if t.shape != b.shape:
        raise ValueError(f"paired_bootstrap_ci: {t.size} treated vs {b.size} baseline values; they must be paired.")
    _check_boot(t.size, n_boot, level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, t.size, size=(n_boot, t.size))
    boots = _boot_stat(stat, t[idx]) - _boot_stat(stat, b[idx])
    a = (1 - level) / 2
    return CI(float(stat(t) - stat(b)), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)))


def mcnemar_p(treated, baseline) -> float:
    """Exact (binomial) McNemar p-value for paired 0/1 outcomes: are treated-only and baseline-only successes
    equally likely? 1.0 when no pair is discordant."""
    from scipy.stats import binomtest

    t = np.asarray(treated, dtype=bool).ravel()
    b = np.asarray(baseline, dtype=bool).ravel()
    n01, n10 = int((t & ~b).sum()), int((~t & b).sum())
    return 1.0 if n01 + n10 == 0 else float(binomtest(min(n01, n10), n01 + n10, 0.5).pvalue)


def clustered_mean_ci(diffs, clusters, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> CI:
    """Mean of paired differences with a cluster bootstrap CI: whole clusters (source utterances, which appear under
    several e_tgt / e_mask) are resampled, so pairs that share a source are not counted as independent."""
    d = np.asarray(diffs, dtype=float).ravel()
    if d.size == 0:
        return CI(float("nan"), float("nan"), float("nan"))
    _, cl = np.unique(np.asarray(clusters).ravel(), return_inverse=True)
    k = int(cl.max()) + 1
    sums, counts = np.bincount(cl, d, k), np.bincount(cl, None, k).astype(float)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = (w @ sums) / (w @ counts)
    a = (1 - level) / 2
    return CI(float(d.mean()), float(np.nanquantile(boots, a)), float(np.nanquantile(boots, 1 - a)))


def paired_effects(pairs: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Self / cross / gap of Δ emotion match (pp) with 95 % cluster-bootstrap CIs, McNemar's p for the self pairs, and
    the Δ of the judge's posterior of e_tgt (pp), from paired rows.

    ``pairs``: one row per (source, e_tgt, e_mask) with ``utt_id``, ``target`` (e_tgt), ``mask_emotion`` (e_mask),
    ``match`` / ``match_base`` (0/1) and optionally ``post`` / ``post_base`` (posterior of e_tgt). Self pairs are
    those with e_mask == e_tgt. ``n_pairs`` counts the self pairs (the diagonal), ``n_cross_pairs`` the others.
    """
    d = pairs["match"].astype(float).to_numpy() - pairs["match_base"].astype(float).to_numpy()
    is_self = (pairs["mask_emotion"] == pairs["target"]).to_numpy()
    utt = pairs["utt_id"].to_numpy()
    out: dict[str, float] = {}
    ci = clustered_mean_ci(d[is_self], utt[is_self], n_boot, seed=seed)
    out.update(self=100 * ci.estimate, self_lo=100 * ci.low, self_hi=100 * ci.high)
    ci = clustered_mean_ci(d[~is_self], utt[~is_self], n_boot, seed=seed)
    out.update(cross=100 * ci.estimate, cross_lo=100 * ci.low, cross_hi=100 * ci.high)
    out["gap"] = out["self"] - out["cross"] if (~is_self).any() else float("nan")
    out["n_pairs"], out["n_cross_pairs"] = int(is_self.sum()), int((~is_self).sum())
    out["mcnemar_p"] = mcnemar_p(pairs["match"].to_numpy()[is_self], pairs["match_base"].to_numpy()[is_self])
    if "post" in pairs and pairs["post"].notna().any():
        dp = pairs["post"].astype(float).to_numpy() - pairs["post_base"].astype(float).to_numpy()
        ok = is_self & np.isfinite(dp)
        ci = clustered_mean_ci(dp[ok], utt[ok], n_boot, seed=seed)
        out.update(d_post=100 * ci.estimate, d_post_lo=100 * ci.low, d_post_hi=100 * ci.high)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Mask similarity (Table 5) and layer distributions (Figure 9)
# ----------------------------------------------------------------------------------------------------------------
def _as_set(m) -> set:
    return set(np.asarray(m, dtype=np.int64).ravel().tolist())


def jaccard(a, b) -> float:
    """|A ∩ B| / |A ∪ B| of two masks (flat indices)."""
    A, B = _as_set(a), _as_set(b)
    if not A and not B:
        raise ValueError("jaccard: both masks are empty; similarity is undefined.")
    return len(A & B) / len(A | B)


def direct_match(a, b) -> float:
    """Direct match rate |A ∩ B| / |A|: the fraction of mask A's neurons also in B.

    For masks of equal size (the paper's case, both of N_sel neurons) DM = 2J / (1 + J) with J the Jaccard
    index; Table 5 is consistent with it (J = 0.217 -> DM = 0.3566, reported 35.71%).
    """
    A, B = _as_set(a), _as_set(b)
    if not A:
        raise ValueError("direct_match: mask A is empty; the rate is undefined.")
    return len(A & B) / len(A)


def layer_distribution(mask, sites, normalize: bool = True) -> np.ndarray:
    """Neurons of ``mask`` per site (one site = one hooked layer), in ``sites`` order; fractions if normalize."""
    from .selection import locate

    pos = locate(mask, sites)[0]
    counts = np.bincount(pos, minlength=len(sites)).astype(float)
    if normalize:
        if counts.sum() == 0:
            raise ValueError("layer_distribution: the mask is empty; there is no distribution to normalize.")
        counts /= counts.sum()
    return counts


def jsd(p, q) -> float:
    """Jensen-Shannon divergence in bits (base 2, so 0 <= JSD <= 1) between two distributions.

    Inputs are normalized to sum 1. Equals ``scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2``.
    """
    p = np.asarray(p, dtype=float).ravel()
    q = np.asarray(q, dtype=float).ravel()
    if p.shape != q.shape:
        raise ValueError(f"jsd: distributions have different lengths {p.size} and {q.size}.")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("jsd: inputs must be non-negative with a positive sum.")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x):
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def layer_counts(masks: Sequence, emotions: Sequence[str], sites) -> pd.DataFrame:
    """ESN count per layer (rows) and emotion (columns), Figure 9. Rows are indexed by ``layer`` when all
    sites are on one side, else by (side, layer); every site appears, also with zero neurons."""
    if len(masks) != len(emotions):
        raise ValueError(f"layer_counts: {len(masks)} masks but {len(emotions)} emotions.")
    data = {e: layer_distribution(m, sites, normalize=False).astype(np.int64) for e, m in zip(emotions, masks)}
    sides = [s.side for s in sites]
    if len(set(sides)) == 1:
        index = pd.Index([s.layer for s in sites], name="layer")
    else:
        index = pd.MultiIndex.from_tuples([(s.side, s.layer) for s in sites], names=["side", "layer"])
    out = pd.DataFrame(data, index=index)
    out.columns.name = "emotion"
    return out


#: below this many scored clips (or pairs) a naturalness value is marked "few clips" next to the number
MIN_NATURALNESS_N = 30


def naturalness_note(scored: pd.DataFrame, unit: str = "clip") -> str:
    """What a naturalness value rests on, for the column next to it: "" from MIN_NATURALNESS_N scored clips (or
    pairs) on, else e.g. "(n=2 clips of 1 source, few clips)" (sources: distinct ``utt_id``), "(no clip scored)"."""
    n = len(scored)
    if n >= MIN_NATURALNESS_N:
        return ""
    if n == 0:
        return f"(no {unit} scored)"
    k = scored["utt_id"].nunique() if "utt_id" in scored.columns else None
    of = "" if k is None else f" of {k} source{'s' if k != 1 else ''}"
    return f"(n={n} {unit}{'s' if n != 1 else ''}{of}, few clips)"
