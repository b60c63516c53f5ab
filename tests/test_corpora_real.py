"""IEMOCAP, MELD and MSP-Podcast loaders on small fixture trees in each corpus's layout (generated audio)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esnlib.corpora.base import CorpusError


def sine(path: Path, seconds: float = 0.3, f: float = 220.0) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(str(path), (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32), 16000)
    return path


# ------------------------------------------------------------------------------------------------ IEMOCAP
IEMO_LABELS = {  # session -> [(utt id, code)]
    1: [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M000", "ang"), ("Ses01F_impro01_F001", "exc"),
        ("Ses01F_impro01_M001", "fru"), ("Ses01F_impro01_F002", "xxx")],
    2: [("Ses02M_script01_1_F000", "hap"), ("Ses02M_script01_1_M000", "sad"), ("Ses02M_script01_1_M001", "sur")],
}


def make_iemocap(root: Path, labels=IEMO_LABELS) -> Path:
    for sess, rows in labels.items():
        sdir = root / f"Session{sess}"
        by_dialog: dict[str, list] = {}
        for uid, code in rows:
            by_dialog.setdefault(uid.rsplit("_", 1)[0], []).append((uid, code))
        for dialog, items in by_dialog.items():
            lines = ["% header line", ""]
            trans = []
            for k, (uid, code) in enumerate(items):
                lines.append(f"[{k:.4f} - {k + 1:.4f}]\t{uid}\t{code}\t[2.5000, 2.5000, 2.5000]")
                lines.append("C-E1:\tNeutral;\t()")
                trans.append(f"{uid} [{k:08.4f}-{k + 1:08.4f}]: words of {uid}.")
                sine(sdir / "sentences" / "wav" / dialog / f"{uid}.wav", f=200 + 20 * k)
            (sdir / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
            (sdir / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
            (sdir / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
            (sdir / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(trans) + "\n")
    return root


def test_iemocap_four_class_merge_and_folds(tmp_path):
    from esnlib.corpora.iemocap import leave_one_session_out, load_iemocap

    utts = load_iemocap(make_iemocap(tmp_path))
    got = {u.id: u.emotion for u in utts}
    assert got == {"Ses01F_impro01_F000": "neutral", "Ses01F_impro01_M000": "angry",
                   "Ses01F_impro01_F001": "happy",  # excited merged into happy
                   "Ses02M_script01_1_F000": "happy", "Ses02M_script01_1_M000": "sad"}
    u = next(x for x in utts if x.id == "Ses01F_impro01_M000")
    assert u.speaker == "Ses01M" and u.split == "Session1" and u.text == "words of Ses01F_impro01_M000."
    assert Path(u.path).is_file()
    folds = leave_one_session_out(utts)
    assert [f[0] for f in folds] == ["Session1", "Session2"]
    assert all(not ({x.id for x in tr} & {x.id for x in te}) for _, tr, te in folds)
    assert {x.split for x in folds[0][2]} == {"Session1"}
    full = load_iemocap(tmp_path, four_class=False)
    assert {u.emotion for u in full} == {"neutral", "angry", "excited", "frustrated", "happy", "sad", "surprise"}
    assert {u.split for u in load_iemocap(tmp_path, sessions=[2])} == {"Session2"}


def test_iemocap_errors(tmp_path):
    from esnlib.corpora.iemocap import load_iemocap

    with pytest.raises(CorpusError, match="does not exist"):
        load_iemocap(tmp_path / "nope")
    with pytest.raises(CorpusError, match="Session1..Session5"):
        load_iemocap(tmp_path)
    root = make_iemocap(tmp_path / "a")
    with pytest.raises(CorpusError, match=r"Session3"):
        load_iemocap(root, sessions=[3])
    Path(root / "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_M000.wav").unlink()
    with pytest.raises(CorpusError, match="Ses02M_script01_1_M000.wav is missing"):
        load_iemocap(root)
    bad = make_iemocap(tmp_path / "b", {1: [("Ses01F_impro01_F000", "bored")]})
    with pytest.raises(CorpusError, match="unknown label 'bored'"):
        load_iemocap(bad)
    broken = make_iemocap(tmp_path / "c", {1: [("Ses01F_impro01_F000", "neu")]})
    Path(broken / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav").write_bytes(b"not a wav")
    with pytest.raises(CorpusError, match="unreadable"):
        load_iemocap(broken, verify_audio=True)
    shutil.rmtree(broken / "Session1" / "dialog" / "EmoEvaluation")
    with pytest.raises(CorpusError, match="EmoEvaluation"):
        load_iemocap(broken)


# ------------------------------------------------------------------------------------------------ MSP-Podcast
def make_msp(root: Path, rows=None) -> Path:
    rows = rows or [("MSP-PODCAST_0001_0001.wav", "N", "Train", "127"), ("MSP-PODCAST_0001_0002.wav", "A", "Train", "127"),
                    ("MSP-PODCAST_0002_0001.wav", "H", "Development", "55"),
                    ("MSP-PODCAST_0003_0001.wav", "U", "Test1", "Unknown"),
                    ("MSP-PODCAST_0004_0001.wav", "C", "Test2", "9"), ("MSP-PODCAST_0005_0001.wav", "X", "Train", "9"),
                    ("MSP-PODCAST_0006_0001.wav", "O", "Test1", "9"), ("MSP-PODCAST_0007_0001.wav", "S", "Test1", "9")]
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"FileName": f, "EmoClass": c, "EmoAct": 4.0, "EmoVal": 4.0, "EmoDom": 4.0, "SpkrID": s,
                   "Gender": "Female", "Split_Set": sp} for f, c, sp, s in rows]).to_csv(
        root / "Labels" / "labels_consensus.csv", index=False)
    for f, *_ in rows:
        sine(root / "Audios" / f)
    (root / "Transcripts").mkdir(exist_ok=True)
    (root / "Transcripts" / "MSP-PODCAST_0001_0002.txt").write_text("so this is the thing\n")
    return root


def test_msp_podcast_class_sets_and_splits(tmp_path):
    from esnlib.corpora.msp_podcast import load_msp_podcast

    root = make_msp(tmp_path)
    four = load_msp_podcast(root)
    assert {u.id: u.emotion for u in four} == {"MSP-PODCAST_0001_0001": "neutral", "MSP-PODCAST_0001_0002": "angry",
                                                "MSP-PODCAST_0002_0001": "happy", "MSP-PODCAST_0007_0001": "sad"}
    eight = load_msp_podcast(root, classes=8)
    assert {u.emotion for u in eight} == {"neutral", "angry", "happy", "surprise", "contempt", "sad"}
    assert all(u.emotion not in ("other",) for u in eight)  # O and X never load
    test1 = load_msp_podcast(root, classes=8, splits=["Test1"])
    assert {u.split for u in test1} == {"Test1"} and {u.speaker for u in test1} == {"Unknown", "9"}
    assert next(u for u in four if u.id == "MSP-PODCAST_0001_0002").text == "so this is the thing"
    with pytest.raises(ValueError, match="Test9"):
        load_msp_podcast(root, splits=["Test9"])
    with pytest.raises(ValueError, match="4 or 8"):
        load_msp_podcast(root, classes=5)


def test_msp_podcast_errors(tmp_path):
    from esnlib.corpora.msp_podcast import load_msp_podcast

    with pytest.raises(CorpusError, match="does not exist"):
        load_msp_podcast(tmp_path / "none")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(CorpusError, match="labels_consensus.csv"):
        load_msp_podcast(tmp_path / "empty")
    root = make_msp(tmp_path / "a", [("MSP-PODCAST_0001_0001.wav", "Q", "Train", "1")])
    with pytest.raises(CorpusError, match="unknown EmoClass code"):
        load_msp_podcast(root)
    root = make_msp(tmp_path / "b")
    (root / "Audios" / "MSP-PODCAST_0001_0002.wav").unlink()
    with pytest.raises(CorpusError, match="MSP-PODCAST_0001_0002.wav is listed"):
        load_msp_podcast(root)
    (root / "Audios" / "MSP-PODCAST_0001_0002.wav").write_bytes(b"\x00" * 10)
    with pytest.raises(CorpusError, match="unreadable"):
        load_msp_podcast(root, verify_audio=True)
    shutil.rmtree(root / "Audios")
    with pytest.raises(CorpusError, match="Audios"):
        load_msp_podcast(root)


# ------------------------------------------------------------------------------------------------ MELD
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def make_meld(root: Path, rows=None) -> Path:
    rows = rows or {"train": [(0, 0, "Joy", "Chandler", "Oh my God!"), (0, 1, "neutral", "Joey", "Hey.")],
                    "dev": [(1, 0, "sadness", "Ross", "I know.")],
                    "test": [(2, 0, "anger", "Monica", "Stop it!"), (2, 1, "fear", "Rachel", "What?")]}
    from esnlib.corpora.meld import SPLITS

    root.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        csv, vdir = SPLITS[split]
        pd.DataFrame([{"Sr No.": k + 1, "Utterance": text, "Speaker": spk, "Emotion": emo, "Sentiment": "neutral",
                       "Dialogue_ID": d, "Utterance_ID": u, "Season": 1, "Episode": 1, "StartTime": "00:00:01,000",
                       "EndTime": "00:00:02,000"} for k, (d, u, emo, spk, text) in enumerate(items)]).to_csv(
            root / csv, index=False)
        (root / vdir).mkdir(exist_ok=True)
        for d, u, *_ in items:
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                            "sine=frequency=300:duration=0.3:sample_rate=44100", "-c:a", "aac",
                            str(root / vdir / f"dia{d}_utt{u}.mp4")], check=True)
    return root


@needs_ffmpeg
def test_meld_labels_splits_and_audio_cache(tmp_path):
    from esnlib.audio import load_wav
    from esnlib.corpora.meld import load_meld

    root = make_meld(tmp_path / "MELD.Raw")
    utts = load_meld(root, cache_dir=tmp_path / "cache")
    assert [(u.id, u.emotion, u.split) for u in utts] == [
        ("train_dia0_utt0", "happy", "train"), ("train_dia0_utt1", "neutral", "train"),
        ("dev_dia1_utt0", "sad", "dev"), ("test_dia2_utt0", "angry", "test"), ("test_dia2_utt1", "fear", "test")]
    assert utts[0].speaker == "Chandler" and utts[0].text == "Oh my God!"
    wav = load_wav(utts[0].path)
    assert abs(wav.size - 0.3 * 16000) < 0.05 * 16000 and np.abs(wav).max() > 0.05
    # Second load reuses the cache: the mp4 files are no longer needed.
    shutil.rmtree(root / "train_splits")
    (root / "train_splits").mkdir()
    assert [u.path for u in load_meld(root, splits=["train"], cache_dir=tmp_path / "cache")] == \
        [u.path for u in utts[:2]]


@needs_ffmpeg
def test_meld_errors(tmp_path, monkeypatch):
    from esnlib.corpora import meld

    with pytest.raises(CorpusError, match="does not exist"):
        meld.load_meld(tmp_path / "none")
    root = make_meld(tmp_path / "a", {"train": [(0, 0, "boredom", "X", "hm")]})
    with pytest.raises(CorpusError, match="unknown emotion label"):
        meld.load_meld(root, splits=["train"])
    root = make_meld(tmp_path / "b", {"train": [(0, 0, "joy", "X", "a"), (0, 1, "joy", "X", "b")]})
    (root / "train_splits" / "dia0_utt1.mp4").unlink()
    with pytest.raises(CorpusError, match="dia0_utt1.mp4 is missing"):
        meld.load_meld(root, splits=["train"])
    assert [u.id for u in meld.load_meld(root, splits=["train"], on_missing="skip")] == ["train_dia0_utt0"]
    (root / "train_splits" / "dia0_utt1.mp4").write_bytes(b"garbage")
    with pytest.raises(CorpusError, match="ffmpeg could not extract"):
        meld.load_meld(root, splits=["train"])
    with pytest.raises(CorpusError, match="dev_sent_emo.csv is missing"):
        meld.load_meld(root, splits=["dev"])
    monkeypatch.setattr(meld.shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="ffmpeg is not on PATH"):
        meld.load_meld(root, splits=["train"], cache_dir=tmp_path / "fresh")
