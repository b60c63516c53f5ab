"""Sweeps past one GPU: the experiment grid as work units, run in-process or on a Ray cluster.

A :class:`Unit` is one piece of a sweep (e.g. one condition × one shard of utterances): a result table, the full
condition (including the shard) and a payload the work function needs (utterances, a mask). Its key is
``ResultStore.key(condition)``; a unit is done iff its parquet file exists, so any executor resumes where another
stopped and no unit is ever stored twice.

``run_grid`` runs ``work_fn(ctx, unit) -> DataFrame`` for every unfinished unit, where ``ctx = setup_fn()`` is built
once per worker (it loads the model and judges):

- ``executor="local"``: in this process, in order.
- ``executor="ray"``: one actor per GPU (per CPU slot without GPUs), each holding its own ``ctx``; idle actors pull
  the next unit from the driver's queue. A dead actor is replaced and its unit retried (``max_retries``).

Writes: by default the *driver* writes each returned frame (``write_on="driver"``): the store needs to be visible to
the driver only, and one process publishes every unit. ``write_on="worker"`` makes the actor write (shared file
system needed; saves shipping large frames). Both go through ``ResultStore.write`` (atomic), so the stored tables are
the same either way.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from .store import ResultStore

__all__ = ["Unit", "UnitGroup", "GridReport", "GridError", "run_grid", "read_units", "shard_units"]

log = logging.getLogger("esnlib.grid")
EXECUTORS = ("local", "ray")


# --------------------------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Unit:
    """One unit of a sweep: the table it fills, its full condition (incl. the shard) and what the work needs."""

    table: str
    condition: dict
    payload: Any = None

    def __post_init__(self):
        if not isinstance(self.condition, Mapping) or not self.condition:
            raise ValueError(f"Unit.condition must be a non-empty dict of fields (include the shard); got "
                             f"{self.condition!r}")
        self.condition = dict(self.condition)

    @property
    def key(self) -> str:
        """``ResultStore.key(condition)``: the name of the unit's file in its table."""
        return ResultStore.key(self.condition)

    def done(self, store: ResultStore) -> bool:
        """True iff the unit's parquet file exists in ``store``."""
        return store.has(self.table, self.condition)


@dataclass
class UnitGroup:
    """Units computed by one ``work_fn`` call, e.g. conditions that share a batch through a RowwiseIntervention.

    ``work_fn(ctx, group)`` returns one DataFrame per member unit, in order; each is stored as its own unit (so the
    tables are the same as with one Unit per condition). The group is done iff every member is; it is scheduled,
    retried and counted as one item.
    """

    units: list
    payload: Any = None

    def __post_init__(self):
        self.units = list(self.units)
        if not self.units or not all(isinstance(u, Unit) for u in self.units):
            raise TypeError("UnitGroup.units must be a non-empty list of Unit")

    @property
    def key(self) -> str:
        return self.units[0].key + (f"+{len(self.units) - 1}" if len(self.units) > 1 else "")

    @property
    def condition(self) -> dict:
        return {"group": [u.condition for u in self.units]}

    def done(self, store: ResultStore) -> bool:
        return all(u.done(store) for u in self.units)


def shard_units(table: str, condition: Mapping, items: Sequence, shard_size: int,
                shard_id: Callable[[Sequence], Any] | None = None, payload: Callable[[Sequence], Any] | None = None
                ) -> list[Unit]:
    """Units of one condition over ``items`` cut into shards of ``shard_size``.

    The shard field is ``shard_id(shard)`` (default: the shard's position and size, ``"i/n"``); pass a fingerprint of
    the shard's ids (as ``experiments.run_evc`` does) so that a changed item list never reuses a stale unit.
    ``payload(shard)`` builds each unit's payload (default: the shard itself).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    items = list(items)
    n = max(1, math.ceil(len(items) / shard_size))
    out = []
    for i in range(0, len(items), shard_size):
        shard = items[i:i + shard_size]
        sid = shard_id(shard) if shard_id is not None else f"{i // shard_size}/{n}"
        out.append(Unit(table, {**condition, "shard": sid}, payload(shard) if payload is not None else shard))
    return out


def read_units(store: ResultStore, units: Iterable) -> pd.DataFrame:
    """The stored rows of ``units`` (Units or UnitGroups) in order (a missing unit is an error naming it)."""
    frames = []
    for u in (m for x in units for m in (x.units if isinstance(x, UnitGroup) else [x])):
        p = store.path(u.table, u.condition)
        if not p.exists():
            raise FileNotFoundError(f"unit {u.key} of table {u.table!r} is not in the store {store.root} "
                                    f"(condition {u.condition}); run_grid it first")
        frames.append(pd.read_parquet(p))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --------------------------------------------------------------------------------------------------------------------
# Report and progress
# --------------------------------------------------------------------------------------------------------------------
class GridError(RuntimeError):
    """Some units failed after all retries (the finished ones are stored); ``.report`` says which and why."""

    def __init__(self, msg: str, report: "GridReport"):
        super().__init__(msg)
        self.report = report


@dataclass
class GridReport:
    """What a ``run_grid`` call did: counts, rows (samples), retries, wall time and per-unit seconds."""

    executor: str
    total: int
    skipped: int = 0
    computed: int = 0
    rows: int = 0
    retries: int = 0
    worker_restarts: int = 0
    num_workers: int = 1
    elapsed_s: float = 0.0
    unit_s: list = field(default_factory=list)
    finish_s: list = field(default_factory=list)  # seconds from the start at which each unit finished
    failed: list = field(default_factory=list)  # (key, condition, error text)
    stopped_early: bool = False

    @property
    def units_per_s(self) -> float:
        return self.computed / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    @property
    def samples_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    def steady_units_per_s(self, skip: int | None = None) -> float:
        """Units/s after the first ``skip`` units finished (default: one per worker), i.e. without start-up."""
        k = self.num_workers if skip is None else skip
        if len(self.finish_s) <= k + 1:
            return float("nan")
        t = sorted(self.finish_s)
        return (len(t) - 1 - k) / (t[-1] - t[k]) if t[-1] > t[k] else float("nan")

    def summary(self) -> str:
        return (f"{self.executor} x{self.num_workers}: {self.computed} computed, {self.skipped} already done, "
                f"{len(self.failed)} failed of {self.total} units; {self.rows} rows in {self.elapsed_s:.1f}s "
                f"({self.units_per_s:.3g} units/s, {self.samples_per_s:.3g} samples/s); {self.retries} retries, "
                f"{self.worker_restarts} worker restarts")


class _Progress:
    """tqdm bar over all units (finished ones counted from the start) plus a log line every ``log_every`` s."""

    def __init__(self, total: int, done: int, todo: int, progress: bool, log_every: float, desc: str):
        from .progress import tqdm

        self.total, self.done0, self.todo = total, done, todo
        self.done = done
        self.rows = 0
        self.t0 = self.last = time.monotonic()
        self.log_every = log_every
        self.bar = tqdm(total=total, initial=done, desc=desc, unit="unit", disable=not progress, smoothing=0.1)

    def rates(self):
        dt = max(time.monotonic() - self.t0, 1e-9)
        n = self.done - self.done0
        ups, sps = n / dt, self.rows / dt
        left = (self.todo - n) / ups if ups > 0 else float("nan")
        return ups, sps, left

    def line(self) -> str:
        ups, sps, left = self.rates()
        eta = "?" if not math.isfinite(left) else f"{left:.0f}s"
        return (f"grid: {self.done}/{self.total} units ({100 * self.done / max(self.total, 1):.0f}%), "
                f"{ups:.3g} units/s, {sps:.3g} samples/s, time left {eta}")

    def update(self, rows: int):
        self.done += 1
        self.rows += rows
        ups, sps, _ = self.rates()
        self.bar.set_postfix_str(f"{sps:.3g} samples/s", refresh=False)
        self.bar.update(1)
        now = time.monotonic()
        if now - self.last >= self.log_every:
            self.last = now
            log.info(self.line())

    def close(self):
        self.bar.close()
        log.info(self.line())


# --------------------------------------------------------------------------------------------------------------------
# run_grid
# --------------------------------------------------------------------------------------------------------------------
def _check_units(units, store: ResultStore) -> list:
    units = list(units)
    seen: dict[tuple[str, str], dict] = {}
    members = []
    for i, x in enumerate(units):
        if not isinstance(x, (Unit, UnitGroup)):
            raise TypeError(f"units[{i}] is a {type(x).__name__}; build units with esnlib.grid.Unit(table, "
                            "condition, payload) or UnitGroup([...])")
        members += x.units if isinstance(x, UnitGroup) else [x]
    for u in members:
        store.path(u.table, u.condition)  # validates the table name
        k = (u.table, u.key)
        if k in seen:
            raise ValueError(f"two units share one condition (table {u.table!r}, key {u.key}): {u.condition}; "
                             "add the field that tells them apart (e.g. the shard) to the condition")
        seen[k] = u.condition
    return units


def _check_result(res, item):
    """work_fn's result: a DataFrame for a Unit, a list of one DataFrame per member for a UnitGroup."""
    if isinstance(item, UnitGroup):
        if not isinstance(res, (list, tuple)) or len(res) != len(item.units) or \
                not all(isinstance(d, pd.DataFrame) for d in res):
            raise TypeError(f"work_fn must return a list of {len(item.units)} DataFrames (one per member unit, in "
                            f"order) for a UnitGroup; got {type(res).__name__}")
        return list(res)
    if not isinstance(res, pd.DataFrame):
        raise TypeError(f"work_fn must return a pandas DataFrame for unit {item.condition}; got "
                        f"{type(res).__name__}")
    return res


def _write(store: ResultStore, item, res) -> int:
    """Store a checked result; returns its number of rows."""
    if isinstance(item, UnitGroup):
        for u, df in zip(item.units, res):
            store.write(u.table, u.condition, df)
        return sum(len(d) for d in res)
    store.write(item.table, item.condition, res)
    return len(res)


def _n_rows(res) -> int:
    return sum(len(d) for d in res) if isinstance(res, list) else len(res)


def run_grid(units: Iterable[Unit], work_fn: Callable[[Any, Unit], pd.DataFrame], setup_fn: Callable[[], Any],
             store: ResultStore, executor: str = "local", ray_address: str | None = None,
             num_workers: int | None = None, resources_per_worker: Mapping | None = None, progress: bool = True,
             max_retries: int = 3, write_on: str = "driver", log_every: float = 30.0, max_units: int | None = None,
             ray_init_kwargs: Mapping | None = None, desc: str = "grid") -> GridReport:
    """Compute every unit not yet in ``store`` with ``work_fn(setup_fn(), unit)`` and write its frame atomically.

    executor: "local" (in process, in order) or "ray" (one actor per worker, dynamic queue). ray_address: None
    starts or reuses a local Ray instance (``ray.init()``); "auto" or "host:6379" joins an existing cluster.
    num_workers: Ray actors (default: one per GPU of the cluster, else one per CPU). resources_per_worker: the
    actor's Ray resources (default ``{"num_gpus": 1}`` on a GPU cluster, else ``{"num_cpus": 1}``). max_retries: how
    often a unit is retried after its work raised or its actor died. write_on: "driver" or "worker" (see module
    docstring). max_units: compute at most this many units, then return (time-boxed runs; the rest resumes later).
    Raises GridError (after finishing everything else) if some unit failed every try.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; use one of {EXECUTORS}")
    if write_on not in ("driver", "worker"):
        raise ValueError(f"write_on must be 'driver' or 'worker', got {write_on!r}")
    if not callable(work_fn) or not callable(setup_fn):
        raise TypeError("work_fn and setup_fn must be callables: setup_fn() -> ctx, work_fn(ctx, unit) -> DataFrame")
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    if not isinstance(store, ResultStore):
        raise TypeError(f"store must be an esnlib.store.ResultStore, got {type(store).__name__}")
    units = _check_units(units, store)
    pending = [u for u in units if not u.done(store)]
    if max_units is not None:
        pending_run = pending[:max(0, int(max_units))]
    else:
        pending_run = pending
    report = GridReport(executor=executor, total=len(units), skipped=len(units) - len(pending))
    report.stopped_early = len(pending_run) < len(pending)
    prog = _Progress(len(units), report.skipped, len(pending_run), progress and bool(units), log_every, desc)
    t0 = time.monotonic()
    try:
        if pending_run:
            if executor == "local":
                _run_local(pending_run, work_fn, setup_fn, store, max_retries, prog, report)
            else:
                _run_ray(pending_run, work_fn, setup_fn, store, ray_address, num_workers, resources_per_worker,
                         max_retries, write_on, dict(ray_init_kwargs or {}), prog, report)
    finally:
        report.elapsed_s = time.monotonic() - t0
        prog.close()
    if report.failed:
        first = report.failed[0]
        raise GridError(f"{len(report.failed)} of {report.total} units failed after {max_retries} retries "
                        f"(finished units are stored; re-run to retry). First: {first[1]}: {first[2]}", report)
    return report


def _run_local(pending, work_fn, setup_fn, store, max_retries, prog, report):
    t_start = time.monotonic()
    ctx = setup_fn()
    for unit in pending:
        if unit.done(store):  # another executor may have finished it meanwhile
            report.skipped += 1
            prog.update(0)
            continue
        for attempt in range(max_retries + 1):
            t = time.monotonic()
            try:
                df = _check_result(work_fn(ctx, unit), unit)
            except Exception as e:  # noqa: BLE001 - retried, then reported with its message
                if attempt >= max_retries:
                    report.failed.append((unit.key, unit.condition, f"{type(e).__name__}: {e}"))
                    log.error("unit %s failed after %d tries: %s", unit.condition, attempt + 1, e)
                    break
                report.retries += 1
                log.warning("unit %s raised %s: %s; retrying", unit.condition, type(e).__name__, e)
                continue
            n = _write(store, unit, df)
            report.unit_s.append(time.monotonic() - t)
            report.finish_s.append(time.monotonic() - t_start)
            report.computed += 1
            report.rows += n
            prog.update(n)
            break


class _GridWorker:
    """Ray actor body: builds ``ctx`` once, then computes units on request (and writes them if asked)."""

    def __init__(self, setup_fn, work_fn, store_root: str | None):
        self.ctx = setup_fn()
        self.work_fn = work_fn
        self.store = ResultStore(store_root) if store_root is not None else None

    def run(self, unit: Unit):
        t = time.monotonic()
        df = _check_result(self.work_fn(self.ctx, unit), unit)
        n = _n_rows(df)
        if self.store is not None:
            _write(self.store, unit, df)
            df = None
        return df, n, time.monotonic() - t, os.getpid()

    def pid(self) -> int:
        return os.getpid()


def _import_ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("executor='ray' needs Ray: pip install 'ray==2.60.0' (on every node of the cluster)") from e
    return ray


def _run_ray(pending, work_fn, setup_fn, store, ray_address, num_workers, resources_per_worker, max_retries,
             write_on, init_kwargs, prog, report):
    t_start = time.monotonic()
    ray = _import_ray()
    from ray.exceptions import RayActorError, RayTaskError

    if not ray.is_initialized():
        ray.init(address=ray_address, **init_kwargs)
    cluster = ray.cluster_resources()
    n_gpu, n_cpu = int(cluster.get("GPU", 0)), int(cluster.get("CPU", 1))
    res = dict(resources_per_worker) if resources_per_worker else ({"num_gpus": 1} if n_gpu else {"num_cpus": 1})
    if num_workers is None:
        if res.get("num_gpus"):
            num_workers = max(1, int(n_gpu // res["num_gpus"]))
        else:
            num_workers = max(1, int(n_cpu // max(res.get("num_cpus", 1), 1e-9)))
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if res.get("num_gpus") and not n_gpu:
        raise ValueError(f"resources_per_worker asks for {res['num_gpus']} GPU(s) but the Ray cluster has none; "
                         "pass resources_per_worker={'num_cpus': 1} or join a cluster with GPUs (ray_address=...)")
    # an actor that can never be placed would hold its unit forever: never ask for more than the cluster has
    fits = [int(n_gpu // res["num_gpus"])] if res.get("num_gpus") else []
    fits.append(int(n_cpu // res["num_cpus"]) if res.get("num_cpus") else num_workers)
    if min(fits) < 1:
        raise ValueError(f"no worker fits the Ray cluster ({cluster}) with resources_per_worker={res}; ask for less")
    if num_workers > min(fits):
        log.warning("the Ray cluster fits %d workers with %s; using %d instead of %d", min(fits), res, min(fits),
                    num_workers)
        num_workers = min(fits)
    num_workers = min(num_workers, len(pending))
    report.num_workers = num_workers
    Actor = ray.remote(max_restarts=0, max_task_retries=0)(_GridWorker).options(**res)
    store_root = str(store.root) if write_on == "worker" else None

    def new_actor():
        return Actor.remote(setup_fn, work_fn, store_root)

    actors = {slot: new_actor() for slot in range(num_workers)}
    queue = deque((u, 0) for u in pending)
    in_flight: dict = {}
    max_restarts = max_retries + num_workers
    last_error = ""

    def submit(slot):
        unit, attempt = queue.popleft()
        in_flight[actors[slot].run.remote(unit)] = (slot, unit, attempt)

    def retry_or_fail(unit, attempt, err):
        if attempt >= max_retries:
            report.failed.append((unit.key, unit.condition, err))
            log.error("unit %s failed after %d tries: %s", unit.condition, attempt + 1, err)
        else:
            report.retries += 1
            queue.appendleft((unit, attempt + 1))

    try:
        for slot in list(actors):
            if queue:
                submit(slot)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            slot, unit, attempt = in_flight.pop(ref)
            try:
                df, n, secs, _pid = ray.get(ref)
            except RayActorError as e:  # the worker died (killed, OOM, node lost, or setup_fn raised)
                last_error = f"{type(e).__name__}: {str(e)[:2000]}"
                log.warning("worker %d died on unit %s; replacing it and retrying the unit", slot, unit.condition)
                retry_or_fail(unit, attempt, last_error)
                report.worker_restarts += 1
                if report.worker_restarts > max_restarts:
                    raise RuntimeError(f"Ray workers died {report.worker_restarts} times (limit {max_restarts}); "
                                       f"last error: {last_error}. Check setup_fn and the workers' memory.") from e
                actors[slot] = new_actor()
            except RayTaskError as e:  # work_fn raised inside a live worker
                cause = e.cause if getattr(e, "cause", None) is not None else e
                retry_or_fail(unit, attempt, f"{type(cause).__name__}: {cause}")
            else:
                if df is not None:
                    _write(store, unit, df)
                report.unit_s.append(secs)
                report.finish_s.append(time.monotonic() - t_start)
                report.computed += 1
                report.rows += n
                prog.update(n)
            if queue:
                submit(slot)
    finally:
        for a in actors.values():
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already dead
                pass


# The cost model (esnlib.cost) and the demo fixtures (esnlib.testing) used to live here; their names still resolve
# from esnlib.grid for existing callers ("esnlib.grid:demo_setup" as a model name, bench/, older notebooks).
_MOVED = {**dict.fromkeys(("QWEN_OMNI_7B_EVC_S", "PAPER", "NOTEBOOK_SPECS", "estimate_cost", "cost_table"), "cost"),
          **dict.fromkeys(("demo_sources", "demo_setup", "demo_evc_work", "demo_units", "demo_rowwise_work",
                           "demo_rowwise_groups"), "testing")}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"esnlib.{_MOVED[name]}"), name)
    raise AttributeError(f"module 'esnlib.grid' has no attribute {name!r}")
