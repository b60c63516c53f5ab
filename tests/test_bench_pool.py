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
