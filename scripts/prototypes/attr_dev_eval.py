"""ATTR vs CAS on DEVELOPMENT through esnlib's own path (identify -> evaluate_settings -> summarize): the numbers of
docs/demo_world.md's fourth round and the choice of notebook 09's attr_alpha. With --only-attr, ATTR steering at the
given alphas only.

    .venv/bin/python scripts/prototypes/attr_dev_eval.py N r alpha[,alpha2] <corpus root> <results dir> <out folder> [--only-attr]
"""
import sys, time, pandas as pd, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from esnlib import experiments as X
torch.set_num_threads(2)
N_DEV, RATE = int(sys.argv[1]), float(sys.argv[2]); ALPHAS = [float(a) for a in sys.argv[3].split(",")]
CORPUS, RESULTS, OUT = sys.argv[4:7]
world = X.load_world(corpus_root=CORPUS, results_dir=RESULTS, naturalness="dnsmos",
                     build_corpus=False, progress=True)
t0 = time.time()
att = X.identify(world, "ATTR", rate=RATE, cap=50)
cas = X.identify(world, "CAS", rate=RATE, cap=50)
rnd = X.identify(world, "random", rate=RATE, cap=50)
W = world.sites("lm")[0].width
print("identified", round(time.time() - t0), "s; successes", att.n_success, flush=True)
print("overlap ATTR/CAS", {e: len(set(att.masks[e].tolist()) & set(cas.masks[e].tolist())) for e in att.masks}, flush=True)
print("ATTR layers 20-29 share", {e: round(float((att.masks[e] // W >= 20).mean()), 2) for e in att.masks}, flush=True)
base = X.baseline(world, "DEVELOPMENT", n=N_DEV)
settings = [(att, "steer", a) for a in ALPHAS] + [(att, "deactivate", 0.0), (rnd, "steer", ALPHAS[-1]), (cas, "steer", 1.0)]
names = [f"ATTR a={a:g}" for a in ALPHAS] + ["ATTR deactivate", f"random a={ALPHAS[-1]:g}", "CAS a=1"]
if "--only-attr" in sys.argv:
    settings, names = settings[:len(ALPHAS)], [f"ATTR r={RATE:g} a={a:g}" for a in ALPHAS]
outs = X.evaluate_settings(world, settings, "DEVELOPMENT", n=N_DEV, n_cross=8)
tab = pd.concat([X.summarize(o, base, setting=nm) for o, nm in zip(outs, names)])
pd.set_option("display.width", 250); pd.set_option("display.max_columns", 40)
cols = [c for c in ["setting", "judge", "self", "self_lo", "self_hi", "cross", "gap", "n_pairs", "self_textok", "n_textok", "d_post", "d_wer", "wer"] if c in tab.columns]
print(tab[cols].round(3).to_string(), flush=True)
tab.to_csv(f"{OUT}/dev_eval_r{RATE:g}.csv", index=False)
for nm, o in zip(names, outs):
    o.to_csv(f"{OUT}/rows_{nm.replace(' ', '_').replace('=', '')}.csv", index=False)
per = [{"setting": nm, "judge": j, **r} for nm, o in zip(names, outs) for j in world.judges
       for r in X.effect_ci(o, base, j).round(4).to_dict("records")]  # per e_tgt: Δ match (pp), CI, n, McNemar p
print(pd.DataFrame(per).to_string(), flush=True)
print("seconds", round(time.time() - t0), flush=True)
