import shutil

import numpy as np
import pandas as pd
import pytest

from esnlib.audio import save_wav
from esnlib.corpora.base import CorpusError, Utterance
from esnlib.corpora.esd import (SUBSETS, add_table1_column, load_esd, read_transcripts, table1_boundaries,
                                table1_split)

EMO_DIRS = ["Neutral", "Angry", "Happy", "Sad", "Surprise"]
TONE = (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32)


def _official(root, speakers=("0011", "0013"), encoding="utf-8"):
    """ESD's first-release layout: <spk>/<Emotion>/{evaluation,test,train}/<spk>_<utt>.wav, blocks of 350."""
    for spk in speakers:
        lines = []
        for k, emo in enumerate(EMO_DIRS):
            for idx, split in ((1, "evaluation"), (21, "test"), (51, "train")):
                uid = f"{spk}_{k * 350 + idx:06d}"
                save_wav(root / spk / emo / split / f"{uid}.wav", TONE)
                lines.append(f"{uid}\tSentence number {idx}, said {emo.lower()}.\t{emo}")
        (root / spk / f"{spk}.txt").write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return root


@pytest.fixture
def official(tmp_path):
    return _official(tmp_path / "esd")


def test_official_layout(official):
    utts = load_esd(official)
    assert len(utts) == 2 * 5 * 3
    u = next(x for x in utts if x.id == "0013_000721")
    assert (u.speaker, u.emotion, u.index, u.split, u.corpus) == ("0013", "happy", 21, "test", "esd")
    assert u.text == "Sentence number 21, said happy."
    assert {x.split for x in utts} == {"train", "evaluation", "test"}
    # parallel: the same index has the same number in every emotion block
    assert sorted({x.index for x in utts}) == [1, 21, 51]
    assert [x.emotion for x in utts[:6]] == ["neutral"] * 3 + ["angry"] * 3


def test_filters_and_default_speakers(official):
    shutil.copytree(official / "0011", official / "0001")  # a Mandarin speaker id: not loaded by default
    (official / "0001" / "0011.txt").rename(official / "0001" / "0001.txt")
    assert {u.speaker for u in load_esd(official)} == {"0011", "0013"}
    sad = load_esd(official, speakers=["0013"], emotions=["sad"])
    assert {(u.speaker, u.emotion) for u in sad} == {("0013", "sad")} and len(sad) == 3


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1", "utf-8-sig"])
def test_transcript_encodings(tmp_path, encoding):
    root = _official(tmp_path / "esd", speakers=("0011",), encoding=encoding)
    assert load_esd(root)[0].text == "Sentence number 1, said neutral."


def test_transcript_whitespace_and_chinese_label(tmp_path):
    p = tmp_path / "0001.txt"
    p.write_bytes("0001_000001 今天天气很好 中立\n\n0001_000002\t你好\t生气\n".encode("gb18030"))
    assert read_transcripts(p) == {"0001_000001": "今天天气很好", "0001_000002": "你好"}


def test_missing_root(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_esd(tmp_path / "nothing")


def test_no_speaker_folders(tmp_path):
    (tmp_path / "misc").mkdir()
    with pytest.raises(CorpusError, match="no speaker folders"):
        load_esd(tmp_path)


def test_missing_emotion_folder(official):
    shutil.rmtree(official / "0011" / "Sad")
    with pytest.raises(CorpusError, match="0011 has no Sad folder"):
        load_esd(official)
    assert len(load_esd(official, emotions=["neutral", "angry"])) == 2 * 2 * 3


def test_unknown_emotion_folder(official):
    (official / "0013" / "Bored").mkdir()
    with pytest.raises(CorpusError, match="unknown emotion folder.*Bored"):
        load_esd(official)


def test_wav_without_transcript(official):
    save_wav(official / "0011" / "Angry" / "train" / "0011_000400.wav", TONE)
    with pytest.raises(CorpusError, match="0011_000400.wav has no line in transcript"):
        load_esd(official)


def test_missing_transcript_file(official):
    (official / "0011" / "0011.txt").unlink()
    with pytest.raises(CorpusError, match="transcript file .*0011.txt is missing"):
        load_esd(official)


def test_file_in_wrong_block(official):
    src = official / "0011" / "Angry" / "train" / "0011_000401.wav"
    src.rename(official / "0011" / "Neutral" / "train" / "0011_000401.wav")
    with pytest.raises(CorpusError, match="outside the Neutral block"):
        load_esd(official)


def test_corrupt_wav_only_when_verifying(official):
    (official / "0011" / "Happy" / "train" / "0011_000751.wav").write_bytes(b"broken")
    assert len(load_esd(official)) == 30  # headers are not read by default
    with pytest.raises(CorpusError, match="0011_000751.wav is unreadable or corrupt"):
        load_esd(official, verify_audio=True)


# ------------------------------------------------------------------------------------- Table 1


def _grid(n, n_speakers=10, emotions=("neutral", "angry")):
    return [Utterance(f"{s:04d}_{i}", "esd", f"{s:04d}", e, "t", "", i)
            for s in range(11, 11 + n_speakers) for e in emotions for i in range(1, n + 1)]


def test_table1_paper_counts():
    split = table1_split(_grid(350, emotions=("neutral",)))
    # Paper Table 1 per emotion: 6x200, 6x50 + 2x250, 8x100, 2x350. (The paper prints 1100 for DEVELOPMENT,
    # but its own rows give 300 + 500 = 800, and only 800 makes the four subsets add up to 10 x 350 = 3500.)
    assert {k: len(v) for k, v in split.items()} == {"IDENTIFICATION": 1200, "DEVELOPMENT": 800,
                                                     "TEST-SEEN": 800, "TEST-UNSEEN": 700}
    ident = {u.index for u in split["IDENTIFICATION"]}
    assert ident == set(range(1, 201))
    assert {u.speaker for u in split["IDENTIFICATION"]} == {f"{s:04d}" for s in range(11, 17)}
    dev = split["DEVELOPMENT"]
    assert {u.index for u in dev if u.speaker in ("0017", "0018")} == set(range(1, 251))
    assert {u.index for u in dev if u.speaker < "0017"} == set(range(201, 251))
    assert {u.index for u in split["TEST-SEEN"]} == set(range(251, 351))
    assert {u.speaker for u in split["TEST-UNSEEN"]} == {"0019", "0020"}


def test_table1_scaled_and_parallel():
    n = 60
    b1, b2 = table1_boundaries(n)
    assert (b1, b2) == (34, 43) and table1_boundaries(350) == (200, 250)
    utts = _grid(n)
    split = table1_split(utts)
    counts = {k: len(v) for k, v in split.items()}
    assert counts == {"IDENTIFICATION": 2 * 6 * 34, "DEVELOPMENT": 2 * (6 * 9 + 2 * 43),
                      "TEST-SEEN": 2 * 8 * 17, "TEST-UNSEEN": 2 * 2 * 60}
    assert sum(counts.values()) == len(utts)
    # no utterance index of the test sets is seen in identification/development (lexical leakage)
    seen_idx = {u.index for k in ("IDENTIFICATION", "DEVELOPMENT") for u in split[k]}
    assert seen_idx.isdisjoint({u.index for u in split["TEST-SEEN"]})
    # parallel across emotions: an (speaker, index) pair lands in one subset for every emotion
    where = {}
    for k, v in split.items():
        for u in v:
            assert where.setdefault((u.speaker, u.index), k) == k


def test_table1_frame_matches_list():
    utts = _grid(60)
    df = add_table1_column(pd.DataFrame([u.as_dict() for u in utts]))
    split = table1_split(utts)
    for k in SUBSETS:
        assert sorted(df.loc[df["subset"] == k, "id"] + df.loc[df["subset"] == k, "emotion"]) == \
            sorted(u.id + u.emotion for u in split[k])
    assert df.loc[df["speaker"] == "0011", "speaker_role"].iloc[0] == "S1"


def test_table1_needs_ten_speakers():
    with pytest.raises(CorpusError, match="needs 10 speakers"):
        table1_split(_grid(20, n_speakers=8))
    split = table1_split(_grid(20, n_speakers=12))  # extra speakers join the unseen test
    assert {u.speaker for u in split["TEST-UNSEEN"]} == {"0019", "0020", "0021", "0022"}
    with pytest.raises(CorpusError, match="outside 1..10"):
        table1_split(_grid(20), n_per_speaker=10)


# ------------------------------------------------------------------------------------- bad input, named at load
@pytest.mark.parametrize("line, match", [
    ("0011_000002\tonly two fields", r"line 2: '0011_000002\\tonly two fields' does not end with an emotion label"),
    ("0011_000002\tNeutral", r"line 2: .* has no text between the id and the emotion label"),
    ("0011_000002 only two fields", r"line 2: '0011_000002 only two fields' does not end with an emotion label"),
    ("0011_000002", r"line 2: '0011_000002' does not end with an emotion label"),
])
def test_transcript_line_without_label_or_text_names_file_and_line(tmp_path, line, match):
    p = tmp_path / "0011.txt"
    p.write_text(f"0011_000001\tA fine line.\tNeutral\n{line}\n0011_000003\tAnother one.\tNeutral\n")
    with pytest.raises(CorpusError, match=match) as e:
        read_transcripts(p)
    assert str(p) in str(e.value) and "<id><TAB><text><TAB><Emotion>" in str(e.value)


def test_two_field_transcript_line_fails_load_esd(official):
    t = official / "0011" / "0011.txt"
    lines = t.read_text().splitlines()
    lines[4] = "\t".join(lines[4].split("\t")[:2])  # the emotion column is gone
    t.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=r"0011\.txt, line 5: .* does not end with an emotion label"):
        load_esd(official)


def test_truncated_or_too_short_wav_named_when_verifying(official):
    wav = official / "0011" / "Happy" / "train" / "0011_000751.wav"
    wav.write_bytes(wav.read_bytes()[:100])  # a copy cut short: 28 samples left of 1600
    with pytest.raises(CorpusError, match=r"0011_000751\.wav is truncated: its header declares 3200 bytes of "
                                          r"audio, the file holds 56"):
        load_esd(official, verify_audio=True)
    save_wav(wav, TONE[:400])  # a complete file, but 25 ms long
    with pytest.raises(CorpusError, match=r"0011_000751\.wav is too short: 400 samples \(0\.025 s\), less than "
                                          r"0\.05 s"):
        load_esd(official, verify_audio=True)
    save_wav(wav, TONE)
    assert len(load_esd(official, verify_audio=True)) == 30


def test_hidden_temporary_files_are_not_utterances(official):
    # an interrupted atomic write (audio.save_wav) leaves a hidden temporary file next to the wavs
    (official / "0011" / "Happy" / "train" / ".0011_000751.k3j.tmp.wav").write_bytes(b"partial")
    assert len(load_esd(official, verify_audio=True)) == 30
