"""Qwen2.5-Omni-7B: EVC with audio output (thinker text + talker -> token2wav waveform) and SER as text.

Sites: LM side ``thinker.model.language_model.layers[i].mlp.act_fn`` (28 x 18,944 at 7B), talker side
``talker.model.layers[i].mlp.act_fn`` (24 x 4,864 in the released config; not loadable here). The vision blocks'
gated MLPs are not ESN sites; token2wav has none. Inputs are built either by ``Qwen2_5OmniProcessor`` (real users) or directly from a tokenizer and a
``WhisperFeatureExtractor`` (the offline path the tiny tests run); both give the same tensors: a ChatML prompt with
``<|audio_bos|>`` + one ``<|AUDIO|>`` per audio-encoder output frame + ``<|audio_eos|>``, left-padded.

Prompts: the system turn is exactly the persona sentence the model card requires for audio output (QwenLM/Qwen2.5-Omni
README.md @ f8bf58c6, "Prompt for audio output": "the system prompt must be set as ..., otherwise the audio output
may not work as expected"); the paper's fixed EVC instruction therefore opens the user turn, after the audio and
before the sentence naming the target. SER uses the same persona.

Decoding: greedy thinker and talker. Finished rows: the thinker's EOS ids are passed explicitly
(``thinker_eos_token_id``: the checkpoint's ``thinker.generation_config.eos_token_id``, else the tokenizer's
``<|im_end|>``), so generation stops there and capture stops counting a row there even when the checkpoint's
generation config has none. token2wav starts its diffusion from ``torch.randn`` noise (transformers 5.23
``Qwen2_5OmniToken2WavDiTModel.sample``) and runs once per sample; the adapter seeds it per sample with
``sample_seed(seed, utterance id, target)``, so a waveform does not depend on the batch it is in, its order or
the condition. On a GPU, bf16 and batch composition (padding changes the kernels' reduction order) can still change
outputs slightly; compare conditions within one run, as the sweeps do.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from ..corpora.base import Utterance
from ..intervention import batch_rows
# the prompt texts live in esnlib/prompts.py; EVC_* and QWEN_OMNI_PERSONA are re-exported from here
from ..prompts import (EMOTION_WORDS, EVC_SYSTEM_PROMPT, EVC_USER_PROMPT, QWEN_OMNI_PERSONA,  # noqa: F401
                       evc_instruction, evc_user_text, parse_emotion_answer, ser_prompt)
from ._hf import (batches, check_targets, concat_stats, from_pretrained, load_audios, require, resolve_device,
                  resolve_dtype, run_generate, sample_seed)
from .base import Generation, ModelAdapter

AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
OUTPUT_SAMPLE_RATE = 24000  # token2wav (BigVGAN) output rate
MAX_AUDIO_SECONDS = 30.0    # the Whisper feature extractor's window


def chatml(system: str, user_text: str, n_audio_tokens: int | None) -> str:
    """One ChatML prompt: system turn, user turn with the audio block then the text, open assistant turn.

    ``n_audio_tokens=None`` leaves a single ``<|AUDIO|>`` placeholder for the processor to expand.
    """
    audio = AUDIO_TOKEN * (1 if n_audio_tokens is None else n_audio_tokens)
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{AUDIO_BOS}{audio}{AUDIO_EOS}"
            f"{user_text}<|im_end|>\n<|im_start|>assistant\n")


def audio_token_count(n_frames: int) -> int:
    """Audio-encoder output length for ``n_frames`` valid mel frames (two stride-2 stages)."""
    return ((n_frames - 1) // 2 + 1 - 2) // 2 + 1


class QwenOmniAdapter(ModelAdapter):
    """Qwen2.5-Omni through the ModelAdapter interface (greedy decoding, left-padded batches)."""

    name = "qwen2.5-omni-7b"
    has_talker = True

    def __init__(self, model, *, tokenizer=None, feature_extractor=None, processor=None, speaker: str = "Chelsie",
                 max_new_tokens: int = 256, talker_max_new_tokens: int = 4096, talker_do_sample: bool = False,
                 token2wav_kwargs: dict | None = None, labels: Sequence[str] | None = None, name: str | None = None,
                 seed: int = 0):
        if processor is None and (tokenizer is None or feature_extractor is None):
            raise ValueError("QwenOmniAdapter needs either processor=Qwen2_5OmniProcessor or both tokenizer= and "
                             "feature_extractor= (WhisperFeatureExtractor) for the direct input path")
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else processor.tokenizer
        self.feature_extractor = feature_extractor if feature_extractor is not None else processor.feature_extractor
        self.tokenizer.padding_side = "left"
        for tok in (AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS, "<|im_start|>", "<|im_end|>"):
            if self.tokenizer.convert_tokens_to_ids(tok) in (None, self.tokenizer.unk_token_id):
                raise ValueError(f"the tokenizer has no special token {tok}: use the Qwen2.5-Omni tokenizer")
        self.has_talker = bool(getattr(model, "has_talker", False))
        if self.has_talker and speaker not in getattr(model, "speaker_map", {}):
            raise ValueError(f"speaker {speaker!r} is not in the model's speaker_map "
                             f"{sorted(getattr(model, 'speaker_map', {}))} (from spk_dict.pt)")
        self.speaker = speaker
        self.max_new_tokens = max_new_tokens
        self.talker_max_new_tokens = talker_max_new_tokens
        self.talker_do_sample = talker_do_sample
        self.token2wav_kwargs = dict(token2wav_kwargs or {})
        self.seed = int(seed)
        self.thinker_eos = self._thinker_eos()
        if labels is not None:
            self.labels = tuple(labels)
        if name is not None:
            self.name = name

    @classmethod
    def from_pretrained(cls, name_or_path: str = "Qwen/Qwen2.5-Omni-7B", *, device: str | None = None, dtype=None,
                        attn_implementation: str | None = None, **kw) -> "QwenOmniAdapter":
        """Load weights, speakers (spk_dict.pt) and the processor; bf16 on GPU. Honours HF_HOME / HF_HUB_OFFLINE."""
        tr = require("transformers", "Qwen2.5-Omni")
        dev = resolve_device(device)
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = from_pretrained(tr.Qwen2_5OmniForConditionalGeneration, name_or_path, device=dev,
                                dtype=resolve_dtype(dtype, dev), **extra)
        return cls(model, **input_builders(name_or_path), **kw)

    def _thinker_eos(self) -> list[int]:
        """The thinker's EOS ids: its generation config's, else the tokenizer's EOS and ``<|im_end|>``."""
        cfg = getattr(getattr(self.model, "thinker", None), "generation_config", None)
        eos = getattr(cfg, "eos_token_id", None)
        if eos is not None:
            return [int(e) for e in ([eos] if isinstance(eos, int) else eos)]
        ids = [self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")]
        ids = sorted({int(i) for i in ids if i is not None and i != self.tokenizer.unk_token_id})
        if not ids:
            raise ValueError("no EOS id for the thinker: neither its generation_config nor the tokenizer has one")
        return ids

    @contextmanager
    def _seeded_token2wav(self, seeds: Sequence[int]):
        """Seed the global RNG before each token2wav call (one per sample, in batch order) with that sample's seed."""
        import torch

        todo = iter(seeds)

        def seed_next(module, args):
            s = next(todo, None)
            if s is not None:
                torch.manual_seed(s)

        handle = self.model.token2wav.register_forward_pre_hook(seed_next)
        try:
            yield
        finally:
            handle.remove()

    # -- sites ---------------------------------------------------------------------------------------------------
    def sites(self, scope: str = "lm") -> list:
        import esnlib

        if scope in ("talker", "both") and not self.has_talker:
            raise ValueError("this Qwen2.5-Omni model was loaded without its talker (enable_audio_output=False); "
                             "talker sites need model.enable_talker() or scope='lm'")
        return esnlib.find_sites(self.model, scope)

    # -- inputs --------------------------------------------------------------------------------------------------
    def build_inputs(self, audios: Sequence[np.ndarray], texts: Sequence[str], system: str) -> dict:
        """Left-padded model inputs for a batch of (16 kHz audio, user text) pairs under one system prompt."""
        import torch

        max_len = int(MAX_AUDIO_SECONDS * 16000)
        clips = []
        for a in audios:
            a = np.asarray(a, dtype=np.float32)
            if a.ndim != 1 or a.size == 0:
                raise ValueError(f"audio must be a non-empty 1-D float array at 16 kHz, got shape {a.shape}")
            if a.size > max_len:
                warnings.warn(f"audio of {a.size / 16000:.1f} s cut to {MAX_AUDIO_SECONDS:.0f} s (encoder window)")
                a = a[:max_len]
            clips.append(a)
        if self.processor is not None:
            prompts = [chatml(system, t, None) for t in texts]
            # Pad the text (left) only: the audio keeps the feature extractor's own (30 s) padding.
            inputs = self.processor(text=prompts, audio=clips, sampling_rate=16000, return_tensors="pt",
                                    text_kwargs={"padding": True, "padding_side": "left"})
        else:
            feats = self.feature_extractor(clips, sampling_rate=16000, return_attention_mask=True,
                                           padding="max_length", return_tensors="pt")
            frames = feats["attention_mask"].sum(-1).tolist()
            prompts = [chatml(system, t, audio_token_count(int(f))) for t, f in zip(texts, frames)]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                      "input_features": feats["input_features"], "feature_attention_mask": feats["attention_mask"]}
        dev = next(self.model.parameters()).device
        dtype = next(self.model.thinker.parameters()).dtype
        out = {}
        for k, v in dict(inputs).items():
            if isinstance(v, torch.Tensor):
                v = v.to(dev)
                if v.is_floating_point():
                    v = v.to(dtype)
            out[k] = v
        return out

    def _decode(self, seq, prompt_len: int) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(seq[:, prompt_len:], skip_special_tokens=True)]

    # -- tasks ---------------------------------------------------------------------------------------------------
    def evc(self, utts: Sequence[Utterance], targets: Sequence[str], *, capture: bool = False, intervention=None,
            scope: str = "lm", batch_size: int = 8):
        """EVC: source audio + the fixed system prompt + the instruction naming each target; text and 16 kHz audio."""
        from ..audio import resample

        check_targets(utts, targets, tuple(EMOTION_WORDS))
        if not self.has_talker:
            raise ValueError("EVC needs audio output: load Qwen2.5-Omni with its talker (enable_audio_output=True)")
        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        from ..progress import tqdm

        for idx in tqdm(list(batches(len(utts), batch_size)), desc=f"{self.name} EVC", leave=False):
            inputs = self.build_inputs(load_audios([utts[i] for i in idx]), [evc_user_text(targets[i]) for i in idx],
                                       QWEN_OMNI_PERSONA)
            kw = dict(speaker=self.speaker, thinker_max_new_tokens=self.max_new_tokens, thinker_do_sample=False,
                      thinker_eos_token_id=self.thinker_eos, talker_max_new_tokens=self.talker_max_new_tokens,
                      talker_do_sample=self.talker_do_sample,
                      **{f"token2wav_{k}": v for k, v in self.token2wav_kwargs.items()})
            with self._seeded_token2wav([sample_seed(self.seed, utts[i].id, targets[i]) for i in idx]):
                out, stats = run_generate(self.model, inputs, sites=sites, capture=capture,
                                          intervention=batch_rows(intervention, idx, len(utts)), **kw)
            seq, wavs = out
            if not isinstance(wavs, (list, tuple)):
                wavs = [wavs]
            texts = self._decode(seq, inputs["input_ids"].shape[1])
            for j, i in enumerate(idx):
                wav = wavs[j].detach().float().cpu().numpy().reshape(-1)
                gens.append(Generation(text=texts[j], audio=resample(wav, OUTPUT_SAMPLE_RATE, 16000),
                                       extra={"target": targets[i], "utt_id": utts[i].id, "speaker": self.speaker}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens

    def ser(self, utts: Sequence[Utterance], *, capture: bool = False, intervention=None, scope: str = "lm",
            batch_size: int = 8):
        """SER as text: n-way multiple choice over ``self.labels``; the answer is parsed into ``Generation.label``."""
        from ..progress import tqdm

        if scope != "lm":
            raise ValueError("SER runs the thinker only (generation_mode='text'): use scope='lm'")
        sites = self.sites(scope) if (capture or intervention is not None) else None
        prompt = ser_prompt(self.labels)
        gens, parts = [], []
        for idx in tqdm(list(batches(len(utts), batch_size)), desc=f"{self.name} SER", leave=False):
            inputs = self.build_inputs(load_audios([utts[i] for i in idx]), [prompt] * len(idx), QWEN_OMNI_PERSONA)
            out, stats = run_generate(self.model, inputs, sites=sites, capture=capture,
                                      intervention=batch_rows(intervention, idx, len(utts)), generation_mode="text",
                                      thinker_max_new_tokens=self.max_new_tokens, thinker_do_sample=False,
                                      thinker_eos_token_id=self.thinker_eos)
            seq = getattr(out, "sequences", out)
            for j, text in enumerate(self._decode(seq, inputs["input_ids"].shape[1])):
                gens.append(Generation(text=text, label=parse_emotion_answer(text, self.labels),
                                       extra={"utt_id": utts[idx[j]].id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens

    def describe(self) -> dict:
        cfg = getattr(self.model, "config", None)
        return {"model": self.name, "speaker": self.speaker, "dtype": str(next(self.model.parameters()).dtype),
                "revision": getattr(cfg, "_commit_hash", None) or "", "talker_do_sample": self.talker_do_sample,
                "token2wav_seed": self.seed}


def input_builders(name_or_path: str) -> dict:
    """The adapter's input-building keyword arguments for a checkpoint: ``processor=Qwen2_5OmniProcessor`` when it
    loads, else ``tokenizer=`` and ``feature_extractor=`` (the processor's video processor needs torchvision: without
    it transformers raises ImportError; a checkpoint without processor files raises OSError or ValueError)."""
    tr = require("transformers", "Qwen2.5-Omni")
    try:
        return {"processor": tr.Qwen2_5OmniProcessor.from_pretrained(name_or_path)}
    except (ImportError, OSError, ValueError) as e:
        warnings.warn(f"Qwen2_5OmniProcessor unavailable ({str(e).strip()[:200]}); building inputs from the "
                      "tokenizer and WhisperFeatureExtractor directly (same tensors)")
        return {"tokenizer": tr.AutoTokenizer.from_pretrained(name_or_path),
                "feature_extractor": tr.WhisperFeatureExtractor.from_pretrained(name_or_path)}
