"""Qwen3-Omni-30B-A3B as an LALM-based SER judge (EVC paper §4: five-way multiple choice on the converted audio).

The judge is prompted with the converted clip only and asked to pick one of the labels; its free-text answer goes
through :func:`parse_emotion_answer`, which is also what the model adapters use to read their own SER answers.
Answers that name no label, name several, or name a label outside the set give None (a mismatch, never a guess).
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..constants import EMOTIONS
from .base import EmotionJudge

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


class Qwen3OmniJudge(EmotionJudge):
    """Qwen3-Omni-30B-A3B-Instruct prompted for n-way multiple-choice SER on each clip (text output only).

    Needs a GPU with ~70 GB for bf16 weights (30B parameters x 2 bytes = 60 GB + activations).
    """

    name = "qwen3-omni"

    def __init__(self, model_id: str = "Qwen/Qwen3-Omni-30B-A3B-Instruct", *, device: str | None = None,
                 dtype=None, labels: Sequence[str] = EMOTIONS,
                 batch_size: int = 4, max_new_tokens: int = 16):
        from ..models._hf import from_pretrained, require, resolve_device, resolve_dtype, ser_prompt

        tr = require("transformers", "the Qwen3-Omni judge")
        if not hasattr(tr, "Qwen3OmniMoeForConditionalGeneration"):
            raise ImportError("the Qwen3-Omni judge needs transformers with Qwen3OmniMoeForConditionalGeneration "
                              "(>= 4.57): pip install -U transformers")
        self.labels = tuple(labels)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.model_id = model_id
        self.prompt = ser_prompt(self.labels)
        dev = resolve_device(device)
        self.model = from_pretrained(tr.Qwen3OmniMoeForConditionalGeneration, model_id, device=dev,
                                     dtype=resolve_dtype(dtype, dev), enable_audio_output=False)
        self.processor = tr.Qwen3OmniMoeProcessor.from_pretrained(model_id)
        self.processor.tokenizer.padding_side = "left"

    def _messages(self) -> list[dict]:
        return [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": self.prompt}]}]

    def answers(self, audios: Sequence[np.ndarray]) -> list[str]:
        """The judge's raw text answers, one per 16 kHz clip."""
        import torch

        text = self.processor.apply_chat_template(self._messages(), add_generation_prompt=True, tokenize=False)
        out: list[str] = []
        for start in range(0, len(audios), self.batch_size):
            chunk = [np.asarray(a, dtype=np.float32) for a in audios[start:start + self.batch_size]]
            # Pad the text (left) only: the audio keeps the feature extractor's own padding.
            inputs = self.processor(text=[text] * len(chunk), audio=chunk, sampling_rate=16000, return_tensors="pt",
                                    text_kwargs={"padding": True, "padding_side": "left"}).to(self.model.device)
            with torch.no_grad():
                seq = self.model.generate(**inputs, return_audio=False, thinker_max_new_tokens=self.max_new_tokens,
                                          thinker_do_sample=False)
            seq = seq[0] if isinstance(seq, tuple) else seq
            seq = getattr(seq, "sequences", seq)
            out += self.processor.batch_decode(seq[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return out

    def predict(self, audios: Sequence[np.ndarray], sample_rate: int = 16000) -> list[str | None]:
        from ..audio import resample

        clips = [resample(a, sample_rate, 16000) for a in audios]
        return [parse_emotion_answer(a, self.labels) for a in self.answers(clips)]

    def describe(self) -> dict:
        return {"judge": self.name, "judge_model": self.model_id}
