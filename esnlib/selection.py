"""Stages 2-3 of the EVC paper (sections 3.2-3.3): success sets with cap c, activation probabilities P,
and the ESN selectors LAP, LAPE, MAD, CAS and the random control.

All selectors return one sorted ``int64`` array of flat neuron indices per emotion (row of ``P``).
Ranking ties are broken deterministically: a stable sort by score (descending), so among equal scores the
lower flat index wins.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

METHODS = ("LAP", "LAPE", "MAD", "CAS", "random")
TAU_WER = 0.15

__all__ = [
    "METHODS",
    "selector_scores",
    "TAU_WER",
    "success_sets",
    "is_success",
    "activation_probabilities",
    "probabilities_from_store",
    "select",
    "check_method",
    "check_rate",
    "n_selected",
    "masks_to_frame",
    "locate",
]


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: success filtering and capped success sets
# ----------------------------------------------------------------------------------------------------------------
def is_success(pred, target, wer, max_wer: float = TAU_WER) -> np.ndarray:
    """Success filter of section 3.2, vectorized: judge label == target AND WER <= tau_wer (0.15).

    A missing label (None/NaN, e.g. a judge failure) or a NaN WER is never a success.
    """
    pred = np.asarray(pred, dtype=object)
    target = np.asarray(target, dtype=object)
    wer = np.asarray(wer, dtype=float)
    if not (pred.shape == target.shape == wer.shape):
        raise ValueError(
            f"is_success: pred, target and wer must have the same shape, got {pred.shape}, {target.shape}, "
            f"{wer.shape}; pass one entry per generated sample."
        )
    if not (max_wer >= 0):
        raise ValueError(f"is_success: max_wer must be >= 0, got {max_wer}.")
    valid = np.array([isinstance(p, str) for p in pred.ravel()], dtype=bool).reshape(pred.shape)
    same = np.array([p == t for p, t in zip(pred.ravel(), target.ravel())], dtype=bool).reshape(pred.shape)
    with np.errstate(invalid="ignore"):
        ok_wer = wer <= max_wer  # NaN compares False
    return valid & same & ok_wer


def _priority(seed: int, emotion: str, ident: Any) -> str:
    # A per-item pseudo-random key: sorting by it is a uniform random order that does not depend on c
    # (nested sets) nor on which other items are in the pool.
    return hashlib.blake2b(f"{seed}\x1f{emotion}\x1f{ident}".encode(), digest_size=8).hexdigest()


def success_sets(
    df: pd.DataFrame,
    cap: int | None,
    seed: int = 0,
    target_col: str = "target",
    success_col: str = "success",
    id_col: str = "utt_id",
    emotions: Sequence[str] | None = None,
    allow_empty: bool = False,
) -> dict[str, list]:
    """Per target emotion, the ids of the successful rows (S_e), uniformly sampled down to ``cap`` (c).

    Sampling orders the successes by a seeded hash of (seed, emotion, id) and keeps the first c, so it is
    deterministic and nested: for the same seed the c=10 set is the first 10 entries of the c=20 set (a sweep
    over c adds evidence, it does not redraw it). Lists are returned in that draw order. ``cap=None`` keeps all.
    ``emotions`` defaults to the targets present in ``df``. An emotion with no success raises unless
    ``allow_empty`` (then its list is empty).
    """
    for col in (target_col, success_col, id_col):
        if col not in df.columns:
            raise KeyError(f"success_sets: column {col!r} not in the frame (columns: {list(df.columns)}).")
    if cap is not None and (int(cap) != cap or cap < 1):
        raise ValueError(f"success_sets: cap c must be a positive integer or None, got {cap!r}.")
    succ = df[success_col]
    if succ.isna().any():
        raise ValueError(
            f"success_sets: column {success_col!r} has {int(succ.isna().sum())} missing values; fill them "
            "(e.g. with is_success(...)) before building success sets."
        )
    succ = succ.astype(bool)
    if emotions is None:
        emotions = sorted(df[target_col].dropna().unique(), key=_emotion_order)
    out: dict[str, list] = {}
    for emo in emotions:
        rows = df[(df[target_col] == emo) & succ]
        ids = list(rows[id_col])
        dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique()
        if len(dup):
            raise ValueError(
                f"success_sets: emotion {emo!r} has duplicated ids {list(dup[:5])}; each id must name one "
                f"generated sample (filter the frame to one condition, or use a per-sample id column)."
            )
        if not ids and not allow_empty:
            n_rows = int((df[target_col] == emo).sum())
            raise ValueError(
                f"success_sets: no successful conversion for target emotion {emo!r} ({n_rows} attempts). "
                "Raise the identification pool (more utterances / samples) or relax the filter "
                "(e.g. a larger max_wer), or pass allow_empty=True."
            )
        ids.sort(key=lambda i: (_priority(seed, str(emo), i), str(i)))
        out[emo] = ids if cap is None else ids[: int(cap)]
    return out


def _emotion_order(e):
    from . import EMOTIONS

    return (EMOTIONS.index(e), "") if e in EMOTIONS else (len(EMOTIONS), str(e))


# ----------------------------------------------------------------------------------------------------------------
# Stage 3a: activation probabilities
# ----------------------------------------------------------------------------------------------------------------
def activation_probabilities(K, T) -> np.ndarray:
    """P = K / T (eq. 2-3): K (E, N) positive-activation counts, T (E, N) or (E,) counted positions."""
    K = np.asarray(K, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    if K.ndim != 2:
        raise ValueError(f"activation_probabilities: K must be 2-D (emotions, neurons), got shape {K.shape}.")
    if T.ndim == 1:
        if T.shape[0] != K.shape[0]:
            raise ValueError(f"activation_probabilities: T has {T.shape[0]} entries but K has {K.shape[0]} rows.")
        T = T[:, None]
    elif T.shape != K.shape:
        raise ValueError(f"activation_probabilities: T shape {T.shape} must be (E,) or K's shape {K.shape}.")
    if np.isnan(K).any() or np.isnan(T).any():
        raise ValueError("activation_probabilities: K or T contains NaN.")
    if (T <= 0).any():
        rows = sorted(set(np.nonzero((T <= 0).any(axis=1))[0].tolist()))
        raise ValueError(
            f"activation_probabilities: T == 0 (no counted positions) for emotion row(s) {rows}; the success "
            "set of that emotion is empty or produced no tokens (with stat_positions='generated' only the answer's "
            "tokens count, and a one-token answer counts none). Raise the pool or check the capture."
        )
    if (K < 0).any() or (K > T).any():
        raise ValueError("activation_probabilities: counts must satisfy 0 <= K <= T.")
    return K / T


def probabilities_from_store(store, groups: Mapping[str, Sequence[str]]) -> tuple[np.ndarray, list[str]]:
    """P (E, N) from a capture ``StatsStore``: for each emotion, aggregate K and T over its success-set ids.

    ``store`` needs ``index_of(ids) -> rows`` and ``aggregate(rows) -> (K (N,), T (N,))``. Emotions keep the
    order of ``groups``.
    """
    emotions = list(groups)
    if not emotions:
        raise ValueError("probabilities_from_store: groups is empty; pass {emotion: [sample ids]}.")
    Ks, Ts = [], []
    for emo in emotions:
        ids = list(groups[emo])
        if not ids:
            raise ValueError(
                f"probabilities_from_store: the success set of {emo!r} is empty; raise the identification pool "
                "or relax the success filter."
            )
        K, T = store.aggregate(store.index_of(ids))
        K, T = np.asarray(K), np.asarray(T)
        if K.ndim != 1:
            raise ValueError(f"probabilities_from_store: store.aggregate returned K of shape {K.shape}, expected (N,).")
        Ks.append(K)
        Ts.append(np.broadcast_to(T, K.shape))
    return activation_probabilities(np.stack(Ks), np.stack(Ts)), emotions


# ----------------------------------------------------------------------------------------------------------------
# Stage 3b: selectors
# ----------------------------------------------------------------------------------------------------------------
def n_selected(rate: float, n: int) -> int:
    """N_sel = floor(r * N) (rounded to 9 decimals first so that e.g. 0.29 * 100 gives 29, not 28)."""
    return int(math.floor(round(rate * n, 9)))


def check_method(method, where: str = "select") -> str:
    """The canonical name (one of METHODS) of a selector given in any case; a ValueError listing them otherwise."""
    key = {m.lower(): m for m in METHODS}.get(str(method).lower())
    if key is None:
        raise ValueError(f"{where}: unknown method {method!r}; valid methods are {list(METHODS)}.")
    return key


def check_rate(rate, where: str = "select") -> float:
    """``rate`` as a float if it is a number in (0, 1); a ValueError naming the problem otherwise (callers check it
    before generating anything)."""
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: rate r must be a number in (0, 1), got {rate!r} ({type(rate).__name__}); "
                         "pass e.g. rate=0.005 (a float, not a string).")
    if not (0 < rate < 1):
        raise ValueError(f"{where}: rate r must be in (0, 1), got {rate}.")
    return float(rate)


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest finite scores; ties go to the lower index (stable sort)."""
    finite = np.nonzero(np.isfinite(score))[0]
    order = np.argsort(-score[finite], kind="stable")
    return np.sort(finite[order[:k]]).astype(np.int64)


def _entropy(P: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each column of P normalized across emotions; NaN where the column is all zero."""
    s = P.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        Pt = P / s
        terms = np.where(Pt > 0, Pt * np.log(np.where(Pt > 0, Pt, 1.0)), 0.0)
    H = -terms.sum(axis=0)
    H[s == 0] = np.nan
    return H


def select(P, method: str, rate: float, seed: int = 0, lape_percentile: float = 95.0,
           emotions: Sequence[str] | None = None) -> list[np.ndarray]:
    """ESN masks from activation probabilities P (E, N): one sorted int64 array of flat indices per emotion.

    ``emotions`` (optional): the emotion of each row of P; a P whose row count differs is an error (a transposed
    P, N x E, is caught even without it: P may not have more rows than columns).

    N_sel = floor(r * N) per emotion. Methods (section 3.3.2):

    - ``LAP``: top N_sel by P[e].
    - ``LAPE``: P~ = P / sum_e P, H = -sum_e P~ log P~ (nats). A neuron with P == 0 for all emotions has an
      undefined entropy and is excluded. tau_p = numpy.percentile(P, lape_percentile) over all E*N values; a
      neuron is kept only if P > tau_p (strictly) for at least one emotion. The pool is the
      floor(min(1, 5r) N) lowest-entropy kept neurons; each mask is the top N_sel of the pool by P[e]. If the
      pool is smaller than N_sel, masks have fewer than N_sel neurons.
    - ``MAD``: |P[e] - mean_e P|, top N_sel.
    - ``CAS``: margin top1 - top2 across emotions, ranked only for the neuron's top emotion (-inf for the
      others). A neuron whose two largest P are equal has no unique top emotion and is never selected. A CAS
      mask therefore has fewer than N_sel neurons when fewer neurons have e as their top emotion: it is never
      padded with neurons of another emotion.
    - ``random``: one mask of N_sel neurons drawn uniformly without replacement (``seed``); the same indices
      for every emotion.

    Ties in any ranking go to the lower flat index (stable sort by score, descending).
    """
    scores = selector_scores(P, method, rate, seed, lape_percentile, emotions)
    n_sel = n_selected(rate, scores.shape[1])
    return [_top(row, n_sel) for row in scores]


def selector_scores(P, method: str, rate: float, seed: int = 0, lape_percentile: float = 95.0,
                    emotions: Sequence[str] | None = None) -> np.ndarray:
    """The ranking behind :func:`select`: scores (E, N), -inf where a neuron may not be chosen for that emotion;
    ``select(...)[e]`` is the top floor(rN) of row e (ties to the lower index). Notebook 09 needs the full ranking.

    Bad input is a ValueError naming the problem and the fix, raised before any work (see docs/errors.md)."""
    key = check_method(method)
    check_rate(rate)
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"select: P must be 2-D (emotions, neurons), got shape {P.shape}.")
    E, N = P.shape
    if E == 0:
        raise ValueError(f"select: P has no emotion rows (shape {P.shape}); build it with probabilities_from_store.")
    if N == 0:
        raise ValueError(f"select: P has no neurons (shape {P.shape}); were the sites empty when it was captured?")
    if emotions is not None and len(emotions) != E:
        hint = " (is P transposed? pass P.T)" if len(emotions) == N else ""
        raise ValueError(f"select: P has {E} rows but {len(emotions)} emotions were given{hint}; P is (emotions, "
                         "neurons), one row per emotion in the order of `emotions`.")
    if E > N:
        raise ValueError(f"select: P has more rows ({E}) than columns ({N}); P is (emotions, neurons), so it looks "
                         "transposed: pass P.T.")
    if np.isnan(P).any():
        raise ValueError(f"select: P contains {int(np.isnan(P).sum())} NaN values (an emotion with T == 0?).")
    if (P < 0).any() or (P > 1).any():
        raise ValueError("select: P must hold probabilities in [0, 1]; compute it with activation_probabilities(K, T).")
    if key in ("LAPE", "MAD", "CAS") and E < 2:
        raise ValueError(f"select: {key} compares emotions and needs at least 2 rows in P, got {E}.")
    if key != "random" and not P.any():
        raise ValueError(f"select: P is all zero (shape {P.shape}): no neuron was ever active, so {key} has nothing "
                         "to rank; check the capture (sites, counted positions) that produced K and T.")
    if not (0 <= lape_percentile <= 100):
        raise ValueError(f"select: lape_percentile must be in [0, 100], got {lape_percentile}.")
    n_sel = n_selected(rate, N)
    if n_sel == 0:
        raise ValueError(
            f"select: rate {rate} selects floor(r * N) = 0 of N = {N} neurons; the smallest rate that selects "
            f"one neuron is 1/N = {1.0 / N:.3g}."
        )

    if key == "LAP":
        return P.copy()
    if key == "MAD":
        return np.abs(P - P.mean(axis=0, keepdims=True))
    if key == "CAS":
        order = np.argsort(-P, axis=0, kind="stable")
        top_e = order[0]
        cols = np.arange(N)
        margin = P[top_e, cols] - P[order[1], cols]
        return np.stack([np.where((top_e == e) & (margin > 0), margin, -np.inf) for e in range(E)])
    if key == "LAPE":
        H = _entropy(P)
        tau_p = np.percentile(P, lape_percentile)
        kept = (P > tau_p).any(axis=0) & np.isfinite(H)
        n_cand = int(math.floor(round(min(1.0, 5 * rate) * N, 9)))
        pool = _top(np.where(kept, -H, -np.inf), n_cand)
        out = np.full((E, N), -np.inf)
        out[:, pool] = P[:, pool]
        return out
    rng = np.random.default_rng(seed)
    out = np.full((E, N), -np.inf)
    out[:, rng.choice(N, size=n_sel, replace=False)] = 1.0  # the same indices for every emotion
    return out


# ----------------------------------------------------------------------------------------------------------------
# Mask helpers
# ----------------------------------------------------------------------------------------------------------------
def locate(index, sites) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Map flat indices to (site position, side, layer, neuron within site) using each site's .offset/.width."""
    index = np.asarray(index, dtype=np.int64)
    offsets = np.array([s.offset for s in sites], dtype=np.int64)
    widths = np.array([s.width for s in sites], dtype=np.int64)
    order = np.argsort(offsets, kind="stable")
    pos = order[np.searchsorted(offsets[order], index, side="right") - 1]
    bad = (index < offsets.min()) | (index >= offsets[pos] + widths[pos]) if len(index) else np.zeros(0, bool)
    if np.any(bad):
        raise ValueError(
            f"flat index {int(index[bad][0])} lies outside every site (total N = {int((offsets + widths).max())}); "
            "were the masks selected with these sites?"
        )
    sides = np.array([sites[p].side for p in pos], dtype=object)
    layers = np.array([sites[p].layer for p in pos], dtype=np.int64)
    return pos, sides, layers, index - offsets[pos]


def masks_to_frame(masks: Sequence[np.ndarray], emotions: Sequence[str], sites=None) -> pd.DataFrame:
    """Tidy frame of masks, one row per selected neuron: emotion, index (+ side, layer, neuron if sites given)."""
    if len(masks) != len(emotions):
        raise ValueError(f"masks_to_frame: {len(masks)} masks but {len(emotions)} emotions.")
    frames = []
    for emo, m in zip(emotions, masks):
        m = np.asarray(m, dtype=np.int64)
        f = pd.DataFrame({"emotion": pd.Series([emo] * len(m), dtype=object), "index": m})
        if sites is not None:
            _, sides, layers, neuron = locate(m, sites)
            f["side"], f["layer"], f["neuron"] = sides, layers, neuron
        frames.append(f)
    return pd.concat(frames, ignore_index=True)
