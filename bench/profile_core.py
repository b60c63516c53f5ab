"""Where the per-step time of capture and steer goes (reference model, batch 1): cProfile of bare generate, the
nnsight runner and the plain-hook floor, with the time inside nnsight's own files summed.

    .venv/bin/python bench/profile_core.py [--runs 3]   -> bench/results/profile_core.txt
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import prompts, ref_model  # noqa: E402
from esnlib.capture import capture  # noqa: E402
from esnlib.intervention import Intervention, generate  # noqa: E402
from esnlib.sites import find_sites  # noqa: E402
from hook_floor import hook_run  # noqa: E402


def _own_time(stats: pstats.Stats, needle: str) -> float:
    """Seconds spent inside functions whose file path contains ``needle`` (tottime, not cumulative)."""
    return sum(v[2] for k, v in stats.stats.items() if needle in k[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "profile_core.txt"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    m, gen = ref_model()
    sites = find_sites(m)
    rng = np.random.default_rng(0)
    iv = Intervention(np.concatenate([s.offset + rng.choice(s.width, 256, replace=False) for s in sites]), "steer")
    x = prompts(1)
    modes = {"bare": lambda: m.generate(**x, **gen), "capture (nnsight)": lambda: capture(m, x, sites=sites, **gen),
             "capture (hooks)": lambda: hook_run(m, x, sites, capture=True, **gen),
             "steer (nnsight)": lambda: generate(m, x, iv, sites=sites, **gen),
             "steer (hooks)": lambda: hook_run(m, x, sites, iv, capture=False, **gen)}
    lines, steps = [], 64 * a.runs
    with torch.no_grad():
        for f in modes.values():
            f()
        for name, f in modes.items():
            pr = cProfile.Profile()
            pr.enable()
            for _ in range(a.runs):
                f()
            pr.disable()
            st = pstats.Stats(pr)
            nn, gl = _own_time(st, "/nnsight/"), _own_time(st, "greenlet")
            es = _own_time(st, "/esnlib/") + _own_time(st, "hook_floor")
            lines.append(f"== {name}: {st.total_tt / steps * 1e6:.0f} us per step under cProfile; inside nnsight "
                         f"{nn / steps * 1e6:.0f} us, greenlet {gl / steps * 1e6:.0f} us, esnlib/hook code "
                         f"{es / steps * 1e6:.0f} us per step")
            buf = io.StringIO()
            pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(18)
            lines.append(buf.getvalue().split("\n", 6)[-1])
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(ln for ln in lines if ln.startswith("==")))


if __name__ == "__main__":
    main()
