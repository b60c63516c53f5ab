"""Judges by name, for the notebooks' ``judges="emotion2vec,qwen3-omni"`` style parameters.

Real judges (GPU, weights): emotion2vec, qwen3-omni, utmos. Demo-world judges (CPU, bundled): prosody, spectral,
dnsmos-p808 (DNSMOS's P.808 head, the notebooks' naturalness default) and dnsmos (its P.835 OVRL). Keyword
arguments go to the judge's constructor.
"""
from __future__ import annotations

import importlib

JUDGES = {
    "emotion2vec": ("esnlib.judges.emotion2vec", "Emotion2VecJudge"),
    "qwen3-omni": ("esnlib.judges.qwen3_omni", "Qwen3OmniJudge"),
    "utmos": ("esnlib.judges.utmos", "UtmosJudge"),
    "dnsmos": ("esnlib.judges.dnsmos", "DNSMOSJudge"),
    "dnsmos-p808": ("esnlib.judges.dnsmos", "DNSMOSP808Judge"),
    "prosody": ("esnlib.judges.demo", "ProsodyJudge"),
    "spectral": ("esnlib.judges.demo", "SpectralJudge"),
}
#: the judges that score naturalness (``naturalness=``); the others label emotion (``judges=``)
NATURALNESS_JUDGES = ("utmos", "dnsmos", "dnsmos-p808")
ALIASES = {"emotion2vec+large": "emotion2vec", "emotion2vec_plus_large": "emotion2vec", "qwen3": "qwen3-omni",
           "qwen3-omni-30b": "qwen3-omni", "utmos22": "utmos", "dnsmos_ovrl": "dnsmos", "p808": "dnsmos-p808",
           "demo-prosody": "prosody", "demo-spectral": "spectral"}


def judge_key(name: str) -> str:
    """Canonical registry key of a judge name (case, '_' vs '-' and aliases forgiven)."""
    key = str(name).strip().lower().replace("_", "-")
    key = ALIASES.get(key, ALIASES.get(key.replace("-", "_"), key))
    if key not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; known: {sorted(JUDGES)} (aliases: {sorted(ALIASES)})")
    return key


def load_judge(name: str, **kw):
    """Build the judge called ``name``."""
    module, cls = JUDGES[judge_key(name)]
    return getattr(importlib.import_module(module), cls)(**kw)


def load_judges(names: str | list[str], **kw) -> list:
    """A comma-separated string or a list of names -> judges (same keyword arguments for each)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ValueError("no judge names given; e.g. judges='emotion2vec,qwen3-omni'")
    return [load_judge(n, **kw) for n in names]
