"""The shared vocabularies are defined once (esnlib/constants.py) and every module uses that one object."""
import re
from pathlib import Path

import esnlib
from esnlib import constants as C

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_uses_the_one_definition():
    from esnlib import experiments as X
    from esnlib import tts
    from esnlib.corpora import esd, sentences
    from esnlib.judges.base import EmotionJudge
    from esnlib.models import demo
    from esnlib.models.base import ModelAdapter

    for emotions in (esnlib.EMOTIONS, tts.EMOTIONS, sentences.EMOTIONS, demo.EMOTIONS, EmotionJudge.labels,
                     ModelAdapter.labels):
        assert emotions is C.EMOTIONS
    assert esnlib.TARGET_EMOTIONS is C.TARGET_EMOTIONS == ("angry", "happy", "sad", "surprise")
    assert X.SPLITS is esd.SUBSETS is C.SPLITS
    assert X.POOLED_SPLITS is C.POOLED_SPLITS and X.TEST == C.TEST
    assert set(C.POOLED_SPLITS[C.TEST]) <= set(C.SPLITS)


def test_no_second_definition_in_the_sources():
    # A literal five-label tuple or a re-assigned vocabulary name anywhere else is a second copy that can drift.
    five = re.compile(r'\(\s*"neutral",\s*"angry",\s*"happy",\s*"sad",\s*"surprise"\s*\)')
    four = re.compile(r'\(\s*"IDENTIFICATION",\s*"DEVELOPMENT",\s*"TEST-SEEN",\s*"TEST-UNSEEN"\s*\)')
    assigned = re.compile(r"^(EMOTIONS|TARGET_EMOTIONS|POOLED_SPLITS)\s*[:=]", re.M)
    offenders = []
    for path in [*(ROOT / "esnlib").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        if path.name == "constants.py":
            continue
        text = path.read_text(encoding="utf-8")
        if five.search(text) or four.search(text) or assigned.search(text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"define these in esnlib/constants.py and import them: {offenders}"


def test_exported_rows_use_the_paper_names(tmp_path):
    import pandas as pd

    from esnlib import experiments as X

    row = {"sample_id": "s0", "utt_id": "u0", "speaker": "0011", "split": "TEST-SEEN", "target": "angry",
           "selector": "CAS", "mask_emotion": "angry", "kind": "steer", "alpha": 1.0, "rate": 0.01, "cap": 50,
           "pred_demo": "angry", "wer": 0.0, "naturalness": 3.0}
    out = pd.read_csv(X.export_rows([pd.DataFrame([row])], "t", tmp_path))
    assert set(C.PAPER_NAMES.values()) <= set(out.columns) and not set(C.PAPER_NAMES) & set(out.columns)
    assert out.loc[0, ["e_tgt", "e_mask", "r", "c"]].tolist() == ["angry", "angry", 0.01, 50]


def test_exported_ser_rows_recompute_the_deactivation_table(tmp_path):
    """SER rows (notebook 08): the paper's e_mask / r names, baseline rows as selector none, and Δ recall of the
    deactivation table recomputed from the file alone."""
    import pandas as pd

    from esnlib import experiments as X

    item = lambda u, emo, pred: {"sample_id": u, "utt_id": u, "speaker": "0011", "split": "TEST-SEEN",  # noqa: E731
                                 "emotion": emo, "pred": pred, "correct": pred == emo, "answer": pred}
    base = pd.DataFrame([item("u0", "sad", "sad"), item("u1", "sad", "sad"), item("u2", "happy", "happy")])
    deact = pd.DataFrame([{**item("u0", "sad", "neutral"), "selector": "CAS", "rate": 0.01, "mask_emotion": "sad"},
                          {**item("u1", "sad", "sad"), "selector": "CAS", "rate": 0.01, "mask_emotion": "sad"},
                          {**item("u2", "happy", "happy"), "selector": "CAS", "rate": 0.01, "mask_emotion": "sad"}])
    out = pd.read_csv(X.export_ser_rows([base, deact.assign(kind="deactivate", alpha=0.0)], "t", tmp_path))
    assert {"e_mask", "r", "emotion", "pred", "correct"} <= set(out.columns) and "mask_emotion" not in out.columns
    assert out.selector.tolist() == ["none"] * 3 + ["CAS"] * 3 and set(out.kind) == {"none", "deactivate"}
    b = out[out.selector == "none"].set_index("utt_id").correct
    d = out[out.selector == "CAS"].set_index("utt_id")
    recall = lambda c, emo: 100 * c[d.emotion == emo].mean()  # noqa: E731
    assert recall(d.correct, "sad") - recall(b.reindex(d.index), "sad") == -50.0
    table = X.ser_effect_table(deact, base, "accuracy")
    assert table.loc["sad", "sad"] == -50.0 and table.loc["sad", "happy"] == 0.0
