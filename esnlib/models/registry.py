"""Model adapters by name or checkpoint path: ``load_model("qwen2.5-omni-7b")``, ``load_model("/ckpt/Qwen2.5-Omni-7B")``.

A name is looked up in ``MODELS``; anything else is treated as a hub id or local folder and matched to an adapter by
its ``config.json`` ``model_type`` (or by the name when offline). ``"demo"`` is the bundled demo LALM.
"""
from __future__ import annotations

import importlib
import json
import os

# name -> (module, adapter class, default checkpoint)
MODELS = {
    "demo": ("esnlib.models.demo", "DemoAdapter", None),
    "qwen2.5-omni-7b": ("esnlib.models.qwen_omni", "QwenOmniAdapter", "Qwen/Qwen2.5-Omni-7B"),
    "qwen2.5-omni-3b": ("esnlib.models.qwen_omni", "QwenOmniAdapter", "Qwen/Qwen2.5-Omni-3B"),
    "qwen2-audio-7b": ("esnlib.models.qwen2_audio", "Qwen2AudioAdapter", "Qwen/Qwen2-Audio-7B-Instruct"),
    "audio-flamingo-3": ("esnlib.models.audio_flamingo", "AudioFlamingo3Adapter", "nvidia/audio-flamingo-3-hf"),
    "kimi-audio-7b": ("esnlib.models.kimi_audio", "KimiAudioAdapter", "moonshotai/Kimi-Audio-7B-Instruct"),
    "minicpm-o-4.5": ("esnlib.models.minicpm_o", "MiniCPMOAdapter", "openbmb/MiniCPM-o-4_5"),
}
# config.json model_type -> registry name
MODEL_TYPES = {"qwen2_5_omni": "qwen2.5-omni-7b", "qwen2_audio": "qwen2-audio-7b",
               "audioflamingo3": "audio-flamingo-3", "minicpmo": "minicpm-o-4.5", "kimi_audio": "kimi-audio-7b"}


def resolve(name_or_path: str) -> tuple[str, str | None]:
    """(registry name, checkpoint) for a registry name, hub id or local folder."""
    key = str(name_or_path).strip()
    if key.lower() in MODELS:
        name = key.lower()
        return name, MODELS[name][2]
    for name, (_, _, ckpt) in MODELS.items():
        if ckpt is not None and key == ckpt:
            return name, ckpt
    cfg = os.path.join(os.path.expanduser(key), "config.json")
    if os.path.isfile(cfg):
        with open(cfg, encoding="utf-8") as f:
            mtype = json.load(f).get("model_type", "")
        if mtype in MODEL_TYPES:
            return MODEL_TYPES[mtype], key
        raise ValueError(f"{cfg} has model_type {mtype!r}, which no esnlib adapter handles; supported: "
                         f"{sorted(MODEL_TYPES)}. docs/adding_a_model.md shows how to add one")
    low = key.lower()
    for hint, name in (("qwen2.5-omni", "qwen2.5-omni-7b"), ("qwen2-audio", "qwen2-audio-7b"),
                       ("audio-flamingo-3", "audio-flamingo-3"), ("kimi-audio", "kimi-audio-7b"),
                       ("minicpm-o", "minicpm-o-4.5")):
        if hint in low and name in MODELS:
            return name, key
    raise ValueError(f"unknown model {name_or_path!r}: use one of {sorted(MODELS)}, a hub id of one of them, or a "
                     "local checkpoint folder with a config.json")


def load_model(name_or_path: str, **kw):
    """The ModelAdapter for ``name_or_path`` (keyword arguments such as device=, dtype= go to its loader)."""
    from .envs import check_environment

    name, ckpt = resolve(name_or_path)
    check_environment(name)  # Kimi-Audio / MiniCPM-o need their own transformers: names `make env MODEL=...`
    module, cls_name, _ = MODELS[name]
    cls = getattr(importlib.import_module(module), cls_name)
    if name == "demo":
        return cls.load(**kw) if hasattr(cls, "load") else cls(**kw)
    return cls.from_pretrained(ckpt, **kw)
