"""The demo corpus: espeak-ng speech in ESD's folder layout, so one loader (:func:`esnlib.corpora.esd.load_esd`)
serves real ESD and the demo world alike.

Layout (as the flat ESD release)::

    <root>/<spk>/<spk>.txt                        "<spk>_<utt>\\t<text>\\t<Emotion>" per line
    <root>/<spk>/<Emotion>/<spk>_<utt>.wav        16 kHz mono PCM-16
    <root>/demo_corpus.json                       seed, sizes, voices, per-utterance prosody, versions

Utterance numbers follow ESD: per speaker, emotion blocks in the order Neutral, Angry, Happy, Sad, Surprise, each of
``n_utts`` numbers (ESD: 350, so Neutral 000001-000350, Angry 000351-000700, ...). Sentence i of every emotion block is
the same sentence (parallel utterances). Each utterance gets its own prosody: the emotion profile scaled by an
intensity drawn from U(0.6, 1.2) plus the profile jitter, so emotions overlap as in acted speech.
"""
from __future__ import annotations

import json
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .. import tts
from ..progress import tqdm
from .base import CorpusError
from .esd import EMOTION_DIRS, ESD_ORDER
from .sentences import CORPUS_VOICES, make_sentences

INTENSITY_RANGE = (0.6, 1.2)
DEFAULT_N_UTTS = 80


def utt_number(emotion: str, index: int, n_utts: int) -> int:
    """ESD utterance number of parallel sentence ``index`` (1-based) in ``emotion``'s block of ``n_utts``."""
    return ESD_ORDER.index(emotion) * n_utts + index


def _prosody_for(seed: int, speaker: str, emotion: str, index: int) -> tuple[float, tts.Prosody]:
    # One generator per utterance: the draw does not depend on build order, workers, or which files already exist.
    rng = np.random.default_rng([seed, int(speaker), ESD_ORDER.index(emotion), index])
    intensity = float(rng.uniform(*INTENSITY_RANGE)) if emotion != "neutral" else 0.0
    return intensity, tts.sample_prosody(emotion, rng, intensity=intensity)


def _file_ok(path: Path) -> bool:
    from ..audio import load_wav

    if not path.is_file():
        return False
    try:
        return len(load_wav(path)) > 0
    except CorpusError:
        return False


def _render(job: tuple[str, str, str, dict]) -> str:
    from ..audio import save_wav

    path, text, voice, prosody = job
    save_wav(path, tts.synthesize(text, voice=voice, prosody=tts.Prosody(**prosody)))
    return path


def _espeak_version() -> str:
    try:
        return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unavailable"


def build_demo_corpus(
    root: str | Path,
    n_utts: int = DEFAULT_N_UTTS,
    speakers: dict[str, str] | list[str] | None = None,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Render the demo corpus under ``root`` (see the module docstring); returns the manifest written to
    ``<root>/demo_corpus.json``.

    ``speakers``: ``{speaker id: espeak voice}`` or a list of ids from ``CORPUS_VOICES`` (default: all ten).
    Deterministic for ``seed`` (same bytes), resumable (existing readable wavs are kept, corrupt ones re-rendered).
    """
    if n_utts < 1:
        raise ValueError(f"n_utts must be >= 1, got {n_utts}")
    if speakers is None:
        speakers = dict(CORPUS_VOICES)
    elif not isinstance(speakers, dict):
        unknown = [s for s in speakers if s not in CORPUS_VOICES]
        if unknown:
            raise ValueError(f"unknown demo speakers {unknown}; pass a dict {{id: espeak voice}} or ids from "
                             f"{sorted(CORPUS_VOICES)}")
        speakers = {s: CORPUS_VOICES[s] for s in speakers}
    bad = [s for s in speakers if not (s.isdigit() and len(s) == 4)]
    if bad:
        raise ValueError(f"speaker ids must be 4 digits like ESD's '0011', got {bad}")
    if not tts.espeak_available():
        raise RuntimeError("espeak-ng is not installed: run `sudo apt-get install espeak-ng`")

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sentences = make_sentences(n_utts, "corpus", seed)
    utterances, jobs = [], []
    for spk in sorted(speakers):
        lines = []
        for emo in ESD_ORDER:
            for i, text in enumerate(sentences, start=1):
                uid = f"{spk}_{utt_number(emo, i, n_utts):06d}"
                intensity, pros = _prosody_for(seed, spk, emo, i)
                path = root / spk / EMOTION_DIRS[emo] / f"{uid}.wav"
                lines.append(f"{uid}\t{text}\t{EMOTION_DIRS[emo]}\n")
                utterances.append({"id": uid, "speaker": spk, "emotion": emo, "index": i, "text": text,
                                   "intensity": round(intensity, 6),
                                   **{k: round(v, 6) for k, v in pros.as_dict().items()}})
                jobs.append((str(path), text, speakers[spk], pros.as_dict()))
        (root / spk).mkdir(parents=True, exist_ok=True)
        (root / spk / f"{spk}.txt").write_text("".join(lines), encoding="utf-8")

    todo = [j for j in tqdm(jobs, desc="checking existing files", disable=not progress, leave=False)
            if not _file_ok(Path(j[0]))]
    t0 = time.perf_counter()
    if todo:
        if workers <= 1:
            for job in tqdm(todo, desc="rendering demo corpus", disable=not progress):
                _render(job)
        else:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                for _ in tqdm(ex.map(_render, todo, chunksize=8), total=len(todo), desc="rendering demo corpus",
                              disable=not progress):
                    pass
    manifest = {
        "corpus": "esnlib demo corpus (ESD layout)",
        "seed": seed,
        "n_utts": n_utts,
        "emotions": list(ESD_ORDER),
        "n_speakers": len(speakers),
        "n_files": len(jobs),
        "speakers": dict(sorted(speakers.items())),
        "intensity_range": list(INTENSITY_RANGE),
        "sample_rate": tts.SAMPLE_RATE,
        "versions": {"esnlib": _esnlib_version(), "espeak-ng": _espeak_version(), "numpy": np.__version__,
                     "python": platform.python_version()},
        "utterances": utterances,
    }
    tmp = root / "demo_corpus.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    tmp.replace(root / "demo_corpus.json")
    manifest["rendered"] = len(todo)
    manifest["render_seconds"] = round(time.perf_counter() - t0, 2)
    return manifest


def _esnlib_version() -> str:
    from .. import __version__

    return __version__


def load_manifest(root: str | Path) -> dict:
    """The ``demo_corpus.json`` of a demo corpus root (CorpusError when absent)."""
    p = Path(root) / "demo_corpus.json"
    if not p.is_file():
        raise CorpusError(f"{p} not found: {root} is not a demo corpus; build one with scripts/make_demo_corpus.py")
    return json.loads(p.read_text(encoding="utf-8"))
