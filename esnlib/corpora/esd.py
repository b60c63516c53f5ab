"""ESD (Zhou et al. 2022) loader, for the real corpus and the demo corpus alike, and the EVC paper's Table 1 split.

ESD layout: ``<root>/<spk>/<Emotion>/{train,evaluation,test}/<spk>_<utt>.wav`` (first release) or the flat
``<root>/<spk>/<Emotion>/<spk>_<utt>.wav``; transcripts in ``<root>/<spk>/<spk>.txt``, one
``<spk>_<utt>\\t<text>\\t<Emotion>`` per line. Utterance numbers run per speaker across emotion blocks of 350 in the
order Neutral (000001-000350), Angry (000351-000700), Happy (000701-001050), Sad (001051-001400), Surprise
(001401-001750); number k of every block is the same sentence, so ``index`` = the number within its block.
English speakers are 0011-0020, Mandarin 0001-0010.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ..audio import verify_audio as _check_audio
from ..constants import SPLITS
from .base import CorpusError, Utterance

#: emotion (lower case, esnlib label) -> ESD folder name, in ESD's numbering order
EMOTION_DIRS = {"neutral": "Neutral", "angry": "Angry", "happy": "Happy", "sad": "Sad", "surprise": "Surprise"}
ESD_ORDER = tuple(EMOTION_DIRS)
ENGLISH_SPEAKERS = tuple(f"{i:04d}" for i in range(11, 21))
ESD_SPLITS = ("train", "evaluation", "test")
ESD_N_PER_EMOTION = 350

_DIR_TO_EMOTION = {v.lower(): k for k, v in EMOTION_DIRS.items()}
# Mandarin transcripts name the emotion in Chinese.
_LABEL_WORDS = {**_DIR_TO_EMOTION, "中立": "neutral", "生气": "angry", "快乐": "happy", "伤心": "sad", "惊喜": "surprise"}
_WAV_RE = re.compile(r"^(\d{4})_(\d{6})$")
_ID_RE = re.compile(r"^(\d{4}_\d{6})(?:\s|$)")
_LINE_FORMAT = ("an ESD transcript line is '<id><TAB><text><TAB><Emotion>' with Emotion one of "
                + ", ".join(EMOTION_DIRS.values()))
#: clips shorter than this are truncated or broken (the shortest ESD utterance is about a second long)
MIN_SECONDS = 0.05

SUBSETS = SPLITS  # the Table 1 subsets (esnlib.constants.SPLITS)


def _decode(data: bytes, path: Path) -> str:
    """Real ESD transcripts come in utf-8, utf-8 with BOM, utf-16 and GB-style encodings; latin-1 never fails."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    candidates = ["utf-8-sig"]
    if b"\x00" in data[:200]:
        candidates.insert(0, "utf-16-le")
    candidates += ["gb18030", "latin-1"]
    for enc in candidates:
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise CorpusError(f"cannot decode transcript {path}; re-save it as utf-8")  # unreachable: latin-1 decodes all


def read_transcripts(path: str | Path) -> dict[str, str]:
    """``{utterance id: text}`` from an ESD ``<spk>.txt``: one ``<id><TAB><text><TAB><Emotion>`` per line (tab or
    whitespace separated; the emotion label in English or Chinese). A line that starts with an utterance id but has
    no emotion label at its end, or no text, is a CorpusError naming the file and the line; lines without an id
    (headers, stray text) are skipped."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, raw in enumerate(_decode(path.read_bytes(), path).splitlines(), start=1):
        line = raw.strip().replace("\x00", "")
        m = _ID_RE.match(line)
        if not m:
            continue  # headers or stray lines carry no utterance id
        uid = m.group(1)
        parts = [p.strip() for p in line.split("\t") if p.strip()]
        fields = parts[1:] if len(parts) >= 2 else line[len(uid):].split()  # tab separated, else by whitespace
        if not fields or fields[-1].lower() not in _LABEL_WORDS:
            raise CorpusError(f"transcript {path}, line {lineno}: {line!r} does not end with an emotion label; "
                              f"{_LINE_FORMAT}. Add the label (or fix the separators) or remove the line")
        text = " ".join(fields[:-1]).strip()
        if not text:
            raise CorpusError(f"transcript {path}, line {lineno}: {line!r} has no text between the id and the "
                              f"emotion label; {_LINE_FORMAT}. Add the sentence or remove the line")
        out[uid] = text
    return out


def load_esd(
    root: str | Path,
    speakers: list[str] | None = None,
    emotions: tuple[str, ...] | list[str] | None = None,
    verify_audio: bool = False,
    n_per_emotion: int | None = None,
) -> list[Utterance]:
    """Load ESD (official or flat layout) or the demo corpus as Utterance rows, sorted by speaker, emotion, index.

    ``speakers``: ids to load (default: the English speakers 0011-0020 present under ``root``).
    ``emotions``: lower-case labels (default: all five). ``verify_audio``: read every wav header and fail on
    unreadable files. ``n_per_emotion``: size of an emotion's numbering block (default: 350 for real ESD, the
    manifest's ``n_utts`` for the demo corpus).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise CorpusError(f"ESD root {root} does not exist; download ESD there or build the demo corpus with "
                          f"scripts/make_demo_corpus.py --out {root}")
    emotions = tuple(emotions) if emotions is not None else ESD_ORDER
    bad = [e for e in emotions if e not in EMOTION_DIRS]
    if bad:
        raise ValueError(f"unknown emotions {bad}; expected some of {ESD_ORDER}")
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d{4}", p.name))
    if not present:
        raise CorpusError(f"no speaker folders (like {root}/0011) under {root}; point root at the folder that holds "
                          f"the ESD speaker folders")
    if speakers is None:
        speakers = [s for s in present if s in ENGLISH_SPEAKERS]
        if not speakers:
            raise CorpusError(f"no English ESD speakers (0011-0020) under {root} (found {present}); pass speakers=")
    else:
        missing = [s for s in speakers if s not in present]
        if missing:
            raise CorpusError(f"speaker folders {missing} not found under {root} (present: {present})")
    if n_per_emotion is None and (root / "demo_corpus.json").is_file():
        n_per_emotion = int(json.loads((root / "demo_corpus.json").read_text(encoding="utf-8"))["n_utts"])

    utts: list[Utterance] = []
    for spk in sorted(speakers):
        sdir = root / spk
        tpath = sdir / f"{spk}.txt"
        if not tpath.is_file():
            raise CorpusError(f"transcript file {tpath} is missing; restore it from the ESD release (or re-build "
                              f"the demo corpus)")
        texts = read_transcripts(tpath)
        subdirs = {p.name: p for p in sdir.iterdir() if p.is_dir()}
        unknown = [n for n in subdirs if n.lower() not in _DIR_TO_EMOTION]
        if unknown:
            raise CorpusError(f"unknown emotion folder(s) {unknown} in {sdir}; ESD folders are "
                              f"{list(EMOTION_DIRS.values())}: rename or remove them")
        by_emotion = {_DIR_TO_EMOTION[n.lower()]: p for n, p in subdirs.items()}
        found: list[tuple[str, int, str, Path]] = []
        for emo in emotions:
            if emo not in by_emotion:
                raise CorpusError(f"speaker {spk} has no {EMOTION_DIRS[emo]} folder ({sdir / EMOTION_DIRS[emo]}); "
                                  f"restore it or load with emotions= excluding {emo!r}")
            edir = by_emotion[emo]
            for split_dir in [edir] + [p for p in sorted(edir.iterdir()) if p.is_dir()]:
                split = "" if split_dir == edir else split_dir.name
                if split and split not in ESD_SPLITS:
                    raise CorpusError(f"unexpected folder {split_dir}; ESD emotion folders hold wavs or the "
                                      f"{ESD_SPLITS} sub-folders")
                for wav in sorted(w for w in split_dir.glob("*.wav") if not w.name.startswith(".")):
                    # hidden files are temporary files of an interrupted write (audio.save_wav), not utterances
                    m = _WAV_RE.match(wav.stem)
                    if not m or m.group(1) != spk:
                        raise CorpusError(f"{wav} is not named <speaker>_<6-digit number>.wav for speaker {spk}; "
                                          f"rename or remove it")
                    found.append((emo, int(m.group(2)), split, wav))
        if not found:
            raise CorpusError(f"speaker folder {sdir} holds no wav files for {list(emotions)}")
        block = n_per_emotion or ESD_N_PER_EMOTION
        for emo, num, split, wav in found:
            uid = wav.stem
            index = num - ESD_ORDER.index(emo) * block
            if not 1 <= index <= block:
                raise CorpusError(f"{wav}: number {num} is outside the {EMOTION_DIRS[emo]} block "
                                  f"({ESD_ORDER.index(emo) * block + 1}-{(ESD_ORDER.index(emo) + 1) * block}); "
                                  f"is the file in the wrong emotion folder, or does the corpus use blocks of another size "
                                  f"(pass n_per_emotion=)?")
            if uid not in texts:
                raise CorpusError(f"{wav} has no line in transcript {tpath}; add '{uid}<TAB>text<TAB>"
                                  f"{EMOTION_DIRS[emo]}' or remove the wav")
            if verify_audio:
                _check_audio(wav, "re-generate it or remove it", min_seconds=MIN_SECONDS)
            utts.append(Utterance(id=uid, corpus="esd", speaker=spk, emotion=emo, text=texts[uid], path=str(wav),
                                  index=index, split=split))
    order = {e: i for i, e in enumerate(ESD_ORDER)}
    utts.sort(key=lambda u: (u.speaker, order[u.emotion], u.index))
    return utts


# ---------------------------------------------------------------- Table 1 split


def table1_boundaries(n: int) -> tuple[int, int]:
    """The paper's index boundaries 200 and 250 (of 350) scaled to ``n`` sentences: round(b * n / 350)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return round(200 * n / ESD_N_PER_EMOTION), round(250 * n / ESD_N_PER_EMOTION)


def table1_speakers(speakers) -> dict[str, str]:
    """Speaker id -> role S1..Sn (sorted ids). Needs at least 10 speakers: S1-S6, S7-S8, S9+ (unseen)."""
    speakers = sorted(set(speakers))
    if len(speakers) < 10:
        raise CorpusError(f"Table 1 needs 10 speakers (6 identification, 2 development, 2 unseen test), got "
                          f"{len(speakers)}: {speakers}; load all ten English ESD speakers (0011-0020) or build the "
                          f"demo corpus with its default ten speakers")
    return {s: f"S{i + 1}" for i, s in enumerate(speakers)}


def _subset(rank: int, index: int, n: int, b1: int, b2: int) -> str:
    if index < 1 or index > n:
        raise CorpusError(f"utterance index {index} is outside 1..{n}; pass n_per_speaker= matching the corpus")
    if rank < 6:
        return "IDENTIFICATION" if index <= b1 else ("DEVELOPMENT" if index <= b2 else "TEST-SEEN")
    if rank < 8:
        return "DEVELOPMENT" if index <= b2 else "TEST-SEEN"
    return "TEST-UNSEEN"


def table1_split(utts: list[Utterance], n_per_speaker: int | None = None,
                 speakers: list[str] | None = None) -> dict[str, list[Utterance]]:
    """The EVC paper's Table 1: speakers sorted, S1-S6 identification, S7-S8 development, S9-S10 unseen test;
    utterance-index blocks 001-200 / 201-250 / 251-350 scaled to ``n_per_speaker`` sentences (default: the largest
    index present). Returns ``{subset: [Utterance]}`` for IDENTIFICATION, DEVELOPMENT, TEST-SEEN, TEST-UNSEEN.

    ``speakers`` (default: all speakers of ``utts``) fixes which speakers take part and their order; speakers beyond
    the tenth join TEST-UNSEEN. Utterances of other speakers are left out.
    """
    if not utts:
        raise CorpusError("table1_split got no utterances; load a corpus first")
    roles = table1_speakers(speakers if speakers is not None else {u.speaker for u in utts})
    rank = {s: int(r[1:]) - 1 for s, r in roles.items()}
    n = n_per_speaker or max(u.index for u in utts)
    b1, b2 = table1_boundaries(n)
    out: dict[str, list[Utterance]] = {s: [] for s in SUBSETS}
    for u in utts:
        if u.speaker in rank:
            out[_subset(rank[u.speaker], u.index, n, b1, b2)].append(u)
    return out


def add_table1_column(df: pd.DataFrame, n_per_speaker: int | None = None, speakers: list[str] | None = None,
                      column: str = "subset") -> pd.DataFrame:
    """DataFrame variant of :func:`table1_split`: a copy with ``column`` (subset name, or "" for speakers not in
    ``speakers``) and ``speaker_role`` (S1..S10) added. Needs ``speaker`` and ``index`` columns."""
    missing = {"speaker", "index"} - set(df.columns)
    if missing:
        raise ValueError(f"add_table1_column needs columns {sorted(missing)}; build the frame with corpora.to_frame")
    roles = table1_speakers(speakers if speakers is not None else df["speaker"].unique())
    n = n_per_speaker or int(df["index"].max())
    b1, b2 = table1_boundaries(n)
    out = df.copy()
    out["speaker_role"] = out["speaker"].map(roles).fillna("")
    out[column] = [
        _subset(int(roles[s][1:]) - 1, int(i), n, b1, b2) if s in roles else ""
        for s, i in zip(out["speaker"], out["index"])
    ]
    return out
