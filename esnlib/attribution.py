"""ATTR: a gradient selector next to the paper's five (issue 11's fourth round; docs/demo_world.md).

For neuron i and emotion e, the score is the mean over e's capped success set S_e of

    sum_t a_{i,t} * d s_e / d a_{i,t}

where a_{i,t} is the neuron's gate activation at position t (prompt and answer) and s_e the model's own
differentiable read-out of how much e it renders (the demo LALM: its talker's prosody along e's profile,
:func:`esnlib.validity.emotion_score`). Steering i by x(1 + alpha) changes s_e by alpha times this score to first
order, so the top r*N neurons are the ones whose steering should move e most at small alpha: gradient x activation,
the ranking that knowledge-neuron and attribution-patching work use. LAP, LAPE, MAD and CAS rank by how *differently*
neurons fire per emotion; ATTR ranks by what the model downstream *reads*. On the demo LALM the two sets hardly meet
(docs/demo_world.md), which is why CAS's masks barely steer it.

On the SER side (``identify_ser``) the read-out is the log-odds of the true emotion's label word against the other
labels. ATTR needs gradients of such a read-out, so only adapters with an ``attribution`` method support it (the demo
LALM); any other model is an error before anything is generated. ATTR ranks for small steps (first order):
deactivating its masks (x0) breaks the answer rather than the emotion (docs/demo_world.md).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .progress import tqdm
from .world import World, fingerprint

ATTR = "ATTR"


def is_attr(selector) -> bool:
    return str(selector).upper() == ATTR


def canonical_selector(selector, where: str = "select") -> str:
    """The canonical name of any selector, ATTR included (``selection.check_method`` for the paper's five: a ValueError
    listing them for an unknown name). Every place that takes a selector name resolves it here."""
    from .selection import check_method

    return ATTR if is_attr(selector) else check_method(selector, where)


def check_supported(world: World, where: str = "identify") -> None:
    """ATTR needs an adapter that returns gradients of its emotion read-out: a ValueError naming the fix otherwise."""
    if not callable(getattr(world.adapter, "attribution", None)):
        name = getattr(world.adapter, "name", type(world.adapter).__name__)
        raise ValueError(
            f"{where}: selector ATTR needs gradients of a differentiable emotion read-out of the generated speech, "
            f"and the adapter of {name!r} has no `attribution` method (only the demo LALM's talker exposes one). "
            "Use one of the paper's selectors (LAP, LAPE, MAD, CAS, random) for this model.")


def attribution_scores(world: World, groups: dict[str, Sequence], rows: pd.DataFrame,
                       scope: str = "lm", task: str = "evc") -> tuple[np.ndarray, list[str]]:
    """ATTR scores (E, N) over ``world.sites(scope)``, one row per emotion of ``groups`` (e -> sample ids of the
    capped success set), from the identification ``rows`` (sample_id, utt_id, target). ``task`` "ser": the read-out
    is the log-odds of the true emotion's label word against the other labels (the SER success sets).

    Each emotion's row is one unit of the store (table "attribution"), keyed by the model, the corpus, the scope and
    the success set's ids: re-running, or another r, reads it instead of recomputing."""
    check_supported(world, "attribution_scores")
    by_id = rows.drop_duplicates("sample_id").set_index("sample_id")
    utts = {u.id: u for u in world.utts}
    n = sum(s.width for s in world.sites(scope))
    out, emos = [], []
    for e, ids in groups.items():
        ids = list(ids)
        cond = {**world.base_condition(f"{task}-attribution", scope), "emotion": e,
                "samples": fingerprint(sorted(str(i) for i in ids)), "n_samples": len(ids)}
        if task == "ser":
            cond["readout"] = "label-log-odds"
        if world.store.has("attribution", cond):
            score = world.store.read_unit("attribution", cond)["score"].to_numpy(dtype=np.float64)
        else:
            missing = [i for i in ids if i not in by_id.index]
            if missing:
                raise KeyError(f"attribution_scores: sample ids {missing[:3]} are not in the identification rows")
            src = [utts[by_id.loc[i, "utt_id"]] for i in ids]
            tgt = [str(by_id.loc[i, "target"]) for i in ids]
            total = np.zeros(n, dtype=np.float64)
            step = max(1, int(world.batch_size))
            for k in tqdm(range(0, len(ids), step), desc=f"ATTR gradients {e}", disable=not world.progress,
                          leave=False):
                a = world.adapter.attribution(src[k:k + step], tgt[k:k + step], scope=scope, task=task)
                total += np.asarray(a, dtype=np.float64).sum(axis=0)
            score = total / max(1, len(ids))
            world.store.write("attribution", cond, pd.DataFrame({"score": score.astype(np.float32)}))
            # read back what was stored (float32), so a first run ranks exactly as every later run that reads it
            score = world.store.read_unit("attribution", cond)["score"].to_numpy(dtype=np.float64)
        if len(score) != n:
            raise ValueError(f"attribution_scores: the adapter returned {len(score)} scores for {n} neurons of scope "
                             f"{scope!r}")
        out.append(score)
        emos.append(e)
    return np.stack(out), emos


def select_top(A: np.ndarray, rate: float, who: str = "ATTR") -> list[np.ndarray]:
    """The top floor(r*N) neurons of each row of A (ties to the lower index), like every other selector; ``who``
    names the caller in the error for a rate that selects nothing."""
    from .selection import _top, n_selected

    k = n_selected(rate, A.shape[1])
    if k == 0:
        raise ValueError(f"{who}: rate {rate} selects floor(r * N) = 0 of N = {A.shape[1]} neurons")
    return [_top(np.asarray(row, dtype=np.float64), k) for row in A]
