"""The five corpus kinds a notebook can name (``corpus=``), their folder layouts, and one loader call for all of them.

``load(kind, root)`` returns Utterance rows whose ``split`` is one of the World's subsets (IDENTIFICATION,
DEVELOPMENT, TEST-SEEN, TEST-UNSEEN), so every notebook step works on any corpus:

* ``demo`` / ``esd``: ESD layout, the EVC paper's Table 1 split (speakers x sentence-index blocks).
* ``iemocap``: Sessions 1-3 identify, Session 4 develops, Session 5 tests (its two speakers are unseen).
* ``meld``: train identifies, dev develops, test tests (the Friends cast speaks in every split: seen speakers).
* ``msp-podcast``: Train identifies, Development develops, Test1/Test2/Test3 test (speaker-independent sets).

The three SER corpora have no parallel neutral sources with target renditions, so only ``demo`` and ``esd`` serve
the EVC notebooks (:data:`EVC_KINDS`); notebook 08 (SER) takes all five. A folder whose layout does not match the
kind asked for is a CorpusError naming the expected layout (and the kind the folder looks like, if any) before any
file is read.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

from .base import CorpusError, Utterance

KINDS = ("demo", "esd", "iemocap", "meld", "msp-podcast")
#: corpora with neutral sources and transcripts in ESD's parallel layout: what EVC identification needs
EVC_KINDS = ("demo", "esd")
SER_KINDS = KINDS

#: what each kind's folder looks like (shown in errors and docs)
LAYOUTS = {
    "demo": "the ESD layout plus <root>/demo_corpus.json (built by scripts/make_demo_corpus.py)",
    "esd": "ESD: <root>/<spk>/<Emotion>/[train|evaluation|test/]<spk>_<6 digits>.wav with transcripts "
           "<root>/<spk>/<spk>.txt, speakers 0001-0020",
    "iemocap": "IEMOCAP: <root>/Session1..5/dialog/EmoEvaluation/<dialog>.txt and "
               "<root>/Session1..5/sentences/wav/<dialog>/<utt id>.wav (the IEMOCAP_full_release folder)",
    "meld": "MELD.Raw: <root>/{train,dev,test}_sent_emo.csv with the clips in <root>/train_splits/, "
            "<root>/dev_splits_complete/, <root>/output_repeated_splits_test/ (dia<D>_utt<U>.mp4)",
    "msp-podcast": "MSP-Podcast: <root>/Labels/labels_consensus.csv and <root>/Audios/<FileName>.wav",
}

#: corpus split -> World subset, per SER corpus (see the module docstring)
SPLIT_MAPS = {
    "iemocap": {"Session1": "IDENTIFICATION", "Session2": "IDENTIFICATION", "Session3": "IDENTIFICATION",
                "Session4": "DEVELOPMENT", "Session5": "TEST-UNSEEN"},
    "meld": {"train": "IDENTIFICATION", "dev": "DEVELOPMENT", "test": "TEST-SEEN"},
    "msp-podcast": {"Train": "IDENTIFICATION", "Development": "DEVELOPMENT", "Test1": "TEST-UNSEEN",
                    "Test2": "TEST-UNSEEN", "Test3": "TEST-UNSEEN"},
}


def _has_layout(root: Path, kind: str) -> bool:
    """Cheap checks on folder and file names only (no file is opened)."""
    if kind == "demo":
        return (root / "demo_corpus.json").is_file()
    if kind == "esd":
        return any(p.is_dir() and re.fullmatch(r"\d{4}", p.name) for p in root.iterdir())
    if kind == "iemocap":
        return any((root / f"Session{i}").is_dir() for i in range(1, 6))
    if kind == "meld":
        return any(root.glob("*_sent_emo.csv"))
    if kind == "msp-podcast":
        from .msp_podcast import LABEL_FILES

        return any((root / "Labels" / f).is_file() for f in LABEL_FILES)
    raise ValueError(f"unknown corpus kind {kind!r}; expected one of {KINDS}")


def detect(root: str | Path) -> str | None:
    """The kind whose layout ``root`` has ("demo" before "esd"), or None (also for a missing or empty folder)."""
    root = Path(root)
    if not root.is_dir():
        return None
    for kind in KINDS:
        if _has_layout(root, kind):
            return kind
    return None


def _nested_hint(root: Path, kind: str | None) -> str:
    """' (... found in <root>/<child>: point corpus_root there)' when a child folder has the layout."""
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        found = detect(child)
        if found is not None and (kind is None or found == kind or {found, kind} <= set(EVC_KINDS)):
            return f"; {child} has the {found} layout: point corpus_root there"
    return ""


def check_layout(root: str | Path, kind: str) -> None:
    """CorpusError unless ``root`` has ``kind``'s layout; the message names the expected layout and what the folder
    looks like instead. ``esd`` accepts the demo corpus (it is in ESD's layout)."""
    root = Path(root)
    if kind not in KINDS:
        raise ValueError(f"unknown corpus kind {kind!r}; expected one of {KINDS}")
    if not root.is_dir():
        raise CorpusError(f"corpus root {root} does not exist; expected {LAYOUTS[kind]}")
    if _has_layout(root, "esd" if kind == "demo" else kind):
        return
    found = detect(root)
    seen = f"it has the {found} layout: pass corpus={found!r}" if found else "it has none of the known layouts"
    raise CorpusError(f"{root} is not a {kind} corpus folder: expected {LAYOUTS[kind]}; {seen}"
                      f"{_nested_hint(root, kind)}")


def check_task(kind: str, task: str | None, root: str | Path = "") -> None:
    """ValueError when a notebook's task cannot run on this corpus kind (EVC needs ESD-like parallel sources)."""
    if task is None or task == "ser":
        return
    if task != "evc":
        raise ValueError(f"unknown task {task!r}; use 'evc', 'ser' or None")
    if kind not in EVC_KINDS:
        raise CorpusError(
            f"the EVC notebooks (01-07, 09) need ESD-like sources (neutral utterances with transcripts, parallel "
            f"across emotions): corpus 'demo' or 'esd'; {root or 'this folder'} is {kind!r}. The SER notebook 08 "
            f"accepts every corpus ({', '.join(KINDS)})")


def _to_subsets(utts: list[Utterance], kind: str) -> list[Utterance]:
    mapping = SPLIT_MAPS[kind]
    out = [replace(u, split=mapping[u.split]) for u in utts if u.split in mapping]
    left = sorted({u.split for u in utts} - set(mapping))
    if left:
        warnings.warn(f"{kind}: splits {left} are not used (known: {list(mapping)})", stacklevel=3)
    return out


def load(kind: str, root: str | Path, verify_audio: bool = True, cache_dir: str | Path | None = None
         ) -> list[Utterance]:
    """Utterances of a ``kind`` corpus at ``root`` with ``split`` set to the World's subsets (layout checked first).

    ``demo``/``esd`` do not build anything (see ``esnlib.experiments.load_corpus`` for building the demo corpus).
    ``cache_dir``: MELD's extracted wavs (default ``<root>/.esnlib_wav``). MELD clips that are missing or have no
    audio are skipped with a warning (the public release lacks a few).
    """
    check_layout(root, kind)
    if kind in EVC_KINDS:
        from .esd import load_esd, table1_split

        utts = load_esd(root, verify_audio=verify_audio)
        parts = table1_split(utts)
        split_of = {u.id: name for name, us in parts.items() for u in us}
        return [replace(u, split=split_of[u.id]) for u in utts if u.id in split_of]
    if kind == "iemocap":
        from .iemocap import load_iemocap

        return _to_subsets(load_iemocap(root, verify_audio=verify_audio), kind)
    if kind == "meld":
        from .meld import load_meld

        return _to_subsets(load_meld(root, cache_dir=cache_dir, on_missing="skip"), kind)
    from .msp_podcast import load_msp_podcast

    return _to_subsets(load_msp_podcast(root, verify_audio=verify_audio), kind)
