"""Capture on the demo LALM: reducing each site's prompt activation as it is served (esnlib.capture today) against
holding every site's prompt activation of a side until its last layer and reducing them together (esnlib before
2026-11-30). Both give the same bits; the second keeps 30 prompt-sized tensors alive at once.

ABAB rounds in one process (bench_core.measure): bare, X1, bare, X2, bare with the order shuffled per round; each
ratio is X over its two neighbouring bare runs (CPU time, one torch thread). Also the peak rise of resident memory
during one capture, in a fresh subprocess per variant.

    .venv/bin/python bench/bench_prompt_hold.py [--repeats 5] [--batch 64] [--out bench/results/prompt_hold.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import esnlib.capture  # noqa: E402,F401
from bench_core import _print, demo_setup, measure  # noqa: E402

CAP = sys.modules["esnlib.capture"]  # the module (esnlib re-exports a function of the same name)
BASE = CAP._Accumulator


class HoldAll(BASE):
    """The pre-2026-11-30 order: a prompt's activations are kept until the side's last site, then reduced."""

    def site(self, k, g):
        if self.t == 1:
            return super().site(k, g)
        if k == 0:
            self.held = []
        self.held.append(g)

    def end(self):
        if self.t != 1:
            for k, g in enumerate(self.held):
                super().site(k, g)
            self.held = []
        super().end()


def _capture(m, sites, x, gen, hold: bool):
    CAP._Accumulator = HoldAll if hold else BASE
    try:
        return CAP.capture(m, x, sites=sites, fn=m.generate, **gen)
    finally:
        CAP._Accumulator = BASE


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss(variant: str, batch: int) -> None:
    """Peak resident memory during one capture over the resident memory before it (sampled every 2 ms; the
    process's lifetime peak is set by loading the model, so ru_maxrss cannot see it)."""
    m, sites, x, gen, _ = demo_setup(batch)
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    with torch.no_grad():
        m.generate(**x, **gen)
        before = _rss_mb()
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _capture(m, sites, x, gen, hold=variant == "hold")
        done.set()
        th.join()
    print(json.dumps({"variant": variant, "prompt_tokens": int(x["input_ids"].shape[1]),
                      "rss_rise_mb": peak[0] - before}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "prompt_hold.json"))
    ap.add_argument("--rss", choices=["served", "hold"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if a.rss:
        return rss(a.rss, a.batch)
    m, sites, x, gen, _ = demo_setup(a.batch)
    modes = {"capture (reduced as served)": lambda: _capture(m, sites, x, gen, hold=False),
             "capture (prompt held)": lambda: _capture(m, sites, x, gen, hold=True)}
    with torch.no_grad():
        res = measure(f"demo b{a.batch}", lambda: m.generate(**x, **gen), modes,
                      [("capture (reduced as served)", "capture (prompt held)")], a.repeats)
    _print(f"demo LALM capture, batch {a.batch}", res)
    res["rss"] = [json.loads(subprocess.run([sys.executable, __file__, "--rss", v, "--batch", str(a.batch)],
                                            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
                  for v in ("served", "hold")]
    for r in res["rss"]:
        print(f"  peak rise of resident memory during one capture, {r['variant']}: {r['rss_rise_mb']:.0f} MB")
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
