"""CAS from the answer's positions only: does a mask identified from statistics over the generated tokens (where the
talker reads the thinker) steer, where CAS over the whole generation (prompt + answer, the paper's "full activation
tensor produced during generation") does not? DEVELOPMENT only.

The identification generations are re-run with the demo adapter's answer-only counting
(``DemoAdapter(evc_stat_positions="generated")``, ``esnlib.capture(stat_positions="generated")``); the outputs are
the same, only the statistics differ, and the stats store is keyed by the counting, so both live in one results
folder. The recorded runs used an earlier version of this script that patched the accumulator to skip the prompt
calls (the same rule, before the library had it): its CAS, MAD and LAP masks at r = 1 %, c = 50 equal those of
the library's counting in `make paper` (checked 2026-12-01, every emotion).

    .venv/bin/python scripts/prototypes/probe_gen_positions.py <corpus> <results> <out.json> [n_dev=40] [settings]

settings: comma list of selector-positions:kind:alpha, selector one of the paper's or random, positions gen (answer
only) or all; default CAS-gen:steer:1,CAS-gen:steer:2,CAS-all:steer:1,random-all:steer:1,CAS-gen:deactivate:0.
Recorded: bench/results/cas_answer_positions_dev_2026-12-01{,b}.json.
"""
import json
import sys
import time

import pandas as pd
import torch

from esnlib import experiments as X
from esnlib.models.demo import DemoAdapter

torch.set_num_threads(2)
CORPUS, RESULTS, OUT = sys.argv[1:4]
N_DEV = int(sys.argv[4]) if len(sys.argv) > 4 else 40
SETTINGS = [(x.split(":")[0], x.split(":")[1], float(x.split(":")[2])) for x in (
    sys.argv[5] if len(sys.argv) > 5 else
    "CAS-gen:steer:1,CAS-gen:steer:2,CAS-all:steer:1,random-all:steer:1,CAS-gen:deactivate:0").split(",")]


def world(positions):
    return X.load_world(adapter=DemoAdapter(evc_stat_positions=positions), corpus_root=CORPUS, corpus="demo",
                        results_dir=RESULTS, batch_size=64, progress=True)


t0 = time.time()
old, new = world("all"), world("generated")
masks = {}
for name in dict.fromkeys(n for n, _, _ in SETTINGS):
    sel, pos = name.rsplit("-", 1)
    masks[name] = X.identify(new if pos == "gen" else old, sel, rate=X.DEMO_RATE, cap=50)
print("identified", round(time.time() - t0), "s; successes", {k: m.n_success for k, m in masks.items()}, flush=True)
W = old.sites("lm")[0].width
overlap = {k: {e: len(set(m.masks[e].tolist()) & set(masks[k.replace("-gen", "-all")].masks[e].tolist()))
               for e in m.masks} for k, m in masks.items() if k.endswith("-gen") and k.replace("-gen", "-all") in masks}
late = {k: {e: round(float((m.masks[e] // W >= 20).mean()), 2) for e in m.masks} for k, m in masks.items()}
print("overlap with the all-positions mask", overlap, "; share in layers 20-29", late, flush=True)
base = X.baseline(old, "DEVELOPMENT", n=N_DEV)
settings = [(masks[n], k, a) for n, k, a in SETTINGS]
names = [f"{n} {k} a={a:g}" for n, k, a in SETTINGS]
outs = X.evaluate_settings(old, settings, "DEVELOPMENT", n=N_DEV, n_cross=8)
tab = pd.concat([X.summarize(o, base, setting=nm) for o, nm in zip(outs, names)])
cols = [c for c in ["setting", "judge", "self", "self_lo", "self_hi", "cross", "gap", "n_pairs", "self_textok",
                    "n_textok", "d_post", "d_wer", "wer"] if c in tab.columns]
pd.set_option("display.width", 250)
pd.set_option("display.max_columns", 40)
print(tab[cols].round(3).to_string(), flush=True)
per = [{"setting": nm, "judge": j, **r} for nm, o in zip(names, outs) for j in old.judges
       for r in X.effect_ci(o, base, j).round(4).to_dict("records")]
print(pd.DataFrame(per).to_string(), flush=True)
with open(OUT, "w") as f:
    json.dump({"n_dev": N_DEV, "rate": X.DEMO_RATE, "cap": 50, "overlap": overlap, "late_share": late,
               "table": tab[cols].round(4).to_dict("records"), "per_emotion": per,
               "seconds": round(time.time() - t0)}, f, indent=1)
