"""What carries CAS steering on the demo LALM: the steered thinker states, or a changed answer token?

For each target emotion, 40 DEVELOPMENT sources run (batch 1, plain forward hooks doing the ×(1 + α) edit on the
CAS mask from answer-only statistics at r = `DEMO_RATE`, c = 50, α = 2: the seventh round's setting) five ways,
and the talker's emotion score along the neutral -> e_tgt profile direction (`esnlib.validity.emotion_score`'s
projection, on the talker's raw output before the renderer's clipping: 0 = neutral, 1 = the full profile) is read
each time:
  base      unsteered generate
  steer     steered generate
  fs        the steered answer's tokens, teacher-forced through the *unsteered* thinker (the token route alone)
  steer_fb  the baseline answer's tokens, teacher-forced through the *steered* thinker (the state route alone)
  fb        the baseline answer's tokens, unsteered (a check: equals base)
plus the share of answers whose tokens the edit changed and their most common endings.

``--straight-only`` gives the thinker the stop set it had before 2026-12-01 (straight closing quotes only), under
which a steered answer that closed with a typographic quote (.”) ran on and the talker read one more position.
The numbers in docs/demo_world.md (eighth round) were measured with this computation in a scratch script on
2026-12-01 (the seventh round's masks, α = 2, 40 sources); this file was not re-run after it, for lack of time.

    .venv/bin/python scripts/prototypes/probe_closing_quote.py <corpus> <results> <out.json> [--straight-only]
"""
import argparse
import collections
import json

import numpy as np
import torch

from esnlib import experiments as X
from esnlib import tts
from esnlib.models.demo import DemoAdapter

ap = argparse.ArgumentParser()
ap.add_argument("corpus")
ap.add_argument("results")
ap.add_argument("out")
ap.add_argument("--alpha", type=float, default=2.0)
ap.add_argument("--n", type=int, default=40)
ap.add_argument("--straight-only", action="store_true")
a = ap.parse_args()
torch.set_num_threads(2)
# the seventh round's masks (answer-only statistics), the ones whose surprise effect this probe took apart
w = X.load_world(adapter=DemoAdapter(evc_stat_positions="generated"), corpus_root=a.corpus, corpus="demo",
                 results_dir=a.results, batch_size=64, progress=False)
cas = X.identify(w, "CAS", rate=X.DEMO_RATE, cap=50)
M = w.adapter.model
if a.straight_only:
    tk = M.tokenizer
    M.stop_ids = tuple(i for i in M.stop_ids if '"' in tk.convert_ids_to_tokens(i) or i == tk.convert_tokens_to_ids(
        "<|im_end|>"))
W = w.sites("lm")[0].width
utts = w.split("DEVELOPMENT", a.n)


def hooks(mask):
    hs = []
    for layer in range(len(M.thinker.model.layers)):
        units = torch.as_tensor(mask[mask // W == layer] % W)
        if len(units):
            def edit(mod, inp, out, units=units):
                out = out.clone()
                out[..., units] *= 1 + a.alpha
                return out
            hs.append(M.thinker.model.layers[layer].mlp.act_fn.register_forward_hook(edit))
    return hs


@torch.no_grad()
def run(fn, mask):
    hs = hooks(mask) if mask is not None else []
    try:
        return fn()
    finally:
        for h in hs:
            h.remove()


def forced(inp, seq):
    """The talker's prosody for ``seq`` teacher-forced after the prompt (the positions generate's talker reads)."""
    ids = torch.cat([inp["input_ids"], torch.tensor([seq])], 1)
    emb = M.embed_inputs(ids, inp["input_features"], inp["feature_attention_mask"])
    st = M.thinker(inputs_embeds=emb, output_hidden_states=True).hidden_states[-1]
    return M.talker_forward(st, M.talker_valid(inp["input_ids"], torch.tensor([seq])))[0]


res = {"alpha": a.alpha, "n": len(utts), "straight_only": a.straight_only, "stop_ids": list(M.stop_ids),
       "emotions": {}}
for e in cas.emotions:
    mask = cas.masks[e]

    d = tts.to_vector(tts.PROFILES[e])

    def score(v, d=d):
        return float(v.float().numpy() @ d / (d @ d))
    r, ends = collections.defaultdict(list), collections.Counter()
    for u in utts:
        inp = M.prepare_inputs([w.adapter._feats(u)], "evc", [e], [u.text])
        ob = run(lambda: M.generate(**inp, return_audio=True), None)
        os_ = run(lambda: M.generate(**inp, return_audio=True), mask)
        sb, ss = ob.sequences[0].tolist(), os_.sequences[0].tolist()
        r["base"].append(score(ob.prosody[0]))
        r["steer"].append(score(os_.prosody[0]))
        r["fb"].append(score(run(lambda: forced(inp, sb), None)))
        r["fs"].append(score(run(lambda: forced(inp, ss), None)))
        r["steer_fb"].append(score(run(lambda: forced(inp, sb), mask)))
        r["changed"].append(float(sb != ss))
        ends[" ".join(M.tokenizer.convert_ids_to_tokens(ss[-2:]))] += 1
    res["emotions"][e] = {**{k: round(float(np.mean(v)), 4) for k, v in r.items()},
                          "steered_endings": ends.most_common(3)}
    print(e, res["emotions"][e], flush=True)
with open(a.out, "w") as f:
    json.dump(res, f, indent=1)
