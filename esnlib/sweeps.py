"""Stage 4 applied at test time: identified masks intervened on held-out utterances.

EVC: :func:`evaluate_settings` turns ``(MaskSet, kind, α)`` settings (the selectors of Table 3, an r, c, α or kind
sweep) into conditions of one :func:`esnlib.runs.run_evc_conditions` pass (every e_mask of every setting), so they
share ``generate`` calls; :func:`evaluate_masks` is its one-setting case. SER: :func:`ser_effects` (every mask on
every item), :func:`ser_label_free` (applying masks without the label) and :func:`ser_transfer` (masks identified
on one corpus applied to another).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .constants import TARGET_EMOTIONS, TEST
from .identification import MaskSet
from .runs import run_evc_conditions, run_ser, run_ser_conditions
from .tables import ser_effect_ci, ser_self_other
from .world import World

def evaluate_masks(
    world: World,
    maskset: MaskSet,
    kind: str = "steer",
    alpha: float = 1.0,
    split: str = TEST,
    n: int | None = None,
    targets: Sequence[str] = TARGET_EMOTIONS,
    mask_emotions: Sequence[str] | None = None,
    positions: str = "all",
    n_cross: int | None = None,
) -> pd.DataFrame:
    """Generate with each e_mask's ESNs intervened, for every e_tgt: rows for the e_mask x e_tgt table.

    Masks with identical indices (the random control gives one mask to every emotion) are generated once and stored
    under each e_mask (greedy decoding is deterministic, so this is the same result, cheaper). ``n_cross``: see
    :func:`evaluate_settings`.
    """
    return evaluate_settings(world, [(maskset, kind, alpha)], split, n, targets, mask_emotions, positions, n_cross)[0]


def evaluate_settings(
    world: World,
    settings: Sequence[tuple[MaskSet, str, float]],
    split: str = TEST,
    n: int | None = None,
    targets: Sequence[str] = TARGET_EMOTIONS,
    mask_emotions: Sequence[str] | None = None,
    positions: str = "all",
    n_cross: int | None = None,
) -> list[pd.DataFrame]:
    """Several ``(mask set, kind, α)`` settings on the same utterances (the selectors of Table 3, an r, c, α or kind
    sweep): one frame of :func:`evaluate_masks` rows per setting, in order.

    Every e_mask of every setting of one scope is a condition of one :func:`run_evc_conditions` pass, so they share
    ``generate`` calls (``world.rowwise``) and identical masks are generated once; the stored units and the rows are
    the same as calling ``evaluate_masks`` once per setting.

    ``n_cross`` (< ``n``): the off-diagonal cells (e_mask != e_tgt) use only the first ``n_cross`` of the ``n``
    sources (the draws are nested); the diagonal (self) cells use all ``n``. Self effects get their full power at a
    fraction of the cost; cross effects rest on ``n_cross`` sources per cell (the tables say how many pairs).
    """
    from . import Intervention

    jobs = []  # (setting, condition fields, intervention, scope)
    for i, setting in enumerate(settings):
        if not (isinstance(setting, (tuple, list)) and len(setting) == 3 and isinstance(setting[0], MaskSet)):
            raise TypeError(f"settings[{i}]: expected (MaskSet, kind, alpha), got {setting!r}")
        maskset, kind, alpha = setting
        for e_mask in (mask_emotions or list(maskset.masks)):
            if e_mask not in maskset.masks:
                raise KeyError(f"no {e_mask!r} mask in this {maskset.selector} mask set; it has {list(maskset.masks)}")
            index = np.asarray(maskset.masks[e_mask], dtype=np.int64)
            if len(index) == 0:
                raise ValueError(f"the {maskset.selector} mask of {e_mask!r} is empty; raise the rate r or the cap c")
            cond = {**maskset.condition(), "eval_split": split, "mask_emotion": e_mask, "positions": positions}
            jobs.append((i, cond, Intervention(index=index, kind=kind, alpha=alpha, positions=positions),
                         maskset.scope))
    utts = world.split(split, n)
    if n_cross is not None and not 0 < int(n_cross) <= len(utts):
        raise ValueError(f"n_cross must be in 1..n ({len(utts)} sources), got {n_cross}")
    head, tail = (utts, []) if n_cross is None else (utts[: int(n_cross)], utts[int(n_cross):])
    out: list[list[pd.DataFrame]] = [[] for _ in settings]
    for scope in dict.fromkeys(j[3] for j in jobs):
        js = [j for j in jobs if j[3] == scope]
        what = settings[js[0][0]]
        desc = (f"{what[0].selector} {what[1]} α={what[2]}" if len(settings) == 1 else f"{len(settings)} settings") \
            + f": {len(js)} conditions"
        frames = run_evc_conditions(world, head, [(j[1], j[2]) for j in js], targets, scope=scope, desc=desc)
        for j, df in zip(js, frames):
            out[j[0]].append(df)
        if tail:  # the diagonal on the remaining sources: each e_mask's own e_tgt only
            for e_mask in dict.fromkeys(j[1]["mask_emotion"] for j in js):
                if e_mask not in targets:
                    continue
                sub = [j for j in js if j[1]["mask_emotion"] == e_mask]
                frames = run_evc_conditions(world, tail, [({**j[1], "part": "self"}, j[2]) for j in sub], [e_mask],
                                            scope=scope, desc=f"{desc} (self, {e_mask})")
                for j, df in zip(sub, frames):
                    out[j[0]].append(df)
    return [pd.concat(f, ignore_index=True) for f in out]


def ser_effects(world: World, maskset: MaskSet, kind: str = "deactivate", alpha: float = 0.0,
                split: str = TEST, n: int | None = None) -> pd.DataFrame:
    """SER with each emotion's mask intervened on every test utterance: rows with mask_emotion (the masks share
    generate calls, one edit per batch row, when ``world.rowwise``)."""
    from . import Intervention

    utts = world.split(split, n, emotion=None)
    conditions = [({**maskset.condition(), "eval_split": split, "mask_emotion": e_mask},
                   Intervention(index=np.asarray(index, dtype=np.int64), kind=kind, alpha=alpha))
                  for e_mask, index in maskset.masks.items()]
    return pd.concat(run_ser_conditions(world, utts, conditions, scope=maskset.scope,
                                        desc=f"SER {kind} α={alpha}: {len(conditions)} masks"), ignore_index=True)


def ser_label_free(world: World, maskset: MaskSet, base: pd.DataFrame, per_mask: pd.DataFrame,
                   kind: str = "deactivate", alpha: float = 0.0, split: str = TEST,
                   n: int | None = None) -> pd.DataFrame:
    """Label-free application of SER masks at test time (this project's reading of the SER paper's strategies).

    - ``oracle``: the mask of the true emotion (needs the label; the reference point).
    - ``2pass``: pass 1 without intervention predicts ê; pass 2 applies the mask of ê.
    - ``mix``: the expectation over a uniformly chosen mask: every mask applied to every item (``per_mask``, from
      :func:`ser_effects`), accuracy averaged over masks.
    - ``union``: one pass with the union of all emotions' masks.
    Returns per strategy and true emotion the accuracy (%), its change against the baseline (``delta``, pp) with a
    paired bootstrap 95 % CI over items (``low`` / ``high``), ``n`` items and ``mcnemar_p`` (exact; for ``mix``,
    whose per-item accuracy is a share of masks, the sign test on the per-item changes).
    """
    from . import Intervention
    from .evaluation import clustered_mean_ci, mcnemar_p

    utts = {u.id: u for u in world.split(split, n, emotion=None)}
    b = base.drop_duplicates("utt_id").set_index("utt_id")
    out = []

    def acc_rows(name, df):
        for emo, g in df.groupby("emotion"):
            hit_base = b.loc[g["utt_id"], "pred"].to_numpy() == emo
            d = g["correct"].to_numpy(dtype=float) - hit_base
            ci = clustered_mean_ci(d, g["utt_id"].to_numpy())
            out.append({"strategy": name, "emotion": emo, "accuracy": 100 * float(g["correct"].mean()),
                        "delta": 100 * (float(g["correct"].mean()) - float(hit_base.mean())), "n": len(g),
                        "low": 100 * ci.low, "high": 100 * ci.high, "mcnemar_p": mcnemar_p(d > 0, d < 0)})

    oracle = per_mask[per_mask["mask_emotion"] == per_mask["emotion"]]
    acc_rows("oracle", oracle)
    # 2-pass: pass-1 predictions are the baseline rows; items predicted as a label with no mask stay unintervened
    parts = []
    for e_hat, g in b.loc[list(utts)].groupby("pred", dropna=False):
        ids = list(g.index)
        if isinstance(e_hat, str) and e_hat in maskset.masks:
            sel = per_mask[(per_mask["mask_emotion"] == e_hat) & per_mask["utt_id"].isin(ids)]
            parts.append(sel)
        else:
            parts.append(base[base["utt_id"].isin(ids)])
    acc_rows("2pass", pd.concat(parts, ignore_index=True))
    mix = per_mask.groupby(["utt_id", "emotion"], as_index=False)["correct"].mean()
    acc_rows("mix", mix)
    union = np.unique(np.concatenate([np.asarray(m) for m in maskset.masks.values()]))
    iv = Intervention(index=union.astype(np.int64), kind=kind, alpha=alpha)
    urows = run_ser(world, list(utts.values()), {**maskset.condition(), "eval_split": split, "mask_emotion": "union"},
                    intervention=iv, scope=maskset.scope, desc="SER union")
    acc_rows("union", urows)
    return pd.DataFrame(out)


def ser_transfer(world: World, masksets: Mapping[str, MaskSet], base: pd.DataFrame, kind: str = "deactivate",
                 alpha: float = 0.0, split: str = TEST, n: int | None = None, n_boot: int = 2000,
                 seed: int = 0) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Cross-corpus transfer (the SER paper): each mask set (label -> MaskSet, e.g. identified on corpus A and on
    ``world``'s own corpus) intervened on ``world``'s ``split`` items. Returns one summary row per mask set —
    Δ recall of each mask's own emotion (``self``) and of the other emotions (``other``), pp, with 95 %
    cluster-bootstrap CIs over items and their n — and the per-cell rows (label -> :func:`ser_effect_ci` frame).
    ``base``: the unintervened SER rows of the same items (:func:`ser_baseline`)."""
    out, cells = [], {}
    for label, ms in masksets.items():
        rows = ser_effects(world, ms, kind=kind, alpha=alpha, split=split, n=n)
        so = ser_self_other(rows, base, n_boot=n_boot, seed=seed)
        out.append({"masks": label, "identified_on": ms.source, "applied_to": world.corpus, "kind": kind,
                    "alpha": float(alpha), **so, "n_items": int(rows["utt_id"].nunique())})
        cells[label] = ser_effect_ci(rows, base, n_boot=n_boot, seed=seed).assign(masks=label)
    return pd.DataFrame(out), cells
