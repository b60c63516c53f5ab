"""MELD (Poria et al. 2019) loader: the CSV labels, audio extracted from the mp4 clips with ffmpeg into a cache.

Layout (MELD.Raw)::

    <root>/train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv
    <root>/train_splits/dia<D>_utt<U>.mp4, dev_splits_complete/..., output_repeated_splits_test/...

Labels: MELD's 7 emotions (lower-cased) are mapped onto esnlib's names: neutral, joy -> happy, sadness -> sad,
anger -> angry, surprise, fear, disgust. Audio: each mp4's audio track is written once as 16 kHz mono wav under
``cache_dir`` (default ``<root>/.esnlib_wav``); later loads reuse it. ``split`` is train/dev/test.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd

from .base import CorpusError, Utterance

LABELS = {"neutral": "neutral", "joy": "happy", "sadness": "sad", "anger": "angry", "surprise": "surprise",
          "fear": "fear", "disgust": "disgust"}
SPLITS = {"train": ("train_sent_emo.csv", "train_splits"),
          "dev": ("dev_sent_emo.csv", "dev_splits_complete"),
          "test": ("test_sent_emo.csv", "output_repeated_splits_test")}
REQUIRED = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def ffmpeg_path() -> str:
    """The ffmpeg executable, or a CorpusError saying how to install it."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise CorpusError("ffmpeg is not on PATH but MELD audio must be extracted from its mp4 files: install it "
                          "(apt-get install ffmpeg / conda install ffmpeg / brew install ffmpeg)")
    return exe


def extract_audio(mp4: Path, wav: Path) -> Path:
    """Write the audio track of ``mp4`` as 16 kHz mono 16-bit wav (atomically); CorpusError if ffmpeg fails."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    tmp = wav.with_name(wav.stem + ".tmp.wav")
    cmd = [ffmpeg_path(), "-nostdin", "-loglevel", "error", "-y", "-i", str(mp4), "-vn", "-ac", "1", "-ar", "16000",
           "-acodec", "pcm_s16le", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
        tmp.unlink(missing_ok=True)
        raise CorpusError(f"ffmpeg could not extract audio from {mp4}: {res.stderr.strip()[:300] or 'no audio'}; "
                          "the file is corrupt or has no audio track: re-download it or pass on_missing='skip'")
    tmp.replace(wav)
    return wav


def load_meld(root: str | Path, splits: tuple[str, ...] | list[str] = ("train", "dev", "test"),
              cache_dir: str | Path | None = None, on_missing: str = "error") -> list[Utterance]:
    """Load MELD utterances, extracting audio to ``cache_dir`` as needed (progress bar for the first run).

    on_missing: "error" (default) or "skip" for utterances whose mp4 is absent or unreadable (the public release
    lacks a few).
    """
    from ..progress import tqdm

    root = Path(root)
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    if not root.is_dir():
        raise CorpusError(f"MELD root {root} does not exist; point it at the MELD.Raw folder with *_sent_emo.csv")
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown MELD split(s) {bad}; use some of {tuple(SPLITS)}")
    cache = Path(cache_dir) if cache_dir is not None else root / ".esnlib_wav"
    utts: list[Utterance] = []
    skipped: list[str] = []
    for split in splits:
        csv_name, video_dir = SPLITS[split]
        csv = root / csv_name
        if not csv.is_file():
            raise CorpusError(f"{csv} is missing; MELD labels are {[v[0] for v in SPLITS.values()]} in the root")
        vdir = root / video_dir
        if not vdir.is_dir():
            raise CorpusError(f"{vdir} is missing; unpack the {split} mp4 clips there (MELD.Raw/{video_dir})")
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        lacking = [c for c in REQUIRED if c not in df.columns]
        if lacking:
            raise CorpusError(f"{csv} lacks column(s) {lacking}; expected MELD's columns {REQUIRED} and others")
        raw = df["Emotion"].str.strip().str.lower()
        unknown = sorted(set(raw) - set(LABELS))
        if unknown:
            raise CorpusError(f"{csv}: unknown emotion label(s) {unknown}; MELD's labels are {sorted(LABELS)}")
        for row, emo in tqdm(list(zip(df.itertuples(index=False), raw)), desc=f"MELD {split}", leave=False):
            uid = f"dia{int(row.Dialogue_ID)}_utt{int(row.Utterance_ID)}"
            wav = cache / split / f"{uid}.wav"
            if not wav.is_file():
                mp4 = vdir / f"{uid}.mp4"
                try:
                    if not mp4.is_file():
                        raise CorpusError(f"{mp4} is missing (listed in {csv}); restore it or pass on_missing='skip'")
                    extract_audio(mp4, wav)
                except CorpusError:
                    if on_missing == "skip":
                        skipped.append(f"{split}/{uid}")
                        continue
                    raise
            utts.append(Utterance(id=f"{split}_{uid}", corpus="meld", speaker=str(row.Speaker), emotion=LABELS[emo],
                                  text=str(row.Utterance), path=str(wav), index=len(utts) + 1, split=split))
    if skipped:
        import warnings

        warnings.warn(f"MELD: {len(skipped)} clip(s) missing or without audio were skipped (e.g. {skipped[:3]})",
                      stacklevel=2)
    if not utts:
        raise CorpusError(f"no MELD utterances loaded from {root} for splits {list(splits)}")
    return utts
