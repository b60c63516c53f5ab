import json

import pytest

from esnlib.audio import load_wav
from esnlib.corpora.esd import load_esd
from esnlib.corpora.sentences import make_sentences
from esnlib.corpora.synthetic import build_demo_corpus, utt_number

pytestmark = pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="espeak-ng not installed")

SPK = ["0011", "0012"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    m = build_demo_corpus(root, n_utts=2, speakers=SPK, seed=3, workers=2, progress=False)
    return root, m


def test_layout_and_transcripts(tiny):
    root, m = tiny
    wavs = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))
    assert len(wavs) == 2 * 5 * 2 == m["n_files"]
    # ESD numbering: blocks of n_utts in the order Neutral, Angry, Happy, Sad, Surprise
    assert "0011/Neutral/0011_000001.wav" in wavs and "0011/Angry/0011_000003.wav" in wavs
    assert "0012/Surprise/0012_000010.wav" in wavs
    lines = (root / "0011" / "0011.txt").read_text().splitlines()
    sents = make_sentences(2, "corpus", 3)
    assert lines[0] == f"0011_000001\t{sents[0]}\tNeutral"
    assert lines[-1] == f"0011_000010\t{sents[1]}\tSurprise"
    man = json.loads((root / "demo_corpus.json").read_text())
    assert man["seed"] == 3 and man["n_utts"] == 2 and set(man["speakers"]) == set(SPK)
    assert len(man["utterances"]) == 20 and {"pitch", "rate", "intensity"} <= set(man["utterances"][0])


def test_parallel_sentences_and_emotion_prosody(tiny):
    root, m = tiny
    utts = load_esd(root)
    by = {(u.speaker, u.emotion, u.index): u for u in utts}
    for spk in SPK:
        for i in (1, 2):
            assert len({by[(spk, e, i)].text for e in ("neutral", "angry", "happy", "sad", "surprise")}) == 1
    rows = {(r["speaker"], r["emotion"], r["index"]): r for r in m["utterances"]}
    assert rows[("0011", "neutral", 1)]["intensity"] == 0.0
    assert 0.6 <= rows[("0011", "angry", 1)]["intensity"] <= 1.2
    # sad is rendered slower than angry (rate 76% vs 115% of neutral): longer audio for the same sentence
    sad = sum(len(load_wav(by[(s, "sad", i)].path)) for s in SPK for i in (1, 2))
    angry = sum(len(load_wav(by[(s, "angry", i)].path)) for s in SPK for i in (1, 2))
    assert sad > 1.2 * angry


def test_deterministic_and_resumable(tiny, tmp_path):
    root, _ = tiny
    m2 = build_demo_corpus(tmp_path, n_utts=2, speakers=SPK, seed=3, workers=1, progress=False)
    for p in root.rglob("*.wav"):
        assert p.read_bytes() == (tmp_path / p.relative_to(root)).read_bytes(), p
    assert m2["rendered"] == 20
    # corrupt one file, delete another: only those two are rendered again, to the same bytes
    a = tmp_path / "0011" / "Happy" / f"0011_{utt_number('happy', 1, 2):06d}.wav"
    b = tmp_path / "0012" / "Sad" / f"0012_{utt_number('sad', 2, 2):06d}.wav"
    a.write_bytes(b"garbage")
    b.unlink()
    m3 = build_demo_corpus(tmp_path, n_utts=2, speakers=SPK, seed=3, workers=1, progress=False)
    assert m3["rendered"] == 2
    assert a.read_bytes() == (root / a.relative_to(tmp_path)).read_bytes()
    assert b.read_bytes() == (root / b.relative_to(tmp_path)).read_bytes()


def test_other_seed_differs(tiny, tmp_path):
    root, _ = tiny
    build_demo_corpus(tmp_path, n_utts=2, speakers=["0011"], seed=4, workers=1, progress=False)
    p = "0011/Angry/0011_000003.wav"
    assert (root / p).read_bytes() != (tmp_path / p).read_bytes()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown demo speakers"):
        build_demo_corpus(tmp_path, n_utts=2, speakers=["9999"])
    with pytest.raises(ValueError, match="n_utts"):
        build_demo_corpus(tmp_path, n_utts=0)
