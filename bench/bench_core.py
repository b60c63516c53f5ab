"""Overhead of esnlib.capture and esnlib.generate (every edit kind) over bare ``generate``, with plain forward hooks
doing the same work side by side as the floor; built to mean something on a shared, noisy machine.

Design: per (model, batch) every mode runs once as warm-up (and nnsight vs hooks outputs and statistics are checked
for bit-identity), then ``repeats`` rounds of ABAB pairs: bare, X1, bare, X2, ..., bare with the modes shuffled per
round; the ratio of X is its time over the mean of the two bare runs next to it. Reported: median and
interquartile range of those per-pair ratios, for wall time (what a user sees) and for process CPU time (robust to
time-slicing by other jobs; torch threads pinned, 1 by default). The load average is recorded before and after each
configuration, and the process niceness (a reniced benchmark measures the scheduler, not the code).

Configurations (``--quick`` runs fewer repeats and skips SmolLM2 and batch 64 of the reference model):
  ref    Qwen2 8 layers, hidden 256, intermediate 1024 (random weights); prompt 32, 64 greedy tokens; batch 1, 4, 64
  smollm SmolLM2-135M-Instruct (real weights, esnlib.models.demo.load_backbone); prompt 32, 32 tokens; batch 1, 4
  demo   the demo LALM (DemoOmni, EVC prompts, talker on) at its notebook batch size (64): capture of the thinker and
         a row-wise steer (half the rows steered on a random 1 % mask, alpha 1), as the notebooks run them: the
         prompt's shared prefix once per group of rows with the same edit (``prefix_groups``)

    .venv/bin/python bench/bench_core.py [--quick] [--only ref,demo] [--batches 1,4] [--repeats N] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from esnlib.capture import capture  # noqa: E402
from esnlib.intervention import Intervention, RowwiseIntervention, generate, prefix_groups  # noqa: E402
from esnlib.sites import find_sites, n_neurons  # noqa: E402
from hook_floor import hook_run  # noqa: E402

KINDS = (("steer", 1.0), ("add", 0.5), ("clamp", 0.5), ("deactivate", 0.0))


def _machine() -> dict:
    return {"load": list(os.getloadavg()), "nice": os.nice(0), "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def _equal(a, b) -> bool:
    """Bit-identity of two generate outputs (tensors, HF outputs, DemoOutput) or CaptureStats."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if a is None or b is None:
        return a is b
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    fields = ["sequences", "prosody", "positive", "sum", "sumsq", "site_tokens"]
    have = [f for f in fields if hasattr(a, f)]
    return bool(have) and all(_equal(getattr(a, f), getattr(b, f)) for f in have)


def _q(xs, p):
    return float(np.percentile(np.asarray(xs), p))


def _summary(ratios):
    return {"median": statistics.median(ratios), "q25": _q(ratios, 25), "q75": _q(ratios, 75), "n": len(ratios)}


def measure(name, bare, modes, pairs, repeats, seed=0):
    """Warm-up + identity checks, then ABAB rounds. modes: {label: fn}; pairs: [(nnsight label, hook label)]."""
    before = _machine()
    outs = {"bare": bare()}
    for k, f in modes.items():
        outs[k] = f()
    identical = {nn: _equal(outs[nn], outs[hk]) for nn, hk in pairs}
    wall = {k: [] for k in modes}
    cpu = {k: [] for k in modes}
    raw = {k: [] for k in ["bare", *modes]}
    rng = random.Random(seed)

    def timed(f):
        w0, c0 = time.perf_counter(), time.process_time()
        f()
        return time.perf_counter() - w0, time.process_time() - c0

    for r in range(repeats):
        order = list(modes)
        rng.shuffle(order)
        prev = timed(bare)
        raw["bare"].append(prev)
        for k in order:
            x = timed(modes[k])
            nxt = timed(bare)
            raw[k].append(x)
            raw["bare"].append(nxt)
            wall[k].append(x[0] / ((prev[0] + nxt[0]) / 2))
            cpu[k].append(x[1] / ((prev[1] + nxt[1]) / 2))
            prev = nxt
        print(f"  {name}: round {r + 1}/{repeats}", flush=True)
    res = {"machine_before": before, "machine_after": _machine(), "identical_to_hooks": identical,
           "bare_s": {"wall_median": statistics.median(w for w, _ in raw["bare"]),
                      "cpu_median": statistics.median(c for _, c in raw["bare"])},
           "wall": {k: _summary(v) for k, v in wall.items()}, "cpu": {k: _summary(v) for k, v in cpu.items()},
           "raw_s": raw, "ratios": {"wall": wall, "cpu": cpu}}
    return res


def _print(name, res):
    b = res["bare_s"]
    print(f"{name}: bare {b['wall_median'] * 1e3:.0f} ms wall / {b['cpu_median'] * 1e3:.0f} ms cpu; load "
          f"{res['machine_before']['load'][0]:.1f} -> {res['machine_after']['load'][0]:.1f}; nice "
          f"{res['machine_after']['nice']}; identical to hooks: {res['identical_to_hooks']}")
    print(f"  {'mode':22s} {'wall median [IQR]':>24s} {'cpu median [IQR]':>24s}")
    for k in res["wall"]:
        w, c = res["wall"][k], res["cpu"][k]
        print(f"  {k:22s} {w['median']:8.3f}x [{w['q25']:.3f}, {w['q75']:.3f}] "
              f"{c['median']:8.3f}x [{c['q25']:.3f}, {c['q75']:.3f}]", flush=True)


def _modes(model, sites, x, gen, kinds, fn=None):
    """nnsight and hook modes for capture and each edit kind (256 neurons per layer, or 1 % for wide models)."""
    rng = np.random.default_rng(0)
    k = min(256, max(1, sites[0].width // 100)) if sites[0].width > 1024 else 256
    idx = np.concatenate([s.offset + rng.choice(s.width, min(k, s.width), replace=False) for s in sites])
    kw = dict(gen, fn=fn) if fn is not None else dict(gen)
    modes = {"capture": lambda: capture(model, x, sites=sites, **kw),
             "hooks capture": lambda: hook_run(model, x, sites, capture=True, **kw)}
    pairs = [("capture", "hooks capture")]
    for kind, alpha in kinds:
        iv = Intervention(idx, kind, alpha)
        modes[kind] = lambda iv=iv: generate(model, x, iv, sites=sites, **kw)
        modes[f"hooks {kind}"] = lambda iv=iv: hook_run(model, x, sites, iv, capture=False, **kw)[0]
        pairs.append((kind, f"hooks {kind}"))
    return modes, pairs


def _bench_lm(label, key, m, gen, batches, repeats, kinds, lo, hi):
    """One decoder LM at several batch sizes: random prompts of 32 ids in [lo, hi), no padding."""
    sites = find_sites(m)
    out = {}
    for b in batches:
        x = prompts(b, lo, hi)
        modes, pairs = _modes(m, sites, x, gen, kinds)
        out[f"batch{b}"] = res = measure(f"{key} b{b}", lambda: m.generate(**x, **gen), modes, pairs, repeats)
        _print(f"{label}, batch {b}", res)
    return out


def prompts(b, lo=1, hi=1000):
    """``b`` random prompts of 32 ids in [lo, hi), seeded by ``b``, no padding."""
    return dict(input_ids=torch.randint(lo, hi, (b, 32), generator=torch.Generator().manual_seed(b)),
                attention_mask=torch.ones(b, 32, dtype=torch.long))


def ref_model():
    """The reference model of the core benchmarks (Qwen2, 8 layers, hidden 256, intermediate 1024, random weights of
    seed 0) and its generate kwargs: 64 greedy tokens, every row decodes all of them."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    m = Qwen2ForCausalLM(Qwen2Config(vocab_size=1000, hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
                                     num_attention_heads=4, num_key_value_heads=2)).eval()
    return m, dict(max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0)


def bench_ref(batches, repeats, kinds):
    m, gen = ref_model()
    return _bench_lm("reference Qwen2 8x(256,1024)", "ref", m, gen, batches, repeats, kinds, 1, 1000)


def bench_smollm(batches, repeats, kinds):
    from esnlib.models.demo import load_backbone

    m, tok = load_backbone()
    gen = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=tok.pad_token_id or 0)
    return _bench_lm("SmolLM2-135M", "smollm", m, gen, batches, repeats, kinds, 100, 40000)


TEXTS = ("The kids are playing in the park.", "I cannot find my keys anywhere.", "We won the match last night.",
         "The train was late again this morning.")


def demo_setup(batch):
    """(model, LM sites, EVC inputs, generate kwargs, rng) of the demo LALM on ``batch`` random-feature rows; the
    rng continues the stream the features were drawn from."""
    from esnlib.models.demo import EMOTIONS, N_FEATURES, load_demo_model

    m = load_demo_model()
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((int(rng.integers(150, 300)), N_FEATURES)).astype(np.float32) for _ in range(batch)]
    targets = [EMOTIONS[i % len(EMOTIONS)] for i in range(batch)]
    texts = [TEXTS[i % len(TEXTS)] for i in range(batch)]
    x = m.prepare_inputs(feats, "evc", targets, texts)
    # every row decodes max_new_tokens (EOS suppressed): an edit that changes where rows stop would otherwise change
    # the amount of work and the ratio would measure that, not the overhead
    return m, find_sites(m, scope="lm"), x, dict(return_audio=True, min_new_tokens=m.config.max_new_tokens), rng


def bench_demo(batch, repeats):
    """As the notebooks run EVC: the prompt's shared prefix computed once per group of rows with the same edit
    (``prefix_groups``; one group for bare, capture and a whole-batch steer, two for the row-wise steer)."""
    m, sites, x, gen, rng = demo_setup(batch)
    n = n_neurons(sites)
    iv = Intervention(rng.choice(n, n // 100, replace=False), "steer", 1.0)
    rw = RowwiseIntervention.repeat([None, iv], batch // 2)
    one = dict(gen, prefix_groups=prefix_groups(None, batch))
    two = dict(gen, prefix_groups=prefix_groups(rw, batch))
    modes = {"capture": lambda: capture(m, x, sites=sites, fn=m.generate, **one),
             "hooks capture": lambda: hook_run(m, x, sites, capture=True, fn=m.generate, **one),
             "rowwise steer": lambda: generate(m, x, rw, sites=sites, fn=m.generate, **two),
             "hooks rowwise steer": lambda: hook_run(m, x, sites, rw, capture=False, fn=m.generate, **two)[0],
             "steer": lambda: generate(m, x, iv, sites=sites, fn=m.generate, **one),
             "hooks steer": lambda: hook_run(m, x, sites, iv, capture=False, fn=m.generate, **one)[0]}
    pairs = [("capture", "hooks capture"), ("rowwise steer", "hooks rowwise steer"), ("steer", "hooks steer")]
    res = measure(f"demo b{batch}", lambda: m.generate(**x, **one), modes, pairs, repeats)
    _print(f"demo LALM (EVC, talker on), batch {batch}", res)
    return {f"batch{batch}": res}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats; no SmolLM2, no batch 64 on the reference")
    ap.add_argument("--only", default="ref,smollm,demo", help="comma list of ref, smollm, demo")
    ap.add_argument("--repeats", type=int, default=None, help="ABAB rounds per configuration (default 10, quick 4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default=None, help="reference-model batch sizes, comma list (default 1,4,64; quick 1,4)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "core.json"))
    a = ap.parse_args()
    only = set(a.only.split(","))
    if not only <= {"ref", "smollm", "demo"}:
        ap.error(f"--only takes ref, smollm, demo; got {a.only!r}")
    if a.quick:
        only -= {"smollm"}
    reps = a.repeats or (4 if a.quick else 10)
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    results = {"setup": {"threads": a.threads, "repeats": reps, "quick": a.quick, "torch": torch.__version__,
                         "platform": platform.platform(), "cpus": os.cpu_count(), "start": _machine()}}
    t0 = time.perf_counter()
    with torch.no_grad():
        if "ref" in only:
            batches = tuple(int(b) for b in a.batches.split(",")) if a.batches else (1, 4) if a.quick else (1, 4, 64)
            results["ref"] = bench_ref(batches, reps, KINDS)
        if "smollm" in only:
            results["smollm"] = bench_smollm((1, 4), reps, KINDS[:1])
        if "demo" in only:
            results["demo"] = bench_demo(64, max(2, reps // 2) if a.quick else reps // 2)
    results["setup"]["end"] = _machine()
    results["setup"]["wall_s"] = time.perf_counter() - t0
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {a.out} ({results['setup']['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
