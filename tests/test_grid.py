"""The experiment grid: local and Ray executors give the same tables; killed workers and interrupted drivers lose
and duplicate nothing; finished units are never redone. The work is a real demo-world EVC sweep (DemoOmni with tiny
seeded random weights, esnlib.generate under nnsight, espeak-ng rendering)."""
import functools
import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esnlib.cost import cost_table, estimate_cost
from esnlib.grid import GridError, Unit, UnitGroup, read_units, run_grid
from esnlib.testing import (demo_evc_work, demo_rowwise_groups, demo_rowwise_work, demo_setup, demo_sources,
                            demo_units)
from esnlib.intervention import Intervention
from esnlib.store import ResultStore

try:
    import ray
except ImportError:  # pragma: no cover
    ray = None
_no_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install 'ray==2.60.0')")


def needs_ray(test):
    """Tests that start a local Ray cluster: skipped without ray, marked ``ray`` and ``slow``."""
    return pytest.mark.slow(pytest.mark.ray(_no_ray(test)))

ROOT = Path(__file__).resolve().parents[1]
N_LM = 128  # DemoOmni.tiny(): 2 thinker layers x 64 neurons


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    utts = demo_sources(4, corpus_root=ROOT / "data" / "demo_corpus", synth_dir=tmp_path_factory.mktemp("synth"))
    conds = {"base": None, "steer": Intervention(np.arange(0, N_LM, 3), "steer", 2.0)}
    return demo_units(utts, conds, shard_size=2)  # 2 conditions x 2 shards, 4 rows each


def _table(store, units):
    df = read_units(store, units)
    return df.sort_values(["condition", "utt_id", "target"]).reset_index(drop=True)[sorted(df.columns)]


@pytest.fixture(scope="module")
def reference(units, tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("ref"))
    rep = run_grid(units, demo_evc_work, demo_setup, store, progress=False)
    assert rep.computed == 4 and rep.rows == 16
    df = _table(store, units)
    # the sweep must be informative: the edit changes outputs, and utterances differ
    base, steer = df[df.condition == "base"], df[df.condition == "steer"]
    assert (base.speech.values != steer.speech.values).any() or (base.hyp.values != steer.hyp.values).any()
    assert base.hyp.nunique() > 1
    return df


def _count_calls(calls_dir, work=demo_evc_work):
    def work_fn(ctx, unit):
        (Path(calls_dir) / f"{unit.key}-{uuid.uuid4().hex[:6]}").touch()
        return work(ctx, unit)
    return work_fn


def _calls(calls_dir):
    return sorted(p.name.split("-")[0] for p in Path(calls_dir).iterdir())


# ---------------------------------------------------------------------------------------------------------- local
def test_local_interrupted_then_resumed(units, reference, tmp_path):
    store, calls = ResultStore(tmp_path / "store"), tmp_path / "calls"
    calls.mkdir()
    n = {"k": 0}

    def dies_after_two(ctx, unit):
        if n["k"] == 2:
            raise KeyboardInterrupt  # the driver is interrupted as a whole (Ctrl-C, job killed)
        n["k"] += 1
        return demo_evc_work(ctx, unit)

    with pytest.raises(KeyboardInterrupt):
        run_grid(units, dies_after_two, demo_setup, store, progress=False)
    assert sum(u.done(store) for u in units) == 2
    rep = run_grid(units, _count_calls(calls), demo_setup, store, progress=False)
    assert rep.skipped == 2 and rep.computed == 2
    assert _calls(calls) == sorted(u.key for u in units if u.key not in {v.key for v in units[:2]})
    pd.testing.assert_frame_equal(_table(store, units), reference, check_exact=True)
    # a third run does nothing
    assert run_grid(units, _count_calls(calls), demo_setup, store, progress=False).computed == 0
    assert len(_calls(calls)) == 2


def test_local_rowwise_groups_equal_one_unit_per_condition(units, reference, tmp_path):
    """Both conditions of a shard in one generate call (RowwiseIntervention) store exactly the per-condition rows."""
    store = ResultStore(tmp_path)
    groups = demo_rowwise_groups(units)
    assert len(groups) == 2 and all(len(g.units) == 2 for g in groups)
    rep = run_grid(groups, demo_rowwise_work, demo_setup, store, progress=False)
    assert rep.computed == 2 and rep.rows == 16
    assert all(u.done(store) for u in units)
    pd.testing.assert_frame_equal(_table(store, groups), reference, check_exact=True)


def _toy_units(n=4):
    return [Unit("toy", {"i": i, "shard": f"{i}/{n}"}, payload=i) for i in range(n)]


def test_local_retries_then_reports_failures(tmp_path):
    store, tries = ResultStore(tmp_path), {}

    def flaky(ctx, unit):
        i = unit.payload
        tries[i] = tries.get(i, 0) + 1
        if i == 1 and tries[i] == 1:
            raise RuntimeError("transient")
        if i == 2:
            raise ValueError("always broken")
        return pd.DataFrame({"x": [i * ctx]})

    with pytest.raises(GridError, match="1 of 4 units failed") as ei:
        run_grid(_toy_units(), flaky, lambda: 10, store, progress=False, max_retries=2)
    rep = ei.value.report
    assert rep.computed == 3 and tries == {0: 1, 1: 2, 2: 3, 3: 1} and rep.retries == 3
    assert "always broken" in rep.failed[0][2]
    assert sorted(store.read("toy").x) == [0, 10, 30]


def test_bad_input_errors(tmp_path):
    store = ResultStore(tmp_path)
    dup = [Unit("toy", {"i": 1}), Unit("toy", {"i": 1.0})]
    with pytest.raises(ValueError, match="share one condition"):
        run_grid(dup, lambda c, u: pd.DataFrame(), lambda: None, store)
    with pytest.raises(ValueError, match="unknown executor"):
        run_grid(_toy_units(), lambda c, u: pd.DataFrame(), lambda: None, store, executor="dask")
    with pytest.raises(GridError, match="DataFrame"):
        run_grid(_toy_units(1), lambda c, u: [1], lambda: None, store, progress=False, max_retries=0)
    with pytest.raises(ValueError, match="non-empty"):
        Unit("toy", {})
    with pytest.raises(GridError, match="list of 2 DataFrames"):
        run_grid([UnitGroup(_toy_units(2))], lambda c, g: pd.DataFrame(), lambda: None, store, progress=False,
                 max_retries=0)


def test_grid_is_the_executor_only():
    # the cost model and the demo fixtures have their own modules; the executor does not import the demo LALM
    import esnlib.cost
    import esnlib.grid as G
    import esnlib.testing

    src = Path(G.__file__).read_text(encoding="utf-8")
    assert "models" not in src and "def demo_" not in src and "def estimate_cost" not in src
    # the old names still resolve from esnlib.grid (model name "esnlib.grid:demo_setup", bench/), as the same objects
    assert G.demo_setup is esnlib.testing.demo_setup and G.estimate_cost is esnlib.cost.estimate_cost
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        G.nope


def test_cost_estimate_paper_scale():
    df = estimate_cost("02", per_generation_s=5.0, n_gpus=8)
    sel = df[df.what.str.startswith("selectors")]
    assert sel.generations.item() == 5 * 4 * 4 * 1500
    assert sel.gpu_hours.item() == pytest.approx(5 * 4 * 4 * 1500 * 5.0 / 3600)
    assert sel.wall_hours.item() == pytest.approx(sel.gpu_hours.item() / 8)
    t = cost_table(per_generation_s=1.0, n_gpus=1)
    assert t.iloc[-1].generations == t.iloc[:-1].generations.sum()
    assert estimate_cost(_toy_units(3)).generations.item() == 3  # payload without len: one generation per unit
    assert estimate_cost(_toy_units(3), samples_per_unit=lambda u: 16 * 4).generations.item() == 3 * 64
    with pytest.raises(ValueError, match="unknown notebook"):
        estimate_cost("99")


# ------------------------------------------------------------------------------------------------------------ ray
@pytest.fixture(scope="module")
def ray_cluster():
    if ray is None:
        pytest.skip("ray is not installed")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this module's work_fns travel by value
    for attempt in (1, 2):
        if ray.is_initialized():
            break
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except Exception as e:  # noqa: BLE001 - Ray waits 30 s for its raylet; an overloaded machine can miss that
            ray.shutdown()
            if attempt == 2:
                pytest.skip(f"a local Ray instance could not start on this machine (twice): {e}")
    yield ray
    ray.shutdown()


def _kill_once(ctx, unit, marker, calls_dir):
    """The first unit any worker starts after ``marker`` appears kills its worker process (os._exit)."""
    (Path(calls_dir) / f"{unit.key}-{uuid.uuid4().hex[:6]}").touch()
    try:
        os.rename(marker, marker + ".claimed")  # only one worker wins the rename
    except FileNotFoundError:
        return demo_evc_work(ctx, unit)
    os._exit(1)


@needs_ray
def test_ray_matches_local(units, reference, ray_cluster, tmp_path):
    store = ResultStore(tmp_path)
    rep = run_grid(units, demo_evc_work, demo_setup, store, executor="ray", num_workers=2, progress=False)
    assert rep.computed == 4 and rep.num_workers == 2 and rep.worker_restarts == 0
    pd.testing.assert_frame_equal(_table(store, units), reference, check_exact=True)


@needs_ray
def test_ray_worker_killed_then_driver_stopped_then_resumed(units, reference, ray_cluster, tmp_path):
    """One Ray run in which a worker dies mid-run (its unit is retried on a fresh worker) and the driver stops after
    3 units (max_units); then a local run finishes the grid without redoing a finished unit."""
    store, calls = ResultStore(tmp_path / "store"), tmp_path / "calls"
    calls.mkdir()
    marker = tmp_path / "kill"
    marker.touch()
    work = functools.partial(_kill_once, marker=str(marker), calls_dir=str(calls))
    rep = run_grid(units, work, demo_setup, store, executor="ray", num_workers=2, progress=False,
                   write_on="worker", max_units=3)
    assert (tmp_path / "kill.claimed").exists() and not marker.exists(), "no worker was killed"
    assert rep.worker_restarts == 1 and rep.retries == 1 and rep.computed == 3 and rep.stopped_early
    c = _calls(calls)
    assert len(c) == 4 and len(set(c)) == 3  # the killed unit ran twice, the other two once
    assert sum(u.done(store) for u in units) == 3
    rep2 = run_grid(units, _count_calls(calls), demo_setup, store, executor="local", progress=False)
    assert rep2.skipped == 3 and rep2.computed == 1
    c2 = _calls(calls)
    assert len(c2) == 5 and set(c2) == {u.key for u in units}
    df = _table(store, units)
    assert not df.duplicated(["condition", "utt_id", "target"]).any() and len(df) == 16
    pd.testing.assert_frame_equal(df, reference, check_exact=True)


@needs_ray
def test_ray_resource_errors(ray_cluster, tmp_path):
    with pytest.raises(ValueError, match="has none"):
        run_grid(_toy_units(), lambda c, u: pd.DataFrame(), lambda: None, ResultStore(tmp_path), executor="ray",
                 resources_per_worker={"num_gpus": 1}, progress=False)
    with pytest.raises(ValueError, match="no worker fits"):
        run_grid(_toy_units(), lambda c, u: pd.DataFrame(), lambda: None, ResultStore(tmp_path), executor="ray",
                 resources_per_worker={"num_cpus": 3}, progress=False)


@needs_ray
def test_notebook_steps_on_ray_match_local(ray_cluster, tmp_path, tmp_path_factory):
    """experiments.load_world(executor="ray") — what a notebook's `executor` parameter switches — gives the same
    baseline and intervened tables as the local executor (greedy decoding; audio paths aside), EVC and SER alike."""
    import esnlib.experiments as X
    from esnlib.corpora.synthetic import build_demo_corpus

    root = tmp_path_factory.getbasetemp() / "demo_corpus_small"
    if not (root / "demo_corpus.json").exists():
        build_demo_corpus(root, n_utts=7, seed=0, workers=2, progress=False)
    kw = dict(corpus_root=root, judges="prosody", naturalness=None, shard_size=4, progress=False)
    local = X.load_world(results_dir=tmp_path / "local", rowwise=False, **kw)  # one generate per condition
    remote = X.load_world(results_dir=tmp_path / "ray", executor="ray", num_workers=2, **kw)  # row-wise groups
    iv = Intervention(np.arange(0, 64, 3), kind="steer", alpha=2.0)
    sweep = [({"split": "TEST-SEEN", "mask_emotion": e}, Intervention(np.arange(k, 1024, 9), kind=kind, alpha=a))
             for e, k, kind, a in (("angry", 0, "steer", 3.0), ("sad", 4, "deactivate", 0.0), ("happy", 2, "add", 2.0))]
    drop = ["audio_path"]
    for w in (local, remote):
        w.tables = [X.baseline(w, "TEST-SEEN", n=8),
                    X.run_evc(w, w.split("TEST-SEEN", 8), condition={"split": "TEST-SEEN"}, intervention=iv),
                    *X.run_evc_conditions(w, w.split("TEST-SEEN", 8), sweep),
                    *X.run_ser_conditions(w, w.split("TEST-SEEN", 8, emotion=None), sweep)]  # the same driver
    for a, b in zip(local.tables, remote.tables):
        key = ["sample_id"]
        assert list(a.columns) == list(b.columns)
        pd.testing.assert_frame_equal(a.drop(columns=drop, errors="ignore").sort_values(key).reset_index(drop=True),
                                      b.drop(columns=drop, errors="ignore").sort_values(key).reset_index(drop=True))
    assert "audio_path" not in local.tables[-1].columns  # SER rows carry no audio (the comparison reached them)
    assert len(remote.tables[0]) == 8 * 4
    with pytest.raises(ValueError, match="unknown executor"):
        X.load_world(executor="slurm", **kw)
