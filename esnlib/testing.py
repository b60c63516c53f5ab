"""Demo-world fixtures for tests, benchmarks and examples of ``esnlib.grid`` (not used by the notebooks' pipeline).

A tiny or trained demo LALM set up the same way in every process (``demo_setup``), neutral source clips
(``demo_sources``), and a demo EVC sweep written as grid units and work functions (``demo_units``,
``demo_evc_work``; row-wise: ``demo_rowwise_groups``, ``demo_rowwise_work``): the pattern for writing your own
``work_fn``. This module imports the demo LALM (``esnlib.models.demo``); the executor in ``esnlib.grid`` does not.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import pandas as pd

from .grid import Unit, UnitGroup, shard_units
from .store import ResultStore

__all__ = ["demo_sources", "demo_setup", "demo_evc_work", "demo_units", "demo_rowwise_work", "demo_rowwise_groups"]

def demo_sources(n: int, corpus_root: str | os.PathLike = "data/demo_corpus",
                 synth_dir: str | os.PathLike | None = None) -> list:
    """``n`` neutral source utterances: from the demo corpus if ``corpus_root`` holds one, else synthesized with
    espeak-ng (esnlib.tts) into ``synth_dir``."""
    from pathlib import Path

    from .corpora.base import Utterance

    root = Path(corpus_root)
    out = []
    if root.is_dir():
        per_spk = []
        for spk in sorted(p for p in root.iterdir() if p.is_dir()):
            txt = spk / f"{spk.name}.txt"
            rows = []
            for line in (txt.read_text().splitlines() if txt.exists() else []):
                parts = line.split("\t")
                if len(parts) == 3 and parts[2] == "Neutral" and (spk / "Neutral" / f"{parts[0]}.wav").exists():
                    rows.append(Utterance(parts[0], "demo", spk.name, "neutral", parts[1],
                                          str(spk / "Neutral" / f"{parts[0]}.wav"), int(parts[0].split("_")[1]),
                                          "TEST-SEEN"))
            per_spk.append(rows)
        for i in range(max(map(len, per_spk), default=0)):  # round-robin over speakers: spread over voices
            out += [rows[i] for rows in per_spk if i < len(rows)]
        if len(out) >= n:
            return out[:n]
    if len(out) < n:
        if synth_dir is None:
            raise FileNotFoundError(f"no demo corpus with {n} neutral clips at {root}; pass synth_dir= to "
                                    "synthesize a few with espeak-ng")
        import soundfile as sf

        from . import tts
        from .corpora.sentences import make_sentences

        d = Path(synth_dir)
        d.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(make_sentences(n - len(out), seed=7)):
            path = d / f"synth_{i:03d}.wav"
            if not path.exists():
                sf.write(path, tts.synthesize(text, "en-us"), 16000)
            out.append(Utterance(f"synth_{i:03d}", "synth", "synth", "neutral", text, str(path), i + 1, "TEST-SEEN"))
    return out[:n]


def demo_setup(seed: int = 0, size: str = "tiny", threads: int | None = 1, std: float = 0.3):
    """A DemoAdapter for demo sweeps, the same in every process (so workers agree).

    size: "trained" (the committed demo LALM), "tiny" (``DemoOmni.tiny()``: random tiny thinker) or "full" (the
    pretrained thinker with untrained parts of ``DemoConfig()`` sizes); random matrices are drawn with ``std`` 0.3 so
    that text and prosody vary with the input and the edits instead of collapsing to one answer as at the default
    init (the pretrained thinker is never perturbed).
    """
    import torch

    from .models.demo import DemoAdapter, DemoConfig, DemoOmni

    if size not in ("tiny", "full", "trained"):
        raise ValueError(f"size must be 'tiny', 'full' or 'trained', got {size!r}")
    if threads:
        torch.set_num_threads(threads)
    if size == "trained":
        return DemoAdapter(device="cuda" if torch.cuda.is_available() else "cpu")
    model = DemoOmni.tiny(seed) if size == "tiny" else DemoOmni(DemoConfig()).eval()
    torch.manual_seed(seed)
    parts = [model] if size == "tiny" else [getattr(model, n) for n in DemoOmni.TRAINED]
    with torch.no_grad():
        for part in parts:
            for p in part.parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, std)
    return DemoAdapter(model=model)


def demo_evc_work(ctx, unit: Unit) -> pd.DataFrame:
    """EVC of the unit's shard (payload: {"utts", "targets", "intervention"}) -> one row per (utterance, e_tgt).

    No judges here: rows hold the decoded text, the talker's speech tokens and the rendered audio's length and RMS.
    """
    p = unit.payload
    src, tgt = _demo_pairs(p)
    gens = ctx.evc(src, tgt, intervention=p.get("intervention"), batch_size=len(src))
    return _demo_rows(src, tgt, gens)


def _demo_pairs(p):
    utts, targets = list(p["utts"]), list(p["targets"])
    return [u for u in utts for _ in targets], [t for _ in utts for t in targets]


def _demo_rows(src, tgt, gens) -> pd.DataFrame:
    import numpy as np

    rows = []
    for u, t, g in zip(src, tgt, gens):
        a = g.audio if g.audio is not None else np.zeros(0, np.float32)
        rows.append({"utt_id": u.id, "target": t, "hyp": g.text,
                     "speech": ",".join(f"{v:.4f}" for v in (g.extra.get("prosody") or {}).values())
                     or ",".join(map(str, g.extra.get("speech_tokens", []))),
                     "n_audio": int(len(a)), "audio_rms": float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
                     if len(a) else 0.0})
    return pd.DataFrame(rows)


def demo_units(utts: Sequence, conditions: Mapping[str, Any], shard_size: int, targets=("angry", "sad"),
               table: str = "demo_grid") -> list[Unit]:
    """Units for ``conditions`` ({name: Intervention | None}) x shards of ``utts``."""
    units = []
    for name, iv in conditions.items():
        cond = {"step": "demo_grid", "condition": name, "targets": ",".join(targets),
                "kind": iv.kind if iv is not None else "none", "alpha": iv.alpha if iv is not None else 0.0,
                "mask": ResultStore.key({"index": iv.index.tolist()}) if iv is not None else "none"}
        units += shard_units(table, cond, utts, shard_size, shard_id=lambda s: ",".join(u.id for u in s),
                             payload=lambda s, iv=iv: {"utts": list(s), "targets": list(targets),
                                                       "intervention": iv})
    return units


def demo_rowwise_work(ctx, group: UnitGroup) -> list:
    """The members of ``group`` (one per condition, same shard) in ONE generate call: the shard's rows repeated once
    per condition, each copy with its own edit (RowwiseIntervention). Returns one frame per member, in order."""
    from .intervention import per_condition

    src, tgt = _demo_pairs(group.payload)
    ivs = [u.payload.get("intervention") for u in group.units]
    gens = per_condition(lambda k, iv: ctx.evc(src * k, tgt * k, intervention=iv, batch_size=k * len(src)),
                         len(src), ivs)
    return [_demo_rows(src, tgt, g) for g in gens]


def demo_rowwise_groups(units: Sequence[Unit]) -> list[UnitGroup]:
    """Group ``demo_units`` output by shard: one UnitGroup per shard carrying every condition."""
    by_shard: dict = {}
    for u in units:
        by_shard.setdefault(u.condition["shard"], []).append(u)
    return [UnitGroup(us, payload={"utts": us[0].payload["utts"], "targets": us[0].payload["targets"]})
            for us in by_shard.values()]
