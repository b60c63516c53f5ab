"""Selector validity (notebook 09): do the selectors pick the neurons that causally move the emotion?

On the demo LALM each candidate neuron (:func:`candidate_neurons`) is ablated alone and its effect on the talker's
:func:`emotion_score` measured (:func:`causal_effects`); :func:`selector_validity` scores each selector's ranking
against those effects (precision@N_sel with ties split evenly, Spearman ρ).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .constants import TARGET_EMOTIONS
from .progress import tqdm
from .runs import _read_unit
from .selection import selector_scores
from .world import DEMO_RATE, SELECTORS, World, fingerprint

def emotion_score(prosody: Mapping[str, float], emotion: str) -> float:
    """How far a rendered prosody lies along the neutral -> ``emotion`` profile direction (0 = neutral, 1 = the
    full profile), fields standardized by the corpus jitter (``tts.to_vector``). A continuous stand-in for "probability
    of the target emotion" that needs no judge (demo world only: the demo talker's prosody)."""
    from . import tts

    d = tts.to_vector(tts.PROFILES[emotion]).astype(float)
    return float(tts.to_vector(prosody) @ d / (d @ d))


def _prosody_of(g) -> dict:
    pros = (g.extra or {}).get("prosody")
    if pros is None:
        raise ValueError("selector validity needs the demo talker's prosody (Generation.extra['prosody']); this "
                         "model does not expose it — notebook 09 runs on the demo LALM only")
    return pros if isinstance(pros, dict) else pros.as_dict()


def causal_effects(world: World, candidates: Sequence[int], targets: Sequence[str] = TARGET_EMOTIONS,
                   split: str = "DEVELOPMENT", n: int = 8, kind: str = "deactivate", alpha: float = 0.0,
                   scope: str = "lm") -> pd.DataFrame:
    """Per-neuron causal effect on the demo model: ablate each candidate neuron alone and measure the drop in
    :func:`emotion_score` of the talker's prosody for each instructed e_tgt, against the unintervened run.

    Returns rows neuron, e_tgt, effect (mean over the ``n`` utterances of score(base) - score(ablated); positive =
    the neuron supports that emotion). Cached in the store (table "causal") one unit per neuron.
    """
    from . import Intervention

    utts = world.split(split, n)
    src = [u for u in utts for _ in targets]
    tgt = [t for _ in utts for t in targets]
    cond0 = {**world.base_condition("evc-causal", scope), "eval_split": split, "n": len(utts),
             "utts": fingerprint([u.id for u in utts]), "targets": ",".join(targets), "kind": kind,
             "alpha": float(alpha)}

    def run(index):
        cond = {**cond0, "neuron": int(index) if index is not None else -1}
        if world.store.has("causal", cond):
            return _read_unit(world, "causal", cond)
        iv = None if index is None else Intervention(index=np.array([index], dtype=np.int64), kind=kind, alpha=alpha)
        gens = world.adapter.evc(src, tgt, intervention=iv, scope=scope, batch_size=world.batch_size)
        df = pd.DataFrame({"utt_id": [u.id for u in src], "target": tgt,
                           "score": [emotion_score(_prosody_of(g), t) for g, t in zip(gens, tgt)]})
        world.store.write("causal", cond, df)
        return _read_unit(world, "causal", cond)

    base = run(None).set_index(["utt_id", "target"])["score"]
    recs = []
    for idx in tqdm(list(candidates), desc="ablating candidates", disable=not world.progress):
        s = run(int(idx)).set_index(["utt_id", "target"])["score"]
        d = (base - s.reindex(base.index)).groupby(level="target").mean()
        for t in targets:
            recs.append({"neuron": int(idx), "e_tgt": t, "effect": float(d[t])})
    return pd.DataFrame(recs)


def selector_validity(P: np.ndarray, emotions: Sequence[str], causal: pd.DataFrame, rate: float = DEMO_RATE,
                      selectors: Sequence[str] = SELECTORS, seed: int = 0,
                      extra: Mapping[str, tuple[np.ndarray, Sequence[np.ndarray]]] | None = None) -> pd.DataFrame:
    """Precision@N_sel and Spearman ρ of each selector's ranking against the measured causal effects.

    Over the candidate neurons of ``causal``: the causal top set of e = the N_sel candidates with the largest effect
    on e (N_sel = the selector's own mask size for e, capped by the number of candidates); precision@N_sel = share
    of the selector's mask (restricted to candidates) inside it, ties split evenly; ``chance`` = the precision of a
    random pick; ρ = Spearman correlation between the selector's score and the effect over all candidates (-inf
    scores tie at the bottom; NaN when either side is constant), with its 95 % CI (``spearman_lo`` / ``_hi``:
    Fisher's z with Fieller et al.'s standard error for Spearman's ρ, sqrt(1.06 / (n - 3))) and ``n_candidates``
    (n). ``extra``: rankings that do not come from P,
    name -> (scores (E, N), masks per emotion), e.g. ``{"ATTR": (ms.scores, [ms.masks[e] for e in emotions])}``.
    """
    from scipy.stats import spearmanr

    from .selection import select

    cand = np.array(sorted(causal["neuron"].unique()), dtype=np.int64)
    recs = []
    rankings = [(sel, selector_scores(P, sel, rate, seed), select(P, sel, rate, seed=seed)) for sel in selectors]
    rankings += [(name, np.asarray(sc, dtype=np.float64), list(ms)) for name, (sc, ms) in (extra or {}).items()]
    for sel, scores, masks in rankings:
        for e_i, e in enumerate(emotions):
            eff = causal[causal["e_tgt"] == e].set_index("neuron")["effect"].reindex(cand).to_numpy()
            sc = scores[e_i, cand]
            sc = np.where(np.isfinite(sc), sc, np.nanmin(np.where(np.isfinite(sc), sc, np.nan)) - 1
                          if np.isfinite(sc).any() else 0.0)
            in_mask = np.isin(cand, masks[e_i])
            k = int(in_mask.sum())
            prec = _precision_with_ties(eff, in_mask) if k else float("nan")
            rho = float(spearmanr(sc, eff).statistic) if np.ptp(sc) > 0 and np.ptp(eff) > 0 else float("nan")
            lo, hi = spearman_ci(rho, len(cand))
            recs.append({"selector": sel, "emotion": e, "n_in_candidates": k, "precision": prec,
                         "chance": k / len(cand), "spearman": rho,
                         "mean_effect_of_mask": float(np.mean(eff[in_mask])) if k else float("nan"),
                         "spearman_lo": lo, "spearman_hi": hi, "n_candidates": len(cand)})
    return pd.DataFrame(recs)


def spearman_ci(rho: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """CI of a Spearman ρ from n pairs: Fisher's z, atanh(ρ) ± z_level · sqrt(1.06 / (n - 3)) (Fieller, Hartley and
    Pearson 1957, the usual standard error for Spearman's ρ), mapped back; NaN when ρ is NaN or n < 4."""
    from statistics import NormalDist

    if not np.isfinite(rho) or n < 4:
        return float("nan"), float("nan")
    if abs(rho) >= 1:  # a perfect ranking: z is infinite, the interval collapses onto it
        return float(rho), float(rho)
    z, half = np.arctanh(rho), NormalDist().inv_cdf(0.5 + level / 2) * np.sqrt(1.06 / (n - 3))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def _precision_with_ties(eff: np.ndarray, in_mask: np.ndarray) -> float:
    """Share of the mask inside the causal top-k (k = mask size), ties at the k-th value split evenly (the expected
    precision under random tie-breaking: all-equal effects give the chance level k / n, not an artefact of order)."""
    k = int(in_mask.sum())
    order = np.sort(eff)[::-1]
    theta = order[k - 1]
    above = eff > theta
    at = eff == theta
    slots = k - int(above.sum())
    credit = above[in_mask].sum() + at[in_mask].sum() * (slots / at.sum())
    return float(credit / k)


def candidate_neurons(P: np.ndarray, rate: float = DEMO_RATE, selectors: Sequence[str] = SELECTORS,
                      n_random: int = 0, seed: int = 0, per_emotion: int | None = None,
                      extra_scores: Sequence[np.ndarray] = ()) -> np.ndarray:
    """The union of every selector's masks (optionally only the ``per_emotion`` top-scored of each) plus
    ``n_random`` uniformly drawn neurons, so the candidate pool is not made only of selector picks.
    ``extra_scores``: (E, N) rankings not computed from P (ATTR's scores); their ``per_emotion`` top join the pool."""
    from .selection import _top, n_selected, select

    picks = []
    for sc in extra_scores:
        picks += [_top(np.asarray(row, dtype=np.float64), per_emotion or n_selected(rate, len(row))) for row in sc]
    for sel in selectors:
        if sel == "random":
            continue
        if per_emotion is None:
            picks += [np.asarray(m) for m in select(P, sel, rate, seed=seed)]
        else:
            sc = selector_scores(P, sel, rate, seed)
            for row in sc:
                fin = np.nonzero(np.isfinite(row))[0]
                picks.append(fin[np.argsort(-row[fin], kind="stable")[:per_emotion]])
    cand = np.unique(np.concatenate(picks)) if picks else np.array([], dtype=np.int64)
    if n_random:
        rng = np.random.default_rng(seed + 1)
        rest = np.setdiff1d(np.arange(P.shape[1]), cand)
        cand = np.union1d(cand, rng.choice(rest, size=min(n_random, len(rest)), replace=False))
    return cand.astype(np.int64)


def checked_mean_act(mean_act, emotions: Sequence[str], who: str) -> np.ndarray:
    """``mean_act`` as float64 after checking it is (E, N) with one row per emotion and E >= 2 (a contrast needs
    others), or a ValueError naming ``who``."""
    mean_act = np.asarray(mean_act, dtype=np.float64)
    if mean_act.ndim != 2 or mean_act.shape[0] != len(emotions) or len(emotions) < 2:
        raise ValueError(f"{who}: mean_act must be (E, N) with E = {len(emotions)} >= 2 emotions, got "
                         f"{mean_act.shape}")
    return mean_act


def activation_contrast(mean_act: np.ndarray) -> np.ndarray:
    """(E, N): each emotion's mean activation minus the mean of the other emotions' (what the paper's selectors look
    for, in activation rather than probability)."""
    mean_act = np.asarray(mean_act, dtype=np.float64)
    return np.stack([mean_act[k] - np.delete(mean_act, k, axis=0).mean(0) for k in range(len(mean_act))])


def contrast_masks(mean_act: np.ndarray, emotions: Sequence[str], rate: float) -> dict[str, np.ndarray]:
    """e -> the floor(r * N) neurons with the largest :func:`activation_contrast` for e (ties to the lower index).

    Not one of the paper's selectors: a diagnostic that ranks by how much *more strongly* a neuron fires for e (level
    included), where LAP, LAPE, MAD and CAS rank how much more *often* it fires (P = K / T)."""
    from .attribution import select_top

    contrast = activation_contrast(checked_mean_act(mean_act, emotions, "contrast_masks"))
    return dict(zip(emotions, select_top(contrast, rate, who="contrast_masks")))


def mask_anatomy(masks: Mapping[str, Mapping[str, Sequence[int]]], mean_act: np.ndarray, emotions: Sequence[str],
                 attribution: np.ndarray | None = None) -> pd.DataFrame:
    """What the neurons of each selector's masks do, per (selector, e_mask): why a mask does or does not steer.

    ``masks``: selector -> e -> flat neuron indices; ``mean_act``: (E, N) mean gate activation over each emotion's
    success set (:func:`esnlib.identification.success_activations`); ``attribution``: ATTR's (E, N) scores over the
    same sets, or None. Columns: ``act_own`` mean activation of the mask's neurons on e's set, ``act_others`` on the
    other emotions' sets, ``contrast`` their difference (what the paper's selectors look for), ``abs_act_all`` mean
    |activation| of all N neurons on e's set (the scale), and ``d_score_per_alpha`` = the sum of the mask's
    attributions for e: the first-order change of the talker's emotion score (1 = the full profile) per unit α of
    steering x(1 + α). Steering scales an activation, so a mask of rarely-but-weakly firing neurons moves little.
    """
    emotions = list(emotions)
    mean_act = np.asarray(mean_act, dtype=np.float64)
    if mean_act.shape[0] != len(emotions):
        raise ValueError(f"mask_anatomy: mean_act has {mean_act.shape[0]} rows for {len(emotions)} emotions")
    if attribution is not None and np.shape(attribution) != mean_act.shape:
        raise ValueError(f"mask_anatomy: attribution {np.shape(attribution)} and mean_act {mean_act.shape} differ")
    contrast = activation_contrast(mean_act)
    recs = []
    for sel, by_e in masks.items():
        for e, ix in by_e.items():
            if e not in emotions:
                raise KeyError(f"mask_anatomy: {sel}'s mask {e!r} has no success set; emotions: {emotions}")
            k = emotions.index(e)
            ix = np.asarray(ix, dtype=np.int64)
            others = np.delete(mean_act, k, axis=0)[:, ix].mean(0)
            own = mean_act[k, ix]
            recs.append({"selector": sel, "e_mask": e, "n": len(ix), "act_own": float(own.mean()),
                         "act_others": float(others.mean()), "contrast": float(contrast[k, ix].mean()),
                         "abs_act_all": float(np.abs(mean_act[k]).mean()),
                         "d_score_per_alpha": (float(np.asarray(attribution)[k, ix].sum())
                                               if attribution is not None else float("nan"))})
    return pd.DataFrame(recs)
