"""Audio Flamingo 3 (NVIDIA, Qwen2.5-7B LLM backbone) for SER: audio + multiple-choice question -> one label.

Sites: ``model.language_model.layers[i].mlp.act_fn`` (28 x 18,944 for the 7B backbone). Text output only: no EVC.
Audio is windowed by the processor (30 s windows, up to 10 min), each window becoming ``<sound>`` tokens.
"""
from __future__ import annotations

from ._hf import ChatSerAdapter
from .base import ModelAdapter


class AudioFlamingo3Adapter(ChatSerAdapter, ModelAdapter):
    """AudioFlamingo3ForConditionalGeneration + AudioFlamingo3Processor (chat template from the checkpoint)."""

    name = "audio-flamingo-3"
    model_class = "AudioFlamingo3ForConditionalGeneration"
    processor_class = "AudioFlamingo3Processor"
    default_id = "nvidia/audio-flamingo-3-hf"

    def __init__(self, model, processor, **kw):
        self._init_chat(model, processor, **kw)
