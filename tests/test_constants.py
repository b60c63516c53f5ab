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
