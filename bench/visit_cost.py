"""What one nnsight visit costs, and so the lowest overhead nnsight can reach on a model: the floor behind #15.

On the reference model (Qwen2 8 layers, hidden 256, intermediate 1024; prompt 32, 64 greedy tokens) every decoding
step is ~9 ms and an edit must visit each edited layer's ``act_fn`` on each step. This measures, side by side in one
ABAB run (``bench_core.measure``: bare, X, bare, ... with modes shuffled per round; median and IQR of per-pair CPU-time
ratios, one torch thread):

* ``nnsight k``: a trace through esnlib's own probe envoy (``capture._envoy``, as ``esnlib.generate`` uses it) that
  reads ``act_fn.output`` of the first k layers on every step and does nothing with it (k = 0: the trace and its
  step loop alone);
* ``hooks k``: plain forward hooks on the same k modules that do nothing;
* ``steer`` / ``hooks steer``: the real edit (256 neurons x 8 layers, ``esnlib.generate`` and ``bench/hook_floor.py``).

The slope of (ratio - 1) x bare time per step over k is the CPU cost of one visit; ``nnsight 8`` is the overhead an
edit of every layer pays before it does any work. Results: ``bench/results/visit_cost.json``.

A visit costs tens of microseconds, which whole-``generate`` ratios cannot resolve on a noisy machine (a per-pair
spread of +-5 % of a 15 ms step). ``--direct`` times the visit itself instead: each layer's MLP is run with a forward
that times its ``act_fn`` call (the same operations in the same order as ``Qwen2MLP.forward``), so each decoding
step's call is timed with whatever the mode adds to it (nothing, a hook, nnsight's handoff to the trace and back,
esnlib's edit); modes interleaved per round, thousands of calls each; the median call minus bare's is the cost of a
visit. ``hook mul_`` is the least a hook can do for the steer (one in-place multiply by a precomputed per-column
factor), so ``hooks steer`` minus ``hook mul_`` is esnlib's own per-visit code as it runs inside the model.
Results: ``bench/results/visit_cost_direct.json``.

    .venv/bin/python bench/visit_cost.py [--repeats 10] [--batches 1,4] [--threads 1] [--direct]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import _machine, measure, prompts, ref_model  # noqa: E402
from esnlib.capture import _envoy, _generator_path  # noqa: E402
from esnlib.intervention import Intervention, generate  # noqa: E402
from esnlib.sites import find_sites, split_by_site  # noqa: E402
from hook_floor import hook_run  # noqa: E402

KS = (0, 1, 2, 4, 8)


def nnsight_reads(model, sites, x, gen, k):
    """Generate under a trace that reads the first k sites' outputs on every step and does nothing with them."""
    env, acts, _ = _envoy(model, [s.path for s in sites], [_generator_path(model, sites[0].path)])
    box = {}

    def run(*a, **kw):
        box["out"] = model.generate(*a, **kw)
        return box["out"]

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was never reached.*")
        with env.trace(fn=run, **x, **gen) as tracer:
            if k:
                for _ in tracer.iter[:]:
                    for a in acts[:k]:
                        g = a.output
                        del g
    return box["out"]


def _hooked(model, x, gen, hooks):
    """``model.generate`` with the forward hooks ``[(module, hook), ...]`` in place, removed afterwards."""
    hs = [mod.register_forward_hook(h) for mod, h in hooks]
    try:
        return model.generate(**x, **gen)
    finally:
        for h in hs:
            h.remove()


def hook_reads(model, sites, x, gen, k):
    """Generate with k no-op forward hooks on the first k sites."""
    return _hooked(model, x, gen, [(s.module, lambda mod, args, out: None) for s in sites[:k]])


def hook_mul(model, sites, iv, x, gen):
    """The least a hook can do for the steer: each site's forward hook multiplies its output in place by a
    precomputed per-column factor (1 + α on the selected columns, 1 elsewhere: x * 1 is x, so the same bits)."""
    hooks = []
    for s, local in zip(sites, split_by_site(iv.index, sites)):
        d = torch.ones(s.width)
        d[torch.as_tensor(local)] = 1.0 + iv.alpha
        hooks.append((s.module, lambda mod, args, out, d=d: out.mul_(d)))
    return _hooked(model, x, gen, hooks)


def timed_calls(model, sites, run, times: list):
    """Run ``run()`` with each site's MLP timing its act_fn call; append decoding-step call times (ns) to ``times``."""
    def fwd(self, x):
        g = self.gate_proj(x)
        t0 = time.perf_counter_ns()
        a = self.act_fn(g)
        dt = time.perf_counter_ns() - t0
        if g.shape[1] == 1:
            times.append(dt)
        return self.down_proj(a * self.up_proj(x))

    mlps = [model.get_submodule(s.path.rsplit(".", 1)[0]) for s in sites]
    for mlp in mlps:
        mlp.forward = types.MethodType(fwd, mlp)
    try:
        return run()
    finally:
        for mlp in mlps:
            del mlp.forward


def direct(m, sites, iv, gen, batches, rounds):
    """Median time of one act_fn call per mode, interleaved per round; minus bare's = the cost of a visit."""
    out = {}
    for b in batches:
        x = prompts(b)
        modes = {"bare": lambda: m.generate(**x, **gen), "hooks 8": lambda: hook_reads(m, sites, x, gen, 8),
                 "nnsight 8": lambda: nnsight_reads(m, sites, x, gen, 8),
                 "steer": lambda: generate(m, x, iv, sites=sites, **gen),
                 "hooks steer": lambda: hook_run(m, x, sites, iv, capture=False, **gen)[0],
                 "hook mul_": lambda: hook_mul(m, sites, iv, x, gen)}
        ref = edited = None
        for k, f in modes.items():  # warm-up, and the timed forward must not change a token
            y = timed_calls(m, sites, f, [])
            if k in ("bare", "hooks 8", "nnsight 8"):
                ref = y if ref is None else ref
                assert torch.equal(y, ref), f"{k}: the timed forward changed generation"
            else:  # the three steers edit alike
                edited = y if edited is None else edited
                assert torch.equal(y, edited), f"{k}: not the same steered generation"
        times = {k: [] for k in modes}
        order = list(modes)
        rng = random.Random(b)
        for _ in range(rounds):
            rng.shuffle(order)
            for k in order:
                timed_calls(m, sites, modes[k], times[k])
        us = {k: np.asarray(v) / 1e3 for k, v in times.items()}
        med = {k: float(np.median(v)) for k, v in us.items()}
        res = {"calls": {k: len(v) for k, v in us.items()}, "median_us": med,
               "q25_us": {k: float(np.percentile(v, 25)) for k, v in us.items()},
               "q75_us": {k: float(np.percentile(v, 75)) for k, v in us.items()},
               "visit_us": {k: med[k] - med["bare"] for k in modes if k != "bare"}}
        out[f"batch{b}"] = res
        print(f"batch {b}: one act_fn call at a decoding step, median [IQR] over {len(us['bare'])} calls a mode")
        for k in modes:
            print(f"  {k:12s} {med[k]:7.1f} us [{res['q25_us'][k]:.1f}, {res['q75_us'][k]:.1f}]"
                  + ("" if k == "bare" else f"   +{res['visit_us'][k]:.1f} us a visit"), flush=True)
    return out


def per_visit_us(res, bare_step_s, prefix):
    """Least-squares slope of (median CPU ratio - 1) x bare step time over k, in microseconds per visit."""
    ks = [k for k in KS if f"{prefix} {k}" in res["cpu"]]
    ys = [(res["cpu"][f"{prefix} {k}"]["median"] - 1) * bare_step_s * 1e6 for k in ks]
    slope, icpt = np.polyfit(ks, ys, 1)
    return float(slope), float(icpt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10, help="ABAB rounds")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--direct", action="store_true", help="time each act_fn call instead (see above)")
    ap.add_argument("--out", default=None, help="default bench/results/visit_cost.json (--direct: _direct.json)")
    a = ap.parse_args()
    a.out = a.out or str(Path(__file__).parent / "results" / ("visit_cost_direct.json" if a.direct else
                                                              "visit_cost.json"))
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    m, gen = ref_model()
    sites = find_sites(m)
    idx = np.concatenate([s.offset + np.random.default_rng(0).choice(s.width, 256, replace=False) for s in sites])
    iv = Intervention(idx, "steer", 1.0)
    steps = gen["max_new_tokens"]
    out = {"setup": {"threads": a.threads, "repeats": a.repeats, "torch": torch.__version__, "start": _machine(),
                     "model": "Qwen2 8x(256,1024), prompt 32, 64 tokens", "steps": steps}}
    t0 = time.perf_counter()
    if a.direct:
        with torch.no_grad():
            out.update(direct(m, sites, iv, gen, [int(v) for v in a.batches.split(",")], a.repeats))
        out["setup"]["end"] = _machine()
        Path(a.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {a.out} ({time.perf_counter() - t0:.0f} s)")
        return
    with torch.no_grad():
        for b in (int(v) for v in a.batches.split(",")):
            x = prompts(b)
            modes = {f"nnsight {k}": (lambda k=k: nnsight_reads(m, sites, x, gen, k)) for k in KS}
            modes.update({f"hooks {k}": (lambda k=k: hook_reads(m, sites, x, gen, k)) for k in KS if k})
            modes["steer"] = lambda: generate(m, x, iv, sites=sites, **gen)
            modes["hooks steer"] = lambda: hook_run(m, x, sites, iv, capture=False, **gen)[0]
            pairs = [(f"nnsight {k}", f"hooks {k}") for k in KS if k] + [("steer", "hooks steer")]
            res = measure(f"visit b{b}", lambda: m.generate(**x, **gen), modes, pairs, a.repeats)
            step_s = res["bare_s"]["cpu_median"] / steps
            nn_slope, nn_icpt = per_visit_us(res, step_s, "nnsight")
            hk_slope, _ = per_visit_us(res, step_s, "hooks")
            res["per_visit_us"] = {"nnsight": nn_slope, "nnsight_trace_fixed": nn_icpt, "hooks": hk_slope}
            res["bare_step_ms"] = step_s * 1e3
            out[f"batch{b}"] = res
            print(f"batch {b}: bare {step_s * 1e3:.2f} ms a step (CPU); identical to hooks: "
                  f"{res['identical_to_hooks']}")
            for k, v in res["cpu"].items():
                print(f"  {k:12s} {v['median']:.3f}x [{v['q25']:.3f}, {v['q75']:.3f}]")
            print(f"  per visit: nnsight {nn_slope:.0f} us, hooks {hk_slope:.0f} us; nnsight's fixed cost a step "
                  f"(k = 0 intercept) {nn_icpt:.0f} us", flush=True)
    out["setup"]["end"] = _machine()
    out["setup"]["wall_s"] = time.perf_counter() - t0
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out} ({out['setup']['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
