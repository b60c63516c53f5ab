"""Prototype probe (issue 11; docs/demo_world.md): identify CAS and random masks for a demo-model variant through
esnlib's own pipeline (IDENTIFICATION split, prosody-judge filter + WER <= 0.15, c = 50), then steer / deactivate on N
DEVELOPMENT sources per target and read the talker's emotion score (0 = neutral, 1 = the full profile) and the WER.

    .venv/bin/python scripts/prototypes/probe_steering.py <lora folder | committed> N r[,r2] [threads] --corpus-root data/demo_corpus
"""
import sys, time, numpy as np, torch, jiwer
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from whisper_normalizer.english import EnglishTextNormalizer
from esnlib import experiments as X, tts
from esnlib.intervention import Intervention, generate
from esnlib.models.demo import load_demo_model, DemoAdapter
norm = EnglishTextNormalizer()
CORPUS = sys.argv[sys.argv.index("--corpus-root") + 1] if "--corpus-root" in sys.argv else "data/demo_corpus"
argv = [x for i, x in enumerate(sys.argv) if x != "--corpus-root" and (i == 0 or sys.argv[i - 1] != "--corpus-root")]
path, N = argv[1], int(argv[2])
rates = [float(x) for x in argv[3].split(",")]
torch.set_num_threads(int(argv[4]) if len(argv) > 4 else 1)
m = load_demo_model()
if path != "committed":
    ck = torch.load(f"{path}/lora.pt", weights_only=False)
    sd = m.state_dict(); sd.update(ck["merged"]); sd.update(ck["talker"]); m.load_state_dict(sd)
m.eval()
ad = DemoAdapter(m)
world = X.load_world(corpus_root=CORPUS, results_dir=f"{path}/res" if path != "committed" else "/tmp/probe_committed",
                     naturalness=None, build_corpus=False, progress=False, judges="prosody", adapter=ad)
t0 = time.time()
masks = {}
for r in rates:
    for sel in ("CAS", "random"):
        ms = X.identify(world, sel, rate=r, cap=50, seed=0)
        masks[(sel, r)] = ms.masks
        print(sel, r, {e: len(v) for e, v in ms.masks.items()}, "successes", ms.n_success, round(time.time() - t0), flush=True)
cas = masks[("CAS", rates[0])]
lay = {e: np.bincount([int(i) // ad.sites("lm")[0].width for i in v], minlength=30).tolist() for e, v in cas.items()}
print("CAS layers", lay, flush=True)
utts = world.split("DEVELOPMENT", N)
sites = ad.sites("lm")
feats = [ad._feats(u) for u in utts]
Tg = ("angry", "happy", "sad", "surprise")
def run(target, iv):
    inp = m.prepare_inputs(feats, "evc", [target] * len(utts), [u.text for u in utts])
    out = generate(m, inp, intervention=iv, sites=sites, return_audio=True)
    sc = [X.emotion_score(tts.from_vector(p.numpy()).as_dict(), target) for p in out.prosody]
    w = [jiwer.wer(norm(u.text), norm(m.decode_text(s.tolist())) or "<e>") for u, s in zip(utts, out.sequences)]
    return np.array(sc), np.array(w)
for r in rates:
    cas, rnd = masks[("CAS", r)], masks[("random", r)]
    for e in Tg:
        b, wb = run(e, None)
        row = {"base": round(b.mean(), 3), "wer": round(wb.mean(), 3)}
        for al in (0.5, 1, 2):
            s, w = run(e, Intervention(index=np.asarray(cas[e]), kind="steer", alpha=al))
            d = s - b
            row[f"cas{al:g}"] = f"{d.mean():+.3f}±{1.96*d.std()/np.sqrt(len(d)):.3f} wer {w.mean():.2f}"
        s, w = run(e, Intervention(index=np.asarray(cas[e]), kind="deactivate", alpha=0.0))
        row["deact"] = f"{(s-b).mean():+.3f} wer {w.mean():.2f}"
        s, w = run(e, Intervention(index=np.asarray(rnd[e]), kind="steer", alpha=2))
        row["rnd2"] = f"{(s-b).mean():+.3f} wer {w.mean():.2f}"
        other = Tg[(Tg.index(e) + 1) % 4]
        s, w = run(e, Intervention(index=np.asarray(cas[other]), kind="steer", alpha=2))
        row[f"cross2({other})"] = f"{(s-b).mean():+.3f}"
        print(path, "r", r, e, row, flush=True)
print("seconds", round(time.time() - t0), flush=True)
