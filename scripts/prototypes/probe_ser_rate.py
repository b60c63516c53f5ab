"""SER deactivation against the selection rate r, on DEVELOPMENT (never TEST): does a rate exist at which deactivating
an emotion's CAS neurons lowers that emotion's recall more than the others'? Per rate and e_mask: Δ recall (pp) of
e_mask's own emotion (self) and of the other four (other), with n; the mean over emotions.

    python scripts/prototypes/probe_ser_rate.py <results_dir> <n_items> <rates,...> [selector] [kind] [alpha]
"""
import json
import sys

import numpy as np
import torch

import esnlib.experiments as X

torch.set_num_threads(2)
results_dir, n = sys.argv[1], int(sys.argv[2])
rates = [float(x) for x in sys.argv[3].split(",")]
selector = sys.argv[4] if len(sys.argv) > 4 else "CAS"
kind = sys.argv[5] if len(sys.argv) > 5 else "deactivate"
alpha = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
w = X.load_world(results_dir=results_dir, progress=False, task="ser")
base = X.ser_baseline(w, "DEVELOPMENT", n=n)
bacc = base.groupby("emotion")["correct"].mean()
print("baseline recall", (100 * bacc).round(1).to_dict(), "n", len(base), flush=True)
out = []
for r in rates:
    m = X.identify_ser(w, selector, rate=r, seed=0)
    rows = X.ser_effects(w, m, kind=kind, alpha=alpha, split="DEVELOPMENT", n=n)
    acc = rows.groupby(["mask_emotion", "emotion"])["correct"].mean()
    selfs, others = [], []
    for e in m.masks:
        s = 100 * (acc[(e, e)] - bacc[e])
        o = np.mean([100 * (acc[(e, f)] - bacc[f]) for f in bacc.index if f != e])
        pred_neutral = 100 * (rows[rows.mask_emotion == e]["pred"] == "neutral").mean()
        selfs.append(s); others.append(o)
        out.append({"rate": r, "e_mask": e, "self": s, "other": o, "pred_neutral": pred_neutral,
                    "n_mask": len(m.masks[e])})
        print(f"r={r:.4f} {e:9s} self {s:+6.1f} other {o:+6.1f} pred_neutral {pred_neutral:5.1f} %", flush=True)
    print(f"r={r:.4f} MEAN self {np.mean(selfs):+6.1f} other {np.mean(others):+6.1f}", flush=True)
json.dump({"n": len(base), "baseline": (100 * bacc).to_dict(), "rows": out, "selector": selector, "kind": kind,
           "alpha": alpha}, open(f"/tmp/s/ser_rate_{selector}_{kind}.json", "w"), indent=1)
