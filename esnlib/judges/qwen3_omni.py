"""Qwen3-Omni-30B-A3B as an LALM-based SER judge (EVC paper §4: five-way multiple choice on the converted audio).

The judge is prompted with the converted clip only and asked to pick one of the labels; its free-text answer goes
through :func:`esnlib.prompts.parse_emotion_answer` (re-exported here), which the model adapters also use to read
their own SER answers.
Answers that name no label, name several, or name a label outside the set give None (a mismatch, never a guess).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..constants import EMOTIONS
from ..prompts import parse_emotion_answer, ser_prompt
from .base import EmotionJudge

class Qwen3OmniJudge(EmotionJudge):
    """Qwen3-Omni-30B-A3B-Instruct prompted for n-way multiple-choice SER on each clip (text output only).

    Needs a GPU with ~70 GB for bf16 weights (30B parameters x 2 bytes = 60 GB + activations).
    """

    name = "qwen3-omni"

    def __init__(self, model_id: str = "Qwen/Qwen3-Omni-30B-A3B-Instruct", *, device: str | None = None,
                 dtype=None, labels: Sequence[str] = EMOTIONS,
                 batch_size: int = 4, max_new_tokens: int = 16):
        from ..models._hf import from_pretrained, require, resolve_device, resolve_dtype

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
