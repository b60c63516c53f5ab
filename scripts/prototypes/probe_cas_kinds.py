"""CAS's masks under the paper's other edit kinds on DEVELOPMENT: does adding α (eq. 6) or a floor clamp (eq. 7)
steer where ×(1 + α) (eq. 5) does not? docs/demo_world.md (fifth round) found that CAS's neurons fire for their
emotion more *often* but *weakly*, so scaling them adds little; adding a constant does not depend on their level.
Same path as the notebooks (identify -> evaluate_settings -> summarize), r = X.DEMO_RATE, c = 50.

    .venv/bin/python scripts/prototypes/probe_cas_kinds.py N kind:alpha[,kind:alpha...] <corpus> <results> <out>

Recorded: bench/results/cas_kinds_dev_2026-12-01.json (N = 40, steer:1,add:0.25,add:0.5,add:1,clamp:0.5,clamp:1).
Its per_emotion block came from an earlier per-emotion loop (Δ match only, one column per e_tgt); the script now
writes esnlib.tables.effect_ci's long rows (the same Δ, with CI, n and McNemar p).

A random mask of the same size is run at every add / clamp setting as the control. ``dev_probe`` is also the
driver of ``probe_talker_reads.py`` (another model, random controls at every steer).
"""
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from esnlib import experiments as X  # noqa: E402

COLS = ["setting", "judge", "self", "self_lo", "self_hi", "cross", "gap", "n_pairs", "self_textok", "n_textok",
        "d_post", "d_wer", "wer", "d_naturalness"]


def dev_probe(world, kinds, n_dev: int, random_kinds=("add", "clamp")) -> dict:
    """CAS and random masks (r = X.DEMO_RATE, c = 50, the whole IDENTIFICATION split), then every CAS (kind, alpha)
    on n_dev DEVELOPMENT sources x 4 targets (8 sources for the cross cells), with a random mask of the same size at
    the kinds in ``random_kinds``. Prints and returns the summary table and the per-emotion effects."""
    t0 = time.time()
    cas = X.identify(world, "CAS", rate=X.DEMO_RATE, cap=50)
    rnd = X.identify(world, "random", rate=X.DEMO_RATE, cap=50)
    print("identified", round(time.time() - t0), "s; successes", cas.n_success, flush=True)
    base = X.baseline(world, "DEVELOPMENT", n=n_dev)
    settings, names = [], []
    for k, a in kinds:
        settings.append((cas, k, a)); names.append(f"CAS {k} a={a:g}")
        if k in random_kinds:
            settings.append((rnd, k, a)); names.append(f"random {k} a={a:g}")
    outs = X.evaluate_settings(world, settings, "DEVELOPMENT", n=n_dev, n_cross=8)
    tab = pd.concat([X.summarize(o, base, setting=nm) for o, nm in zip(outs, names)])
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    cols = [c for c in COLS if c in tab.columns]
    print(tab[cols].round(3).to_string(), flush=True)
    per = [{"setting": nm, "judge": j, **r} for nm, o in zip(names, outs) for j in world.judges
           for r in X.effect_ci(o, base, j).round(4).to_dict("records")]  # per e_tgt: Δ match (pp), CI, n, McNemar p
    print(pd.DataFrame(per).to_string(), flush=True)
    return {"n_dev": n_dev, "rate": X.DEMO_RATE, "cap": 50, "n_success": cas.n_success,
            "table": tab[cols].round(4).to_dict("records"), "per_emotion": per, "seconds": round(time.time() - t0)}


def parse_kinds(spec: str):
    return [(k, float(a)) for k, a in (s.split(":") for s in spec.split(","))]


if __name__ == "__main__":
    torch.set_num_threads(2)
    N_DEV = int(sys.argv[1])
    KINDS = parse_kinds(sys.argv[2])
    CORPUS, RESULTS, OUT = sys.argv[3:6]
    world = X.load_world(corpus_root=CORPUS, corpus="demo", results_dir=RESULTS, batch_size=64, progress=True)
    res = dev_probe(world, KINDS, N_DEV)
    pd.DataFrame(res["table"]).to_csv(f"{OUT}/cas_kinds_dev.csv", index=False)
    json.dump(res, open(f"{OUT}/cas_kinds_dev.json", "w"), indent=1, default=str)
