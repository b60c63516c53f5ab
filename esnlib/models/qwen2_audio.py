"""Qwen2-Audio-7B-Instruct for SER (the SER-ESN paper's setting): audio + multiple-choice question -> one label.

Sites: ``model.language_model.layers[i].mlp.act_fn`` (32 x 11,008 at 7B). Text output only: no EVC.
"""
from __future__ import annotations

from ._hf import ChatSerAdapter
from .base import ModelAdapter


class Qwen2AudioAdapter(ChatSerAdapter, ModelAdapter):
    """Qwen2AudioForConditionalGeneration + Qwen2AudioProcessor (chat template from the checkpoint)."""

    name = "qwen2-audio-7b"
    model_class = "Qwen2AudioForConditionalGeneration"
    processor_class = "Qwen2AudioProcessor"
    default_id = "Qwen/Qwen2-Audio-7B-Instruct"

    def __init__(self, model, processor, **kw):
        self._init_chat(model, processor, **kw)
