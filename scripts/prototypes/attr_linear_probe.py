"""Prototype (issue 11, fourth round; docs/demo_world.md): how steerable is a demo-model variant by ANY 230 late
neurons? The first-order effect of steering a set S by alpha on the talker's emotion score is
alpha * sum_{i in S} sum_pos a_i * dscore/da_i. Compares CAS's masks (esnlib identification, r = 0.5 %, c = 50) with
the top 230 neurons by that attribution, over layers 20-29, on the training sentences whose layer-20 inputs
lora_thinker.py cached (teacher forcing from there is exact). Writes <out>/attr_<variant>.pt for
probe_attr_steering.py.

    .venv/bin/python scripts/prototypes/attr_linear_probe.py committed|<lora folder> <cached data .pt> \
        <corpus root> <results dir of the variant> <out folder>
"""
import sys, time, math, numpy as np, torch
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "scripts"))
import train_demo_model as T
from esnlib import experiments as X, tts
from esnlib.models.demo import load_demo_model, DemoAdapter
torch.set_num_threads(1)
variant, data, corpus_root, results, out_dir = sys.argv[1:6]
m = load_demo_model()
if variant != "committed":
    ck = torch.load(f"{variant}/lora.pt", weights_only=False)
    sd = m.state_dict(); sd.update(ck["merged"]); sd.update(ck["talker"]); m.load_state_dict(sd)
m.eval()
for p in m.parameters(): p.requires_grad_(False)
LO, W = 20, 1536
layers = m.thinker.model.layers
K = int(0.005 * 30 * W)
world = X.load_world(corpus_root=corpus_root, results_dir=results, naturalness=None, build_corpus=False,
                     progress=False, judges="prosody", adapter=DemoAdapter(m))
cas = {e: np.asarray(v) for e, v in X.identify(world, "CAS", rate=0.005, cap=50, seed=0).masks.items()}
recs = [r for r in torch.load(data, weights_only=False) if r["tg"] != "neutral" and r.get("dg", "") == ""]
acts = {}
def hook(i):
    def f(mod, inp, out):
        out.retain_grad(); acts[i] = out
    return f
hs = [layers[i].mlp.act_fn.register_forward_hook(hook(i)) for i in range(LO, 30)]
def thinker_top(h, am):
    B, L, _ = h.shape
    pos = (am.long().cumsum(-1) - 1).clamp_min(0)
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
    mask = ((causal[None] & am[:, None, :]) | torch.eye(L, dtype=torch.bool)[None])[:, None]
    pe = m.thinker.model.rotary_emb(h, position_ids=pos)
    for i in range(LO, 30):
        h = layers[i](h, attention_mask=mask, position_ids=pos, position_embeddings=pe)
    return m.thinker.model.norm(h)
D = {e: torch.tensor(tts.to_vector(tts.PROFILES[e]), dtype=torch.float32) for e in T.TARGETS}
attr = {e: torch.zeros(30 * W) for e in T.TARGETS}; cnt = {e: 0 for e in T.TARGETS}
t0 = time.time()
for r in recs:
    h = r["h"][None].clone().requires_grad_(True); am = torch.ones(1, h.shape[1], dtype=torch.bool)
    st = thinker_top(h, am)
    pv = m.talker_forward(st, r["valid"][None])[0]
    d = D[r["tg"]]; score = pv @ d / (d @ d)
    score.backward()
    a = torch.zeros(30 * W)
    for i in range(LO, 30):
        a[i * W:(i + 1) * W] = (acts[i][0] * acts[i].grad[0]).sum(0).detach()
    attr[r["tg"]] += a; cnt[r["tg"]] += 1
print("records", cnt, round(time.time() - t0), "s", flush=True)
for e in T.TARGETS:
    A = attr[e] / cnt[e]
    late = cas[e][cas[e] >= LO * W]
    top = torch.topk(A, K).indices
    bot = torch.topk(-A, K).indices
    rnd = np.random.default_rng(0).choice(np.arange(LO * W, 30 * W), K, replace=False)
    cross = {o: float(A[torch.as_tensor(cas[o][cas[o] >= LO * W])].sum()) for o in T.TARGETS if o != e}
    print(f"{variant} {e}: pred dscore/alpha  CAS(late {len(late)}/{len(cas[e])}) {float(A[torch.as_tensor(late)].sum()):+.4f}"
          f"  top-{K} attribution {float(A[top].sum()):+.4f}  bottom {float(A[bot].sum()):+.4f}  random-late {float(A[torch.as_tensor(rnd)].sum()):+.4f}"
          f"  other CAS masks {({k: round(v, 4) for k, v in cross.items()})}  total late {float(A.sum()):+.4f}"
          f"  |top∩CAS| {len(set(top.tolist()) & set(cas[e].tolist()))}", flush=True)
torch.save({e: attr[e] / cnt[e] for e in T.TARGETS}, f"{out_dir}/attr_{variant.rstrip('/').split('/')[-1]}.pt")
