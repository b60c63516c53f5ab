"""bench/pool_core.py: pooling several benchmark runs into one overhead ratio with a CI."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
from pool_core import pool  # noqa: E402


def _run(bare, slow, rng):
    """One run's raw timings: bare around ``bare`` s, the mode ``slow`` times a bare run, 5 % noise."""
    b = bare * (1 + 0.05 * rng.standard_normal(9))
    x = slow * bare * (1 + 0.05 * rng.standard_normal(4))
    return {"raw_s": {"bare": [[t, t] for t in b], "capture": [[t, t] for t in x]}}


def test_pool_recovers_a_known_overhead_across_runs_of_different_speed():
    rng = np.random.default_rng(0)
    runs = [_run(15.0, 1.10, rng), _run(21.0, 1.10, rng), _run(18.0, 1.10, rng)]
    r = pool(runs, draws=2000)["capture"]
    assert r["n"] == 12 and len(r["per_run"]) == 3
    assert r["lo"] < 1.10 < r["hi"] and r["hi"] - r["lo"] < 0.15
    same = pool([_run(15.0, 1.0, rng), _run(21.0, 1.0, rng)], draws=2000)["capture"]
    assert same["lo"] < 1.0 < same["hi"] and same["ratio"] < r["ratio"]


def test_pool_names_a_missing_configuration(tmp_path):
    p = tmp_path / "run.json"
    p.write_text(json.dumps({"ref": {"batch1": {}}}))
    out = subprocess.run([sys.executable, str(BENCH / "pool_core.py"), str(p), "--config", "demo/batch64"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "no configuration 'demo/batch64'" in out.stderr and "ref" in out.stderr


def _cfg(**medians):
    return {"cpu": {k: {"median": v} for k, v in medians.items()}}


def test_targets_needs_every_run_of_every_mode_within_its_target(tmp_path):
    from pool_core import targets

    runs = [{"ref": {"batch1": _cfg(capture=1.04, steer=1.049, **{"hooks steer": 1.2})},
             "demo": {"batch64": _cfg(capture=1.09, steer=1.05)}},
            {"ref": {"batch1": _cfg(capture=1.03, steer=1.051, **{"hooks steer": 1.2})},
             "demo": {"batch64": _cfg(capture=1.10, steer=1.11)}}]
    paths = []
    for i, r in enumerate(runs):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(r))
    got = {(r["config"], r["mode"]): r for r in targets([str(p) for p in paths])}
    assert set(got) == {("ref/batch1", "capture"), ("ref/batch1", "steer"), ("demo/batch64", "capture"),
                        ("demo/batch64", "steer")}  # hooks are the floor, not a target
    assert got[("ref/batch1", "capture")]["met"] and got[("demo/batch64", "capture")]["met"]
    assert not got[("ref/batch1", "steer")]["met"]  # one run at 1.051 > 1.05
    assert not got[("demo/batch64", "steer")]["met"] and got[("demo/batch64", "steer")]["per_run"] == [1.05, 1.11]


def test_visit_cost_slope_recovers_a_known_per_visit_cost():
    from visit_cost import KS, per_visit_us

    step = 0.01  # 10 ms a step; 50 us a visit, 200 us fixed -> ratio 1 + (200 + 50 k) / 10,000
    res = {"cpu": {f"nnsight {k}": {"median": 1 + (200 + 50 * k) * 1e-6 / step} for k in KS}}
    slope, icpt = per_visit_us(res, step, "nnsight")
    assert abs(slope - 50) < 1e-6 and abs(icpt - 200) < 1e-6


def _tiny_run():
    """(model, sites, inputs, generate kwargs, bare output) of a tiny Qwen2 decoding 6 tokens."""
    import torch
    from conftest import tiny_qwen2

    from esnlib.sites import find_sites

    m = tiny_qwen2()
    x = dict(input_ids=torch.tensor([[5, 6, 7, 8]]), attention_mask=torch.ones(1, 4, dtype=torch.long))
    gen = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    return m, find_sites(m), x, gen, m.generate(**x, **gen)


def test_visit_cost_read_modes_leave_generation_unchanged():
    import torch
    from visit_cost import hook_reads, nnsight_reads

    m, sites, x, gen, bare = _tiny_run()
    for k in (0, 1, len(sites)):
        assert torch.equal(nnsight_reads(m, sites, x, gen, k), bare)
        assert torch.equal(hook_reads(m, sites, x, gen, k), bare)
    assert all(not s.module._forward_hooks for s in sites)  # the no-op hooks are removed


def test_visit_cost_direct_timer_times_each_decoding_call_and_leaves_generation_unchanged():
    import torch
    from visit_cost import nnsight_reads, timed_calls

    m, sites, x, gen, bare = _tiny_run()
    for run in (lambda: m.generate(**x, **gen), lambda: nnsight_reads(m, sites, x, gen, len(sites))):
        times = []
        assert torch.equal(timed_calls(m, sites, run, times), bare)
        assert len(times) == len(sites) * 5 and all(t > 0 for t in times)  # 5 decoding steps after the prompt
    assert all("forward" not in m.get_submodule(s.path.rsplit(".", 1)[0]).__dict__ for s in sites)  # restored


def test_visit_cost_hook_mul_is_the_same_steer_as_esnlib_and_removes_its_hooks():
    import numpy as np
    import torch
    from visit_cost import hook_mul

    from esnlib.intervention import Intervention, generate

    m, sites, x, gen, bare = _tiny_run()
    rng = np.random.default_rng(0)
    idx = np.concatenate([s.offset + rng.choice(s.width, s.width // 2, replace=False) for s in sites])
    iv = Intervention(idx, "steer", 3.0)
    steered = hook_mul(m, sites, iv, x, gen)
    assert torch.equal(steered, generate(m, x, iv, sites=sites, **gen))
    assert not torch.equal(steered, bare)  # the edit changes the generation, so the comparison means something
    assert all(not s.module._forward_hooks for s in sites)
