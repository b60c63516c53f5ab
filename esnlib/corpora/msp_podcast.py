"""MSP-Podcast (Lotfian & Busso) loader: consensus labels, 4- and 8-class sets, the official split sets.

Layout (release 1.11/1.12)::

    <root>/Labels/labels_consensus.csv   columns FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set
    (older releases: <root>/Labels/labels_concensus.csv)
    <root>/Audios/<FileName>             (e.g. MSP-PODCAST_0001_0008.wav)
    <root>/Transcripts/<stem>.txt        (optional)

EmoClass codes: A angry, S sad, H happy, U surprise, F fear, D disgust, C contempt, N neutral, O other,
X no agreement. 8-class = the eight named emotions; 4-class = neutral, angry, happy, sad. O and X never load.
``split`` is Split_Set (Train, Development, Test1, Test2, Test3 depending on the release).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .base import CorpusError, Utterance

CODES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust", "C": "contempt",
         "N": "neutral", "O": "other", "X": None}
EIGHT_CLASS = ("neutral", "angry", "happy", "sad", "surprise", "fear", "disgust", "contempt")
FOUR_CLASS = ("neutral", "angry", "happy", "sad")
CLASS_SETS = {4: FOUR_CLASS, 8: EIGHT_CLASS}
REQUIRED = ("FileName", "EmoClass", "SpkrID", "Split_Set")
#: the consensus label file; older releases spell it "concensus"
LABEL_FILES = ("labels_consensus.csv", "labels_concensus.csv")


def load_msp_podcast(root: str | Path, classes: int = 4, splits: list[str] | None = None,
                     verify_audio: bool = False) -> list[Utterance]:
    """Load MSP-Podcast consensus-labelled utterances of the ``classes``-class set (4 or 8) and ``splits``."""
    root = Path(root)
    if classes not in CLASS_SETS:
        raise ValueError(f"classes must be 4 or 8, got {classes}")
    if not root.is_dir():
        raise CorpusError(f"MSP-Podcast root {root} does not exist; point it at the folder holding Labels/ and Audios/")
    csv = next((root / "Labels" / f for f in LABEL_FILES if (root / "Labels" / f).is_file()),
               root / "Labels" / LABEL_FILES[0])
    if not csv.is_file():
        raise CorpusError(f"{csv} is missing; MSP-Podcast labels live in Labels/labels_consensus.csv (older "
                          "releases: Labels/labels_concensus.csv) next to Audios/")
    adir = root / "Audios"
    if not adir.is_dir():
        raise CorpusError(f"{adir} is missing; unpack the audio into Audios/ (flat folder of wav files)")
    df = pd.read_csv(csv, dtype=str)
    lacking = [c for c in REQUIRED if c not in df.columns]
    if lacking:
        raise CorpusError(f"{csv} lacks column(s) {lacking}; expected the release's columns {REQUIRED} (+ EmoAct, ...)")
    unknown = sorted(set(df["EmoClass"].dropna()) - set(CODES))
    if unknown:
        raise CorpusError(f"{csv}: unknown EmoClass code(s) {unknown}; expected {sorted(CODES)}")
    known_splits = sorted(set(df["Split_Set"].dropna()))
    if splits is not None:
        bad = [s for s in splits if s not in known_splits]
        if bad:
            raise ValueError(f"unknown split(s) {bad}; this release has {known_splits}")
    keep = CLASS_SETS[classes]
    tdir = root / "Transcripts"
    utts: list[Utterance] = []
    for row in df.itertuples(index=False):
        emo = CODES.get(row.EmoClass)
        if emo not in keep or (splits is not None and row.Split_Set not in splits):
            continue
        wav = adir / row.FileName
        if not wav.is_file():
            raise CorpusError(f"{wav} is listed in {csv} but missing; restore Audios/ from the release")
        if verify_audio:
            from ..audio import verify_audio as _check_audio

            _check_audio(wav, "restore it from the release")
        tfile = tdir / f"{Path(row.FileName).stem}.txt"
        text = tfile.read_text(encoding="utf-8", errors="replace").strip() if tfile.is_file() else ""
        utts.append(Utterance(id=Path(row.FileName).stem, corpus="msp_podcast", speaker=str(row.SpkrID),
                              emotion=emo, text=text, path=str(wav), index=len(utts) + 1, split=str(row.Split_Set)))
    if not utts:
        raise CorpusError(f"no utterances of the {classes}-class set in {csv} for splits {splits or known_splits}")
    return utts
