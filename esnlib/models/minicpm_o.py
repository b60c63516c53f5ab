"""MiniCPM-o 4.5 (OpenBMB) through its remote code (``AutoModel.from_pretrained(..., trust_remote_code=True)``).

Structure (facts from the checkpoint's ``modeling_minicpmo*.py``): ``MiniCPMO.llm`` is a ``Qwen3ForCausalLM``
(the LM; ``llm.model.layers[i].mlp`` gated, 36 x 12,288 for Qwen3-8B), ``apm`` a Whisper encoder, ``vpm`` a SigLIP
encoder (neither has gated MLPs), and ``tts`` a ``MiniCPMTTS`` whose backbone ``tts.model`` is a ``LlamaModel``
(``tts.model.layers[i].mlp`` gated: the speech-generation side) followed by a token2wav vocoder (not an nn.Module
stack of gated MLPs). Speech is made by ``model.chat(msgs=..., use_tts_template=True, generate_audio=True)``, which
returns ``(text, waveform at 24 kHz)``; the TTS voice is cloned from the first audio in the messages (here: the
source utterance, so the speaker is kept).

Not testable offline here: loading, ``chat``, capture/steer (whether the TTS loop calls ``tts.forward`` once per
step, which the core's step loop needs, is unverified). Tested: message building, site discovery on a module tree of
transformers ``Qwen3DecoderLayer`` / ``LlamaDecoderLayer`` stacks laid out like MiniCPM-o, missing-package errors.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..corpora.base import Utterance
from ..intervention import batch_rows
from ._hf import check_targets, concat_stats, load_audios, require, resolve_device, resolve_dtype, run_generate, \
    ser_prompt, split_sites
from .base import Generation, ModelAdapter
from .qwen_omni import EMOTION_WORDS, EVC_SYSTEM_PROMPT, evc_instruction

OUTPUT_SAMPLE_RATE = 24000
LM_STACK, TTS_STACK = "llm.model.layers", "tts.model.layers"


def evc_msgs(audio: np.ndarray, target: str) -> list[dict]:
    """MiniCPM-o chat messages for EVC: the fixed system prompt, then the source audio and the instruction."""
    return [{"role": "system", "content": [EVC_SYSTEM_PROMPT]},
            {"role": "user", "content": [np.asarray(audio, np.float32), evc_instruction(target)]}]


def ser_msgs(audio: np.ndarray, labels: Sequence[str]) -> list[dict]:
    """MiniCPM-o chat messages for SER: the audio and the multiple-choice question."""
    return [{"role": "user", "content": [np.asarray(audio, np.float32), ser_prompt(labels)]}]


class MiniCPMOAdapter(ModelAdapter):
    """MiniCPM-o 4.5 via its ``chat`` method; greedy (do_sample=False) text, TTS with its default sampling."""

    name = "minicpm-o-4.5"
    has_talker = True

    def __init__(self, model, tokenizer=None, *, labels: Sequence[str] | None = None, max_new_tokens: int = 256):
        if not hasattr(model, "chat") or not hasattr(model, "llm"):
            raise TypeError(f"expected a MiniCPM-o model with .llm and .chat(), got {type(model).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.has_talker = hasattr(model, "tts")
        if labels is not None:
            self.labels = tuple(labels)

    @classmethod
    def from_pretrained(cls, name_or_path: str = "openbmb/MiniCPM-o-4_5", *, device: str | None = None, dtype=None,
                        **kw) -> "MiniCPMOAdapter":
        """Load as MiniCPM-o's users do: AutoModel with trust_remote_code, audio + TTS initialised, no vision."""
        tr = require("transformers", "MiniCPM-o")
        dev = resolve_device(device)
        try:
            model = tr.AutoModel.from_pretrained(name_or_path, trust_remote_code=True, attn_implementation="sdpa",
                                                 dtype=resolve_dtype(dtype, dev), init_vision=False, init_audio=True,
                                                 init_tts=True)
        except ImportError as e:
            raise ImportError(f"MiniCPM-o's remote code needs packages that are missing ({e}); install the ones it "
                              "names (its model card lists e.g. librosa, soundfile, vector-quantize-pytorch, vocos)")
        model = model.to(dev).eval()
        if hasattr(model, "init_tts"):
            model.init_tts()
        tok = tr.AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=True)
        return cls(model, tok, **kw)

    def sites(self, scope: str = "lm") -> list:
        """``llm.model.layers`` = LM side, ``tts.model.layers`` = speech-generation ("talker") side."""
        return split_sites(self.model, LM_STACK, TTS_STACK, scope)

    def _chat(self, msgs, generate_audio: bool):
        kw = dict(msgs=msgs, max_new_tokens=self.max_new_tokens, do_sample=False)
        if self.tokenizer is not None:
            kw["tokenizer"] = self.tokenizer
        if generate_audio:
            kw.update(use_tts_template=True, generate_audio=True)
        return self.model.chat(**kw)

    def evc(self, utts: Sequence[Utterance], targets: Sequence[str], *, capture: bool = False, intervention=None,
            scope: str = "lm", batch_size: int = 1):
        from tqdm.auto import tqdm

        from ..audio import resample

        check_targets(utts, targets, tuple(EMOTION_WORDS))
        if not self.has_talker:
            raise ValueError("EVC needs audio output: load MiniCPM-o with init_tts=True")
        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        for i in tqdm(range(len(utts)), desc=f"{self.name} EVC", leave=False):
            audio = load_audios([utts[i]])[0]
            out, stats = run_generate(self.model, {"msgs": evc_msgs(audio, targets[i]), "generate_audio": True},
                                      sites=sites, capture=capture, intervention=batch_rows(intervention, range(i, i + 1), len(utts)),
                                      fn=self._chat)
            text, wav = out if isinstance(out, tuple) else (out, None)
            wav16 = None if wav is None else resample(np.asarray(wav, np.float32).reshape(-1), OUTPUT_SAMPLE_RATE,
                                                      16000)
            gens.append(Generation(text=str(text).strip(), audio=wav16,
                                   extra={"target": targets[i], "utt_id": utts[i].id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens

    def ser(self, utts: Sequence[Utterance], *, capture: bool = False, intervention=None, scope: str = "lm",
            batch_size: int = 1):
        from ..judges.qwen3_omni import parse_emotion_answer

        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        for i, u in enumerate(utts):
            audio = load_audios([u])[0]
            out, stats = run_generate(self.model, {"msgs": ser_msgs(audio, self.labels), "generate_audio": False},
                                      sites=sites, capture=capture, intervention=batch_rows(intervention, range(i, i + 1), len(utts)),
                                      fn=self._chat)
            text = str(out[0] if isinstance(out, tuple) else out).strip()
            gens.append(Generation(text=text, label=parse_emotion_answer(text, self.labels), extra={"utt_id": u.id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens
