"""One-command check of a real model on a GPU: load it, run a few EVC and SER samples with capture, steering and
deactivation through its esnlib adapter, and write a short report (timings, memory, outputs, audio files).

    .venv/bin/python scripts/gpu_check.py --model qwen2.5-omni-7b --corpus-root /data/ESD
    .venv-kimi-audio/bin/python scripts/gpu_check.py --model kimi-audio-7b     # after `make env MODEL=kimi-audio`
    .venv-minicpm-o/bin/python scripts/gpu_check.py --model minicpm-o-4.5      # after `make env MODEL=minicpm-o`

``--model`` is a registry name, hub id or checkpoint folder (``esnlib.models.registry``), or ``package.module:factory``
returning an adapter (the tests run it on tiny stand-ins this way). Without ``--corpus-root`` (an ESD-layout folder)
the inputs are synthetic tones: the run still exercises every code path, but the outputs say nothing about quality.

Each step is checked (captured statistics finite and consistent, capture leaves the outputs unchanged, deactivated
neurons serve zeros, ...) and timed; the report goes to ``<out>/report.md`` and ``<out>/report.json``, generated
speech to ``<out>/audio/<step>/``. Exit status 0 when every check passed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("happy", "sad", "angry", "surprise")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="registry name, hub id, checkpoint folder or package.module:factory")
    p.add_argument("--device", default=None, help="cuda (default when a GPU is visible) or cpu")
    p.add_argument("--corpus-root", default=None, help="an ESD-layout folder; default: synthetic tones")
    p.add_argument("--n-evc", type=int, default=4, help="EVC samples (neutral sources, targets cycled)")
    p.add_argument("--n-ser", type=int, default=4, help="SER samples")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--rate", type=float, default=0.005, help="fraction of neurons in the steered/deactivated mask")
    p.add_argument("--alpha", type=float, default=1.0, help="steering strength")
    p.add_argument("--out", default=None, help="report folder (default runs/gpu_check/<model>-<time>)")
    return p


# ------------------------------------------------------------------------------------------------------------------
def environment() -> dict:
    import nnsight
    import torch
    import transformers

    env = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
           "transformers": transformers.__version__, "nnsight": getattr(nnsight, "__version__", "?"),
           "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


def inputs(args, work: Path):
    """(EVC sources, SER utterances): from an ESD-layout corpus, else synthetic tones written under ``work``."""
    from esnlib.corpora.base import Utterance

    if args.corpus_root:
        from esnlib.corpora.esd import load_esd

        utts = load_esd(args.corpus_root)
        neutral = [u for u in utts if u.emotion == "neutral"][: args.n_evc]
        by_emotion = {}
        for u in utts:
            by_emotion.setdefault(u.emotion, []).append(u)
        ser = [u for i in range(args.n_ser) for lst in by_emotion.values() if len(lst) > i for u in [lst[i]]]
        return neutral, ser[: args.n_ser]
    from esnlib.audio import save_wav

    out = []
    for i in range(max(args.n_evc, args.n_ser)):
        t = np.arange(int(16000 * (1.0 + 0.25 * i))) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (140 + 30 * i) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        path = save_wav(work / "inputs" / f"tone{i}.wav", wav.astype(np.float32))
        out.append(Utterance(id=f"tone{i}", corpus="synthetic", speaker="tone", emotion="neutral",
                             text="(synthetic tone)", path=str(path), index=i))
    return out[: args.n_evc], out[: args.n_ser]


class Meter:
    """Wall time and peak memory of one step (GPU: torch's peak allocation; CPU: the process's peak RSS so far)."""

    def __init__(self):
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()

    def done(self) -> dict:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        out = {"seconds": round(time.perf_counter() - self.t0, 3),
               "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
        if self.cuda:
            out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        return out


def same_outputs(a, b) -> bool:
    if [g.text for g in a] != [g.text for g in b]:
        return False
    for x, y in zip(a, b):
        if (x.audio is None) != (y.audio is None):
            return False
        if x.audio is not None and (x.audio.shape != y.audio.shape or not np.allclose(x.audio, y.audio, atol=1e-4)):
            return False
    return True


def stats_checks(stats, n_rows: int) -> dict:
    pos, tok = np.asarray(stats.positive), np.asarray(stats.tokens)
    return {"one row per input": stats.batch_size == n_rows, "positions counted": bool((tok > 0).all()),
            "finite sums": bool(np.isfinite(stats.sum).all() and np.isfinite(stats.sumsq).all()),
            "positive <= positions": bool((pos <= np.asarray(stats.site_tokens).max(1, keepdims=True)).all())}


def top_mask(stats, sites, rate: float) -> np.ndarray:
    """The r*N neurons most often active in the captured samples (a stand-in for an identified ESN mask)."""
    tok = np.repeat(np.asarray(stats.site_tokens, np.float64), [s.width for s in sites], axis=1).sum(0)
    p = np.asarray(stats.positive, np.float64).sum(0) / np.maximum(tok, 1)
    k = max(1, int(round(rate * p.size)))
    return np.sort(np.argsort(-p, kind="stable")[:k])


def save_audio(gens, folder: Path) -> list[str]:
    from esnlib.audio import save_wav

    paths = []
    for g in gens:
        if g.audio is None:
            paths.append("")
            continue
        name = f"{g.extra.get('utt_id', 'x')}_{g.extra.get('target', 'ser')}.wav"
        paths.append(str(save_wav(folder / name, g.audio)))
    return paths


# ------------------------------------------------------------------------------------------------------------------
def run(args) -> dict:
    import esnlib
    from esnlib.experiments import _load_model

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or ROOT / "runs" / "gpu_check" / f"{args.model.replace('/', '_').replace(':', '_')}-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    report = {"model": args.model, "device": device, "environment": environment(), "steps": [], "out": str(out)}

    def step(name, fn):
        rec = {"step": name}
        meter = Meter()
        try:
            rec.update(fn() or {})
        except Exception as e:  # recorded, and the remaining steps still run
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback"] = traceback.format_exc()
        rec.update(meter.done())
        if rec.get("samples"):
            rec["seconds_per_sample"] = round(rec["seconds"] / rec["samples"], 3)
        checks = rec.get("checks", {})
        rec["ok"] = "error" not in rec and all(checks.values())
        report["steps"].append(rec)
        print(f"[{'ok' if rec['ok'] else 'FAIL'}] {name}: {rec['seconds']} s"
              + (f" -- {rec['error']}" if "error" in rec else "")
              + "".join(f" -- check failed: {k}" for k, v in checks.items() if not v), flush=True)
        return rec

    state = {}

    def load():  # the registry raises first if this model needs another environment (make env MODEL=...)
        state["adapter"] = ad = _load_model(args.model, device)
        state["evc"], state["ser"] = inputs(args, out)
        scopes = ["lm"] + (["talker", "both"] if getattr(ad, "has_talker", False) else [])
        state["scopes"] = scopes
        return {"adapter": type(ad).__name__, "describe": ad.describe(), "has_talker": ad.has_talker,
                "neurons": {s: int(ad.sites(s)[-1].stop) for s in scopes}}

    if step("load", load).get("error"):
        return finish(report, out)
    ad, src, ser_utts = state["adapter"], state["evc"], state["ser"]
    targets = [TARGETS[i % len(TARGETS)] for i in range(len(src))]
    bs = args.batch_size

    def evc_baseline():
        gens = ad.evc(src, targets, batch_size=bs)
        state["evc_base"] = gens
        return {"samples": len(src), "outputs": outputs(gens, save_audio(gens, out / "audio" / "evc_baseline")),
                "checks": {"every sample has audio": all(g.audio is not None and g.audio.size > 0 for g in gens)}}

    step("evc_baseline", evc_baseline)

    for scope in state["scopes"]:
        def evc_capture(scope=scope):
            gens, stats = ad.evc(src, targets, capture=True, scope=scope, batch_size=bs)
            state[f"stats_{scope}"] = stats
            checks = stats_checks(stats, len(src))
            if "evc_base" in state:
                checks["capture leaves outputs unchanged"] = same_outputs(gens, state["evc_base"])
            return {"samples": len(src), "scope": scope, "neurons": int(stats.positive.shape[1]),
                    "positions_per_sample": np.asarray(stats.tokens).tolist(), "checks": checks}

        step(f"evc_capture_{scope}", evc_capture)

    for scope in state["scopes"]:
        if f"stats_{scope}" not in state:
            continue
        sites = ad.sites(scope)
        mask = top_mask(state[f"stats_{scope}"], sites, args.rate)
        for kind, alpha in (("steer", args.alpha), ("deactivate", 0.0)):
            def evc_edit(scope=scope, kind=kind, alpha=alpha, mask=mask):
                iv = esnlib.Intervention(index=mask, kind=kind, alpha=alpha)
                gens, stats = ad.evc(src, targets, capture=True, scope=scope, intervention=iv, batch_size=bs)
                checks = stats_checks(stats, len(src))
                checks["every sample has audio"] = all(g.audio is not None for g in gens)
                if kind == "deactivate":
                    checks["masked neurons serve zeros"] = bool((np.asarray(stats.sum)[:, mask] == 0).all())
                changed = None
                if "evc_base" in state:
                    changed = sum(not same_outputs([a], [b]) for a, b in zip(gens, state["evc_base"]))
                return {"samples": len(src), "scope": scope, "kind": kind, "alpha": alpha, "mask_size": int(mask.size),
                        "samples_changed_vs_baseline": changed, "checks": checks,
                        "outputs": outputs(gens, save_audio(gens, out / "audio" / f"evc_{kind}_{scope}"))}

            step(f"evc_{kind}_{scope}", evc_edit)

    def ser_baseline():
        gens = ad.ser(ser_utts, batch_size=bs)
        state["ser_base"] = gens
        return {"samples": len(ser_utts), "outputs": outputs(gens, [""] * len(gens)),
                "checks": {"every answer is text": all(isinstance(g.text, str) for g in gens)}}

    step("ser_baseline", ser_baseline)

    def ser_capture_and_deactivate():
        gens, stats = ad.ser(ser_utts, capture=True, scope="lm", batch_size=bs)
        checks = stats_checks(stats, len(ser_utts))
        if "ser_base" in state:
            checks["capture leaves outputs unchanged"] = same_outputs(gens, state["ser_base"])
        mask = top_mask(stats, ad.sites("lm"), args.rate)
        off, stats2 = ad.ser(ser_utts, capture=True, scope="lm", batch_size=bs,
                             intervention=esnlib.Intervention(index=mask, kind="deactivate", alpha=0.0))
        checks["masked neurons serve zeros"] = bool((np.asarray(stats2.sum)[:, mask] == 0).all())
        return {"samples": 2 * len(ser_utts), "mask_size": int(mask.size), "checks": checks,
                "labels": [g.label for g in gens], "labels_deactivated": [g.label for g in off]}

    step("ser_capture_deactivate", ser_capture_and_deactivate)
    return finish(report, out)


def outputs(gens, paths) -> list[dict]:
    return [{"utt_id": g.extra.get("utt_id"), "target": g.extra.get("target"), "text": g.text, "label": g.label,
             "audio_seconds": None if g.audio is None else round(g.audio.size / 16000, 2), "audio": p}
            for g, p in zip(gens, paths)]


def finish(report: dict, out: Path) -> dict:
    report["ok"] = bool(report["steps"]) and all(s["ok"] for s in report["steps"])
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(markdown(report))
    print(f"report: {out / 'report.md'} ({'all checks passed' if report['ok'] else 'FAILURES'})")
    return report


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# gpu_check: {report['model']}", "",
             f"{dt.datetime.now():%Y-%m-%d %H:%M}, device {report['device']}"
             + (f" ({env['gpu']}, {env['gpu_memory_gib']} GiB)" if env.get("gpu") else "")
             + f"; torch {env['torch']}, transformers {env['transformers']}, nnsight {env['nnsight']}", "",
             "| step | ok | seconds | s/sample | peak GPU GiB | peak RSS GiB | notes |", "|---|---|---|---|---|---|---|"]
    for s in report["steps"]:
        notes = s.get("error") or "; ".join(f"{k}: {v}" for k, v in s.items() if k in (
            "scope", "kind", "mask_size", "samples_changed_vs_baseline", "positions_per_sample", "neurons"))
        failed = [k for k, v in s.get("checks", {}).items() if not v]
        if failed:
            notes += " -- failed: " + ", ".join(failed)
        lines.append(f"| {s['step']} | {'yes' if s['ok'] else 'NO'} | {s['seconds']} | {s.get('seconds_per_sample', '-')} | "
                     f"{s.get('peak_gpu_gib', '-')} | "
                     f"{s['peak_rss_gib']} | {notes} |")
    lines += ["", "## Outputs", ""]
    for s in report["steps"]:
        for o in s.get("outputs", []):
            text = o["text"] if len(o["text"]) <= 160 else o["text"][:160] + f"... ({len(o['text'])} chars)"
            lines.append(f"- {s['step']}: {o['utt_id']} -> {o['target'] or o['label']}: {text!r}"
                         + (f" ({o['audio_seconds']} s, {o['audio']})" if o["audio"] else ""))
        if "labels" in s:
            lines.append(f"- {s['step']}: labels {s['labels']}, with the mask deactivated {s['labels_deactivated']}")
    for s in report["steps"]:
        if "traceback" in s:
            lines += ["", f"## {s['step']}: traceback", "", "```", s["traceback"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return 0 if run(args)["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
