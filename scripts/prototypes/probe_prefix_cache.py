"""Prototype: compute the EVC prompt's shared prefix once per batch (KV cache) instead of once per row (issue 11, time).

Every EVC prompt of the demo LALM starts with the same tokens: the system turn and the worked exchange, up to the
user turn's audio (57 of ~86 tokens). The prefill of the prompt is nearly all of a batch's generation cost (the
answers are ~12 tokens), so computing the prefix once and letting every row attend to its cached keys and values
should remove about two thirds of the prefill. This probe measures that on one batch as the notebooks batch it
(``--n-utts`` TEST sources x the four targets), outside nnsight, with plain PyTorch forward hooks for the edit:

* ``current``: ``DemoOmni.generate`` on the left-padded prompts;
* ``cached``: ``DemoOmni.generate(prefix_groups=zeros)``: the prompts laid out as [prefix][padding][rest of the
  prompt], the prefix run once (batch 1, under the same edit), its cache repeated to the batch, then
  ``thinker.generate`` from that cache.

Reported, unedited and under a steering edit (``--alpha``, a random mask of ``--rate`` of the LM neurons, applied at
every position, the prefix included, as esnlib's interventions are): identical decoded texts, the largest difference
of the talker's input states and of its prosody, and the CPU time of both paths in ABAB rounds (median and IQR of the
per-round ratio). The probe came first, with its own copy of the layout and the cache (2026-12-01, the result in
bench/results/prefix_cache_2026-12-01.json: 0.58x CPU time, texts 64 / 64 equal, prosody within 3e-5); the demo LALM
now does this itself and the probe calls it, under nnsight with the edits of each group of rows
(``DemoOmni.generate(prefix_groups=...)``, ``esnlib.capture._Prefix``; docs/demo_world.md).

    python scripts/prototypes/probe_prefix_cache.py --out bench/results/prefix_cache.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from esnlib.constants import TARGET_EMOTIONS, TEST
from esnlib.world import load_world


class SteerHooks:
    """g[..., idx] *= (1 + alpha) on every LM-side site at every position (plain forward hooks)."""

    def __init__(self, sites, index: np.ndarray, alpha: float):
        self.sites, self.alpha = sites, alpha
        self.local = [torch.as_tensor(index[(index >= s.offset) & (index < s.stop)] - s.offset) for s in sites]
        self.handles = []

    def __enter__(self):
        for s, ix in zip(self.sites, self.local):
            if len(ix):
                self.handles.append(s.module.register_forward_hook(
                    lambda _m, _i, o, ix=ix: o.index_copy_(-1, ix, o.index_select(-1, ix) * (1 + self.alpha))))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-root", default="data/demo_corpus")
    ap.add_argument("--n-utts", type=int, default=16, help="TEST sources; x4 targets = the batch (16 -> 64 rows)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--rate", type=float, default=0.01)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    torch.manual_seed(0)
    w = load_world("demo", corpus_root=a.corpus_root, results_dir="/tmp/esnlib_prefix_probe", naturalness=None,
                   judges="prosody", progress=False)
    ad, m = w.adapter, w.adapter.model
    utts = w.split(TEST, a.n_utts)
    src = [u for u in utts for _ in TARGET_EMOTIONS]
    tgt = [t for _ in utts for t in TARGET_EMOTIONS]
    inputs = m.prepare_inputs([ad._feats(u) for u in src], "evc", tgt, [u.text for u in src])
    ids, am = inputs["input_ids"], inputs["attention_mask"]
    L = ids.shape[1]
    B = ids.shape[0]
    groups = torch.zeros(B, dtype=torch.long)
    ids2, _, P, _ = m._shared_prefix(ids, am, groups)  # the layout DemoOmni.generate uses for the shared prefix
    sites = ad.sites("lm")
    n = sum(s.width for s in sites)
    mask = np.sort(np.random.default_rng(0).choice(n, int(round(a.rate * n)), replace=False))

    def current():
        out = m.generate(**inputs, return_audio=True)
        return out.thinker_output, m.talker_inputs(out.thinker_output, ids)

    def cached():
        out = m.generate(**inputs, return_audio=True, prefix_groups=groups)
        return out.thinker_output, m.talker_inputs(out.thinker_output, ids2[:, P:])

    def compare(edit: bool) -> dict:
        res = {}
        for name, f in (("current", current), ("cached", cached)):
            if edit:
                with SteerHooks(sites, mask, a.alpha):
                    res[name] = f()
            else:
                res[name] = f()
        (oa, (ga, sa, va)), (ob, (gb, sb, vb)) = res["current"], res["cached"]
        ta = [m.decode_text(s.tolist()) for s in ga]
        tb = [m.decode_text(s.tolist()) for s in gb]
        with torch.no_grad():
            pa, pb = m.talker_forward(sa, va), m.talker_forward(sb, vb)
        read_a = torch.cat([sa[b][va[b]] for b in range(B)])
        read_b = torch.cat([sb[b][vb[b]] for b in range(B)]) if torch.equal(va.sum(1), vb.sum(1)) else None
        return {"texts_equal": int(sum(x == y for x, y in zip(ta, tb))), "rows": B,
                "generated_ids_equal": bool(torch.equal(ga, gb)),
                "talker_states_max_abs_diff": float((read_a - read_b).abs().max()) if read_b is not None else None,
                "talker_states_max_abs": float(read_a.abs().max()),
                "prosody_max_abs_diff": float((pa - pb).abs().max()), "prosody_max_abs": float(pa.abs().max())}

    report = {"batch": B, "padded_prompt": L, "shared_prefix": P,
              "mean_prompt": float(am.sum(1).float().mean()), "mask_neurons": len(mask), "alpha": a.alpha,
              "unedited": compare(False), "steered": compare(True)}
    print(json.dumps({k: report[k] for k in ("batch", "padded_prompt", "shared_prefix", "mean_prompt")}))
    print("unedited:", report["unedited"])
    print("steered: ", report["steered"], flush=True)
    tc, tk = [], []
    for i in range(a.rounds):
        order = (("current", current, tc), ("cached", cached, tk))
        for name, f, acc in (order if i % 2 == 0 else order[::-1]):
            s = time.process_time()
            f()
            acc.append(time.process_time() - s)
        print(f"round {i}: current {tc[-1]:.2f} s CPU, cached {tk[-1]:.2f} s CPU, ratio {tk[-1] / tc[-1]:.3f}",
              flush=True)
    r = np.array(tk) / np.array(tc)
    report.update({"rounds": a.rounds, "current_cpu_s": tc, "cached_cpu_s": tk, "ratio_median": float(np.median(r)),
                   "ratio_iqr": [float(np.percentile(r, 25)), float(np.percentile(r, 75))],
                   "load_average": list(os.getloadavg()), "torch_threads": torch.get_num_threads(),
                   "date": time.strftime("%Y-%m-%d %H:%M")})
    print(f"cached / current CPU time: median {report['ratio_median']:.3f} IQR {report['ratio_iqr']}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
