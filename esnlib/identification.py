"""Stages 1-3 of the papers: identification generations with capture -> success filter -> cap c -> P -> masks.

:func:`identify` (EVC: the judge says e_tgt and WER <= τ_wer, or a human filter for CAS-H) and :func:`identify_ser`
(SER: the LALM recognizes the true emotion) make their identification generations once, with the per-sample
statistics in a StatsStore; every (selector, r, c, judge) then re-aggregates those statistics and never regenerates.
For a model with a talker, one capture pass serves LM-side and talker-side identification. A :class:`MaskSet` is the
result; :func:`mask_similarity` compares two of them (Table 5).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .constants import EMOTIONS, TARGET_EMOTIONS
from .runs import baseline, ser_baseline
from .world import DEMO_RATE, MAX_WER, PAPER_CAP, World

@dataclass
class MaskSet:
    """ESN masks per e_mask plus how they were identified.

    masks: e_mask -> sorted flat indices over ``world.sites(scope)``; n_success: |S_e| after the cap c;
    n_success_all: |S_e| before the cap; P: activation probabilities (E, N) in ``emotions`` order; scores: for ATTR,
    the attribution scores (E, N) the masks are the top of (None for the activation selectors, whose ranking is
    ``selection.selector_scores(P, ...)``).
    """

    masks: dict[str, np.ndarray]
    selector: str
    rate: float
    cap: int | None
    filter_judge: str
    scope: str = "lm"
    seed: int = 0
    n_success: dict[str, int] = field(default_factory=dict)
    n_success_all: dict[str, int] = field(default_factory=dict)
    P: np.ndarray | None = field(default=None, repr=False)
    emotions: tuple[str, ...] = ()
    source: str = ""
    scores: np.ndarray | None = field(default=None, repr=False)  # ATTR: the (E, N) ranking behind the masks

    def condition(self) -> dict:
        return {"selector": self.selector, "rate": float(self.rate), "cap": int(self.cap) if self.cap else 0,
                "filter_judge": self.filter_judge, "scope": self.scope, "seed": int(self.seed),
                "mask_source": self.source}

    def frame(self, sites=None) -> pd.DataFrame:
        from .selection import masks_to_frame

        emos = list(self.masks)
        return masks_to_frame([self.masks[e] for e in emos], emos, sites)

    def sizes(self) -> dict[str, int]:
        return {e: int(len(m)) for e, m in self.masks.items()}


def success_frame(world: World, rows: pd.DataFrame, filter_judge: str | None = None, max_wer: float = MAX_WER,
                  human: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows with a ``success`` column: the judge says e_tgt AND WER <= τ_wer (section 3.2).

    ``human``: a frame with utt_id, target, human_success (esnlib.listening.read_filter_answers) replaces the judge
    (CAS-H); rows without a human answer are not successes.
    """
    from .selection import is_success

    rows = rows.copy()
    if human is not None:
        h = human[["utt_id", "target", "human_success"]]
        rows = rows.merge(h, on=["utt_id", "target"], how="left")
        hs = rows["human_success"].fillna(False).astype(bool).to_numpy()
        rows["success"] = hs & (rows["wer"].to_numpy() <= max_wer)
        return rows
    judge = filter_judge or next(iter(world.judges))
    col = f"pred_{judge}"
    if col not in rows.columns:
        raise KeyError(f"no predictions of judge {judge!r} in the rows; loaded judges: {list(world.judges)}")
    pred = rows[col].where(rows[col].notna(), None).to_numpy(dtype=object)
    rows["success"] = is_success(pred, rows["target"].to_numpy(dtype=object), rows["wer"].to_numpy(dtype=float),
                                 max_wer)
    return rows


def identify(
    world: World,
    selector: str = "CAS",
    rate: float = DEMO_RATE,
    cap: int | None = PAPER_CAP,
    filter_judge: str | None = None,
    scope: str = "lm",
    seed: int = 0,
    n: int | None = None,
    targets: Sequence[str] = TARGET_EMOTIONS,
    max_wer: float = MAX_WER,
    human: pd.DataFrame | None = None,
) -> MaskSet:
    """Stages 1-3: identification baseline with capture -> success filter -> cap c -> P -> selector masks.

    The identification generations are made once (cached with their statistics); every (selector, r, c, judge)
    re-aggregates the stored per-sample statistics, never regenerating. ``selector="ATTR"`` (not one of the paper's)
    ranks by activation x gradient of the model's emotion read-out over the same success sets
    (:mod:`esnlib.attribution`; the demo LALM only).
    """
    from .selection import check_rate, probabilities_from_store

    selector = _checked_selector(world, selector, "identify")
    check_rate(rate, "identify")  # before generating anything
    rows, store, groups, all_sets, judge = _success_groups(world, scope, n, targets, filter_judge, max_wer, human,
                                                           cap, seed)
    P, emos = probabilities_from_store(store, groups)
    masks, A = _select(world, selector, P, emos, groups, rows, rate, seed, scope, "evc")
    return MaskSet(masks=dict(zip(emos, masks)), selector=selector, rate=rate, cap=cap,
                   filter_judge="human" if human is not None else judge, scope=scope, seed=seed,
                   n_success={e: len(g) for e, g in groups.items()},
                   n_success_all={e: len(g) for e, g in all_sets.items()}, P=P, emotions=tuple(emos),
                   source=world.corpus, scores=A)


def _success_groups(world: World, scope: str, n: int | None, targets: Sequence[str], filter_judge: str | None,
                    max_wer: float, human: pd.DataFrame | None, cap: int | None, seed: int):
    """Stages 1-2 of :func:`identify`: (rows with ``success``, the statistics store, the capped success sets
    e -> sample ids, the uncapped ones, the filter judge). A bad ``human`` frame is an error before generating."""
    from .selection import success_sets

    if human is not None:
        _check_human(world, human, n, targets)
    rows, store = _identification_rows(world, "evc", scope, lambda sc: baseline(
        world, "IDENTIFICATION", n=n, targets=targets, capture=True, scope=sc))
    judge = filter_judge or next(iter(world.judges))
    rows = success_frame(world, rows, judge, max_wer, human)
    all_sets = success_sets(rows, None, seed=seed, id_col="sample_id", emotions=list(targets), allow_empty=True)
    return rows, store, _nonempty_groups(all_sets, cap, "EVC identification"), all_sets, judge


def success_activations(world: World, cap: int | None = PAPER_CAP, filter_judge: str | None = None, scope: str = "lm",
                        seed: int = 0, n: int | None = None, targets: Sequence[str] = TARGET_EMOTIONS,
                        max_wer: float = MAX_WER, human: pd.DataFrame | None = None) -> tuple[np.ndarray, list[str]]:
    """Mean gate activation (E, N) of every neuron over each emotion's capped success set: the same sets and stored
    statistics :func:`identify` ranks (nothing is generated again), in emotion order. The paper's selectors rank how
    *often* a neuron fires per emotion (P); this says how *strongly*, which is what steering x(1 + alpha) scales."""
    _, store, groups, _, _ = _success_groups(world, scope, n, targets, filter_judge, max_wer, human, cap, seed)
    means = [np.asarray(store.moments(store.index_of(list(ids)))[0]) for ids in groups.values()]
    return np.stack(means), list(groups)


def _checked_selector(world: World, selector: str, where: str) -> str:
    """The selector, checked before anything is generated (ATTR, in any case, comes back as "ATTR", once the model is
    known to have gradients; the paper's names come back as given)."""
    from .attribution import ATTR, canonical_selector, check_supported

    if canonical_selector(selector, where) != ATTR:
        return selector
    check_supported(world, where)
    return ATTR


def _select(world: World, selector: str, P: np.ndarray, emos: list[str], groups: dict, rows: pd.DataFrame,
            rate: float, seed: int, scope: str, task: str) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Stage 3 for either kind of selector: the masks per emotion of ``emos``, and ATTR's (E, N) scores (None for
    the paper's selectors, which rank P)."""
    from .attribution import ATTR, attribution_scores, select_top
    from .selection import select

    if selector != ATTR:
        return select(P, selector, rate, seed=seed, emotions=emos), None
    A, emos_a = attribution_scores(world, groups, rows, scope, task=task)
    assert list(emos_a) == list(emos), (emos_a, emos)
    return select_top(A, rate), A


def _check_human(world: World, human: pd.DataFrame, n: int | None, targets: Sequence[str]) -> None:
    """A human filter (CAS-H) must rate this world's identification conversions: checked before generating."""
    lacking = [c for c in ("utt_id", "target", "human_success") if c not in getattr(human, "columns", [])]
    if lacking:
        raise ValueError(f"human filter lacks column(s) {lacking}; pass esnlib.listening.read_filter_file(path) or "
                         "read_filter_answers(...) (utt_id, target, human_success)")
    ids = {(u.id, t) for u in world.split("IDENTIFICATION", n) for t in targets}
    rated = set(zip(human["utt_id"].astype(str), human["target"].astype(str)))
    if not ids & rated:
        raise ValueError(f"the human filter rates none of the {len(ids)} identification conversions (utt_id, e_tgt) of "
                         f"corpus {world.corpus!r}: it must come from a filter-mode listening test on this corpus's "
                         "IDENTIFICATION outputs (X.identification_clips -> listening.export_filter_test; "
                         "docs/listening_test.md)")


def identification_clips(world: World, n: int | None = None, targets: Sequence[str] = TARGET_EMOTIONS,
                         scope: str = "lm") -> pd.DataFrame:
    """The identification conversions that kept their waveform (``utt_id, target, audio_path, wer`` ...): the clips
    for a filter-mode listening test whose answers become a CAS-H filter file. Only kept waveforms can be rated:
    build the world with ``audio_per_shard=shard_size`` to keep every one (before the identification run)."""
    rows, _ = _identification_rows(world, "evc", scope, lambda sc: baseline(
        world, "IDENTIFICATION", n=n, targets=targets, capture=True, scope=sc))
    return rows[rows["audio_path"].astype(str) != ""].reset_index(drop=True)


def mask_similarity(ma: MaskSet, mb: MaskSet, sites) -> pd.DataFrame:
    """Table 5: per emotion both mask sets have, Jaccard overlap, direct match and the JSD of the layer
    distributions (``sites``: the masks' sites, e.g. ``world.sites("lm")``)."""
    from .evaluation import direct_match, jaccard, jsd, layer_distribution

    return pd.DataFrame([{"emotion": e, "jaccard": jaccard(ma.masks[e], mb.masks[e]),
                          "direct_match": direct_match(ma.masks[e], mb.masks[e]),
                          "jsd": jsd(layer_distribution(ma.masks[e], sites), layer_distribution(mb.masks[e], sites))}
                         for e in ma.masks if e in mb.masks])


def _nonempty_groups(all_sets: dict, cap: int | None, what: str) -> dict:
    """Success sets capped at c; an emotion without any success gets no mask (warned), at least two must remain."""
    import warnings

    empty = [e for e, ids in all_sets.items() if not ids]
    groups = {e: (ids[: int(cap)] if cap else ids) for e, ids in all_sets.items() if ids}
    if empty:
        warnings.warn(f"{what}: no successful sample for {empty}; these emotions get no ESN mask (raise the "
                      "identification pool or check the model/judge)")
    if len(groups) < 2:
        raise ValueError(f"{what}: only {list(groups)} have successful samples (sizes "
                         f"{ {e: len(v) for e, v in all_sets.items()} }); selectors compare emotions and need at "
                         "least two. Raise the identification pool (n_id, corpus size) or relax the filter.")
    return groups


class _SiteSlice:
    """A StatsStore view restricted to the neurons of ``sub`` sites (a subset of the store's ``full`` sites), so
    one capture over both sides serves LM-side and talker-side identification."""

    def __init__(self, store, full, sub):
        by_path = {s.path: s for s in full}
        missing = [s.path for s in sub if s.path not in by_path]
        if missing:
            raise ValueError(f"sites {missing} are not in the captured sites")
        self.store = store
        self.idx = np.concatenate([np.arange(by_path[s.path].offset, by_path[s.path].offset + s.width) for s in sub])

    def index_of(self, ids):
        return self.store.index_of(ids)

    def aggregate(self, rows):
        K, T = self.store.aggregate(rows)
        return np.asarray(K)[self.idx], np.broadcast_to(np.asarray(T), np.asarray(K).shape)[self.idx]

    def moments(self, rows):
        mean, var = self.store.moments(rows)
        return mean[self.idx], var[self.idx]


def _identification_rows(world: World, task: str, scope: str, run: Callable[[str], pd.DataFrame]):
    """Identification generations with capture. Models with a talker capture both sides in one pass ("both") and
    serve "lm" and "talker" from it; if the adapter cannot capture both sides, ``scope`` alone is captured."""
    if task == "evc" and world.share_capture and getattr(world.adapter, "has_talker", False) \
            and scope in ("lm", "talker"):
        try:
            rows = run("both")
            return rows, _SiteSlice(world.stats(task, "both"), world.sites("both"), world.sites(scope))
        except (NotImplementedError, ValueError, TypeError) as exc:
            import warnings

            warnings.warn(f"capturing both sides in one pass failed ({exc}); capturing {scope!r} only")
            world.share_capture = False
    return run(scope), world.stats(task, scope)


def identify_ser(world: World, selector: str = "CAS", rate: float = DEMO_RATE, cap: int | None = None,
                 scope: str = "lm", seed: int = 0, n: int | None = None, split: str = "IDENTIFICATION") -> MaskSet:
    """SER-side identification: success = the LALM recognizes the true emotion; S_e = correctly recognized
    utterances of emotion e (capped at c); P over the LALM's labels; masks per emotion."""
    from .selection import check_rate, probabilities_from_store, success_sets

    selector = _checked_selector(world, selector, "identify_ser")
    check_rate(rate, "identify_ser")  # before generating anything
    rows, store = _identification_rows(world, "ser", scope, lambda sc: ser_baseline(
        world, split, n=n, capture=True, scope=sc))
    rows = rows.assign(target=rows["emotion"], success=rows["correct"])
    labels = [e for e in getattr(world.adapter, "labels", EMOTIONS) if (rows["emotion"] == e).any()]
    all_sets = success_sets(rows, None, seed=seed, id_col="sample_id", emotions=labels, allow_empty=True)
    groups = _nonempty_groups(all_sets, cap, "SER identification")
    P, emos = probabilities_from_store(store, groups)
    masks, A = _select(world, selector, P, emos, groups, rows, rate, seed, scope, "ser")
    return MaskSet(masks=dict(zip(emos, masks)), selector=selector, rate=rate, cap=cap, filter_judge="self-ser",
                   scope=scope, seed=seed, n_success={e: len(g) for e, g in groups.items()},
                   n_success_all={e: len(g) for e, g in all_sets.items()}, P=P, emotions=tuple(emos),
                   source=world.corpus, scores=A)
