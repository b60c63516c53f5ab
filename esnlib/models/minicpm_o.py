"""MiniCPM-o 4.5 (OpenBMB) through its remote code (``AutoModel.from_pretrained(..., trust_remote_code=True)``).

Runs in its own environment: ``make env MODEL=minicpm-o`` (transformers 4.51.0; see ``esnlib.models.envs``).

The call contract this adapter relies on, each fact with the file and commit it was read from
[MiniCPMO45/modeling_minicpmo.py in OpenBMB/minicpm-o-4_5-pytorch-simple-demo @
c7e16605c3ae9623a0caee5845bd0183b1d6d5b3, the checkpoint's remote code as OpenBMB ships it; README.md of
OpenBMB/MiniCPM-o @ 3ec4cb0e868b22d0b0dcfed5546edb50900bc878 for loading]:

- Structure: ``MiniCPMO.llm`` is a ``Qwen3ForCausalLM`` (``llm.model.layers[i].mlp`` gated, 36 x 12,288 for
  Qwen3-8B), ``apm`` a Whisper encoder and ``vpm`` a SigLIP encoder (no decoder gated MLPs), ``tts`` a ``MiniCPMTTS``
  whose backbone ``tts.model`` is a ``LlamaModel`` (``tts.model.layers[i].mlp`` gated: the speech side); token2wav is
  CosyVoice2 (``init_tts()`` loads it), outside the gated-MLP stacks.
- ``chat(msgs=..., do_sample=..., use_tts_template=..., generate_audio=..., output_audio_path=..., **kwargs)``
  returns the text only. It synthesizes speech only when ``use_tts_template and generate_audio and
  output_audio_path`` and writes it to that path at 24 kHz; any exception in the speech part is caught by a bare
  ``except`` and printed, so a failed synthesis leaves no file and raises nothing.
- An ``np.ndarray`` in a message's content is audio (and switches ``use_tts_template`` on); the first audio of the
  messages is the TTS voice prompt, so the source utterance's voice is cloned.
- ``prepare_generation_config`` defaults ``num_beams`` to 3: ``do_sample=False`` alone is a 3-beam search
  (repetition penalty 1.2). Greedy text needs ``num_beams=1`` too (then repetition penalty 1.02, deterministic).
- ``llm.generate(inputs_embeds=..., eos_token_id=terminators, ...)`` makes the text; then
  ``_generate_speech_non_streaming`` calls ``tts.generate``, whose loop calls ``self.model(...)`` (the LlamaModel)
  once per step -- never ``tts.forward`` -- and draws every code with ``torch.multinomial`` (temperature 0.8, top-p
  0.85, top-k 25 by default; the first code from the full softmax; no greedy branch). CosyVoice2's flow matching
  starts from noise too.
- The speech condition is sliced from ``<|tts_bos|>`` up to ``<|tts_eos|>``; a reply cut at ``max_new_tokens`` before
  ``<|tts_eos|>`` makes the slices of tokens and hidden states differ by one and the speech step fail (seen running
  the real remote code on a tiny config).

Hence: audio goes to a temporary file and is read back; text is greedy (``do_sample=False, num_beams=1``); the
speech side cannot be made greedy by any argument (sampling is hard-wired and the first code skips the warpers),
so it is **seeded**: ``torch.manual_seed(sample_seed(seed, utterance id, target))`` before every sample, which fixes
the codes and the vocoder noise per sample independently of batch, order and condition (a baseline and an
intervention on the same sample share their random draws). Capture and steering trace ``chat`` with ``llm`` as the
LM side's per-step module and ``tts.model`` as the speech side's.

Tested here against ``tests/contract_models.py::TinyMiniCPMO`` (that contract, tiny weights); not run with the real
remote code or weights.
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np

from ..corpora.base import Utterance
from ..intervention import batch_rows
from ..prompts import EMOTION_WORDS, EVC_SYSTEM_PROMPT, evc_instruction, parse_emotion_answer, ser_prompt
from ._hf import (check_targets, concat_stats, dtype_kwarg, load_audios, require, resolve_device, resolve_dtype,
                  run_generate, sample_seed, split_sites)
from .base import Generation, ModelAdapter

OUTPUT_SAMPLE_RATE = 24000
LM_STACK, TTS_STACK = "llm.model.layers", "tts.model.layers"
# llm.generate calls llm.forward once per step; the TTS loop calls tts.model (not tts.forward) once per step.
STEP_MODULES = {"lm": "llm", "talker": "tts.model"}


def evc_msgs(audio: np.ndarray, target: str) -> list[dict]:
    """MiniCPM-o chat messages for EVC: the fixed system prompt, then the source audio and the instruction."""
    return [{"role": "system", "content": [EVC_SYSTEM_PROMPT]},
            {"role": "user", "content": [np.asarray(audio, np.float32), evc_instruction(target)]}]


def ser_msgs(audio: np.ndarray, labels: Sequence[str]) -> list[dict]:
    """MiniCPM-o chat messages for SER: the audio and the multiple-choice question."""
    return [{"role": "user", "content": [np.asarray(audio, np.float32), ser_prompt(labels)]}]


class MiniCPMOAdapter(ModelAdapter):
    """MiniCPM-o 4.5 via its ``chat`` method: greedy text, seeded TTS (see the module docstring), batch 1."""

    name = "minicpm-o-4.5"
    has_talker = True

    def __init__(self, model, tokenizer=None, *, labels: Sequence[str] | None = None, max_new_tokens: int = 256,
                 seed: int = 0):
        if not hasattr(model, "chat") or not hasattr(model, "llm"):
            raise TypeError(f"expected a MiniCPM-o model with .llm and .chat(), got {type(model).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.seed = int(seed)
        self.has_talker = hasattr(model, "tts")
        if labels is not None:
            self.labels = tuple(labels)

    @classmethod
    def from_pretrained(cls, name_or_path: str = "openbmb/MiniCPM-o-4_5", *, device: str | None = None, dtype=None,
                        **kw) -> "MiniCPMOAdapter":
        """Load as MiniCPM-o's users do: AutoModel with trust_remote_code, audio + TTS initialised, no vision."""
        from .envs import check_environment

        check_environment(cls.name)
        tr = require("transformers", "MiniCPM-o")
        dev = resolve_device(device)
        try:
            model = tr.AutoModel.from_pretrained(name_or_path, trust_remote_code=True, attn_implementation="sdpa",
                                                 init_vision=False, init_audio=True, init_tts=True,
                                                 **dtype_kwarg(tr, resolve_dtype(dtype, dev)))
        except ImportError as e:
            raise ImportError(f"MiniCPM-o's remote code needs packages that are missing ({e}); `make env "
                              "MODEL=minicpm-o` installs them (minicpmo-utils[all], torchaudio)") from e
        model = model.to(dev).eval()
        model.init_tts()  # loads the CosyVoice2 token2wav that chat()'s speech path uses
        return cls(model, **kw)

    def sites(self, scope: str = "lm") -> list:
        """``llm.model.layers`` = LM side, ``tts.model.layers`` = speech-generation ("talker") side."""
        return split_sites(self.model, LM_STACK, TTS_STACK, scope)

    def _chat(self, msgs, generate_audio: bool, seed: int):
        """One ``chat`` call: greedy text; with ``generate_audio``, seeded speech written to a temporary wav that is
        read back. Returns ``(text, 16 kHz waveform or None)``."""
        import torch

        from ..audio import load_wav

        kw = dict(msgs=msgs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        torch.manual_seed(seed)
        if not generate_audio:
            return str(self.model.chat(**kw)), None
        with tempfile.TemporaryDirectory(prefix="esnlib-minicpmo-") as tmp:
            path = os.path.join(tmp, "speech.wav")
            text = self.model.chat(**kw, use_tts_template=True, generate_audio=True, output_audio_path=path)
            if not os.path.exists(path):
                raise RuntimeError("MiniCPM-o's chat() returned no speech: its speech step failed, and chat() "
                                   "catches that error and prints its traceback (see above) instead of raising. "
                                   "A reply cut at max_new_tokens before <|tts_eos|> fails this way (a size "
                                   f"mismatch); max_new_tokens is {self.max_new_tokens}")
            return str(text), load_wav(path, 16000)

    def _run(self, msgs, generate_audio, seed, *, sites, capture, intervention):
        return run_generate(self.model, {"msgs": msgs, "generate_audio": generate_audio, "seed": seed}, sites=sites,
                            capture=capture, intervention=intervention, fn=self._chat, step_modules=STEP_MODULES)

    def evc(self, utts: Sequence[Utterance], targets: Sequence[str], *, capture: bool = False, intervention=None,
            scope: str = "lm", batch_size: int = 1):
        from ..progress import tqdm

        check_targets(utts, targets, tuple(EMOTION_WORDS))
        if not self.has_talker:
            raise ValueError("EVC needs audio output: load MiniCPM-o with init_tts=True")
        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        for i in tqdm(range(len(utts)), desc=f"{self.name} EVC", leave=False):
            (text, wav16), stats = self._run(evc_msgs(load_audios([utts[i]])[0], targets[i]), True,
                                             sample_seed(self.seed, utts[i].id, targets[i]), sites=sites,
                                             capture=capture,
                                             intervention=batch_rows(intervention, range(i, i + 1), len(utts)))
            gens.append(Generation(text=text.strip(), audio=wav16, extra={"target": targets[i], "utt_id": utts[i].id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens

    def ser(self, utts: Sequence[Utterance], *, capture: bool = False, intervention=None, scope: str = "lm",
            batch_size: int = 1):
        if scope != "lm":
            raise ValueError("SER makes text only (MiniCPM-o's TTS does not run): use scope='lm'")
        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        for i, u in enumerate(utts):
            (text, _), stats = self._run(ser_msgs(load_audios([u])[0], self.labels), False,
                                         sample_seed(self.seed, u.id), sites=sites, capture=capture,
                                         intervention=batch_rows(intervention, range(i, i + 1), len(utts)))
            text = text.strip()
            gens.append(Generation(text=text, label=parse_emotion_answer(text, self.labels), extra={"utt_id": u.id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens

    def describe(self) -> dict:
        return {"model": self.name, "tts": f"seeded sampling (seed {self.seed})"}
