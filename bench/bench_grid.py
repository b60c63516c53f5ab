"""Side by side: a demo-world EVC sweep with the local executor, Ray with 1 worker and Ray with 2 workers; and
row-wise batching (one generate carrying K conditions) against one generate per condition.

Sweep: K conditions (baseline + steer masks) x shards of neutral demo utterances x 4 targets, DemoOmni ("full"
DemoConfig sizes, seeded random weights, or the trained demo LALM with --size trained), EVC generation under nnsight
+ espeak-ng rendering, 1 torch thread per worker. Wall times include worker start-up (Ray actors import torch and
build the model once each); steady units/s excludes start-up. "local_rowwise" runs the same sweep locally with all K
conditions of a shard in one generate call (UnitGroup + RowwiseIntervention); every table is compared to local's.

Row-wise: n utterances x K conditions (baseline, masks, several α); both ways must give identical tokens (checked).

    .venv/bin/python bench/bench_grid.py [--shards 8] [--conditions 4] [--repeats 3] [--size full]

Results: printed and written to bench/results/grid.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from esnlib.grid import (demo_evc_work, demo_rowwise_groups, demo_rowwise_work, demo_setup, demo_sources,  # noqa: E402
                         demo_units, read_units, run_grid)
from esnlib.intervention import Intervention, RowwiseIntervention, generate  # noqa: E402
from esnlib.store import ResultStore  # noqa: E402

TARGETS = ("angry", "happy", "sad", "surprise")


def conditions(n_neurons: int, k: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"base": None}
    alphas = [1.0, 0.5, 2.0, 0.3, 1.5, 3.0, 0.8]
    for j in range(k - 1):
        mask = rng.choice(n_neurons, max(1, n_neurons // 20), replace=False)
        out[f"mask{j}_a{alphas[j % len(alphas)]}"] = Intervention(mask, "steer", alphas[j % len(alphas)])
    return out


def sweep(args, utts, setup):
    n = sum(s.width for s in setup().sites("lm"))
    units = demo_units(utts, conditions(n, args.conditions), args.shard_size, targets=TARGETS)
    res = {}
    import functools

    setup_fn = functools.partial(demo_setup, size=args.size)
    groups = demo_rowwise_groups(units)
    runs = [("local", units, demo_evc_work, dict(executor="local")),
            ("local_rowwise", groups, demo_rowwise_work, dict(executor="local")),
            ("ray_1", units, demo_evc_work, dict(executor="ray", num_workers=1)),
            ("ray_2", units, demo_evc_work, dict(executor="ray", num_workers=2))]
    tables = {}
    for name, items, work, kw in runs:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            rep = run_grid(items, work, setup_fn, ResultStore(d), progress=False, **kw)
            wall = time.perf_counter() - t
            df = read_units(ResultStore(d), units)
            tables[name] = df.sort_values(["condition", "utt_id", "target"]).reset_index(drop=True)
        steady = rep.steady_units_per_s()
        res[name] = {"wall_s": wall, "units": rep.computed, "rows": rep.rows, "units_per_s": rep.computed / wall,
                     "samples_per_s": rep.rows / wall, "unit_median_s": statistics.median(rep.unit_s),
                     "steady_units_per_s": steady, "steady_samples_per_s": steady * rep.rows / rep.computed,
                     "first_units_s": sorted(rep.finish_s)[rep.num_workers - 1]}
        print(f"{name:13s} {wall:7.1f}s  {rep.computed} items  {rep.rows / wall:6.2f} samples/s  steady "
              f"{res[name]['steady_samples_per_s']:.2f} samples/s  item median {statistics.median(rep.unit_s):.2f}s",
              flush=True)
    for k in tables:
        res[k]["table_equals_local"] = bool(tables[k].equals(tables["local"]))
    for k in ("ray_1", "ray_2", "local_rowwise"):
        res[k]["wall_speedup_vs_local"] = res["local"]["wall_s"] / res[k]["wall_s"]
        res[k]["steady_speedup_vs_local"] = res[k]["steady_samples_per_s"] / res["local"]["steady_samples_per_s"]
    return res


def rowwise(args, utts, adapter):
    """K conditions on n utterances: one generate of K*n rows vs K generates of n rows (no rendering)."""
    model = adapter.model
    sites = adapter.sites("lm")
    n_neurons = sum(s.width for s in sites)
    conds = list(conditions(n_neurons, args.rowwise_conditions, seed=1).values())
    src = [u for u in utts for _ in TARGETS]
    tgt = [t for _ in utts for t in TARGETS]
    feats = [adapter._feats(u) for u in src]
    inp = model.prepare_inputs(feats, "evc", tgt, [u.text for u in src])
    kw = dict(return_audio=True)
    big = {k: v.repeat(len(conds), *([1] * (v.dim() - 1))) for k, v in inp.items()}
    rw = RowwiseIntervention.repeat(conds, len(src))
    times = {"per_condition": [], "rowwise": []}
    outs = {}
    for _ in range(args.repeats):
        t = time.perf_counter()
        per = [generate(model, inp, iv, sites=sites, **kw) for iv in conds]
        times["per_condition"].append(time.perf_counter() - t)
        t = time.perf_counter()
        one = generate(model, big, rw, sites=sites, **kw)
        times["rowwise"].append(time.perf_counter() - t)
        outs = (per, one)
    per, one = outs
    b = len(src)
    # identical outputs, row by row (text ids are left-aligned per call: compare each condition's slice)
    same = True
    for c, o in enumerate(per):
        s1, s2 = o.sequences, one.sequences[c * b:(c + 1) * b]
        w = min(s1.shape[1], s2.shape[1])
        same &= torch.equal(s1[:, :w], s2[:, :w]) and torch.equal(o.prosody, one.prosody[c * b:(c + 1) * b])
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"conditions": len(conds), "rows_per_condition": b, "median_s": med,
           "speedup": med["per_condition"] / med["rowwise"], "identical_outputs": bool(same)}
    print(f"row-wise: {len(conds)} conditions x {b} rows: per-condition {med['per_condition']:.2f}s, one call "
          f"{med['rowwise']:.2f}s -> {res['speedup']:.2f}x; identical outputs: {same}", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="trained" if (ROOT / "esnlib/assets/demo_lalm/model.safetensors").exists()
                    else "full", choices=["tiny", "full", "trained"])
    ap.add_argument("--shards", type=int, default=24)
    ap.add_argument("--shard-size", type=int, default=2)
    ap.add_argument("--conditions", type=int, default=4)
    ap.add_argument("--rowwise-conditions", type=int, default=8)
    ap.add_argument("--rowwise-utts", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "grid.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    synth = Path(tempfile.gettempdir()) / "esnlib_bench_synth"
    utts = demo_sources(a.shards * a.shard_size, corpus_root=ROOT / "data" / "demo_corpus", synth_dir=synth)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.1f} on {os.cpu_count()} cores", flush=True)
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_before": load,
                       "torch": torch.__version__},
           "args": vars(a)}
    import functools

    setup = functools.partial(demo_setup, size=a.size)
    adapter = setup()
    out["rowwise"] = rowwise(a, utts[:a.rowwise_utts], adapter)
    if not a.skip_sweep:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        out["ray_version"] = ray.__version__
        out["sweep"] = sweep(a, utts, setup)
        ray.shutdown()
    out["machine"]["loadavg_after"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
