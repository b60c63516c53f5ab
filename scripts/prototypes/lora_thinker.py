"""Prototype, not the committed model (issue 11, third round; docs/demo_world.md has what it measured): LoRA on the
late MLPs (gate_proj/up_proj of layers --lo..29) of the SmolLM2 thinker, trained jointly with the committed talker
(initialised from esnlib/assets/demo_lalm) and a text-keeping cross-entropy on the thinker's own greedy answer, so that
the emotion -> prosody computation can run through MLP gate neurons. Data: the training script's pretrain sentences
(160, the last 16 held out) x (neutral + the 4 targets; with --degrees each target in 3 degrees), their thinker
states at layer --lo cached once (teacher forcing from there is exact: checked at start). Writes <out>/lora.pt (the
merged gate/up weights and the talker), read by probe_steering.py.

    .venv/bin/python scripts/prototypes/lora_thinker.py [--degrees] --out /tmp/lora_B   (~25-40 min on one core)
"""
import sys, time, json, math, argparse
from pathlib import Path
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "scripts"))
import train_demo_model as T
from esnlib.models.demo import load_demo_model
from esnlib.corpora.sentences import PRETRAIN_VOICES, make_sentences
from esnlib.experiments import emotion_score
from esnlib import tts

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=150)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--rank", type=int, default=8)
ap.add_argument("--lo", type=int, default=20)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--lam", type=float, default=0.5)
ap.add_argument("--degrees", action="store_true")
ap.add_argument("--out", required=True)
ap.add_argument("--cache", default="/tmp", help="folder for the cached layer states (~0.5-1.5 GB)")
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)
m = load_demo_model()
LO = a.lo
DATA = Path(a.cache) / (f"lora_data_{LO}{'_deg' if a.degrees else ''}.pt")
from esnlib.models.demo import DEGREES
DGS = DEGREES if a.degrees else ("",)
TGTS = ("neutral",) + T.TARGETS
t0 = time.time()
if not DATA.exists():
    sents = make_sentences(160, "pretrain", 0)
    rng = np.random.default_rng(0)
    voices = [PRETRAIN_VOICES[int(rng.integers(len(PRETRAIN_VOICES)))] for _ in sents]
    feats = [T._render((s, v, "neutral", 0.0, 7 + k)) for k, (s, v) in enumerate(zip(sents, voices))]
    ex = [(k, tg, dg) for k in range(len(sents)) for tg in TGTS for dg in ((("",) if tg == "neutral" else DGS))]
    recs = []
    with torch.no_grad():
        for i in range(0, len(ex), 40):
            part = ex[i:i + 40]
            inp = m.prepare_inputs([feats[k].astype(np.float32) for k, _, _ in part], "evc", [tg for _, tg, _ in part],
                                   [sents[k] for k, _, _ in part], [dg for _, _, dg in part])
            emb = m.embed_inputs(inp["input_ids"], inp["input_features"], inp["feature_attention_mask"])
            out = m.thinker.generate(inputs_embeds=emb, attention_mask=inp["attention_mask"], do_sample=False,
                                     max_new_tokens=m.config.max_new_tokens, output_hidden_states=True,
                                     return_dict_in_generate=True, pad_token_id=m.pad_id, eos_token_id=list(m.stop_ids))
            gen, states, valid = m.talker_inputs(out, inp["input_ids"])
            h_in = torch.cat([h[LO] for h in out.hidden_states], dim=1)
            P = inp["input_ids"].shape[1]
            n_fed = states.shape[1] - P
            am = torch.cat([inp["attention_mask"].bool(), torch.ones(len(part), n_fed, dtype=torch.bool)], 1)
            for b, (k, tg, dg) in enumerate(part):
                keep = am[b]
                g = gen[b].tolist()
                # next-token targets for every kept position from the last prompt position on
                nxt = torch.full((int(keep.sum()),), -100, dtype=torch.long)
                n_p = int(inp["attention_mask"][b].sum())
                stop_at = next((j for j, t in enumerate(g) if t in m.stop_ids), len(g) - 1)
                for j in range(min(stop_at + 1, n_fed + 1)):
                    nxt[n_p - 1 + j] = g[j]
                recs.append(dict(k=k, tg=tg, dg=dg, h=h_in[b][keep].clone(), ref=states[b][keep].clone(), valid=valid[b][keep].clone(),
                                 nxt=nxt, y=torch.tensor(T.target_vector(sents[k], tg, dg), dtype=torch.float32),
                                 text=m.decode_text(g), sent=sents[k]))
            print("data", i + len(part), "/", len(ex), round(time.time() - t0), flush=True)
    torch.save(recs, DATA)
recs = torch.load(DATA, weights_only=False)
print("data ready", len(recs), round(time.time() - t0), flush=True)
held = set(range(144, 160))
tr = [r for r in recs if r["k"] not in held]; te = [r for r in recs if r["k"] in held]

class LoRA(nn.Module):
    def __init__(self, base, r, scale=2.0):
        super().__init__(); self.base = base
        self.A = nn.Parameter(torch.randn(r, base.in_features) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r)); self.scale = scale
    def forward(self, x):
        return self.base(x) + (x @ self.A.t() @ self.B.t()) * self.scale

layers = m.thinker.model.layers
for p in m.thinker.parameters(): p.requires_grad_(False)
loras = []
for i in range(LO, len(layers)):
    mlp = layers[i].mlp
    mlp.gate_proj = LoRA(mlp.gate_proj, a.rank); mlp.up_proj = LoRA(mlp.up_proj, a.rank)
    loras += [mlp.gate_proj, mlp.up_proj]


def thinker_top(h, am):
    B, L, _ = h.shape
    pos = (am.long().cumsum(-1) - 1).clamp_min(0)
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
    mask = (causal[None] & am[:, None, :]) | torch.eye(L, dtype=torch.bool)[None]
    mask = mask[:, None]
    pe = m.thinker.model.rotary_emb(h, position_ids=pos)
    for i in range(LO, len(layers)):
        h = layers[i](h, attention_mask=mask, position_ids=pos, position_embeddings=pe)
    return m.thinker.model.norm(h)

def pack(rs):
    L = max(len(r["h"]) for r in rs); H = rs[0]["h"].shape[-1]
    h = torch.zeros(len(rs), L, H); am = torch.zeros(len(rs), L, dtype=torch.bool)
    va = torch.zeros_like(am); nx = torch.full((len(rs), L), -100, dtype=torch.long); ref = torch.zeros(len(rs), L, H)
    for b, r in enumerate(rs):
        n = len(r["h"]); h[b, L - n:] = r["h"]; am[b, L - n:] = True; va[b, L - n:] = r["valid"]; nx[b, L - n:] = r["nxt"]
        ref[b, L - n:] = r["ref"]
    return h, am, va, nx, ref, torch.stack([r["y"] for r in rs])

with torch.no_grad():
    h, am, va, nx, ref, y = pack(tr[:8])
    st = thinker_top(h, am)
    print("teacher-forced vs generate states: max |diff| at talker positions", float((st - ref)[va].abs().max()), flush=True)

def evaluate(rs):
    with torch.no_grad():
        out, ce = [], []
        for i in range(0, len(rs), 32):
            h, am, va, nx, ref, y = pack(rs[i:i + 32])
            st = thinker_top(h, am)
            out.append(m.talker_forward(st, va))
            lg = m.thinker.lm_head(st)
            ce.append(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), nx.reshape(-1), ignore_index=-100).item())
        pv = torch.cat(out).numpy()
    emo = [j for j, r in enumerate(rs) if r["tg"] != "neutral" and r.get("dg", "") == ""]
    got = np.array([emotion_score(tts.from_vector(pv[j]).as_dict(), rs[j]["tg"]) for j in emo])
    want = np.array([T.target_intensity(rs[j]["sent"], rs[j]["tg"]) for j in emo])
    for dg in ("slightly", "very"):
        ej = [j for j, r in enumerate(rs) if r["tg"] != "neutral" and r.get("dg", "") == dg]
        if ej:
            print("  degree", dg, "got", round(float(np.mean([emotion_score(tts.from_vector(pv[j]).as_dict(), rs[j]["tg"]) for j in ej])), 3),
                  "want", round(float(np.mean([T.target_intensity(rs[j]["sent"], rs[j]["tg"], dg) for j in ej])), 3))
    return dict(r=round(float(np.corrcoef(got, want)[0, 1]), 3), mae=round(float(np.abs(got - want).mean()), 3),
                ce=round(float(np.mean(ce)), 4))
print("before", evaluate(te), round(time.time() - t0), flush=True)
params = [p for l in loras for p in (l.A, l.B)]
tparams = [p for n in ("talker_proj", "talker", "prosody_head") for p in getattr(m, n).parameters()]
opt = torch.optim.AdamW([{"params": params, "lr": a.lr}, {"params": tparams, "lr": a.lr * 0.5}], weight_decay=0.0)
rng = np.random.default_rng(0)
for mod in (m.talker_proj, m.talker, m.prosody_head): mod.train()
run = None
for step in range(a.steps):
    idx = rng.choice(len(tr), a.batch, replace=False)
    h, am, va, nx, ref, y = pack([tr[i] for i in idx])
    st = thinker_top(h, am)
    mse = F.mse_loss(m.talker_forward(st, va), y)
    sel = nx >= 0
    ce = F.cross_entropy(m.thinker.lm_head(st[sel]), nx[sel])
    loss = mse + a.lam * ce
    f = min(1.0, (step + 1) / 15) * 0.5 * (1 + math.cos(math.pi * step / a.steps))
    opt.param_groups[0]["lr"] = a.lr * f; opt.param_groups[1]["lr"] = a.lr * 0.5 * f
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params + tparams, 1.0); opt.step()
    run = (mse.item(), ce.item()) if run is None else (0.9 * run[0] + 0.1 * mse.item(), 0.9 * run[1] + 0.1 * ce.item())
    if step % 10 == 0 or step == a.steps - 1:
        print(f"step {step} mse {run[0]:.4f} ce {run[1]:.4f} |B| {sum(float(l.B.norm()) for l in loras):.3f} {round(time.time() - t0)}s", flush=True)
for mod in (m.talker_proj, m.talker, m.prosody_head): mod.eval()
print("after", evaluate(te), round(time.time() - t0), flush=True)
out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
merged = {}
with torch.no_grad():
    for i in range(LO, len(layers)):
        for nm in ("gate_proj", "up_proj"):
            l = getattr(layers[i].mlp, nm)
            merged[f"thinker.model.layers.{i}.mlp.{nm}.weight"] = (l.base.weight + l.scale * l.B @ l.A).clone()
torch.save({"merged": merged, "talker": {k: v for k, v in m.state_dict().items() if k.split(".")[0] in ("talker_proj", "talker", "prosody_head")},
            "args": vars(a)}, out / "lora.pt")
print("saved", out, round(time.time() - t0), flush=True)
