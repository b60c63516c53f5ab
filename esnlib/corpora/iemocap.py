"""IEMOCAP (Busso et al. 2008) loader: 5 sessions, categorical labels from EmoEvaluation, the common 4-class set.

Layout (the official release)::

    <root>/Session1..5/dialog/EmoEvaluation/<dialog>.txt       lines "[start - end]\\t<utt id>\\t<code>\\t[v, a, d]"
    <root>/Session1..5/sentences/wav/<dialog>/<utt id>.wav
    <root>/Session1..5/dialog/transcriptions/<dialog>.txt      "<utt id> [start-end]: text" (optional)

Codes: neu ang hap exc sad fru fea sur dis oth xxx. The 4-class set used by SER work (and the SER-ESN paper) is
neutral, angry, happy (hap and exc merged), sad; other codes are dropped. ``speaker`` is session + the speaker's
gender (e.g. "Ses01F"); ``split`` is the session ("Session1"), for leave-one-session-out folds.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..audio import verify_audio as _check_audio
from .base import CorpusError, Utterance

CODES = {"neu": "neutral", "ang": "angry", "hap": "happy", "exc": "excited", "sad": "sad", "fru": "frustrated",
         "fea": "fear", "sur": "surprise", "dis": "disgust", "oth": "other", "xxx": None}
FOUR_CLASS = ("neutral", "angry", "happy", "sad")
SESSIONS = tuple(f"Session{i}" for i in range(1, 6))
_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses0\d[FM]_\S+)\s+(\S+)\s+\[")
_TRANS = re.compile(r"^(Ses0\d[FM]_\S+)\s+\[[^\]]*\]:\s*(.*)$")


def _labels(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LINE.match(line.strip())
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _transcripts(sdir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    tdir = sdir / "dialog" / "transcriptions"
    for f in sorted(tdir.glob("*.txt")) if tdir.is_dir() else []:
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _TRANS.match(line.strip())
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


def load_iemocap(root: str | Path, sessions: list[int] | None = None, four_class: bool = True,
                 verify_audio: bool = False) -> list[Utterance]:
    """Load IEMOCAP utterances with a categorical label.

    four_class: keep neutral/angry/happy/sad with excited merged into happy (default); False keeps every code
    (excited, frustrated, fear, surprise, disgust, other as their own labels; 'xxx' = no agreement, dropped).
    sessions: numbers 1-5 to load (default all present). verify_audio: read every wav header.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"IEMOCAP root {root} does not exist; point it at the folder holding Session1..Session5")
    present = [s for s in SESSIONS if (root / s).is_dir()]
    if not present:
        raise CorpusError(f"no Session1..Session5 folders under {root}; point root at the IEMOCAP_full_release folder")
    wanted = [f"Session{i}" for i in sessions] if sessions is not None else present
    missing = [s for s in wanted if s not in present]
    if missing:
        raise CorpusError(f"session folder(s) {missing} not found under {root} (present: {present})")
    utts: list[Utterance] = []
    for sess in wanted:
        sdir = root / sess
        edir = sdir / "dialog" / "EmoEvaluation"
        if not edir.is_dir():
            raise CorpusError(f"{edir} is missing: IEMOCAP labels live in <Session>/dialog/EmoEvaluation/*.txt")
        files = sorted(edir.glob("*.txt"))
        if not files:
            raise CorpusError(f"{edir} holds no label files (<dialog>.txt)")
        texts = _transcripts(sdir)
        for f in files:
            for uid, code in _labels(f):
                if code not in CODES:
                    raise CorpusError(f"{f}: utterance {uid} has unknown label {code!r}; IEMOCAP codes are "
                                      f"{sorted(CODES)}")
                emo = CODES[code]
                if four_class and emo == "excited":
                    emo = "happy"
                if emo is None or (four_class and emo not in FOUR_CLASS):
                    continue
                dialog = uid.rsplit("_", 1)[0]
                wav = sdir / "sentences" / "wav" / dialog / f"{uid}.wav"
                if not wav.is_file():
                    raise CorpusError(f"{wav} is missing but labelled in {f}; restore sentences/wav from the release")
                if verify_audio:
                    _check_audio(wav, "restore it from the release")
                speaker = uid[:5] + uid.rsplit("_", 1)[1][0]  # "Ses01" + gender of the speaking turn
                utts.append(Utterance(id=uid, corpus="iemocap", speaker=speaker, emotion=emo,
                                      text=texts.get(uid, ""), path=str(wav), index=len(utts) + 1, split=sess))
    if not utts:
        raise CorpusError(f"no labelled utterances found under {root} for {wanted}")
    return utts


def leave_one_session_out(utts: list[Utterance]) -> list[tuple[str, list[Utterance], list[Utterance]]]:
    """The 5 folds ``(held-out session, train utterances, test utterances)`` in session order."""
    sessions = sorted({u.split for u in utts})
    if len(sessions) < 2:
        raise ValueError(f"leave-one-session-out needs at least 2 sessions, got {sessions}")
    return [(s, [u for u in utts if u.split != s], [u for u in utts if u.split == s]) for s in sessions]
