"""The vocabularies every part of esnlib shares, defined once: emotion labels and the Table 1 splits.

Labels are lower case everywhere inside esnlib (ESD's folder names are capitalized; ``corpora.esd`` maps them).
Modules import these names from here; ``esnlib.EMOTIONS`` and ``esnlib.TARGET_EMOTIONS`` re-export them.
"""
from __future__ import annotations

#: the five emotions of ESD and of the papers' SER label set, in ESD's order
EMOTIONS: tuple[str, ...] = ("neutral", "angry", "happy", "sad", "surprise")
#: EVC target emotions (e_tgt) and mask emotions (e_mask): every emotion but neutral (EVC paper, section 4)
TARGET_EMOTIONS: tuple[str, ...] = EMOTIONS[1:]

#: the EVC paper's Table 1 subsets, assigned to every utterance's ``split``
SPLITS: tuple[str, ...] = ("IDENTIFICATION", "DEVELOPMENT", "TEST-SEEN", "TEST-UNSEEN")
#: the pooled evaluation split: the paper computes every result on TEST-SEEN and TEST-UNSEEN together
TEST = "TEST"
POOLED_SPLITS: dict[str, tuple[str, ...]] = {TEST: ("TEST-SEEN", "TEST-UNSEEN")}

#: stored row / condition columns -> the paper's names used in tables, figures and exports (docs/architecture.md);
#: stored columns keep their names so that existing result stores stay valid
PAPER_NAMES: dict[str, str] = {"target": "e_tgt", "mask_emotion": "e_mask", "rate": "r", "cap": "c"}
