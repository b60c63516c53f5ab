"""Kimi-Audio-7B-Instruct (Moonshot AI) through its own package ``kimia_infer`` (not in transformers).

Structure (facts from the checkpoint's ``modeling_moonshot_kimia.py`` and ``kimia_infer/api/kimia.py``):
``KimiAudio(model_path).alm`` is ``MoonshotKimiaForCausalLM`` (trust_remote_code, Qwen2.5-7B based). Its
``model.layers[i]`` (28 x 18,944) are the shared LM decoder whose last hidden state gives the *text* stream; from
layer ``kimia_mimo_transformer_from_layer_index`` a second stack ``model.mimo_layers[j]`` (6 layers, "extra 1B audio
transformers") produces the *audio-token* stream. Both use ``Qwen2MLP`` (gate_proj, up_proj, down_proj, act_fn), so
LM-side sites are ``model.layers[i].mlp.act_fn`` and speech-generation-side sites ``model.mimo_layers[j].mlp.act_fn``.
The audio detokenizer (flow-matching + BigVGAN vocoder, ``KimiAudio.detokenizer``) is outside ``alm`` and has no
gated MLP sites. Generation is ``KimiAudio.generate(chats, output_type="both")`` -> (24 kHz waveform, text), batch 1,
CUDA only (the remote code needs flash-attn), one ``alm.forward`` per step.

Not testable offline here: loading, generation, capture/steer. Tested: chat building, site discovery on a module
tree of transformers ``Qwen2DecoderLayer`` stacks laid out like ``alm``, and the missing-package error.
"""
from __future__ import annotations

from typing import Sequence

from ..corpora.base import Utterance
from ..intervention import batch_rows
from ._hf import check_targets, concat_stats, require, run_generate, ser_prompt, split_sites
from .base import Generation, ModelAdapter
from .qwen_omni import EMOTION_WORDS, EVC_SYSTEM_PROMPT, evc_instruction

OUTPUT_SAMPLE_RATE = 24000
LM_STACK, AUDIO_STACK = "model.layers", "model.mimo_layers"


def evc_chats(audio_path: str, target: str) -> list[dict]:
    """Kimi-Audio chat for EVC. Its prompt manager knows only user/assistant roles, so the fixed system prompt is
    the first user text message, followed by the source audio and the instruction naming the target."""
    return [{"role": "user", "message_type": "text", "content": EVC_SYSTEM_PROMPT},
            {"role": "user", "message_type": "audio", "content": audio_path},
            {"role": "user", "message_type": "text", "content": evc_instruction(target)}]


def ser_chats(audio_path: str, labels: Sequence[str]) -> list[dict]:
    """Kimi-Audio chat for SER: the multiple-choice question, then the audio."""
    return [{"role": "user", "message_type": "text", "content": ser_prompt(labels)},
            {"role": "user", "message_type": "audio", "content": audio_path}]


def kimi_sites(alm, scope: str = "lm") -> list:
    """Sites of ``alm``: ``model.layers`` = LM side, ``model.mimo_layers`` = speech-generation ("talker") side."""
    return split_sites(alm, LM_STACK, AUDIO_STACK, scope)


class KimiAudioAdapter(ModelAdapter):
    """Kimi-Audio via ``kimia_infer.api.kimia.KimiAudio``; greedy (temperature 0) text and audio sampling."""

    name = "kimi-audio-7b"
    has_talker = True

    def __init__(self, kimi, *, labels: Sequence[str] | None = None, max_new_tokens: int = -1):
        self.kimi = kimi
        self.model = kimi.alm
        self.max_new_tokens = max_new_tokens
        if labels is not None:
            self.labels = tuple(labels)

    @classmethod
    def from_pretrained(cls, name_or_path: str = "moonshotai/Kimi-Audio-7B-Instruct", *, device: str | None = None,
                        dtype=None, load_detokenizer: bool = True, **kw) -> "KimiAudioAdapter":
        """Load the way Kimi-Audio's users do: ``KimiAudio(model_path, load_detokenizer)`` (bf16 on the current GPU)."""
        import torch

        kimia = require("kimia_infer.api.kimia", "Kimi-Audio",
                        "git+https://github.com/MoonshotAI/Kimi-Audio (its requirements include flash-attn)")
        if not torch.cuda.is_available():
            raise RuntimeError("Kimi-Audio's inference code runs on CUDA only (torch.cuda.current_device()); "
                               "no GPU is visible")
        if device not in (None, "cuda") or dtype not in (None, "bfloat16", torch.bfloat16):
            raise ValueError("Kimi-Audio loads in bf16 on the current CUDA device; set CUDA_VISIBLE_DEVICES to pick one")
        return cls(kimia.KimiAudio(model_path=name_or_path, load_detokenizer=load_detokenizer), **kw)

    def sites(self, scope: str = "lm") -> list:
        return kimi_sites(self.model, scope)

    def _call(self, chats, output_type):
        return self.kimi.generate(chats, output_type=output_type, audio_temperature=0.0, text_temperature=0.0,
                                  max_new_tokens=self.max_new_tokens)

    def evc(self, utts: Sequence[Utterance], targets: Sequence[str], *, capture: bool = False, intervention=None,
            scope: str = "lm", batch_size: int = 1):
        from ..audio import resample

        check_targets(utts, targets, tuple(EMOTION_WORDS))
        if getattr(self.kimi, "detokenizer", None) is None:
            raise ValueError("EVC needs audio output: load Kimi-Audio with load_detokenizer=True")
        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        from tqdm.auto import tqdm

        for i in tqdm(range(len(utts)), desc=f"{self.name} EVC", leave=False):  # kimia_infer generates one at a time
            inputs = {"chats": evc_chats(utts[i].path, targets[i]), "output_type": "both"}
            (wav, text), stats = run_generate(self.model, inputs, sites=sites, capture=capture,
                                              intervention=batch_rows(intervention, range(i, i + 1), len(utts)),
                                              fn=self._call)
            audio = None if wav is None else resample(wav.detach().float().cpu().numpy().reshape(-1),
                                                     OUTPUT_SAMPLE_RATE, 16000)
            gens.append(Generation(text=str(text).strip(), audio=audio,
                                   extra={"target": targets[i], "utt_id": utts[i].id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens

    def ser(self, utts: Sequence[Utterance], *, capture: bool = False, intervention=None, scope: str = "lm",
            batch_size: int = 1):
        from ..judges.qwen3_omni import parse_emotion_answer

        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        for i in range(len(utts)):
            inputs = {"chats": ser_chats(utts[i].path, self.labels), "output_type": "text"}
            (_, text), stats = run_generate(self.model, inputs, sites=sites, capture=capture,
                                            intervention=batch_rows(intervention, range(i, i + 1), len(utts)),
                                              fn=self._call)
            text = str(text).strip()
            gens.append(Generation(text=text, label=parse_emotion_answer(text, self.labels),
                                   extra={"utt_id": utts[i].id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens


__all__ = ["KimiAudioAdapter", "evc_chats", "ser_chats", "kimi_sites"]
