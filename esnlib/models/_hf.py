"""Shared plumbing of the transformers-based adapters: loading, batching, and the capture/steer dispatch (prompt
texts: esnlib/prompts.py).

Every real adapter runs generation through one function, :func:`run_generate`, so that plain runs, captures and
interventions go through the same inputs and the same ``generate`` keyword arguments.
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Sequence

import numpy as np

from ..audio import load_wav
from ..corpora.base import Utterance
from ..intervention import batch_rows
from ..prompts import parse_emotion_answer, ser_prompt

def require(package: str, purpose: str, pip_name: str | None = None):
    """Import ``package`` or raise ImportError saying what needs it and how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise ImportError(
            f"{purpose} needs the package '{package}', which is not installed: "
            f"pip install {pip_name or package}") from e


def resolve_device(device: str | None) -> str:
    """'cuda' when available and not overridden; a clear error when 'cuda' is asked for but absent."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was requested but no CUDA GPU is visible (torch.cuda.is_available() is "
                           "False); pass device='cpu' (slow at 7B scale) or run on a GPU machine")
    return str(device)


def resolve_dtype(dtype, device: str):
    """bf16 on GPU, float32 on CPU unless given (a name like 'bfloat16' or a torch dtype)."""
    import torch

    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        if not hasattr(torch, dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use 'bfloat16', 'float16' or 'float32'")
        return getattr(torch, dtype)
    return dtype


def from_pretrained(cls, name_or_path: str, *, device: str, dtype, **kw):
    """``cls.from_pretrained`` with errors that say what is missing (weights offline, a local path)."""
    if str(name_or_path).startswith(("/", ".", "~")) and not os.path.exists(os.path.expanduser(name_or_path)):
        raise FileNotFoundError(f"model path {name_or_path} does not exist; pass a local checkpoint folder or a hub id")
    try:
        model = cls.from_pretrained(name_or_path, dtype=dtype, **kw)
    except OSError as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise OSError(
            f"could not load {cls.__name__} weights from {name_or_path!r} ({e}). "
            + ("HF_HUB_OFFLINE=1 is set: download the checkpoint first (huggingface-cli download "
               f"{name_or_path}) into HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}, or pass a local "
               "folder." if offline else
               "Check the hub id / local folder, your network, and HF_HOME.")) from e
    return model.to(device).eval()


def load_audios(utts: Sequence[Utterance], sr: int = 16000) -> list[np.ndarray]:
    """16 kHz float32 mono waveforms of the utterances (CorpusError naming a bad file)."""
    return [load_wav(u.path, sr) for u in utts]


def batches(n: int, batch_size: int):
    """Index ranges of consecutive batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield range(start, min(n, start + batch_size))


def run_generate(model, inputs: dict, *, sites, capture: bool, intervention, fn: Callable | None = None,
                 step_modules: dict | None = None, **gen_kwargs) -> tuple[Any, Any]:
    """Run ``generate`` once: bare, under ``esnlib.capture``, or under ``esnlib.generate`` with an intervention.

    ``step_modules`` ({side: module path}) names the module a custom loop ``fn`` calls once per decoding step
    (``esnlib.capture.run_traced``); it is not passed to the model. Returns ``(output, stats)``; ``stats`` is None
    unless ``capture``.
    """
    if not capture and intervention is None:
        if fn is not None:
            return fn(**inputs, **gen_kwargs), None
        return model.generate(**inputs, **gen_kwargs), None
    # Import the functions from their modules: once esnlib.capture (the module) is imported, the package attribute
    # `esnlib.capture` is that module, not the function.
    from ..capture import capture as capture_fn
    from ..intervention import generate as generate_fn

    extra = {"fn": fn} if fn is not None else {}
    if step_modules:
        extra["step_modules"] = step_modules
    if intervention is None:
        return capture_fn(model, inputs, sites=sites, **extra, **gen_kwargs)
    res = generate_fn(model, inputs, intervention=intervention, sites=sites, capture=capture, **extra,
                          **gen_kwargs)
    return res if capture else (res, None)


def sample_seed(base: int, *keys) -> int:
    """A per-sample seed from a base seed and the sample's identity (e.g. utterance id, target): the same sample gets
    the same random draws in every condition, batch and order (stable across processes, unlike ``hash``)."""
    import zlib

    return (int(base) * 1_000_003 + zlib.crc32("\x1f".join(map(str, keys)).encode("utf-8"))) % (2 ** 31)


def dtype_kwarg(tr, dtype) -> dict:
    """``from_pretrained``'s dtype keyword for the active transformers (``torch_dtype`` before 4.56, then ``dtype``)."""
    major, minor = (int("".join(c for c in x if c.isdigit()) or 0) for x in tr.__version__.split(".")[:2])
    return {"torch_dtype": dtype} if (major, minor) < (4, 56) else {"dtype": dtype}


def concat_stats(parts: list):
    """Concatenate per-batch CaptureStats rows (input order) into one object of the same type."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    first = parts[0]
    if hasattr(type(first), "concat"):
        return type(first).concat(parts)
    if len(parts) == 1:
        return first
    import dataclasses

    import torch

    fields = {}
    for f in dataclasses.fields(first):
        vals = [getattr(p, f.name) for p in parts]
        v0 = vals[0]
        if isinstance(v0, torch.Tensor) and v0.dim() >= 1:
            fields[f.name] = torch.cat(vals, 0)
        elif isinstance(v0, np.ndarray) and v0.ndim >= 1:
            fields[f.name] = np.concatenate(vals, 0)
        else:
            fields[f.name] = v0
    return type(first)(**fields)


def check_targets(utts: Sequence, targets: Sequence[str], allowed: Sequence[str]):
    if len(utts) != len(targets):
        raise ValueError(f"evc() got {len(utts)} utterances but {len(targets)} targets; pass one target per utterance")
    bad = sorted({t for t in targets if t not in allowed})
    if bad:
        raise ValueError(f"unknown target emotion(s) {bad}; use lower-case labels from {tuple(allowed)}")


class ChatSerAdapter:
    """Mixin for SER-only chat LALMs driven by their transformers processor (Qwen2-Audio, Audio Flamingo 3).

    Subclasses set ``model_class`` / ``processor_class`` (transformers names), ``default_id`` and ``name``. The prompt
    is the processor's chat template over one user turn (audio, then the multiple-choice question), so the real
    checkpoint's own format is used; batches are left-padded by the processor.
    """

    model_class = ""
    processor_class = "AutoProcessor"
    default_id = ""
    system_prompt: str | None = None

    def _init_chat(self, model, processor, *, max_new_tokens: int = 16, labels=None, name=None):
        self.model = model
        self.processor = processor
        self.processor.tokenizer.padding_side = "left"
        self.max_new_tokens = max_new_tokens
        if labels is not None:
            self.labels = tuple(labels)
        if name is not None:
            self.name = name
        if getattr(processor, "chat_template", None) is None:
            raise ValueError(f"the {type(processor).__name__} has no chat template: load it from the checkpoint "
                             "(AutoProcessor.from_pretrained) or pass chat_template= when building it")

    @classmethod
    def from_pretrained(cls, name_or_path: str | None = None, *, device: str | None = None, dtype=None, **kw):
        """Load the checkpoint (hub id or local folder) and its processor; bf16 on GPU."""
        tr = require("transformers", cls.__name__)
        name_or_path = name_or_path or cls.default_id
        mcls = getattr(tr, cls.model_class, None)
        if mcls is None:
            raise ImportError(f"transformers {tr.__version__} has no {cls.model_class}: pip install -U transformers")
        dev = resolve_device(device)
        model = from_pretrained(mcls, name_or_path, device=dev, dtype=resolve_dtype(dtype, dev))
        processor = getattr(tr, cls.processor_class).from_pretrained(name_or_path)
        return cls(model, processor, **kw)

    def sites(self, scope: str = "lm") -> list:
        from ..sites import find_sites

        if scope != "lm":
            raise ValueError(f"{self.name} has no speech-generation side: use scope='lm'")
        return find_sites(self.model, scope)

    def prompt(self) -> str:
        """The rendered chat prompt (one audio placeholder + the SER question, generation prompt open)."""
        msgs = [] if self.system_prompt is None else [{"role": "system", "content": [
            {"type": "text", "text": self.system_prompt}]}]
        msgs.append({"role": "user", "content": [{"type": "audio", "audio_url": "input.wav"},
                                                 {"type": "text", "text": ser_prompt(self.labels)}]})
        return self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

    def build_inputs(self, audios) -> dict:
        import torch

        prompt = self.prompt()
        inputs = self.processor(text=[prompt] * len(audios), audio=[np.asarray(a, np.float32) for a in audios],
                                sampling_rate=16000, return_tensors="pt",
                                # Pad the text (left) only: the audio keeps the feature extractor's own padding.
                                text_kwargs={"padding": True, "padding_side": "left"})
        dev = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        return {k: (v.to(dev).to(dtype) if v.is_floating_point() else v.to(dev)) if isinstance(v, torch.Tensor) else v
                for k, v in dict(inputs).items()}

    def evc(self, utts, targets, *, capture=False, intervention=None, scope="lm", batch_size=8):
        raise NotImplementedError(f"{self.name} produces text only (no speech output), so it cannot do EVC; use "
                                  "ser() (the SER-ESN paper's setting) or an EVC model such as qwen2.5-omni-7b")

    def ser(self, utts, *, capture=False, intervention=None, scope="lm", batch_size=8):
        """SER as n-way multiple choice; greedy; ``Generation.label`` is the parsed answer or None."""
        from ..progress import tqdm

        from .base import Generation

        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        for idx in tqdm(list(batches(len(utts), batch_size)), desc=f"{self.name} SER", leave=False):
            inputs = self.build_inputs(load_audios([utts[i] for i in idx]))
            out, stats = run_generate(self.model, inputs, sites=sites, capture=capture,
                                      intervention=batch_rows(intervention, idx, len(utts)),
                                      max_new_tokens=self.max_new_tokens, do_sample=False)
            seq = getattr(out, "sequences", out)
            texts = self.processor.tokenizer.batch_decode(seq[:, inputs["input_ids"].shape[1]:],
                                                          skip_special_tokens=True)
            for j, text in enumerate(texts):
                text = text.strip()
                gens.append(Generation(text=text, label=parse_emotion_answer(text, self.labels),
                                       extra={"utt_id": utts[idx[j]].id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens

    def describe(self) -> dict:
        return {"model": self.name, "dtype": str(next(self.model.parameters()).dtype)}


def split_sites(root, lm_stack: str, talker_stack: str, scope: str = "lm") -> list:
    """Sites of a model whose speech-generation stack is not named "talker": ``esnlib.find_sites`` finds every
    decoder gated MLP by structure; this assigns ``<lm_stack>.<i>`` to the LM side and ``<talker_stack>.<i>`` to the
    talker side and renumbers the flat offsets (LM side first)."""
    from ..sites import SCOPES, Site, unwrap

    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use one of {SCOPES}")
    found = _all_sites(root)
    lm = [s for s in found if s.path.startswith(lm_stack + ".")]
    talker = [s for s in found if s.path.startswith(talker_stack + ".")]
    name = type(unwrap(root)).__name__
    if not lm:
        raise ValueError(f"no gated MLPs under {lm_stack}.<i>.mlp in {name}")
    if scope in ("talker", "both") and not talker:
        raise ValueError(f"no gated MLPs under {talker_stack}.<i>.mlp in {name}: was the speech decoder loaded?")
    chosen = {"lm": [(s, "lm") for s in lm], "talker": [(s, "talker") for s in talker],
              "both": [(s, "lm") for s in lm] + [(s, "talker") for s in talker]}[scope]
    out, offset = [], 0
    for s, side in chosen:
        out.append(Site(path=s.path, layer=s.layer, width=s.width, side=side, offset=offset, module=s.module))
        offset += s.width
    return out


def _all_sites(root) -> list:
    """Every decoder gated-MLP site, whichever side find_sites files it under."""
    from ..sites import find_sites

    out = []
    for scope in ("lm", "talker"):
        try:
            out += find_sites(root, scope)
        except ValueError:
            pass  # no site on that side
    return out
