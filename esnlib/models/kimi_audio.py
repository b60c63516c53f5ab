"""Kimi-Audio-7B-Instruct (Moonshot AI) through its own package ``kimia_infer`` (not in transformers).

Runs in its own environment: ``make env MODEL=kimi-audio`` (transformers 4.49.0; see ``esnlib.models.envs``).

The call contract this adapter relies on, each fact with the file and commit it was read from:

- ``KimiAudio(model_path, load_detokenizer)`` holds ``alm`` (``AutoModelForCausalLM`` with remote code, bf16, moved
  to ``torch.cuda.current_device()``) and ``detokenizer`` (None unless ``load_detokenizer``)
  [MoonshotAI/Kimi-Audio kimia_infer/api/kimia.py @ 2607d515f5b7dffa1dcc7526f9f26feb48e356c4].
- ``KimiAudio.generate(chats, output_type="text"|"both", audio_temperature, text_temperature, ..., max_new_tokens)``
  returns ``(waveform or None, text)``; the waveform is a tensor at 24 kHz (infer.py writes it with
  ``sf.write(..., 24000)``); in "both" mode ``max_new_tokens`` is replaced by ``int(12.5 * 120) - prompt length``
  [kimia.py, infer.py @ 2607d515].
- Chat messages are ``{"role": "user"|"assistant", "message_type": "text"|"audio", "content": ...}``; audio content is
  a file *path* (the GLM-4 audio tokenizer and the Whisper features read it); other roles raise
  NotImplementedError [kimia_infer/api/prompt_manager.py @ 2607d515].
- Temperature 0 (the default) is argmax for both streams [kimia_infer/utils/sampler.py @ 2607d515]: greedy.
- ``KimiAudio._generate_loop`` runs one sample (batch 1) and calls ``self.alm.forward(input_ids=<audio stream>,
  text_input_ids=..., whisper_input_feature, is_continuous_mask, position_ids, past_key_values, return_dict=False)``
  once per step -- the forward method itself, not ``generate`` [kimia.py @ 2607d515].
- ``alm`` is ``MoonshotKimiaForCausalLM(Qwen2PreTrainedModel)``: no GenerationMixin of its own, so no ``generate``
  under transformers 5 (4.49 and 4.51 still give every PreTrainedModel one, which ``can_generate()`` disowns). Its ``model`` (``MoonshotKimiaModel``) runs the LM stack ``model.layers[i]`` (28 x 18,944)
  and then the audio stack ``model.mimo_layers[j]`` (6 layers, branching off the LM at
  ``kimia_mimo_transformer_from_layer_index``) in one forward; both use ``Qwen2MLP``, so LM-side sites are
  ``model.layers[i].mlp.act_fn`` and speech-side sites ``model.mimo_layers[j].mlp.act_fn``. Its attention calls
  ``apply_rotary_pos_emb(q, k, cos, sin, position_ids)`` (the 4.4x signature) [modeling_moonshot_kimia.py as ported
  in SolutionArichtect/Kimi-Audio-7B-Instruct-Ascend @ e62a3245a81f946c6eac8af9abaa0e3b2c29c319; the checkpoint's
  own file is on the hub, not on GitHub].

So capture and steering trace ``KimiAudio.generate`` (``fn=``) with ``alm.model`` as the module called once per
step on both sides; the loop stops on its own end token (never fed back), so with batch 1 every position it feeds
is counted. Tested here against ``tests/contract_models.py::TinyKimiAudio`` (that contract, tiny weights); not run
with the real package or weights (CUDA + flash-attn only).
"""
from __future__ import annotations

from typing import Sequence

from ..corpora.base import Utterance
from ..intervention import batch_rows
from ..prompts import EMOTION_WORDS, EVC_SYSTEM_PROMPT, evc_instruction, parse_emotion_answer, ser_prompt
from ._hf import check_targets, concat_stats, require, run_generate, split_sites
from .base import Generation, ModelAdapter

OUTPUT_SAMPLE_RATE = 24000
LM_STACK, AUDIO_STACK = "model.layers", "model.mimo_layers"
# Both stacks run inside alm.model's forward, which alm.forward calls once per decoding step.
STEP_MODULES = {"lm": "model", "talker": "model"}


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
    """Kimi-Audio via ``kimia_infer.api.kimia.KimiAudio``; greedy (temperature 0) text and audio streams, batch 1."""

    name = "kimi-audio-7b"
    has_talker = True

    def __init__(self, kimi, *, labels: Sequence[str] | None = None, max_new_tokens: int = -1):
        if not hasattr(kimi, "alm") or not callable(getattr(kimi, "generate", None)):
            raise TypeError(f"expected a kimia_infer KimiAudio (with .alm and .generate), got {type(kimi).__name__}")
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

        from .envs import check_environment

        check_environment(cls.name)
        kimia = require("kimia_infer.api.kimia", "Kimi-Audio",
                        "git+https://github.com/MoonshotAI/Kimi-Audio (or `make env MODEL=kimi-audio`; its "
                        "requirements include flash-attn)")
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

    def _run(self, chats, output_type, *, sites, capture, intervention):
        return run_generate(self.model, {"chats": chats, "output_type": output_type}, sites=sites, capture=capture,
                            intervention=intervention, fn=self._call, step_modules=STEP_MODULES)

    def evc(self, utts: Sequence[Utterance], targets: Sequence[str], *, capture: bool = False, intervention=None,
            scope: str = "lm", batch_size: int = 1):
        from ..progress import tqdm

        from ..audio import resample

        check_targets(utts, targets, tuple(EMOTION_WORDS))
        if getattr(self.kimi, "detokenizer", None) is None:
            raise ValueError("EVC needs audio output: load Kimi-Audio with load_detokenizer=True")
        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        for i in tqdm(range(len(utts)), desc=f"{self.name} EVC", leave=False):  # kimia_infer generates one at a time
            (wav, text), stats = self._run(evc_chats(utts[i].path, targets[i]), "both", sites=sites, capture=capture,
                                           intervention=batch_rows(intervention, range(i, i + 1), len(utts)))
            audio = None if wav is None else resample(wav.detach().float().cpu().numpy().reshape(-1),
                                                     OUTPUT_SAMPLE_RATE, 16000)
            gens.append(Generation(text=str(text).strip(), audio=audio,
                                   extra={"target": targets[i], "utt_id": utts[i].id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens

    def ser(self, utts: Sequence[Utterance], *, capture: bool = False, intervention=None, scope: str = "lm",
            batch_size: int = 1):
        sites = self.sites(scope) if (capture or intervention is not None) else None
        gens, parts = [], []
        for i in range(len(utts)):
            (_, text), stats = self._run(ser_chats(utts[i].path, self.labels), "text", sites=sites, capture=capture,
                                         intervention=batch_rows(intervention, range(i, i + 1), len(utts)))
            text = str(text).strip()
            gens.append(Generation(text=text, label=parse_emotion_answer(text, self.labels),
                                   extra={"utt_id": utts[i].id}))
            parts.append(stats)
        return (gens, concat_stats(parts)) if capture else gens


__all__ = ["KimiAudioAdapter", "evc_chats", "ser_chats", "kimi_sites"]
