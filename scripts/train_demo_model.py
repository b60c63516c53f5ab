"""Train the demo LALM (esnlib.models.demo.DemoOmni) on espeak-ng speech of the "pretrain" sentence pool and voices.

Data (seeded, rendered once and cached as features):
- neutral clips (EVC sources, also SER "neutral"), emotional clips (SER; intensity ~ U(0.4, 1.2)).
- EVC targets are drawn online: target emotion uniform over TARGET_EMOTIONS; the target prosody is
  ``sample_prosody(target, intensity)`` with a *conservative* (under-expressed, intensity ~ U(0, 0.3)) rendering for a
  per-emotion share of sources (CONSERVATIVE_SHARE) and a full one (U(0.7, 1.2)) otherwise. Whether a source is
  conservative depends on its sentence (the verb's and adjective's rank in a fixed permutation), so the model has to
  read it from the source and cannot learn a single mode per emotion. This gives the unintervened model the paper's
  baseline shape (Table 2): partial target realization, a bias toward neutral, sad easiest and surprise hardest.

Usage: python scripts/train_demo_model.py --out esnlib/assets/demo_lalm   (≈ 15 min on 2 cores, incl. rendering)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from esnlib import TARGET_EMOTIONS, tts  # noqa: E402
from esnlib.corpora.sentences import ADJECTIVES, PRETRAIN_VOICES, VERBS, make_sentences  # noqa: E402
from esnlib.models.demo import EMOTIONS, DemoConfig, DemoOmni, extract_features, load_demo_model  # noqa: E402

#: share of EVC training targets rendered conservatively (intensity ~ U(0, 0.3)), per target emotion
CONSERVATIVE_SHARE = {"sad": 0.30, "happy": 0.45, "angry": 0.55, "surprise": 0.70}
_perm = np.random.default_rng(1234)
VERB_RANK = {v: int(r) for v, r in zip(VERBS, _perm.permutation(len(VERBS)))}
ADJ_RANK = {a: int(r) for a, r in zip(ADJECTIVES, _perm.permutation(len(ADJECTIVES)))}


def source_score(sentence: str) -> float:
    """A number in [0, 1) fixed by the source sentence (verb rank, then adjective rank): conservative iff < share."""
    w = sentence.split()
    return (VERB_RANK[w[3]] + ADJ_RANK[w[1]] / len(ADJECTIVES)) / len(VERBS)


def is_conservative(sentence: str, target: str) -> bool:
    return source_score(sentence) < CONSERVATIVE_SHARE[target]


def _render(job):
    text, voice, emotion, intensity, seed = job
    p = tts.sample_prosody(emotion, np.random.default_rng(seed), intensity)
    return extract_features(tts.synthesize(text, voice, p)).astype(np.float16)


def build_clips(sentences, emotions, intensities, voices, seed, workers):
    jobs = [(s, v, e, float(i), seed * 100003 + k) for k, (s, e, i, v) in
            enumerate(zip(sentences, emotions, intensities, voices))]
    with Pool(workers) as pool:
        feats = list(tqdm(pool.imap(_render, jobs, chunksize=8), total=len(jobs), desc="render", mininterval=5))
    return [dict(text=s, emotion=e, intensity=float(i), voice=v, features=f)
            for (s, v, e, i, _), f in zip(jobs, feats)]


def load_or_render(cache: Path, name: str, spec: dict, make, rebuild: bool = False):
    """Clips from ``cache/<name>-<hash(spec)>.npz``, rendering them with ``make()`` on a miss."""
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    f = cache / f"{name}-{key}.npz"
    if f.exists() and not rebuild:
        z = np.load(f, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        off, feats = z["offsets"], z["feats"]
        return [dict(m, features=feats[off[i]: off[i + 1]]) for i, m in enumerate(meta)]
    clips = make()
    cache.mkdir(parents=True, exist_ok=True)
    off = np.cumsum([0] + [len(c["features"]) for c in clips])
    meta = [{k: v for k, v in c.items() if k != "features"} for c in clips]
    np.savez(f, feats=np.concatenate([c["features"] for c in clips]), offsets=off, meta=json.dumps(meta))
    return clips


def make_data(args):
    rng = np.random.default_rng(args.seed)
    n_tr = args.n_neutral + args.n_emotional
    sents = make_sentences(n_tr + 2 * args.n_eval, "pretrain", seed=args.seed)
    tr, ev = sents[:n_tr], sents[n_tr:]
    voices = [PRETRAIN_VOICES[i] for i in rng.integers(0, len(PRETRAIN_VOICES), n_tr + 2 * args.n_eval)]
    emo_cycle = [TARGET_EMOTIONS[i % 4] for i in range(args.n_emotional)]
    spec = dict(n_neutral=args.n_neutral, n_emotional=args.n_emotional, n_eval=args.n_eval, seed=args.seed, v=1)
    ints = rng.uniform(0.4, 1.2, args.n_emotional)

    def make_train():
        return build_clips(tr, ["neutral"] * args.n_neutral + emo_cycle, [1.0] * args.n_neutral + list(ints),
                           voices[:n_tr], args.seed, args.workers)

    def make_eval():
        ee = [EMOTIONS[i % 5] for i in range(args.n_eval)]
        return build_clips(ev, ["neutral"] * args.n_eval + ee, [1.0] * (2 * args.n_eval), voices[n_tr:],
                           args.seed + 1, args.workers)

    train = load_or_render(args.cache, "train", spec, make_train, args.rebuild)
    evals = load_or_render(args.cache, "eval", spec, make_eval, args.rebuild)
    return train, evals


def sample_batch(train, rng, batch):
    neutral = [c for c in train if c["emotion"] == "neutral"]
    by_emo = {e: [c for c in train if c["emotion"] == e] or neutral for e in EMOTIONS}
    items = []
    for _ in range(batch):
        if rng.random() < 0.5:
            src = neutral[rng.integers(len(neutral))]
            tgt = TARGET_EMOTIONS[rng.integers(4)]
            cons = is_conservative(src["text"], tgt)
            inten = rng.uniform(0.0, 0.3) if cons else rng.uniform(0.7, 1.2)
            p = tts.sample_prosody(tgt, rng, inten)
            items.append(dict(task="evc", features=src["features"], target=tgt, text=src["text"],
                              level="mild" if cons else "full",
                              speech=tts.prosody_to_tokens(p)))
        else:
            e = EMOTIONS[rng.integers(5)]
            c = by_emo[e][rng.integers(len(by_emo[e]))]
            items.append(dict(task="ser", features=c["features"], label=e))
    return items


def intensity_of(p: tts.Prosody, emotion: str) -> float:
    """Projection of a prosody onto its emotion's profile direction (jitter-scaled): 0 = neutral, 1 = full profile."""
    n, prof = tts.PROFILES["neutral"], tts.PROFILES[emotion]
    d = np.array([(getattr(prof, f) - getattr(n, f)) / getattr(tts.JITTER, f) for f in tts.FIELDS])
    x = np.array([(getattr(p, f) - getattr(n, f)) / getattr(tts.JITTER, f) for f in tts.FIELDS])
    return float(x @ d / (d @ d))


@torch.no_grad()
def evaluate(model, clips, batch=16, label="held-out"):
    """EVC text WER (neutral clips, every target), SER accuracy, rendered-target intensity per emotion."""
    import jiwer

    model.eval()
    neutral = [c for c in clips if c["emotion"] == "neutral"]
    refs, hyps, inten = [], [], {e: [] for e in TARGET_EMOTIONS}
    cons = {e: [] for e in TARGET_EMOTIONS}
    for k, tgt in enumerate(TARGET_EMOTIONS):
        for i in range(0, len(neutral), batch):
            chunk = neutral[i: i + batch]
            out = model.generate(**model.prepare_inputs([c["features"] for c in chunk], "evc", [tgt] * len(chunk),
                                                        [c["text"] for c in chunk]))
            for c, s, sp in zip(chunk, out.sequences, out.speech_tokens):
                refs.append(c["text"])
                hyps.append(model.tokenizer.decode(s) or "<empty>")
                inten[tgt].append(intensity_of(tts.tokens_to_prosody(sp.tolist()), tgt))
                cons[tgt].append(is_conservative(c["text"], tgt))
    wer = jiwer.wer(refs, hyps)
    ser_clips = clips[len(clips) // 2:]  # the balanced emotional half
    correct, n = 0, 0
    for i in range(0, len(ser_clips), batch):
        chunk = ser_clips[i: i + batch]
        out = model.generate(**model.prepare_inputs([c["features"] for c in chunk], "ser"))
        for c, s in zip(chunk, out.sequences):
            correct += model.tokenizer.parse_label(s.tolist()) == c["emotion"]
            n += 1
    res = {"evc_wer": wer, "ser_acc": correct / max(n, 1), "n_evc": len(refs), "n_ser": n,
           "intensity": {e: {"mean": float(np.mean(v)), "share_below_0.5": float(np.mean(np.array(v) < 0.5)),
                             "share_rule_conservative": float(np.mean(cons[e]))} for e, v in inten.items()}}
    print(f"[{label}] EVC WER {wer:.3f} | SER acc {res['ser_acc']:.3f} (n={n})")
    for e, d in res["intensity"].items():
        print(f"[{label}]   target {e:8s} rendered intensity mean {d['mean']:.2f}, share < 0.5: "
              f"{d['share_below_0.5']:.2f} (training rule share for these sources: {d['share_rule_conservative']:.2f})")
    return res


def evaluate_corpus(model, root: Path, speakers=("0011", "0015", "0019"), n: int = 10, batch: int = 16):
    """The same checks on a few demo-corpus speakers (unseen voices, corpus sentences) through DemoAdapter."""
    import jiwer

    from esnlib.corpora.esd import load_esd
    from esnlib.models.demo import DemoAdapter

    utts = load_esd(root, speakers=list(speakers))
    neutral = [u for u in utts if u.emotion == "neutral" and u.index <= n]
    ad = DemoAdapter(model=model)
    res = {"speakers": list(speakers), "intensity": {}}
    refs, hyps = [], []
    for tgt in TARGET_EMOTIONS:
        gens = ad.evc(neutral, [tgt] * len(neutral), batch_size=batch)
        refs += [u.text for u in neutral]
        hyps += [g.text or "<empty>" for g in gens]
        v = [intensity_of(tts.tokens_to_prosody(g.extra["speech_tokens"]), tgt) for g in gens]
        res["intensity"][tgt] = {"mean": float(np.mean(v)), "share_below_0.5": float(np.mean(np.array(v) < 0.5))}
    res["evc_wer"] = jiwer.wer(refs, hyps)
    ser_utts = [u for u in utts if u.index <= n]
    gens = ad.ser(ser_utts, batch_size=batch)
    res["ser_acc"] = float(np.mean([g.label == u.emotion for g, u in zip(gens, ser_utts)]))
    res["ser_pred"] = {e: sum(g.label == e for g in gens) for e in EMOTIONS}
    print(f"[corpus {','.join(speakers)}] EVC WER {res['evc_wer']:.3f} | SER acc {res['ser_acc']:.3f} "
          f"(n={len(ser_utts)}; predicted {res['ser_pred']})")
    for e, d in res["intensity"].items():
        print(f"[corpus]   target {e:8s} rendered intensity mean {d['mean']:.2f}, share < 0.5: "
              f"{d['share_below_0.5']:.2f}")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "esnlib/assets/demo_lalm")
    ap.add_argument("--cache", type=Path, default=ROOT / "data/cache/demo_lalm")
    ap.add_argument("--n-neutral", type=int, default=1600)
    ap.add_argument("--n-emotional", type=int, default=1600)
    ap.add_argument("--n-eval", type=int, default=80)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is fastest for this tiny model (2 threads oversubscribe a busy 2-core machine)")
    ap.add_argument("--tiny", action="store_true", help="tiny config (tests)")
    ap.add_argument("--rebuild", action="store_true", help="re-render the cached clips")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--init", type=Path, default=None, help="continue from saved weights (a --out folder)")
    ap.add_argument("--talker-reads-embeddings", action="store_true",
                    help="talker also reads the thinker's input embeddings (off in the committed weights)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the weights in --out and stop")
    ap.add_argument("--corpus", type=Path, default=ROOT / "data/demo_corpus", help="demo corpus for the check")
    ap.add_argument("--data-only", action="store_true", help="render and cache the clips, then stop")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    train, evals = make_data(args)
    t_data = time.time() - t0
    print(f"data: {len(train)} train clips, {len(evals)} eval clips in {t_data:.0f}s")
    if args.data_only:
        return None, {}
    if args.eval_only:
        model = load_demo_model(args.out)
        res = {"heldout": evaluate(model, evals)}
        if (args.corpus / "demo_corpus.json").exists():
            res["corpus"] = evaluate_corpus(model, args.corpus)
        return model, res

    if args.init is not None:
        model = load_demo_model(args.init)
        prior = model.meta.get("steps_total", model.meta.get("steps", 0))
    else:
        cfg = DemoConfig.tiny() if args.tiny else DemoConfig()
        cfg.talker_reads_embeddings = args.talker_reads_embeddings or args.tiny
        model, prior = DemoOmni(cfg), 0
    print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warm = max(1, min(200, args.steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    rng = np.random.default_rng(args.seed)
    model.train()
    hist, run = [], {"text": 0.0, "talker": 0.0, "n": 0}
    t1 = time.time()
    for step in tqdm(range(1, args.steps + 1), desc="train", mininterval=10):
        batch = model.training_batch(sample_batch(train, rng, args.batch))
        losses = model.training_loss(batch)
        opt.zero_grad()
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run["text"] += losses["text"].item()
        run["talker"] += losses["talker"].item()
        run["n"] += 1
        if step % args.log_every == 0 or step == args.steps:
            row = {"step": step, "text_loss": run["text"] / run["n"], "talker_loss": run["talker"] / run["n"],
                   "elapsed_s": round(time.time() - t1, 1)}
            hist.append(row)
            tqdm.write(f"step {step:5d}  text {row['text_loss']:.4f}  talker {row['talker_loss']:.4f}  "
                       f"({row['elapsed_s']:.0f}s)")
            run = {"text": 0.0, "talker": 0.0, "n": 0}
    t_train = time.time() - t1
    res = evaluate(model, evals)
    if (args.corpus / "demo_corpus.json").exists() and not args.tiny:
        meta_corpus = evaluate_corpus(model, args.corpus)
    else:
        meta_corpus = None
    meta = {"train_clips": len(train), "steps": args.steps, "steps_total": prior + args.steps, "init": str(args.init),
            "batch": args.batch, "seed": args.seed,
            "data_seconds": round(t_data, 1), "train_seconds": round(t_train, 1), "history": hist,
            "heldout": res, "corpus": meta_corpus,
            "conservative_share": CONSERVATIVE_SHARE}
    model.save(args.out, meta)
    size = sum(f.stat().st_size for f in args.out.iterdir()) / 1e6
    print(f"saved to {args.out} ({size:.2f} MB); data {t_data:.0f}s, training {t_train:.0f}s")
    return model, meta


if __name__ == "__main__":
    main()
