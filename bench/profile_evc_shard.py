"""Where the time of EVC evaluation goes: each step of ``run_evc_conditions`` timed in one run.

The notebooks' world (batch 64, shards of 16 sources x 4 targets, their naturalness judge and per-shard setting), a
fresh result store, the baseline and two random steering masks (460 neurons, α = 1) on ``--n-utts`` TEST sources,
batched row-wise as the notebooks batch them. Printed: wall seconds and share of the total for generation (the
adapter's traced ``generate``), rendering, each judge, naturalness, features and store writes.

    .venv/bin/python bench/profile_evc_shard.py [--n-utts 32] [--no-share-prefix]

Measured 2026-11-30 at about 23:55, left-padded prompts (before the shared prefix), 384 samples in 109.5 s: generation 67.0 %,
naturalness 17.6 % (96 clips), rendering 5.7 %, prosody judge 5.0 %, spectral judge 2.0 %, features 1.9 %.
Measured 2026-12-01 02:06 with this script, shared prefix: 384 samples in 86.2 s: generation 49.8 % (42.9 s against
73.4 s), naturalness 27.5 %, rendering 8.1 %, prosody judge 7.5 %, spectral judge 3.1 %, features 2.8 %.
Both with the notebooks' naturalness of then: DNSMOS P.835 OVRL on the first 16 samples of a shard. Since 2026-12-01
they score every sample with DNSMOS P.808 (docs/demo_world.md).
Measured 2026-12-02 06:14 (every sample scored by P.808; the talker reading the user turn): 384 samples in 111.1 s:
generation 68.1 % (75.6 s), rendering 9.7 %, naturalness 7.4 %, prosody judge 7.1 %, features 4.4 %, spectral judge
2.0 %. One batch-64 generate (11.4 s) splits into the prompt's unshared rest, 64 rows x 32 positions (7.7 s:
max_new_tokens=1), and 11 decoding steps (3.7 s); matrix multiplies are 67 % of it, at the 90-110 GFLOPS this machine's
two cores reach on those shapes (docs/notebooks.md).
"""
from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import esnlib.experiments as X  # noqa: E402
from esnlib import intervention as I  # noqa: E402
from esnlib import runs  # noqa: E402
from esnlib.models import demo as D  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-root", default="data/demo_corpus")
    ap.add_argument("--n-utts", type=int, default=32)
    ap.add_argument("--no-share-prefix", action="store_true")
    a = ap.parse_args()
    store = tempfile.mkdtemp(prefix="esnlib_profile_")
    try:
        S = X.defaults()
        w = X.load_world("demo", corpus_root=a.corpus_root, results_dir=store, batch_size=S["batch_size"],
                         shard_size=S["shard_size"], naturalness_per_shard=S["naturalness_per_shard"], progress=False)
        w.adapter.share_prefix = not a.no_share_prefix
        T, N = collections.Counter(), collections.Counter()

        def wrap(obj, name, key):
            f = getattr(obj, name)

            def timed(*args, **kw):
                s = time.perf_counter()
                r = f(*args, **kw)
                T[key] += time.perf_counter() - s
                N[key] += 1
                return r
            setattr(obj, name, timed)

        wrap(w.adapter, "_run", "generate (traced)")
        wrap(D, "render", "render")
        for n, j in w.judges.items():
            wrap(j, "predict_proba", f"judge {n}")
        wrap(w.naturalness, "score", "naturalness")
        wrap(w.adapter, "_feats", "features")
        wrap(w.store, "write", "store.write")
        utts = w.split(X.TEST, a.n_utts)
        n = sum(s.width for s in w.adapter.sites("lm"))
        rng = np.random.default_rng(0)
        conds = [({"selector": f"profile{i}"}, iv) for i, iv in
                 enumerate([None] + [I.Intervention(rng.choice(n, 460, replace=False), "steer", 1.0)
                                     for _ in range(2)])]
        s = time.perf_counter()
        frames = runs.run_evc_conditions(w, utts, conds)
        total = time.perf_counter() - s
        print(f"total {total:.1f} s, {sum(len(f) for f in frames)} samples, shared prefix: {w.adapter.share_prefix}")
        for k, v in T.most_common():
            print(f"{k:22s} {v:7.1f} s  {100 * v / total:5.1f} %  calls {N[k]}")
    finally:
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
