"""Every prompt text the real-model adapters and the LALM judge send, and how their SER answers are read.

EVC (EVC paper section 4, Figure 1): a fixed, emotion-agnostic instruction (convert, keep the words) plus one sentence
naming the target emotion, the only part that changes with e_tgt. SER (SER-ESN paper; the Qwen3-Omni judge): an
n-way multiple choice over the label set, lettered A, B, ... in label order; :func:`parse_emotion_answer` reads the
free-text answer back into a label (or None).

How each model's chat format wraps these texts stays with its adapter (``models/qwen_omni.chatml``,
``models/kimi_audio.evc_chats``, ``models/minicpm_o.evc_msgs``, ``models/_hf.ChatSerAdapter.prompt``). The demo
LALM's prompt texts stay in ``models/demo.py``: they are part of its training data (``scripts/train_demo_model.py``),
so changing one means retraining, unlike the texts here.
"""
from __future__ import annotations

import re
from typing import Sequence

from .constants import EMOTIONS

# ------------------------------------------------------------------------------------------------------------- EVC
# Qwen2.5-Omni only speaks with exactly this system prompt (QwenLM/Qwen2.5-Omni README.md @ f8bf58c6: "If users need
# audio output, the system prompt must be set as ..."), so the fixed EVC instruction goes into the user turn.
QWEN_OMNI_PERSONA = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
                     "auditory and visual inputs, as well as generating text and speech.")
# The paper's fixed, emotion-agnostic EVC system prompt (EVC paper §4, Figure 1): convert, keep the words.
EVC_SYSTEM_PROMPT = ("You are an emotional voice conversion system. The user gives you a speech recording and names a "
                     "target emotion. Say exactly the same words as the recording again, in the target emotion. "
                     "Keep the words the same: do not add, drop, translate or paraphrase anything, and do not answer "
                     "or comment on what is said.")
# The user instruction naming the target emotion (the only part that changes with e_tgt).
EVC_USER_PROMPT = "Convert the emotion of this speech to {emotion} while keeping the words the same."
EMOTION_WORDS = {"neutral": "neutral", "angry": "angry", "happy": "happy", "sad": "sad", "surprise": "surprised"}


def evc_instruction(target: str) -> str:
    """The EVC user instruction for one target emotion."""
    if target not in EMOTION_WORDS:
        raise ValueError(f"unknown target emotion {target!r}; use one of {tuple(EMOTION_WORDS)}")
    return EVC_USER_PROMPT.format(emotion=EMOTION_WORDS[target])


def evc_user_text(target: str) -> str:
    """Qwen2.5-Omni's EVC user text (after the audio): the paper's fixed EVC instruction, then the target sentence."""
    return f"{EVC_SYSTEM_PROMPT} {evc_instruction(target)}"


# ------------------------------------------------------------------------------------------------------------- SER
SER_LETTERS = "ABCDEFGHIJ"


def ser_prompt(labels: Sequence[str]) -> str:
    """The SER instruction as an n-way multiple choice over ``labels`` (five-way for the papers' label set)."""
    choices = " ".join(f"({SER_LETTERS[i]}) {lab}" for i, lab in enumerate(labels))
    return ("What is the emotion of the speaker in this audio? Choose exactly one option: "
            f"{choices}. Answer with the letter and the emotion word only.")


# Surface forms (English and Chinese) -> canonical esnlib labels. Canonical names outside esnlib.EMOTIONS are the
# extra classes of the 8-class corpora (MSP-Podcast, MELD); they only count when the caller's label set has them.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrality", "calm", "中立", "中性", "平静"),
    "angry": ("angry", "anger", "mad", "furious", "生气", "愤怒"),
    "happy": ("happy", "happiness", "joy", "joyful", "开心", "高兴", "快乐"),
    "sad": ("sad", "sadness", "unhappy", "难过", "悲伤", "伤心"),
    "surprise": ("surprise", "surprised", "surprising", "吃惊", "惊讶"),
    "fear": ("fear", "fearful", "afraid", "scared", "恐惧", "害怕"),
    "disgust": ("disgust", "disgusted", "厌恶"),
    "contempt": ("contempt", "contemptuous", "轻蔑"),
}
_NEGATION = re.compile(r"(not|n't|no|never)\s+(?:\w+\s+)?$")
_LETTER_PATTERNS = (
    re.compile(r"^\W*\(?([A-J])\)?\W*$", re.I),                 # "B", "(B)", "B.", "B)"
    re.compile(r"^\s*\(?([A-J])\)?[\.\):]\s", re.I),              # "B. angry", "(B) angry", "B) angry"
    re.compile(r"^\s*\(([A-J])\)", re.I),                         # "(B)angry"
    re.compile(r"\b(?:answer|option|choice)\s*(?:is)?\s*[:：]?\s*\(?([A-J])\b", re.I),  # "answer is B"
    re.compile(r"\(([A-J])\)"),                                   # "... (B) ..."
)


def _mentions(text: str, labels: Sequence[str]) -> list[tuple[int, str]]:
    """(position, label) of every non-negated label mention in ``text`` (lower case)."""
    found = []
    for lab in labels:
        for form in _SYNONYMS.get(lab, (lab,)):
            ascii_form = form.isascii()
            pat = re.compile(rf"\b{re.escape(form)}\b" if ascii_form else re.escape(form))
            for m in pat.finditer(text):
                if ascii_form and _NEGATION.search(text[: m.start()]):
                    continue
                found.append((m.start(), lab))
    return sorted(found)


def parse_emotion_answer(answer: str | None, labels: Sequence[str] = EMOTIONS) -> str | None:
    """Map a free-text SER answer to one of ``labels`` (options lettered A, B, ... in ``labels`` order) or None.

    Accepts a letter ("C", "(C)", "Answer: C"), a word ("happy", "Happiness", "The emotion is Happy."), both when
    they agree ("(C) happy"), and Chinese labels ("开心"). Returns None for garbage, for answers naming several
    different labels, for a letter and a word that disagree, and for labels outside ``labels``.
    """
    if answer is None:
        return None
    text = str(answer).strip()
    if not text:
        return None
    lowered = text.lower()
    words = {lab for _, lab in _mentions(lowered, labels)}
    letter = None
    explicit = _LETTER_PATTERNS[3].search(text)  # "answer is B" wins over echoed options
    if explicit:
        letter = explicit.group(1).upper()
    elif len(set(re.findall(r"\(([A-J])\)", text.upper()))) <= 1:  # several "(X)": the options were echoed
        for pat in _LETTER_PATTERNS:
            m = pat.search(text)
            if m:
                letter = m.group(1).upper()
                break
    by_letter = None
    if letter is not None:
        i = ord(letter) - ord("A")
        by_letter = labels[i] if i < len(labels) else None
    if len(words) > 1:
        # Several labels (e.g. the model echoed the options): only an explicit letter can decide.
        return by_letter if by_letter in words else None
    if len(words) == 1:
        word = next(iter(words))
        if letter is not None and by_letter is not None and by_letter != word:
            return None
        return word
    # No label word: a mention of an emotion outside the label set is a mismatch, not a letter guess.
    other = {lab for _, lab in _mentions(lowered, [k for k in _SYNONYMS if k not in labels])}
    if other:
        return None
    return by_letter
