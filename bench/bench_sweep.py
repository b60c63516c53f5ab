"""Side by side: a notebook sweep with row-wise batching (the conditions of a shard share generate calls) against one
generate call per condition, as the notebooks run it.

Sweep: notebook 05's two sweeps in one ``experiments.evaluate_settings`` pass on the demo world: CAS masks (one per
e_mask) under the four intervention kinds and four steering strengths α: 8 settings x 4 e_mask = 32 conditions x
``--n-eval`` TEST-SEEN sources x 4 targets, with the notebooks' judges and DNSMOS on 2 clips per unit (the notebooks'
settings; ``--naturalness ""`` drops DNSMOS), in units (shards) of ``--shard-sizes`` utterances. Each variant runs in a fresh results store (identification statistics are shared and
computed once, untimed); every variant's rows must equal the first variant's (checked; audio paths and the shard id
aside).

Variants: shard sizes x batch sizes (``--batch-sizes``) x rowwise off/on. Reported: wall time and the time spent inside the
model's generate (talker rendering and judges excluded), each as a ratio to "per condition" at the same batch size.

    .venv/bin/python bench/bench_sweep.py [--n-eval 12] [--shard-sizes 12 2] [--batch-sizes 16 64] [--repeats 2] \
        [--naturalness ""]

Results: printed and written to bench/results/sweep.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import esnlib.experiments as X  # noqa: E402
import esnlib.models.demo as demo  # noqa: E402
from esnlib.store import ResultStore  # noqa: E402


class Timer:
    """Accumulates the seconds spent in the model's generate and in talker rendering (wraps, does not change)."""

    def __init__(self):
        self.generate = self.render = 0.0

    def _timed(self, fn, field: str):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                setattr(self, field, getattr(self, field) + time.perf_counter() - t)
        return wrapper

    def install(self, adapter):
        adapter._run = self._timed(adapter._run, "generate")
        demo.render = self._timed(demo.render, "render")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-eval", type=int, default=12)
    ap.add_argument("--shard-sizes", type=int, nargs="+", default=[12],
                    help="utterances per unit (rows per condition and unit = 4 x this)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--naturalness", default="dnsmos", help='"" for none (then the judges are the only other cost)')
    ap.add_argument("--corpus-root", default=str(ROOT / "data" / "demo_corpus"))
    ap.add_argument("--results-dir", default=str(ROOT / "data" / "results"),
                    help="where the identification step's baseline lives (reused, not timed)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sweep.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)

    world = X.load_world(corpus_root=a.corpus_root, results_dir=a.results_dir, naturalness=a.naturalness or None,
                         naturalness_per_shard=2 if a.naturalness else 0, progress=False)
    print("identification (untimed; reused when the stores have it) ...", flush=True)
    m = X.identify(world, "CAS", rate=X.DEMO_RATE, cap=X.PAPER_CAP, n=None)
    settings = [(m, k, al) for k, al in X.KIND_ALPHAS.items()] + [(m, "steer", al) for al in X.ALPHAS]
    n_cond = sum(len(s[0].masks) for s in settings)
    timer = Timer()
    timer.install(world.adapter)
    load = os.getloadavg()
    print(f"{len(settings)} settings, {n_cond} conditions x {a.n_eval} sources x 4 targets; load average "
          f"{load[0]:.1f} on {os.cpu_count()} cores", flush=True)

    runs: dict[str, list] = {}
    tables: dict[str, pd.DataFrame] = {}
    variants = [(sh, bs, rw) for sh in a.shard_sizes for bs in a.batch_sizes for rw in (False, True)]
    for rep in range(a.repeats):
        for sh, bs, rw in (variants if rep % 2 == 0 else variants[::-1]):  # alternate the order against drift
            name = f"shard {sh}, batch {bs}, {'row-wise' if rw else 'per condition'}"
            with tempfile.TemporaryDirectory() as d:
                w = dataclasses.replace(world, store=ResultStore(d), rowwise=rw, batch_size=bs, shard_size=sh)
                timer.generate = timer.render = 0.0
                t = time.perf_counter()
                frames = X.evaluate_settings(w, settings, n=a.n_eval)
                wall = time.perf_counter() - t
                # the unit's shard id differs between shard sizes by construction; every other column must agree
                df = pd.concat(frames, ignore_index=True).drop(columns=["audio_path", "shard"])
                tables[name] = df.sort_values(["kind", "alpha", "mask_emotion", "sample_id"]).reset_index(drop=True)
            runs.setdefault(name, []).append({"wall_s": wall, "generate_s": timer.generate, "render_s": timer.render})
            print(f"  {name:38s} wall {wall:6.1f}s  generate {timer.generate:6.1f}s  render {timer.render:5.1f}s",
                  flush=True)

    ref = next(iter(tables.values()))
    res = {}
    for name, rs in runs.items():
        res[name] = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "generate_s", "render_s")}
        res[name]["samples"] = len(tables[name])
        res[name]["table_equals_first"] = bool(tables[name].equals(ref))
    for sh in a.shard_sizes:
        for bs in a.batch_sizes:
            per, row = res[f"shard {sh}, batch {bs}, per condition"], res[f"shard {sh}, batch {bs}, row-wise"]
            row["wall_speedup"] = per["wall_s"] / row["wall_s"]
            row["generate_speedup"] = per["generate_s"] / row["generate_s"]
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_before": load,
                       "loadavg_after": os.getloadavg(), "torch": torch.__version__},
           "args": vars(a), "conditions": n_cond, "settings": [[s[1], s[2]] for s in settings], "results": res}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print("\n| variant | wall (s) | generate (s) | render (s) | wall vs per-condition | generate vs per-condition "
          "| tables equal |\n|---|---|---|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['wall_s']:.1f} | {r['generate_s']:.1f} | {r['render_s']:.1f} | "
              f"{r.get('wall_speedup', 1.0):.2f}× | {r.get('generate_speedup', 1.0):.2f}× | {r['table_equals_first']} |")


if __name__ == "__main__":
    main()
