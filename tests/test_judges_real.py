"""Real judges without their weights: answer parsing, label mapping, registry, and the errors for missing pieces."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from esnlib.judges.emotion2vec import E2V_TO_ESN, map_label, top_label
from esnlib.judges.qwen3_omni import parse_emotion_answer

FIVE = ("neutral", "angry", "happy", "sad", "surprise")


@pytest.mark.parametrize("answer,expected", [
    # letters, in the order of the options (A neutral, B angry, C happy, D sad, E surprise)
    ("A", "neutral"), ("(B)", "angry"), ("c.", "happy"), ("D)", "sad"), ("Answer: E", "surprise"),
    ("The answer is (C).", "happy"), ("Option B", "angry"),
    # words, with case, punctuation and inflections
    ("happy", "happy"), ("The emotion is Happy.", "happy"), ("Happiness", "happy"), ("ANGER", "angry"),
    ("The speaker sounds sad.", "sad"), ("surprised!", "surprise"), ("It is neutral", "neutral"),
    # letter and word together
    ("(C) happy", "happy"), ("E. Surprise", "surprise"), ("The answer is (D) sad.", "sad"),
    # Chinese labels (emotion2vec / Qwen bilingual style)
    ("开心", "happy"), ("生气/angry", "angry"), ("难过", "sad"), ("吃惊", "surprise"), ("中立", "neutral"),
    # negation is not a mention
    ("The speaker is not angry, the speaker is sad.", "sad"),
    # an article "A" is not the letter A
    ("A happy voice.", "happy"),
])
def test_parser_accepts(answer, expected):
    assert parse_emotion_answer(answer, FIVE) == expected


@pytest.mark.parametrize("answer", [
    "", "   ", None, "asdfgh", "I cannot tell.", "F",          # nothing / garbage / letter out of range
    "(C) angry",                                             # letter and word disagree
    "happy and surprised",                                   # two labels
    "(A) neutral (B) angry (C) happy (D) sad (E) surprise",  # the options echoed back
    "fearful", "The speaker sounds disgusted.",              # emotions outside the label set: a mismatch
])
def test_parser_rejects(answer):
    assert parse_emotion_answer(answer, FIVE) is None


def test_parser_uses_the_callers_label_set():
    four = ("neutral", "angry", "happy", "sad")
    assert parse_emotion_answer("D", four) == "sad"
    assert parse_emotion_answer("E", four) is None
    assert parse_emotion_answer("surprise", four) is None
    eight = ("neutral", "angry", "happy", "sad", "surprise", "fear", "disgust", "contempt")
    assert parse_emotion_answer("fearful", eight) == "fear"
    assert parse_emotion_answer("H", eight) == "contempt"
    # Echoed options followed by an explicit answer still resolve.
    assert parse_emotion_answer("(A) neutral (B) angry (C) happy (D) sad. Answer: (B) angry", four) == "angry"


def test_emotion2vec_label_map():
    assert map_label("生气/angry") == "angry"
    assert map_label("开心/happy") == "happy"
    assert map_label("中立/neutral") == "neutral"
    assert map_label("难过/sad") == "sad"
    assert map_label("吃惊/surprised") == "surprise"
    for raw in ("厌恶/disgusted", "恐惧/fearful", "其他/other", "<unk>", ""):
        assert map_label(raw) is None  # no esnlib label: a mismatch, never remapped
    eight = ("neutral", "angry", "happy", "sad", "surprise", "fear", "disgust", "contempt")
    assert map_label("恐惧/fearful", eight) == "fear" and map_label("厌恶/disgusted", eight) == "disgust"
    with pytest.raises(ValueError, match="unexpected emotion2vec label"):
        map_label("bored")
    assert set(E2V_TO_ESN) >= {"angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised"}


def test_emotion2vec_top_label_of_funasr_results():
    labels9 = ["生气/angry", "厌恶/disgusted", "恐惧/fearful", "开心/happy", "中立/neutral", "其他/other",
               "难过/sad", "吃惊/surprised", "<unk>"]
    scores = np.full(9, 0.01)
    scores[7] = 0.9
    assert top_label({"key": "x", "labels": labels9, "scores": scores.tolist()}) == "surprise"
    scores = np.full(9, 0.01)
    scores[2] = 0.9
    assert top_label({"labels": labels9, "scores": scores.tolist()}) is None  # fearful: mismatch
    with pytest.raises(ValueError, match="labels"):
        top_label({"feats": [0.0]})
    with pytest.raises(ValueError, match="scores"):
        top_label({"labels": labels9, "scores": [1.0]})


@pytest.mark.skipif(importlib.util.find_spec("funasr") is not None, reason="funasr is installed")
def test_emotion2vec_without_funasr_says_how_to_install():
    from esnlib.judges.registry import load_judge

    with pytest.raises(ImportError, match="pip install funasr"):
        load_judge("emotion2vec")


@pytest.mark.skipif(importlib.util.find_spec("utmos") is not None, reason="utmos is installed")
def test_utmos_errors():
    from esnlib.judges.utmos import UtmosJudge

    with pytest.raises(ImportError, match="pip install utmos"):
        UtmosJudge(backend="utmos", device="cpu")
    with pytest.raises(ValueError, match="backend"):
        UtmosJudge(backend="nope", device="cpu")


def test_utmos_local_hub_dir_without_checkpoint(tmp_path):
    from esnlib.judges.utmos import UtmosJudge

    with pytest.raises(RuntimeError, match="SpeechMOS"):
        UtmosJudge(repo_or_dir=str(tmp_path), device="cpu")


def test_qwen3_omni_judge_missing_weights(tmp_path):
    from esnlib.judges.registry import load_judge

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_judge("qwen3-omni", model_id=str(tmp_path / "Qwen3-Omni"), device="cpu")


def test_judge_registry_names():
    from esnlib.judges.registry import JUDGES, judge_key, load_judges

    assert judge_key("Emotion2Vec") == "emotion2vec" and judge_key("qwen3_omni") == "qwen3-omni"
    assert judge_key("emotion2vec+large") == "emotion2vec" and judge_key("UTMOS22") == "utmos"
    assert {"emotion2vec", "qwen3-omni", "utmos", "dnsmos", "dnsmos-p808"} <= set(JUDGES)
    with pytest.raises(ValueError, match="unknown judge"):
        judge_key("wav2vec-ser")
    with pytest.raises(ValueError, match="no judge names"):
        load_judges(" , ")
    dns = load_judges("dnsmos")
    assert len(dns) == 1 and hasattr(dns[0], "score")
