"""SER deactivation against the selection rate r, on DEVELOPMENT (never TEST): does a rate exist at which deactivating
an emotion's CAS neurons lowers that emotion's recall more than the others'? Per rate and e_mask: Δ recall (pp) of
e_mask's own emotion (self) and the mean over the other four (other), from ``esnlib.tables.ser_effect_table``; per
rate the pooled self / other with 95 % CIs (``ser_self_other``, as notebook 08 reports them).

    python scripts/prototypes/probe_ser_rate.py <results_dir> <n_items> <rates,...> [--selector CAS]
        [--kind deactivate] [--alpha 0] [--out ser_rate.json]

Recorded: bench/results/ser_rate_dev_2026-12-01.json (n = 300, rates 0.0025,0.005,0.01,0.02), written by an earlier
version of this script whose per-e_mask loop computed the same cells by hand (no pooled CIs then).
"""
import argparse
import json

import torch

import esnlib.experiments as X

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("results_dir")
ap.add_argument("n", type=int, help="DEVELOPMENT items")
ap.add_argument("rates", help="comma list of selection rates")
ap.add_argument("--selector", default="CAS")
ap.add_argument("--kind", default="deactivate")
ap.add_argument("--alpha", type=float, default=0.0)
ap.add_argument("--out", default="ser_rate.json")
a = ap.parse_args()
torch.set_num_threads(2)
w = X.load_world(results_dir=a.results_dir, progress=False, task="ser")
base = X.ser_baseline(w, "DEVELOPMENT", n=a.n)
bacc = base.groupby("emotion")["correct"].mean()
print("baseline recall", (100 * bacc).round(1).to_dict(), "n", len(base), flush=True)
out, pooled = [], []
for r in (float(x) for x in a.rates.split(",")):
    m = X.identify_ser(w, a.selector, rate=r, seed=0)
    rows = X.ser_effects(w, m, kind=a.kind, alpha=a.alpha, split="DEVELOPMENT", n=a.n)
    t = X.ser_effect_table(rows, base, "accuracy")  # e_mask x true emotion, Δ recall (pp)
    selfs = []
    for e in m.masks:
        s, o = float(t.loc[e, e]), float(t.loc[e].drop(e).mean())
        pred_neutral = 100 * (rows[rows.mask_emotion == e]["pred"] == "neutral").mean()
        selfs.append(s)
        out.append({"rate": r, "e_mask": e, "self": s, "other": o, "pred_neutral": pred_neutral,
                    "n_mask": len(m.masks[e])})
        print(f"r={r:.4f} {e:9s} self {s:+6.1f} other {o:+6.1f} pred_neutral {pred_neutral:5.1f} %", flush=True)
    so = X.ser_self_other(rows, base)
    pooled.append({"rate": r, **so})
    print(f"r={r:.4f} MEAN self {sum(selfs) / len(selfs):+6.1f}; pooled self {so['self']:+.1f} "
          f"[{so['self_lo']:+.1f}, {so['self_hi']:+.1f}] (n {so['n_self']}), other {so['other']:+.1f} "
          f"[{so['other_lo']:+.1f}, {so['other_hi']:+.1f}] (n {so['n_other']})", flush=True)
with open(a.out, "w") as f:
    json.dump({"n": len(base), "baseline": (100 * bacc).to_dict(), "rows": out, "pooled": pooled,
               "selector": a.selector, "kind": a.kind, "alpha": a.alpha}, f, indent=1)
print("wrote", a.out)
