"""The demo LALM: a small, trained, speech-generative audio-language model shaped like Qwen2.5-Omni.

``DemoOmni`` has an audio encoder (log-mel + log-F0 + voicing + energy -> convs, x8 downsampling), a *thinker* (a tiny
``Qwen2ForCausalLM`` whose gated MLPs are the LM-side ESN sites, ``thinker.model.layers.i.mlp.act_fn``) and a
*talker* (a tinier ``Qwen2ForCausalLM``, ``talker.model.layers.i.mlp.act_fn``) that reads a projection of the
thinker's last hidden states and emits 5 speech tokens (quantized prosody, one per ``tts.FIELDS``) then eos.
``generate`` runs thinker.generate then talker.generate in one call, as Qwen2.5-Omni does. The renderer
(:func:`render`, like token2wav, no gated MLP) turns text + speech tokens into a waveform with espeak-ng.

Fixed prompts (as in the papers):
SER ``<bos> <ser> <audio_bos> [audio] <audio_eos>`` -> one label token, eos.
EVC ``<bos> <evc> <emo:target> <audio_bos> [neutral source audio] <audio_eos> <text> words </text>`` -> the
sentence's words, one style token (the thinker's prosody plan), eos; then the talker emits the target prosody tokens.
The committed model reads the transcript from the prompt (``DemoConfig.transcript_in_prompt``; docs/demo_world.md
says why); with it off, the prompt ends at ``<audio_eos>`` and the thinker must transcribe the audio.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import tts
from ..corpora.base import Utterance
from ..corpora.sentences import CORPUS_VOICES, VOCAB
from ..intervention import batch_rows
from .base import Generation, ModelAdapter

EMOTIONS = ("neutral", "angry", "happy", "sad", "surprise")
SAMPLE_RATE = 16000
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo_lalm"
#: voice used by the renderer for a speaker that is not a demo-corpus speaker (Qwen's default-speaker analogue)
DEFAULT_VOICE = "en-us"

# ----------------------------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------------------------
SPECIALS = (
    "<pad>", "<bos>", "<eos>", "<audio_bos>", "<audio_eos>", "<audio>", "<ser>", "<evc>",
    *(f"<emo:{e}>" for e in EMOTIONS),
    *(f"<label:{e}>" for e in EMOTIONS),
    "<text>", "</text>",
    *(f"<style:{e}:{lvl}>" for e in EMOTIONS for lvl in ("mild", "full")),
)
#: EVC answers end with one style token, the thinker's prosody plan (target emotion x expression level); the talker
#: reads it through the thinker's states. Decoded text drops it (a special token); Generation.extra["style"] keeps it.
STYLE_LEVELS = ("mild", "full")


class DemoTokenizer:
    """Word-level tokenizer of the thinker: specials + the demo world's word VOCAB."""

    def __init__(self):
        self.tokens = list(SPECIALS) + list(VOCAB)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.pad_token_id, self.bos_token_id, self.eos_token_id = 0, 1, 2
        self.audio_bos_id, self.audio_eos_id, self.audio_id = 3, 4, 5
        self.ser_id, self.evc_id = 6, 7
        self.label_ids = {e: self.ids[f"<label:{e}>"] for e in EMOTIONS}
        self.emo_ids = {e: self.ids[f"<emo:{e}>"] for e in EMOTIONS}
        self.text_id, self.text_end_id = self.ids["<text>"], self.ids["</text>"]
        self.style_ids = {(e, lvl): self.ids[f"<style:{e}:{lvl}>"] for e in EMOTIONS for lvl in STYLE_LEVELS}
        self._style_of = {v: k for k, v in self.style_ids.items()}
        self._label_of = {v: k for k, v in self.label_ids.items()}

    def parse_style(self, ids) -> tuple[str, str] | None:
        """The (emotion, level) of the style token of an EVC answer, or None if it has none."""
        for i in (int(x) for x in ids):
            if i == self.eos_token_id:
                break
            if i in self._style_of:
                return self._style_of[i]
        return None

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Word ids of ``text``; words outside the demo vocabulary are an error (the demo world is closed)."""
        out = []
        for w in text.lower().split():
            if w not in self.ids or w in SPECIALS:
                raise ValueError(f"word {w!r} is not in the demo vocabulary (esnlib.corpora.sentences.VOCAB)")
            out.append(self.ids[w])
        return out

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; stops at the first eos. Specials are dropped when ``skip_special_tokens``."""
        words = []
        for i in (int(x) for x in ids):
            if i == self.eos_token_id:
                break
            if 0 <= i < len(self.tokens) and (i >= len(SPECIALS) or not skip_special_tokens):
                words.append(self.tokens[i])
        return " ".join(words)

    def parse_label(self, ids) -> str | None:
        """SER answer -> emotion label: the first generated token must be a label token, else None."""
        ids = [int(x) for x in ids]
        return self._label_of.get(ids[0]) if ids else None


#: talker vocabulary: pad, bos, eos, then one contiguous token range per prosody field (tts.FIELDS order)
TALKER_SPECIALS = 3
FIELD_OFFSETS: dict[str, int] = {}
_o = TALKER_SPECIALS
for _f in tts.FIELDS:
    FIELD_OFFSETS[_f] = _o
    _o += len(tts.GRID[_f])
TALKER_VOCAB = _o
N_SPEECH = len(tts.FIELDS)


def speech_to_talker_ids(bins: Sequence[int]) -> list[int]:
    """Prosody bins (``tts.prosody_to_tokens``) -> talker token ids."""
    return [FIELD_OFFSETS[f] + int(b) for f, b in zip(tts.FIELDS, bins)]


def talker_ids_to_speech(ids: Sequence[int]) -> list[int]:
    """Talker token ids -> prosody bins, one per field (a token outside its field's range is clipped into it)."""
    return [int(np.clip(int(i) - FIELD_OFFSETS[f], 0, len(tts.GRID[f]) - 1)) for f, i in zip(tts.FIELDS, ids)]


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
    mel = librosa.feature.melspectrogram(
        y=wav, sr=SAMPLE_RATE, n_fft=WIN, hop_length=HOP, win_length=WIN, n_mels=N_MELS, fmin=50, fmax=8000
    )
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


def n_audio_tokens(n_frames: int) -> int:
    """Audio placeholder tokens for ``n_frames`` feature frames (three stride-2 convs, kernel 5, padding 2: x8)."""
    n = n_frames
    for _ in range(3):
        n = (n - 1) // 2 + 1
    return n


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class DemoConfig:
    """Sizes of the demo LALM (defaults are the committed model's)."""

    thinker_hidden: int = 64
    thinker_layers: int = 4
    thinker_heads: int = 4
    thinker_intermediate: int = 256
    talker_hidden: int = 32
    talker_layers: int = 2
    talker_heads: int = 2
    talker_intermediate: int = 128
    encoder_channels: int = 64
    #: EVC prompt also carries the source transcript (``<text> words </text>`` after the audio); see docs/demo_world.md
    transcript_in_prompt: bool = True
    #: the talker also reads the thinker's input token embeddings (as Qwen2.5-Omni's talker does), not only its states
    talker_reads_embeddings: bool = False
    max_positions: int = 1024
    extra: dict = field(default_factory=dict)

    @classmethod
    def tiny(cls) -> "DemoConfig":
        """A very small config for fast tests."""
        return cls(thinker_hidden=32, thinker_layers=2, thinker_heads=2, thinker_intermediate=64, talker_hidden=16,
                   talker_layers=1, talker_heads=2, talker_intermediate=32, encoder_channels=16,
                   talker_reads_embeddings=True)


def _qwen2(vocab: int, hidden: int, layers: int, heads: int, inter: int, max_pos: int, tok: tuple[int, int, int]):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    pad, bos, eos = tok
    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_pos,
        hidden_act="silu", tie_word_embeddings=True, pad_token_id=pad, bos_token_id=bos, eos_token_id=eos,
        use_sliding_window=False, attention_dropout=0.0,
    )
    return Qwen2ForCausalLM(cfg)


class AudioEncoder(nn.Module):
    """Frame features (B, T, 43) at 100/s -> audio embeddings (B, ~T/8, hidden) at 12.5/s (three stride-2 convs).
    Frames past each clip's length are zeroed before every conv, so a clip's embeddings do not depend on how much
    padding its batch has."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv1d(N_FEATURES if i == 0 else channels, channels, kernel_size=5, stride=2, padding=2)
            for i in range(3)
        ])
        self.proj = nn.Linear(channels, hidden)
        self.act = nn.GELU()

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, n = feats.transpose(1, 2), lengths
        for conv in self.convs:
            keep = torch.arange(x.shape[-1], device=x.device)[None, :] < n[:, None]
            x = self.act(conv(x * keep.unsqueeze(1).to(x.dtype)))
            n = (n - 1) // 2 + 1
        return self.proj(x.transpose(1, 2)), n


class _TalkerFieldProcessor:
    """Talker step k may only emit field k's token range; after the 5 fields only eos. (Grammar, not emotion.)"""

    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        k = input_ids.shape[1] - self.prompt_len
        allowed = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        if k < N_SPEECH:
            f = tts.FIELDS[k]
            allowed[FIELD_OFFSETS[f]: FIELD_OFFSETS[f] + len(tts.GRID[f])] = True
        else:
            allowed[2] = True
        return scores.masked_fill(~allowed, float("-inf"))


@dataclass
class DemoOutput:
    """What ``DemoOmni.generate`` returns: text ids (generated part only), talker speech tokens (B, 5) as prosody bins
    (or None for text-only calls), and the thinker's raw HF generate output."""

    sequences: torch.Tensor
    speech_tokens: torch.Tensor | None = None
    thinker_output: object = None


class DemoOmni(nn.Module):
    """Audio encoder + thinker (Qwen2) + talker (Qwen2) — the Qwen2.5-Omni layout at toy scale."""

    def __init__(self, config: DemoConfig | None = None):
        super().__init__()
        self.config = config or DemoConfig()
        c = self.config
        self.tokenizer = DemoTokenizer()
        tk = self.tokenizer
        self.audio_encoder = AudioEncoder(c.encoder_channels, c.thinker_hidden)
        self.thinker = _qwen2(len(tk), c.thinker_hidden, c.thinker_layers, c.thinker_heads, c.thinker_intermediate,
                              c.max_positions, (tk.pad_token_id, tk.bos_token_id, tk.eos_token_id))
        self.talker_proj = nn.Linear(c.thinker_hidden, c.talker_hidden)
        if c.talker_reads_embeddings:
            self.talker_embed_proj = nn.Linear(c.thinker_hidden, c.talker_hidden, bias=False)
        self.talker = _qwen2(TALKER_VOCAB, c.talker_hidden, c.talker_layers, c.talker_heads, c.talker_intermediate,
                             c.max_positions, (0, 1, 2))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- inputs -----------------------------------------------------------------------------------------------
    def embed_inputs(self, input_ids, input_features=None, feature_attention_mask=None) -> torch.Tensor:
        """Token embeddings with the audio embeddings written at the ``<audio>`` placeholder positions."""
        emb = self.thinker.get_input_embeddings()(input_ids)
        is_audio = input_ids == self.tokenizer.audio_id
        if input_features is None:
            if bool(is_audio.any()):
                raise ValueError("input_ids hold <audio> placeholders but no input_features were given")
            return emb
        lengths = feature_attention_mask.sum(-1).long()
        a, n = self.audio_encoder(input_features.to(emb.dtype), lengths)
        keep = torch.arange(a.shape[1], device=a.device)[None, :] < n[:, None]
        audio = a[keep]
        if audio.shape[0] != int(is_audio.sum()):
            raise ValueError(
                f"{int(is_audio.sum())} <audio> placeholders but the features give {audio.shape[0]} audio tokens; "
                "build inputs with DemoOmni.prepare_inputs / n_audio_tokens"
            )
        return emb.masked_scatter(is_audio.unsqueeze(-1), audio.to(emb.dtype))

    def prepare_inputs(self, features: Sequence[np.ndarray], task: str, targets: Sequence[str] | None = None,
                       texts: Sequence[str] | None = None) -> dict:
        """Left-padded thinker prompts for a batch of feature arrays (see :func:`extract_features`).

        task "ser" or "evc"; ``targets`` (EVC only) one emotion per clip; ``texts`` (EVC, when
        ``config.transcript_in_prompt``) the source transcripts.
        """
        tk = self.tokenizer
        if task not in ("ser", "evc"):
            raise ValueError(f"unknown task {task!r}; expected 'ser' or 'evc'")
        if task == "evc":
            if targets is None or len(targets) != len(features):
                raise ValueError("EVC needs one target emotion per clip (targets=[...] of the same length)")
            bad = [t for t in targets if t not in EMOTIONS]
            if bad:
                raise ValueError(f"unknown target emotion(s) {bad}; expected one of {EMOTIONS}")
            if self.config.transcript_in_prompt and (texts is None or len(texts) != len(features)):
                raise ValueError("this demo LALM reads the EVC transcript from the prompt: pass texts=[...] "
                                 "(one source transcript per clip)")
        prompts = [self._prompt(task, f, targets[i] if task == "evc" else None,
                                texts[i] if task == "evc" and texts is not None else None)
                   for i, f in enumerate(features)]
        L = max(map(len, prompts))
        T = max(len(f) for f in features)
        ids = torch.full((len(prompts), L), tk.pad_token_id, dtype=torch.long)
        am = torch.zeros((len(prompts), L), dtype=torch.long)
        feats = torch.zeros((len(prompts), T, N_FEATURES), dtype=torch.float32)
        fam = torch.zeros((len(prompts), T), dtype=torch.long)
        for i, (p, f) in enumerate(zip(prompts, features)):
            ids[i, L - len(p):] = torch.tensor(p)
            am[i, L - len(p):] = 1
            feats[i, : len(f)] = torch.as_tensor(np.asarray(f, dtype=np.float32))
            fam[i, : len(f)] = 1
        return {"input_ids": ids, "attention_mask": am, "input_features": feats, "feature_attention_mask": fam}

    def _prompt(self, task: str, features, target: str | None, text: str | None) -> list[int]:
        tk = self.tokenizer
        head = [tk.bos_token_id, tk.ser_id] if task == "ser" else [tk.bos_token_id, tk.evc_id, tk.emo_ids[target]]
        p = head + [tk.audio_bos_id] + [tk.audio_id] * n_audio_tokens(len(features)) + [tk.audio_eos_id]
        if task == "evc" and self.config.transcript_in_prompt:
            p += [tk.text_id] + tk.encode(text) + [tk.text_end_id]
        return p

    # -- talker conditioning ------------------------------------------------------------------------------------
    def _talker_prefix(self, states: torch.Tensor, valid: torch.Tensor, embeds: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep each row's valid thinker states (prompt + text positions), project them, left-pad, append talker bos."""
        B = states.shape[0]
        n = valid.sum(-1)
        L = int(n.max())
        cond = self.talker_proj(states)
        if self.config.talker_reads_embeddings:
            cond = cond + self.talker_embed_proj(embeds)
        out = cond.new_zeros((B, L + 1, cond.shape[-1]))
        mask = torch.zeros((B, L + 1), dtype=torch.long, device=states.device)
        bos = self.talker.get_input_embeddings().weight[1]
        for b in range(B):
            nb = int(n[b])
            out[b, L - nb: L] = cond[b][valid[b]]
            mask[b, L - nb:] = 1
        out[:, L] = bos
        return out, mask

    # -- generation ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, input_features=None, feature_attention_mask=None,
                 max_new_tokens: int = 12, return_audio: bool | None = None, talker_max_new_tokens: int = N_SPEECH + 1,
                 thinker_eos_token_id: int = 2, talker_eos_token_id: int = 2, **kwargs) -> DemoOutput:
        """Thinker.generate (greedy, KV cache, audio merged into inputs_embeds, left padding), then — for EVC prompts,
        or when ``return_audio=True`` — talker.generate on the thinker's last hidden states of the prompt and the
        generated text, as Qwen2.5-Omni does. Extra kwargs go to thinker.generate."""
        tk = self.tokenizer
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        emb = self.embed_inputs(input_ids, input_features, feature_attention_mask)
        out = self.thinker.generate(
            inputs_embeds=emb, attention_mask=attention_mask, max_new_tokens=max_new_tokens, do_sample=False,
            num_beams=1, output_hidden_states=True, return_dict_in_generate=True, pad_token_id=tk.pad_token_id,
            eos_token_id=thinker_eos_token_id, bos_token_id=tk.bos_token_id, **kwargs,
        )
        seq = out.sequences[:, -(len(out.hidden_states)):] if out.sequences.shape[1] > len(out.hidden_states) \
            else out.sequences
        if return_audio is None:
            return_audio = bool((input_ids == tk.evc_id).any())
        if not return_audio:
            return DemoOutput(sequences=seq, thinker_output=out)
        # last-layer states: step 0 is the prompt, then one position per fed-back generated token
        states = torch.cat([h[-1] for h in out.hidden_states], dim=1)
        fed = seq[:, : states.shape[1] - input_ids.shape[1]]
        before_eos = torch.cumsum((fed == tk.eos_token_id).long(), dim=1) == 0
        valid = torch.cat([attention_mask.bool(), before_eos & (fed != tk.pad_token_id)], dim=1)
        embeds = torch.cat([emb, self.thinker.get_input_embeddings()(fed)], dim=1)
        prefix, tmask = self._talker_prefix(states, valid, embeds)
        from transformers import LogitsProcessorList

        tout = self.talker.generate(
            inputs_embeds=prefix, attention_mask=tmask, max_new_tokens=talker_max_new_tokens, do_sample=False,
            num_beams=1, pad_token_id=0, eos_token_id=talker_eos_token_id, bos_token_id=1,
            logits_processor=LogitsProcessorList([_TalkerFieldProcessor(0)]),
        )
        speech = torch.tensor([talker_ids_to_speech(r[:N_SPEECH].tolist()) for r in tout], dtype=torch.long)
        return DemoOutput(sequences=seq, speech_tokens=speech, thinker_output=out)

    # -- training -----------------------------------------------------------------------------------------------
    def training_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Teacher-forced losses of one batch (see ``scripts/train_demo_model.py`` for how batches are built).

        batch: input_ids / attention_mask / labels (thinker, left-padded, -100 on the prompt), input_features /
        feature_attention_mask, talker_targets (B, 6) speech ids + eos (-100 rows for SER samples)."""
        ids, am = batch["input_ids"], batch["attention_mask"]
        emb = self.embed_inputs(ids, batch["input_features"], batch["feature_attention_mask"])
        pos = (am.cumsum(-1) - 1).clamp_min(0)
        out = self.thinker(inputs_embeds=emb, attention_mask=am, position_ids=pos, output_hidden_states=True)
        logits = out.logits[:, :-1]
        labels = batch["labels"][:, 1:]
        text_loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                ignore_index=-100)
        losses = {"text": text_loss}
        tt = batch["talker_targets"]
        rows = (tt[:, 0] >= 0).nonzero().flatten()
        if len(rows):
            states = out.hidden_states[-1][rows]
            valid = am[rows].bool().clone()
            valid[:, -1] = False  # the final eos is never fed back at generation time
            prefix, tmask = self._talker_prefix(states, valid, emb[rows])
            tgt = tt[rows]
            temb = self.talker.get_input_embeddings()(tgt[:, :-1])
            x = torch.cat([prefix, temb], dim=1)
            m = torch.cat([tmask, torch.ones_like(tgt[:, :-1])], dim=1)
            tpos = (m.cumsum(-1) - 1).clamp_min(0)
            tl = self.talker(inputs_embeds=x, attention_mask=m, position_ids=tpos).logits
            tl = tl[:, prefix.shape[1] - 1:]
            losses["talker"] = nn.functional.cross_entropy(tl.reshape(-1, tl.shape[-1]), tgt.reshape(-1))
        else:
            losses["talker"] = text_loss.new_zeros(())
        losses["total"] = losses["text"] + losses["talker"]
        return losses

    def training_batch(self, items: Sequence[dict]) -> dict:
        """Collate training items into the batch ``training_loss`` reads.

        item: ``features`` (T, 43); ``task`` "ser" (with ``label``) or "evc" (with ``target``, ``text`` and ``speech``:
        the target's 5 prosody bins)."""
        tk = self.tokenizer
        inp = self.prepare_inputs([it["features"] for it in items], "ser")  # features + lengths only
        rows, labels, talker = [], [], []
        for it in items:
            if it["task"] == "ser":
                ans = [tk.label_ids[it["label"]], tk.eos_token_id]
                talker.append([-100] * (N_SPEECH + 1))
            else:
                ans = tk.encode(it["text"]) + [tk.style_ids[(it["target"], it.get("level", "full"))], tk.eos_token_id]
                talker.append(speech_to_talker_ids(it["speech"]) + [2])
            prompt = self._prompt(it["task"], it["features"], it.get("target"), it.get("text"))
            rows.append(prompt + ans)
            labels.append([-100] * len(prompt) + ans)
        L = max(map(len, rows))
        B = len(rows)
        ids = torch.full((B, L), tk.pad_token_id, dtype=torch.long)
        lab = torch.full((B, L), -100, dtype=torch.long)
        am = torch.zeros((B, L), dtype=torch.long)
        for i, (r, l) in enumerate(zip(rows, labels)):
            ids[i, L - len(r):] = torch.tensor(r)
            lab[i, L - len(r):] = torch.tensor(l)
            am[i, L - len(r):] = 1
        return {"input_ids": ids, "attention_mask": am, "labels": lab, "input_features": inp["input_features"],
                "feature_attention_mask": inp["feature_attention_mask"],
                "talker_targets": torch.tensor(talker, dtype=torch.long)}

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, path: str | Path, meta: dict | None = None) -> None:
        """Write ``config.json`` and fp16 ``model.safetensors`` under ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach().to(torch.float16).contiguous() for k, v in self.state_dict().items()
              if not k.endswith("lm_head.weight")}
        save_file(sd, str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps({"config": asdict(self.config), "meta": meta or {}}, indent=1))


def load_demo_model(path: str | Path | None = None, device: str = "cpu") -> DemoOmni:
    """The trained demo LALM from ``path`` (default: the committed ``esnlib/assets/demo_lalm``), fp32, eval mode."""
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
    sd = {k: v.float() for k, v in load_file(str(w_file)).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"demo LALM weights at {path} do not match the code: missing {missing}, unexpected "
                         f"{unexpected}; retrain with `make demo-model`")
    model.thinker.tie_weights()
    model.talker.tie_weights()
    model.meta = cfg.get("meta", {})
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------------------
# Renderer (outside the nn.Module, like token2wav)
# ----------------------------------------------------------------------------------------------------------------
def voice_for(speaker: str | None) -> str:
    """The espeak voice of a demo-corpus speaker (CORPUS_VOICES); any other speaker gets ``DEFAULT_VOICE``."""
    return CORPUS_VOICES.get(str(speaker), DEFAULT_VOICE) if speaker is not None else DEFAULT_VOICE


def render(text: str, speech_tokens: Sequence[int], voice: str = DEFAULT_VOICE) -> np.ndarray | None:
    """Decoded text + speech tokens -> 16 kHz waveform (None when the text is empty: nothing to say)."""
    if not text.strip():
        return None
    return tts.synthesize(text, voice, tts.tokens_to_prosody(speech_tokens))


# ----------------------------------------------------------------------------------------------------------------
# Adapter
# ----------------------------------------------------------------------------------------------------------------
def _load_audio(path: str) -> np.ndarray:
    from ..audio import load_wav

    return load_wav(path)


class DemoAdapter(ModelAdapter):
    """The demo LALM on the ModelAdapter interface (generation through ``esnlib.capture`` / ``esnlib.generate``)."""

    name = "demo-lalm"
    labels = EMOTIONS
    has_talker = True

    def __init__(self, model: DemoOmni | None = None, device: str = "cpu"):
        self.model = (model if model is not None else load_demo_model(device=device)).to(device).eval()
        self.device = device
        self._features: dict[str, np.ndarray] = {}

    def sites(self, scope: str = "lm") -> list:
        from ..sites import find_sites

        return find_sites(self.model, scope=scope)

    def describe(self) -> dict:
        """Identifies the model in result keys: a fingerprint of the weights, so retrained weights never reuse
        results cached for other weights."""
        meta = getattr(self.model, "meta", {})
        if getattr(self, "_weights_fp", None) is None:
            import hashlib

            h = hashlib.sha1()
            for k, v in sorted(self.model.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().float().cpu().numpy().tobytes())
            self._weights_fp = h.hexdigest()[:12]
        return {"model": self.name, "dtype": "float32", "train_steps": meta.get("steps"),
                "weights": self._weights_fp, "transcript_in_prompt": self.model.config.transcript_in_prompt}

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
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        starts = range(0, n, batch_size)
        return tqdm(starts, desc=desc, total=len(starts), leave=False, disable=len(starts) < 2)

    def evc(self, utts, targets, *, capture=False, intervention=None, scope="lm", batch_size=8):
        """EVC: neutral source audio + ``<emo:target>`` -> words + speech tokens -> rendered in the speaker's voice."""
        utts, targets = list(utts), list(targets)
        if len(utts) != len(targets):
            raise ValueError(f"evc needs one target per utterance: {len(utts)} utterances, {len(targets)} targets")
        bad = sorted({t for t in targets if t not in EMOTIONS})
        if bad:
            raise ValueError(f"unknown target emotion(s) {bad}; expected one of {EMOTIONS}")
        gens, parts = [], []
        tk = self.model.tokenizer
        for i in self._batches(len(utts), batch_size, "demo EVC"):
            bu, bt = utts[i: i + batch_size], targets[i: i + batch_size]
            inputs = self.model.prepare_inputs([self._feats(u) for u in bu], "evc", bt, [u.text for u in bu])
            iv = batch_rows(intervention, range(i, i + len(bu)), len(utts))
            out, stats = self._run(inputs, capture, iv, scope, max_new_tokens=12, return_audio=True)
            parts.append(stats)
            for u, t, seq, sp in zip(bu, bt, out.sequences, out.speech_tokens):
                text, bins = tk.decode(seq.tolist()), sp.tolist()
                voice = voice_for(u.speaker)
                style = tk.parse_style(seq.tolist())
                gens.append(Generation(text=text, audio=render(text, bins, voice), label=None, extra={
                    "speech_tokens": bins, "prosody": tts.tokens_to_prosody(bins).as_dict(), "target": t,
                    "voice": voice, "style": ":".join(style) if style else ""}))
        return self._finish(gens, parts, capture)

    def ser(self, utts, *, capture=False, intervention=None, scope="lm", batch_size=8):
        """SER: audio -> one label token (text only; the talker does not run)."""
        if scope != "lm":
            raise ValueError(f"SER runs the thinker only (text out), so scope must be 'lm', got {scope!r}")
        utts = list(utts)
        gens, parts = [], []
        tk = self.model.tokenizer
        for i in self._batches(len(utts), batch_size, "demo SER"):
            bu = utts[i: i + batch_size]
            inputs = self.model.prepare_inputs([self._feats(u) for u in bu], "ser")
            iv = batch_rows(intervention, range(i, i + len(bu)), len(utts))
            out, stats = self._run(inputs, capture, iv, scope, max_new_tokens=2, return_audio=False)
            parts.append(stats)
            for seq in out.sequences:
                ids = seq.tolist()
                label = tk.parse_label(ids)
                gens.append(Generation(text=label if label else tk.decode(ids, skip_special_tokens=False),
                                       audio=None, label=label, extra={}))
        return self._finish(gens, parts, capture)

    @staticmethod
    def _finish(gens, parts, capture):
        if not capture:
            return gens
        from ..capture import CaptureStats

        return gens, CaptureStats.concat([p for p in parts if p is not None])
