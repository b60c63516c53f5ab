"""Ninth round (issue 11): does CAS steer a demo LALM whose talker reads the whole user turn?

The committed talker reads the thinker's last-layer states at the last prompt position and at the answer's tokens.
Qwen2.5-Omni's talker reads the thinker's states of the whole prompt too (the instruction that names the target
emotion included). ``train_demo_model.py --talker-reads turn`` trains such a talker (the committed audio encoder
reused); this script measures CAS on it on DEVELOPMENT through esnlib's own path (identify -> evaluate_settings ->
summarize), as ``probe_cas_kinds.py`` does for the committed model: r = X.DEMO_RATE, c = 50, 40 sources x 4 targets.

    .venv/bin/python scripts/prototypes/probe_talker_reads.py <model dir> <results dir> <out dir> [N] [settings]

settings: comma-separated ``kind:alpha`` for CAS (default steer:1,steer:2,steer:4,deactivate:0), each CAS steer
also with a random mask of the same size.
"""
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from esnlib import experiments as X  # noqa: E402
from esnlib.models import demo as D  # noqa: E402

torch.set_num_threads(2)
MODEL, RESULTS, OUT = sys.argv[1:4]
N_DEV = int(sys.argv[4]) if len(sys.argv) > 4 else 40
SETTINGS = [(k, float(a)) for k, a in (s.split(":") for s in
            (sys.argv[5] if len(sys.argv) > 5 else "steer:1,steer:2,steer:4,deactivate:0").split(","))]
adapter = D.DemoAdapter(D.load_demo_model(MODEL))
world = X.load_world(corpus_root=str(ROOT / "data" / "demo_corpus"), results_dir=RESULTS, batch_size=64,
                     progress=True, adapter=adapter, build_corpus=False)
t0 = time.time()
cas = X.identify(world, "CAS", rate=X.DEMO_RATE, cap=50)
rnd = X.identify(world, "random", rate=X.DEMO_RATE, cap=50)
print("identified", round(time.time() - t0), "s; successes", cas.n_success, flush=True)
base = X.baseline(world, "DEVELOPMENT", n=N_DEV)
settings, names = [], []
for k, a in SETTINGS:
    settings.append((cas, k, a)); names.append(f"CAS {k} a={a:g}")
    if k == "steer":
        settings.append((rnd, k, a)); names.append(f"random {k} a={a:g}")
outs = X.evaluate_settings(world, settings, "DEVELOPMENT", n=N_DEV, n_cross=8)
tab = pd.concat([X.summarize(o, base, setting=nm) for o, nm in zip(outs, names)])
pd.set_option("display.width", 250)
pd.set_option("display.max_columns", 40)
cols = [c for c in ["setting", "judge", "self", "self_lo", "self_hi", "cross", "gap", "n_pairs", "self_textok",
                    "n_textok", "d_post", "d_wer", "wer", "d_naturalness"] if c in tab.columns]
print(tab[cols].round(3).to_string(), flush=True)
per = [{"setting": nm, "judge": j, **r} for nm, o in zip(names, outs) for j in world.judges
       for r in X.effect_ci(o, base, j).round(4).to_dict("records")]
print(pd.DataFrame(per).to_string(), flush=True)
Path(OUT).mkdir(parents=True, exist_ok=True)
json.dump({"model": MODEL, "n_dev": N_DEV, "rate": X.DEMO_RATE, "cap": 50, "n_success": cas.n_success,
           "table": tab[cols].round(4).to_dict("records"), "per_emotion": per,
           "seconds": round(time.time() - t0)}, open(f"{OUT}/talker_reads_dev.json", "w"), indent=1, default=str)
