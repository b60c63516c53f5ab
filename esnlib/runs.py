"""The generation drivers: EVC and SER under a list of conditions, judged and stored one unit at a time.

A *unit* of the ResultStore is one shard of utterances under one condition; its key is the full condition (model
``describe()``, corpus fingerprint, split, task, targets, selector, r, c, kind, α, scope, filter judge, seed, e_mask,
the mask's own fingerprint and the shard's utterance ids). So notebooks share the baseline, a killed run resumes at
the first missing shard without lost or duplicated rows, and re-running a notebook whose results exist only re-reads.

What is shared is the work: the conditions a shard still needs share ``generate`` calls (one RowwiseIntervention
edit per batch row, ``world.rowwise``), conditions with identical generations are generated once (the store's
generation aliases), and with ``world.executor == "ray"`` the missing units go to :func:`esnlib.grid.run_grid`.

Sample ids: EVC ``"<utt_id>|<e_tgt>"``, SER ``"<utt_id>"``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .constants import EMOTIONS, TARGET_EMOTIONS, TEST
from .corpora.base import Utterance
from .intervention import per_condition
from .progress import tqdm
from .world import World, _chunks, _worker_world, fingerprint, mask_fingerprint

def _judge_rows(world: World, audios: list, task_rows: list[dict], n_naturalness: int | None = None) -> None:
    """Add pred_<judge>, match_<judge>, post_<judge> (the judge's posterior of the row's e_tgt, when the judge gives
    posteriors) and naturalness to rows in place (None audio -> no label, NaN scores).

    Naturalness is scored on the first ``n_naturalness`` rows only (None: every row, the default).
    """
    # clips shorter than 0.1 s or silent (e.g. an empty decoded text) get no label and a NaN score
    ok = [i for i, a in enumerate(audios) if a is not None and len(a) >= 1600 and np.any(np.asarray(a) != 0)]
    clips = [audios[i] for i in ok]
    for name, judge in world.judges.items():
        col, post = [None] * len(audios), [float("nan")] * len(audios)
        if clips and hasattr(judge, "predict_proba") and hasattr(judge, "labels"):
            proba = np.asarray(judge.predict_proba(clips, sample_rate=16000))
            labels = list(judge.labels)
            for i, p in zip(ok, proba):
                col[i] = labels[int(np.argmax(p))]
                t = task_rows[i].get("target")
                post[i] = float(p[labels.index(t)]) if t in labels else float("nan")
        elif clips:
            for i, p in zip(ok, judge.predict(clips, sample_rate=16000)):
                col[i] = p
        for r, p, q in zip(task_rows, col, post):
            r[f"pred_{name}"] = p
            if "target" in r:
                r[f"match_{name}"] = bool(p is not None and p == r["target"])
                r[f"post_{name}"] = q
    if world.naturalness is not None:
        nat = [i for i in ok if n_naturalness is None or i < n_naturalness]
        scores = world.naturalness.score([audios[i] for i in nat], sample_rate=16000) if nat else []
        col = [float("nan")] * len(audios)
        for i, s in zip(nat, scores):
            col[i] = float(s)
        for r, s in zip(task_rows, col):
            r["naturalness"] = s
    else:
        for r in task_rows:
            r["naturalness"] = float("nan")


def _read_unit(world: World, table: str, cond: dict) -> pd.DataFrame:
    # one unit by its key (store.read would scan every unit's condition)
    return world.store.read_unit(table, cond)


def _stats_missing(stats, ids: Iterable[str]) -> list[str]:
    return [i for i in ids if not stats.has(i)]


def _append_missing_stats(stats, captured, ids: Sequence[str]) -> None:
    """Append the rows of ``captured`` (CaptureStats, one row per id) whose ids the StatsStore does not hold yet."""
    missing = set(_stats_missing(stats, ids))
    keep = [i for i, s in enumerate(ids) if s in missing]
    if keep:  # skip_existing: another run of the same step may have appended some of them meanwhile
        stats.append(captured.rows(keep), [ids[i] for i in keep], skip_existing=True)


def _intervention_fields(iv) -> dict:
    """The condition fields that identify an intervention: mask (fingerprint of the indices), kind, alpha, positions.
    A list of Interventions (applied in turn) gets one fingerprint over all of them and kind "composite"."""
    from .intervention import Intervention

    if iv is None:
        return {"mask": "none", "kind": "none", "alpha": 0.0, "positions": "none"}
    if isinstance(iv, Intervention):
        return {"mask": mask_fingerprint(iv.index), "kind": iv.kind, "alpha": float(iv.alpha),
                "positions": iv.positions}
    if isinstance(iv, (list, tuple)) and iv and all(isinstance(x, Intervention) for x in iv):
        return {"mask": fingerprint([[mask_fingerprint(x.index), x.kind, float(x.alpha), x.positions] for x in iv]),
                "kind": "composite", "alpha": 0.0, "positions": "composite"}
    raise TypeError(f"a condition's intervention must be None, an esnlib.Intervention or a list of them, got "
                    f"{type(iv).__name__} (the row-wise batching of conditions is built here, from the conditions)")


# --------------------------------------------------------------------------------------------------------- the tasks
@dataclass(frozen=True)
class _EVC:
    """What the driver needs to know of EVC: every source utterance once per e_tgt, judged rows, kept waveforms."""

    targets: tuple[str, ...]
    name = "evc"  # the condition's task, the StatsStore's task
    shard_factor = 1  # shards of world.shard_size utterances (x len(targets) samples)

    def fields(self) -> dict:
        return {"targets": ",".join(self.targets)}

    def sample_ids(self, shard: Sequence[Utterance]) -> list[str]:
        return [f"{u.id}|{t}" for u in shard for t in self.targets]

    def generate(self, world: World, shard, k: int, intervention, scope: str, capture: bool = False):
        """The shard's samples repeated ``k`` times (condition-major) through one ``adapter.evc`` call."""
        src = [u for u in shard for _ in self.targets]
        tgt = [t for _ in shard for t in self.targets]
        kw = {"capture": True} if capture else {}
        return world.adapter.evc(src * k, tgt * k, intervention=intervention, scope=scope,
                                 batch_size=world.batch_size, **kw)

    def rows(self, world: World, shard, cond: dict, gens) -> pd.DataFrame:
        """Tidy rows of one (condition, shard): text, WER, speech tokens, judges, naturalness, kept waveforms."""
        from .evaluation import sample_wer

        src = [u for u in shard for _ in self.targets]
        tgt = [t for _ in shard for t in self.targets]
        sample_ids = self.sample_ids(shard)
        rows = []
        key = world.store.key(cond)
        for j, (u, t, g) in enumerate(zip(src, tgt, gens)):
            hyp = g.text or ""
            speech = (g.extra or {}).get("speech_tokens")
            prosody = (g.extra or {}).get("prosody")
            rows.append({"utt_id": u.id, "sample_id": sample_ids[j], "speaker": u.speaker, "split": u.split,
                         "target": t, "text": u.text, "hyp": hyp, "wer": float(sample_wer(u.text, hyp)),
                         "speech_tokens": " ".join(map(str, speech)) if speech is not None else "",
                         "prosody": json.dumps({k: round(float(v), 3) for k, v in prosody.items()}) if prosody else "",
                         "audio_path": ""})
        audios = [g.audio for g in gens]
        # naturalness and kept waveforms (for listening in the notebooks): the first few utterances of each shard
        n_keep = world.audio_per_shard * len(set(tgt))
        _judge_rows(world, audios, rows, n_naturalness=world.naturalness_per_shard)
        for j in range(min(n_keep, len(rows))):
            if audios[j] is not None:
                rows[j]["audio_path"] = str(world.store.write_audio(key, rows[j]["sample_id"], audios[j]))
        return pd.DataFrame(rows)

    @staticmethod
    def row_column(col: str) -> bool:
        """The columns of a stored unit that are its rows (the rest are its condition's fields)."""
        return col in _EVC_COLS or col.startswith(("pred_", "match_", "post_"))


@dataclass(frozen=True)
class _SER:
    """What the driver needs to know of SER: one sample per utterance, the model's own label, no waveform."""

    name = "ser"
    shard_factor = 4  # one sample per utterance: shards of 4 x world.shard_size utterances

    def fields(self) -> dict:
        return {}

    def sample_ids(self, shard: Sequence[Utterance]) -> list[str]:
        return [u.id for u in shard]

    def generate(self, world: World, shard, k: int, intervention, scope: str, capture: bool = False):
        """The shard's utterances repeated ``k`` times (condition-major) through one ``adapter.ser`` call."""
        kw = {"capture": True} if capture else {}
        return world.adapter.ser(list(shard) * k, intervention=intervention, scope=scope,
                                 batch_size=world.batch_size, **kw)

    def rows(self, world: World, shard, cond: dict, gens) -> pd.DataFrame:
        return pd.DataFrame([{"utt_id": u.id, "sample_id": u.id, "speaker": u.speaker, "split": u.split,
                              "emotion": u.emotion, "pred": g.label, "correct": bool(g.label == u.emotion),
                              "answer": g.text or ""} for u, g in zip(shard, gens)])

    @staticmethod
    def row_column(col: str) -> bool:
        return col in _SER_COLS


_EVC_COLS = ("utt_id", "sample_id", "speaker", "split", "target", "text", "hyp", "wer", "speech_tokens", "prosody",
             "audio_path", "naturalness")
_SER_COLS = ("utt_id", "sample_id", "speaker", "split", "emotion", "pred", "correct", "answer")


# -------------------------------------------------------------------------------------------------------- the driver
def run_conditions(world: World, task, utts: Sequence[Utterance], conditions: Sequence[tuple[Mapping | None, Any]],
                   capture: bool = False, scope: str = "lm", table: str = "evc", desc: str = "") -> list[pd.DataFrame]:
    """The one driver of EVC and SER (``task``: ``_EVC(targets)`` or ``_SER()``): the same utterances under several
    ``[(condition fields, intervention), ...]``, one frame of rows per condition, in order.

    Every (condition, shard) is its own unit in the store, exactly as with one call per condition. What is shared is
    the work: with ``world.rowwise`` (the default) the conditions a shard still needs are generated together, the
    shard's samples repeated once per condition and each copy edited by its own intervention
    (:class:`esnlib.intervention.RowwiseIntervention`), so ``world.batch_size`` rows fill each ``generate`` call
    across conditions. Conditions whose generations are identical (same mask, kind, α, positions: e.g. the random
    control's single mask, or a cap c that does not bind) are generated once and stored under each condition
    (:meth:`esnlib.store.ResultStore.copy_alias`). With ``world.executor == "ray"`` the missing units are computed
    on the grid first (identification, ``capture=True``, stays local).
    """
    if not conditions:
        raise ValueError(f"run_{task.name}_conditions needs at least one (condition, intervention) pair")
    if capture and len(conditions) != 1:
        raise ValueError("capture=True (identification) takes one condition: capture the baseline, not a sweep")
    specs = [_condition(world, task, c, iv, scope) for c, iv in conditions]
    ivs = [iv for _, iv in conditions]
    stats = world.stats(task.name, scope) if capture else None
    shards = [(sh, fingerprint([u.id for u in sh])) for sh in _chunks(list(utts), world.shard_size * task.shard_factor)]
    if world.executor == "ray" and not capture:
        # the grid computes the missing units (one actor per GPU/worker); the loop below then only reads them
        _on_grid(world, task, shards, specs, ivs, scope, table)
    frames: list[list[pd.DataFrame]] = [[] for _ in specs]
    for shard, shard_fp in tqdm(shards, desc=desc, disable=not world.progress or len(shards) < 2, leave=False):
        sample_ids = task.sample_ids(shard)
        need_stats = capture and bool(_stats_missing(stats, sample_ids))
        todo = _missing_generations(world, task, table, specs, shard_fp, regenerate=need_stats)
        if todo:
            firsts = [ks[0] for ks in todo.values()]
            new = _shard_frames(world, task, shard, [{**specs[k][0], "shard": shard_fp} for k in firsts],
                                [ivs[k] for k in firsts], scope, stats)
            for (gen_key, ks), df in zip(todo.items(), new):
                cond = {**specs[ks[0]][0], "shard": shard_fp}
                world.store.write(table, cond, df)
                world.store.write_alias(table, gen_key, cond)
                for k in ks[1:]:
                    cond_k = {**specs[k][0], "shard": shard_fp}
                    if not world.store.has(table, cond_k):  # a repeated condition is stored already
                        world.store.copy_alias(table, gen_key, cond_k, task.row_column)
        for k, (cond0, _) in enumerate(specs):
            frames[k].append(_read_unit(world, table, {**cond0, "shard": shard_fp}))
    return [pd.concat(f, ignore_index=True) if f else pd.DataFrame() for f in frames]


def _condition(world: World, task, condition, intervention, scope: str) -> tuple[dict, dict]:
    """(cond0, gen0): the unit condition without its shard, and the fields that determine the generations (not
    which selector/r/c produced the mask), so identical generations are computed once."""
    f = _intervention_fields(intervention)
    cond0 = {**world.base_condition(task.name, scope), **task.fields(), "mask_emotion": "none", "mask": f["mask"],
             "kind": f["kind"], "alpha": f["alpha"], **(dict(condition) if condition else {})}
    gen0 = {k: cond0[k] for k in ("model", "corpus_fp", "judges", "naturalness_judge", "naturalness_per_shard",
                                  "task", *task.fields())}
    # from the intervention itself, whatever the condition fields say
    gen0.update(mask=f["mask"], kind=f["kind"], alpha=f["alpha"], positions=f["positions"],
                scope=scope if intervention is not None else "none")
    return cond0, gen0


def _generation_key(gen0: dict, shard_fp: str) -> str:
    return fingerprint({**gen0, "shard": shard_fp}, 16)


def _missing_generations(world: World, task, table: str, specs, shard_fp: str, regenerate: bool = False
                         ) -> dict[str, list[int]]:
    """The conditions of one shard that need generating, by generation key: key -> indices into ``specs`` (the first
    is generated, the others get copies). A condition already stored, or one whose generations another stored unit
    holds (then copied now), needs nothing; ``regenerate`` (statistics missing) makes every condition needed."""
    todo: dict[str, list[int]] = {}
    for k, (cond0, gen0) in enumerate(specs):
        cond, gen_key = {**cond0, "shard": shard_fp}, _generation_key(gen0, shard_fp)
        if regenerate or not (world.store.has(table, cond)
                              or world.store.copy_alias(table, gen_key, cond, task.row_column)):
            todo.setdefault(gen_key, []).append(k)
    return todo


def _shard_frames(world: World, task, shard: Sequence[Utterance], conds: Sequence[dict], interventions: Sequence,
                  scope: str, stats=None) -> list[pd.DataFrame]:
    """The work of one shard under each condition: generate, judge, one frame of rows per condition.

    Several conditions go through one adapter call with a RowwiseIntervention when ``world.rowwise``; greedy rows do
    not depend on their batch neighbours, so the frames equal one call per condition. ``stats``: the StatsStore to
    append the samples' activation statistics to (capture, one condition only), or None. Used in-process and by Ray
    workers (:func:`_group_work`), so both executors give identical rows.
    """
    if stats is not None:
        gens, st = task.generate(world, shard, 1, interventions[0], scope, capture=True)
        _append_missing_stats(stats, st, task.sample_ids(shard))
        per_cond = [gens]
    else:
        per_cond = per_condition(lambda k, iv: task.generate(world, shard, k, iv, scope),
                                 len(task.sample_ids(shard)), interventions, world.rowwise)
    return [task.rows(world, shard, cond, gens) for cond, gens in zip(conds, per_cond)]


def _group_work(world: World, group, task, scope: str) -> list[pd.DataFrame]:
    """esnlib.grid work function: the frames of a UnitGroup (one shard, its missing conditions; each member's
    payload: {"utts", "intervention"})."""
    shard = group.units[0].payload["utts"]
    return _shard_frames(world, task, shard, [u.condition for u in group.units],
                         [u.payload["intervention"] for u in group.units], scope)


def _on_grid(world: World, task, shards, specs, ivs, scope: str, table: str) -> None:
    """Compute the missing (condition, shard) units on the Ray executor (esnlib.grid): one UnitGroup per shard (its
    missing conditions share generate calls when ``world.rowwise``, else one group per unit)."""
    import functools

    from .grid import Unit, UnitGroup, run_grid

    groups, first_of = [], []
    for sh, shard_fp in shards:
        todo = []
        for gen_key, ks in _missing_generations(world, task, table, specs, shard_fp).items():
            cond = {**specs[ks[0]][0], "shard": shard_fp}
            todo.append(Unit(table, cond, payload={"utts": list(sh), "intervention": ivs[ks[0]]}))
            first_of.append((gen_key, cond))  # the copies for ks[1:] are made by the driver's loop
        if todo:
            groups += [UnitGroup(todo)] if world.rowwise else [UnitGroup([u]) for u in todo]
    if not groups:
        return
    n_units = sum(len(g.units) for g in groups)
    try:
        run_grid(groups, functools.partial(_group_work, task=task, scope=scope),
                 functools.partial(_worker_world, world.spec), world.store, executor="ray",
                 ray_address=world.ray_address, num_workers=world.num_workers, progress=world.progress,
                 desc=f"{task.name.upper()} on Ray ({n_units} units in {len(groups)} groups)")
    finally:  # also after a failed grid: the finished units serve their copies
        for gen_key, cond in first_of:
            if world.store.has(table, cond):
                world.store.write_alias(table, gen_key, cond)


# --------------------------------------------------------------------------------------------------- EVC and SER
def run_evc(
    world: World,
    utts: Sequence[Utterance],
    targets: Sequence[str] = TARGET_EMOTIONS,
    condition: Mapping[str, Any] | None = None,
    intervention=None,
    capture: bool = False,
    scope: str = "lm",
    table: str = "evc",
    desc: str = "EVC",
) -> pd.DataFrame:
    """Generate EVC for every (utterance, e_tgt), judge it, and return tidy rows (cached per shard).

    Rows: utt_id, sample_id, speaker, split, target (e_tgt), mask_emotion (e_mask or "none"), text (reference), hyp
    (decoded text), wer, speech_tokens (the talker's tokens when the model reports them), pred_<judge>,
    match_<judge>, naturalness, audio_path ("" unless kept) — plus every field of the condition (the store adds
    them). ``capture=True`` also appends each sample's activation statistics to the EVC StatsStore of ``scope`` (ids
    ``"<utt_id>|<e_tgt>"``); a shard already in the store is regenerated only if its statistics are missing.
    """
    return run_evc_conditions(world, utts, [(condition, intervention)], targets, capture=capture, scope=scope,
                              table=table, desc=desc)[0]


def run_evc_conditions(
    world: World,
    utts: Sequence[Utterance],
    conditions: Sequence[tuple[Mapping[str, Any] | None, Any]],
    targets: Sequence[str] = TARGET_EMOTIONS,
    capture: bool = False,
    scope: str = "lm",
    table: str = "evc",
    desc: str = "EVC",
) -> list[pd.DataFrame]:
    """EVC of the same utterances under several conditions, ``[(condition fields, intervention), ...]``: one frame of
    :func:`run_evc` rows per condition, in order (:func:`run_conditions`: row-wise batching, de-duplication, Ray)."""
    bad = [t for t in targets if t not in EMOTIONS]
    if bad:
        raise ValueError(f"unknown target emotions {bad}; expected a subset of {EMOTIONS}")
    return run_conditions(world, _EVC(tuple(targets)), utts, conditions, capture=capture, scope=scope, table=table,
                          desc=desc)


def baseline(world: World, split: str = TEST, n: int | None = None, targets: Sequence[str] = TARGET_EMOTIONS,
             capture: bool = False, scope: str = "lm") -> pd.DataFrame:
    """Unintervened EVC on the neutral utterances of ``split`` (Table 2). Shared by every notebook through the store.

    ``capture=True`` (identification) also stores per-sample statistics for ``scope``.
    """
    utts = world.split(split, n)
    return run_evc(world, utts, targets, condition={"eval_split": split}, capture=capture, scope=scope,
                   desc=f"baseline {split}")


def run_ser(world: World, utts: Sequence[Utterance], condition: Mapping[str, Any] | None = None, intervention=None,
            capture: bool = False, scope: str = "lm", table: str = "ser", desc: str = "SER") -> pd.DataFrame:
    """Speech emotion recognition by the LALM itself (the SER paper's task), cached per shard.

    Rows: utt_id, sample_id (= utt_id), speaker, split, emotion (true label), pred (parsed label or None), correct,
    answer (the model's raw answer text).
    ``capture=True`` appends per-sample statistics to the SER StatsStore of ``scope``.
    """
    return run_ser_conditions(world, utts, [(condition, intervention)], capture=capture, scope=scope, table=table,
                              desc=desc)[0]


def run_ser_conditions(world: World, utts: Sequence[Utterance], conditions: Sequence[tuple[Mapping | None, Any]],
                       capture: bool = False, scope: str = "lm", table: str = "ser",
                       desc: str = "SER") -> list[pd.DataFrame]:
    """SER of the same utterances under several ``(condition fields, intervention)``: one :func:`run_ser` frame per
    condition, in order (:func:`run_conditions`: row-wise batching, de-duplication, Ray)."""
    return run_conditions(world, _SER(), utts, conditions, capture=capture, scope=scope, table=table, desc=desc)


def ser_baseline(world: World, split: str = TEST, n: int | None = None, capture: bool = False,
                 scope: str = "lm") -> pd.DataFrame:
    """Unintervened SER on every emotion of ``split`` (``n`` utterances, spread over speakers and emotions)."""
    utts = world.split(split, n, emotion=None)
    return run_ser(world, utts, {"eval_split": split}, capture=capture, scope=scope, desc=f"SER baseline {split}")
