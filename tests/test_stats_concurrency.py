"""StatsStore with several writer processes: every row kept, every id pointing at its own sample's data."""
from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from esnlib.capture import CaptureStats, StatsStore
from esnlib.sites import Site

SITES = [Site(path="m.layers.0.mlp.act_fn", layer=0, width=32, side="lm", offset=0),
         Site(path="m.layers.1.mlp.act_fn", layer=1, width=32, side="lm", offset=32)]
N, S = 64, 2

WRITER = r"""
import sys, time, zlib
from pathlib import Path
import numpy as np
sys.path.insert(0, {tests!r})
from test_stats_concurrency import SITES, rows_for
from esnlib.capture import StatsStore

path, tag, n_batches, go, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
if mode == "open":
    store = StatsStore.open(path)
(Path(go).parent / f"ready-{{tag}}").touch()
while not go.exists():
    time.sleep(0.001)
if mode != "open":
    store = StatsStore.open_or_create(path, SITES)
for b in range(n_batches):
    ids = [f"{{tag}}{{b}}-{{j}}" for j in range(3)] if mode != "same" else [f"s{{b}}-{{j}}" for j in range(3)]
    if mode == "same":
        store.append(rows_for(ids), ids, skip_existing=True)
    else:
        store.append(rows_for(ids), ids)
"""


def _val(i: str) -> int:
    return zlib.crc32(i.encode()) % 100_000


def rows_for(ids) -> CaptureStats:
    """Statistics that identify their sample: every field is a function of the id."""
    v = np.array([_val(i) for i in ids], dtype=np.uint32)
    pos = v[:, None] + np.arange(N, dtype=np.uint32)
    tok = np.stack([v, v + 1], axis=1).astype(np.uint32)
    return CaptureStats(pos, pos.astype(np.float32) / 2, pos.astype(np.float32) * 3, tok[:, 0].copy(), tok, SITES)


def _run_writers(tmp_path, path, tags, n_batches, mode):
    go = tmp_path / "go"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(path), t, str(n_batches), str(go), mode], env=env,
                              stderr=subprocess.PIPE, text=True) for t in tags]
    import time

    t0 = time.time()
    while not all((tmp_path / f"ready-{t}").exists() for t in tags):  # both imported: start together
        assert time.time() - t0 < 120 and all(p.poll() is None for p in procs), [p.stderr.read() for p in procs]
        time.sleep(0.01)
    go.touch()
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs


def _check(store, ids):
    assert len(store) == len(ids) and sorted(store.ids) == sorted(ids) and len(set(store.ids)) == len(store.ids)
    got = store.get(list(ids))
    want = rows_for(list(ids))
    for name in ("positive", "sum", "sumsq", "tokens", "site_tokens"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_two_processes_append_different_ids(tmp_path):
    path = tmp_path / "st"
    reader = StatsStore.create(path, SITES, capacity=4)  # small: both writers grow the files while appending
    _run_writers(tmp_path, path, ["a", "b"], 40, "open")
    ids = [f"{t}{b}-{j}" for t in "ab" for b in range(40) for j in range(3)]
    _check(StatsStore.open(path), ids)
    # a store opened before the writers ran sees their rows (has, index_of, len, get)
    assert reader.has("b39-2") and len(reader.index_of(["a0-0", "b39-2"])) == 2
    _check(reader, ids)


def test_two_processes_create_and_append_the_same_ids(tmp_path):
    """Two runs of one notebook: both open-or-create the store and append the same samples; each id is stored once."""
    path = tmp_path / "st"
    _run_writers(tmp_path, path, ["a", "b"], 30, "same")
    _check(StatsStore.open(path), [f"s{b}-{j}" for b in range(30) for j in range(3)])


def test_open_or_create_checks_the_sites(tmp_path):
    StatsStore.open_or_create(tmp_path / "st", SITES).append(rows_for(["x"]), ["x"])
    again = StatsStore.open_or_create(tmp_path / "st", SITES)
    assert again.ids == ["x"]
    other = [Site(path="m.layers.0.mlp.act_fn", layer=0, width=16, side="lm", offset=0)]
    with pytest.raises(ValueError, match=r"holds statistics of other sites \(64 neurons over 2 sites\).*16 neurons"):
        StatsStore.open_or_create(tmp_path / "st", other)


def test_append_skip_existing_and_leftover_temporary_state(tmp_path):
    store = StatsStore.create(tmp_path / "st", SITES)
    store.append(rows_for(["x", "y"]), ["x", "y"])
    with pytest.raises(ValueError, match="already stored"):
        store.append(rows_for(["y", "z"]), ["y", "z"])
    store.append(rows_for(["y", "z"]), ["y", "z"], skip_existing=True)
    _check(store, ["x", "y", "z"])
    # a writer killed while replacing state.json leaves its temporary file; the next open removes it
    (tmp_path / "st" / "state.json.tmp").write_text("{")
    _check(StatsStore.open(tmp_path / "st"), ["x", "y", "z"])
    assert not (tmp_path / "st" / "state.json.tmp").exists()
