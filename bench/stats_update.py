"""The per-step statistics update of capture at the demo LALM's size, before and after reusing its temporaries.

At every decoding step capture joins the side's (b, 1, width) activations into one buffer and updates positive
counts, sums and sums of squares (``capture._Accumulator.end``). At batch 64 and 46,080 neurons each of those tensors
is 11.8 MB, so the update is memory traffic. Until 2026-12-02 it also allocated two (b, width) temporaries a step
(``gv > 0``, ``gv * gv``) and multiplied by the validity mask even when every row was valid; now it reuses two
buffers and, on CPU, skips the multiply by an all-ones mask (x * 1 is x, bit for bit). This times the library's
``end`` (after) against the same update written as it was (before), ABAB with shuffled order, one torch thread, and
checks that both leave the same bits. Results: ``bench/results/stats_update.json``.

    .venv/bin/python bench/stats_update.py [--rounds 30] [--batch 64]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import _summary  # noqa: E402
from esnlib.capture import _Accumulator  # noqa: E402

SITES, WIDTH = 30, 1536  # the demo LALM's thinker (SmolLM2-135M)


def _acc(b):
    """An accumulator whose step state is set by hand: the part ``end`` reads."""
    a = _Accumulator.__new__(_Accumulator)
    n = SITES * WIDTH
    a.pos, a.sum, a.sumsq = torch.zeros(b, n, dtype=torch.int32), torch.zeros(b, n), torch.zeros(b, n)
    a.buf = torch.empty(b, 1, n)
    a.gt, a.sq = torch.empty(b, n, dtype=torch.bool), torch.empty(b, n)
    a.t, a.w, a.rows = 1, None, None
    return a


def after(a, gs, valid):
    a.gs, a.valid, a.t = list(gs), valid, 1
    a.end()


def before(a, gs, valid):
    gv = torch.cat(gs, dim=-1, out=a.buf)[:, 0]
    gv.mul_(valid[:, None])
    a.pos += gv > 0
    a.sum += gv
    a.sumsq += gv * gv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="updates per timing")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "stats_update.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    gs = [torch.randn(a.batch, 1, WIDTH, generator=g) for _ in range(SITES)]
    all_valid = torch.ones(a.batch, dtype=torch.bool)
    one_out = all_valid.clone()
    one_out[0] = False
    out = {"setup": {"batch": a.batch, "neurons": SITES * WIDTH, "rounds": a.rounds, "steps_per_timing": a.steps,
                     "torch": torch.__version__, "load_before": list(os.getloadavg())}}
    for name, valid in (("all rows valid", all_valid), ("one row finished", one_out)):
        x, y = _acc(a.batch), _acc(a.batch)
        for _ in range(3):
            before(x, gs, valid)
            after(y, gs, valid)
        same = all(torch.equal(getattr(x, f), getattr(y, f)) for f in ("pos", "sum", "sumsq"))
        t = {"before": [], "after": []}
        rng = random.Random(0)
        for _ in range(a.rounds):
            order = [("before", before, x), ("after", after, y)]
            rng.shuffle(order)
            for k, f, acc in order:
                c0 = time.process_time()
                for _ in range(a.steps):
                    f(acc, gs, valid)
                t[k].append((time.process_time() - c0) / a.steps * 1e3)
        ratio = [q / p for p, q in zip(t["before"], t["after"])]
        res = {"identical": same, "ms_per_step": {k: statistics.median(v) for k, v in t.items()},
               "after_over_before": _summary(ratio), "raw_ms": t}
        out[name] = res
        print(f"{name}: before {res['ms_per_step']['before']:.2f} ms, after {res['ms_per_step']['after']:.2f} ms a "
              f"step (CPU, median of {a.rounds}); after/before {res['after_over_before']['median']:.3f} "
              f"[{res['after_over_before']['q25']:.3f}, {res['after_over_before']['q75']:.3f}]; same bits: {same}")
    out["setup"]["load_after"] = list(os.getloadavg())
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
