"""Prototype (issue 11, fourth round; docs/demo_world.md): steer the top-K neurons of attr_linear_probe.py's
attribution for real (generation, not the linear prediction) on N DEVELOPMENT sources per target: delta of the
talker's emotion score and WER at alpha 0.25 / 0.5 / 1, deactivated, and e's mask while another target is asked.

    .venv/bin/python scripts/prototypes/probe_attr_steering.py committed|<lora folder> N K <attr .pt> <corpus root> \
        <results dir>
"""
import sys, time, pickle, numpy as np, torch, jiwer
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from whisper_normalizer.english import EnglishTextNormalizer
from esnlib import experiments as X, tts
from esnlib.intervention import Intervention, generate
from esnlib.models.demo import load_demo_model, DemoAdapter
norm = EnglishTextNormalizer(); torch.set_num_threads(1)
variant, N, K = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
attr_file, corpus_root, results = sys.argv[4:7]
m = load_demo_model()
if variant != "committed":
    ck = torch.load(f"{variant}/lora.pt", weights_only=False)
    sd = m.state_dict(); sd.update(ck["merged"]); sd.update(ck["talker"]); m.load_state_dict(sd)
m.eval(); ad = DemoAdapter(m)
A = torch.load(attr_file)
world = X.load_world(corpus_root=corpus_root, results_dir=results,
                     naturalness=None, build_corpus=False, progress=False, judges="prosody", adapter=ad)
utts = world.split("DEVELOPMENT", N); sites = ad.sites("lm"); feats = [ad._feats(u) for u in utts]
Tg = ("angry", "happy", "sad", "surprise")
top = {e: torch.topk(A[e], K).indices.numpy() for e in Tg}
def run(target, iv):
    inp = m.prepare_inputs(feats, "evc", [target] * len(utts), [u.text for u in utts])
    out = generate(m, inp, intervention=iv, sites=sites, return_audio=True)
    pr = [tts.from_vector(p.numpy()).as_dict() for p in out.prosody]
    w = [jiwer.wer(norm(u.text), norm(m.decode_text(s.tolist())) or "<e>") for u, s in zip(utts, out.sequences)]
    return pr, np.array(w)
sc = lambda pr, e: np.array([X.emotion_score(p, e) for p in pr])
t0 = time.time()
base = {e: run(e, None) for e in Tg}
for e in Tg:
    b = sc(base[e][0], e)
    row = {"base": round(b.mean(), 3), "wer": round(base[e][1].mean(), 3)}
    for al in (0.25, 0.5, 1.0):
        pr, w = run(e, Intervention(index=top[e], kind="steer", alpha=al)); d = sc(pr, e) - b
        row[f"attr{al:g}"] = f"{d.mean():+.3f}±{1.96*d.std()/np.sqrt(len(d)):.3f} wer {w.mean():.2f}"
    pr, w = run(e, Intervention(index=top[e], kind="deactivate", alpha=0.0))
    row["deact"] = f"{(sc(pr, e) - b).mean():+.3f} wer {w.mean():.2f}"
    other = Tg[(Tg.index(e) + 1) % 4]   # e's mask while `other` is asked: does it push toward e (e_mask score)?
    pr, w = run(other, Intervention(index=top[e], kind="steer", alpha=0.5))
    row[f"mask->e under tgt={other} a0.5"] = f"{(sc(pr, e) - sc(base[other][0], e)).mean():+.3f}; own tgt score {(sc(pr, other) - sc(base[other][0], other)).mean():+.3f}"
    print(variant, e, row, round(time.time() - t0), flush=True)
