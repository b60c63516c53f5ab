"""Pool several ``bench_core.py`` runs of one configuration into one overhead estimate with a 95 % CI.

One run of the demo LALM holds only 4-5 ABAB pairs a mode, and on a shared machine bare ``generate`` itself varies by
+-20 % from run to run of the same inputs, so one run's median [IQR] cannot resolve a few percent. This pools the raw
CPU times (``raw_s``, stored by every run): per run, a mode's mean time over the run's mean bare time; pooled, the
mean of those per-run ratios weighted by the mode's timings a run, with a bootstrap CI that resamples the timings
within each run (10,000 draws). Per-run ratios are printed beside it, so drift between runs stays visible.

    .venv/bin/python bench/pool_core.py bench/results/core_demo_prefix_2026-12-01_run*.json [--config demo/batch64]

``--targets`` prints instead #15's check: every configuration of the runs, each esnlib mode's per-run median CPU ratio
against its target (reference model <= 1.05x, demo LALM <= 1.10x; SmolLM2 has none), whether every run meets it,
and the plain hooks' medians beside it (the floor).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _cpu(raw, k):
    return np.array([c for _, c in raw[k]], dtype=float)


def pool(runs: list[dict], draws: int = 10_000, seed: int = 0) -> dict:
    """{mode: {"ratio", "lo", "hi", "n", "per_run"}}: mean CPU time over mean bare CPU time, per run and pooled."""
    rng = np.random.default_rng(seed)
    modes = [k for k in runs[0]["raw_s"] if k != "bare"]
    bs = [_cpu(r["raw_s"], "bare") for r in runs]
    out = {}
    for k in modes:
        xs = [_cpu(r["raw_s"], k) for r in runs]
        n = sum(len(x) for x in xs)
        w = np.array([len(x) for x in xs], dtype=float) / n
        per_run = [float(x.mean() / b.mean()) for x, b in zip(xs, bs)]
        boot = np.empty(draws)
        for d in range(draws):
            boot[d] = w @ [x[rng.integers(0, len(x), len(x))].mean() / b[rng.integers(0, len(b), len(b))].mean()
                           for x, b in zip(xs, bs)]
        out[k] = {"ratio": float(w @ per_run), "lo": float(np.percentile(boot, 2.5)),
                  "hi": float(np.percentile(boot, 97.5)), "n": int(n), "per_run": per_run}
    return out


TARGETS = {"ref": 1.05, "demo": 1.10}


def targets(paths: list[str]) -> list[dict]:
    """Per configuration and esnlib mode (not the hooks): per-run median CPU ratios and whether all meet the target."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    rows = []
    for model, target in TARGETS.items():
        for cfg in sorted(runs[0].get(model, {})):
            res = [r[model][cfg] for r in runs if cfg in r.get(model, {})]
            for mode in res[0]["cpu"]:
                if mode.startswith("hooks"):
                    continue
                med = [x["cpu"][mode]["median"] for x in res]
                hooks = [x["cpu"].get(f"hooks {mode}", {}).get("median") for x in res]
                rows.append({"config": f"{model}/{cfg}", "mode": mode, "target": target, "per_run": med,
                             "hooks_per_run": hooks, "met": len(res) == len(runs) and all(m <= target for m in med)})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="bench_core.py result JSON files")
    ap.add_argument("--config", default="demo/batch64", help="configuration key in the JSON, e.g. ref/batch1")
    ap.add_argument("--out", default=None, help="write the pooled table as JSON here")
    ap.add_argument("--targets", action="store_true", help="check every configuration against #15's targets")
    a = ap.parse_args()
    if a.targets:
        for r in targets(a.runs):
            hooks = " ".join("-" if h is None else f"{h:.3f}" for h in r["hooks_per_run"])
            print(f"  {r['config']:14s} {r['mode']:14s} <= {r['target']:.2f}x: "
                  + " ".join(f"{m:.3f}" for m in r["per_run"]) + ("   met    " if r["met"] else "   NOT met")
                  + f"   (hooks {hooks})")
        return
    key = a.config.split("/")
    runs = []
    for p in a.runs:
        d = json.loads(Path(p).read_text())
        for part in key:
            if part not in d:
                raise SystemExit(f"{p} has no configuration {a.config!r}; its keys at {part!r} are {sorted(d)}")
            d = d[part]
        runs.append(d)
    res = pool(runs)
    bare = [float(np.median(_cpu(r["raw_s"], "bare"))) for r in runs]
    print(f"{a.config}: {len(runs)} runs, bare CPU median per run " + ", ".join(f"{b:.1f} s" for b in bare))
    print(f"  {'mode':22s} {'pooled ratio [95% CI]':>26s}  n   per run")
    for k, v in res.items():
        print(f"  {k:22s} {v['ratio']:8.3f}x [{v['lo']:.3f}, {v['hi']:.3f}] {v['n']:3d}   "
              + " ".join(f"{x:.3f}" for x in v["per_run"]))
    if a.out:
        Path(a.out).write_text(json.dumps({"config": a.config, "runs": a.runs, "pooled": res}, indent=1))


if __name__ == "__main__":
    main()
