"""Tiny stand-ins for Kimi-Audio and MiniCPM-o 4.5 that follow their real call contracts (written for esnlib's tests).

Neither model can be loaded here (remote code, CUDA-only packages, no weights), so their adapters are tested against
these torch modules. They are not copies of the models: they reproduce what the adapters and esnlib's core depend on,
each fact read from the model's own code (file and commit named next to it), and nothing else. The decoders' gated
MLPs are the real transformers classes the models use (``Qwen2MLP``; ``Qwen3ForCausalLM``; ``LlamaModel``), so sites
are found and captured exactly as in the real models.

Kimi-Audio (kimia_infer/api/kimia.py @ MoonshotAI/Kimi-Audio 2607d515; modeling_moonshot_kimia.py as ported in
SolutionArichtect/Kimi-Audio-7B-Instruct-Ascend @ e62a3245):
- ``alm`` subclasses ``Qwen2PreTrainedModel`` and nothing else: under transformers 5 it has no ``generate`` (4.49
  and 4.51 still give every PreTrainedModel one, whose ``can_generate()`` is False);
- ``alm.model.layers`` (the LM) and ``alm.model.mimo_layers`` (the audio stack, branching off the LM at layer
  ``kimia_mimo_transformer_from_layer_index``) run in the same ``alm.model`` forward, LM layers first;
- ``KimiAudio._generate_loop`` calls ``self.alm.forward(input_ids=audio ids, text_input_ids=..., whisper_input_feature,
  is_continuous_mask, position_ids, past_key_values, return_dict=False)`` once per step (the forward method
  directly, not ``alm(...)``) and gets ``(audio_logits, text_logits, past_key_values)``; temperature 0 is argmax;
- the loop stops when the text stream ends (``output_type="text"``) or when the audio stream emits msg_end/media_end
  (``"both"``); in "both" it runs ``int(12.5 * 120) - prompt_len`` steps at most, whatever ``max_new_tokens`` says;
- chat messages carry audio as a *path*; ``generate`` returns ``(waveform [1, n] at 24 kHz or None, text)``.

MiniCPM-o 4.5 (MiniCPMO45/modeling_minicpmo.py @ OpenBMB/minicpm-o-4_5-pytorch-simple-demo c7e16605):
- ``chat(msgs=..., do_sample=..., use_tts_template=..., generate_audio=..., output_audio_path=..., **kwargs)`` returns
  the text only; speech is synthesized only when ``use_tts_template and generate_audio and output_audio_path`` and is
  written to that path at 24 kHz; an exception in the speech part is caught and printed (bare ``except``), so a failed
  synthesis leaves no file and no error;
- an ``np.ndarray`` in a message is audio and switches ``use_tts_template`` on; the first audio is the voice prompt;
- ``prepare_generation_config`` defaults ``num_beams`` to 3, so ``do_sample=False`` alone is a 3-beam search;
- the text LM is ``llm = Qwen3ForCausalLM`` driven by ``llm.generate(inputs_embeds=..., eos_token_id=terminators,
  output_hidden_states=True, return_dict_in_generate=True)``;
- ``MiniCPMTTS.generate`` loops calling ``self.model(...)`` (a ``LlamaModel``) once per step, never ``tts.forward``, and
  draws every code with ``torch.multinomial`` (no greedy branch; the first step is drawn from the full softmax);
  token2wav then starts from noise.
"""
from __future__ import annotations

import os
import traceback
import zlib

import numpy as np
import torch
from torch import nn

# ------------------------------------------------------------------------------------------------------------------
# shared: a word-level text "tokenizer" and 16 kHz framing of audio
# ------------------------------------------------------------------------------------------------------------------
FRAME = 1280  # 16 kHz samples per 12.5 Hz audio token (Kimi's GLM-4 tokenizer rate); MiniCPM-o uses it for its frames


def word_ids(text: str, lo: int, hi: int) -> list[int]:
    return [lo + zlib.crc32(w.encode()) % (hi - lo) for w in text.split()]


def frames(wav: np.ndarray, n_feats: int) -> torch.Tensor:
    """[n_frames, n_feats] log-energy features of 80 ms frames (at least one frame)."""
    wav = np.asarray(wav, np.float32).reshape(-1)
    n = max(1, len(wav) // FRAME)
    x = np.resize(wav, n * FRAME).reshape(n, FRAME)
    sub = x.reshape(n, n_feats, -1)
    return torch.from_numpy(np.log1p(100 * (sub ** 2).mean(-1)).astype(np.float32))


def load16k(path: str) -> np.ndarray:
    import soundfile as sf

    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    wav = wav.mean(1)
    if sr != 16000:
        from esnlib.audio import resample

        wav = resample(wav, sr, 16000)
    return wav


# ------------------------------------------------------------------------------------------------------------------
# Kimi-Audio
# ------------------------------------------------------------------------------------------------------------------
KIMI = dict(vocab_size=160, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=4, kimia_mimo_layers=2, kimia_mimo_transformer_from_layer_index=1,
            kimia_token_offset=100, rms_norm_eps=1e-6)
# special ids (below the text range 20..99; audio codes are offset + 0..59)
K_MSG_END, K_MEDIA_BEGIN, K_MEDIA_END, K_BLANK, K_TEXT_EOS, K_USER, K_ASSISTANT, K_CT, K_CTD = 0, 1, 2, 3, 4, 5, 6, 7, 8


class _KimiaAttention(nn.Module):
    """Causal self-attention with a (key, value) tuple cache, as the real MoonshotAttention keeps it."""

    def __init__(self, cfg):
        super().__init__()
        h = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(h, h) for _ in range(3))
        self.o_proj = nn.Linear(h, h, bias=False)

    def forward(self, x, past=None):
        b, t, h = x.shape
        split = lambda y: y.view(b, t, self.heads, h // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - t)
        y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, h)), (k, v)


class _KimiaLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP, Qwen2RMSNorm

        self.input_layernorm = Qwen2RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.self_attn = _KimiaAttention(cfg)
        self.post_attention_layernorm = Qwen2RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.mlp = Qwen2MLP(cfg)  # the real layer's MLP class: gate_proj, up_proj, down_proj, act_fn

    def forward(self, x, past=None):
        a, cache = self.self_attn(self.input_layernorm(x), past)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), cache


def _kimia_classes():
    from transformers.models.qwen2.modeling_qwen2 import Qwen2PreTrainedModel, Qwen2RMSNorm

    class TinyKimiaModel(Qwen2PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
            self.layers = nn.ModuleList([_KimiaLayer(config) for _ in range(config.num_hidden_layers)])
            self.norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.mimo_layers = nn.ModuleList([_KimiaLayer(config) for _ in range(config.kimia_mimo_layers)])
            self.mimo_norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.vq_adaptor = nn.Linear(config.whisper_dim, config.hidden_size)
            self.post_init()

        def forward(self, input_ids=None, text_input_ids=None, whisper_input_feature=None, is_continuous_mask=None,
                    attention_mask=None, position_ids=None, past_key_values=None, return_dict=None, **kw):
            x = self.embed_tokens(input_ids)
            if whisper_input_feature is not None:
                feats = torch.cat([f.reshape(-1, f.shape[-1]) for f in whisper_input_feature])
                cont = torch.zeros(x.shape[1], feats.shape[-1], dtype=x.dtype, device=x.device)
                cont[is_continuous_mask[0]] = feats[: int(is_continuous_mask[0].sum())].to(x.dtype)
                x = x + self.vq_adaptor(cont)[None] * is_continuous_mask[..., None]
            if text_input_ids is not None and text_input_ids.sum() != 0:
                x = x + self.embed_tokens(text_input_ids)
            n_lm = len(self.layers)
            cache, mimo = [], None
            for i, layer in enumerate(self.layers):
                x, c = layer(x, None if past_key_values is None else past_key_values[i])
                cache.append(c)
                if i == self.config.kimia_mimo_transformer_from_layer_index:
                    mimo = x.clone()
            x = self.norm(x)
            for j, layer in enumerate(self.mimo_layers):
                mimo, c = layer(mimo, None if past_key_values is None else past_key_values[n_lm + j])
                cache.append(c)
            return x, self.mimo_norm(mimo), tuple(cache)

    class TinyKimiaForCausalLM(Qwen2PreTrainedModel):
        """Subclasses Qwen2PreTrainedModel only, as MoonshotKimiaForCausalLM does: no ``generate`` under
        transformers 5 (PreTrainedModel no longer inherits GenerationMixin); under 4.49/4.51 an inherited one that
        ``can_generate()`` disowns."""

        def __init__(self, config):
            super().__init__(config)
            self.model = TinyKimiaModel(config)
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            self.mimo_output = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            self.post_init()

        def forward(self, input_ids=None, text_input_ids=None, whisper_input_feature=None, is_continuous_mask=None,
                    attention_mask=None, position_ids=None, past_key_values=None, return_dict=None, **kw):
            text_h, audio_h, cache = self.model(input_ids=input_ids, text_input_ids=text_input_ids,
                                                whisper_input_feature=whisper_input_feature,
                                                is_continuous_mask=is_continuous_mask, position_ids=position_ids,
                                                past_key_values=past_key_values)
            return self.mimo_output(audio_h), self.lm_head(text_h), cache

    return TinyKimiaModel, TinyKimiaForCausalLM


def tiny_kimia_alm(seed: int = 0):
    from transformers import Qwen2Config

    _, lm_cls = _kimia_classes()
    torch.manual_seed(seed)
    cfg = Qwen2Config(**KIMI, whisper_dim=8)
    alm = lm_cls(cfg).eval()
    with torch.no_grad():  # random weights, but audio codes and the stream ends must be reachable
        alm.mimo_output.weight[100:160] += 0.5
        alm.mimo_output.weight[K_MEDIA_END] += 0.3
    return alm


class TinyKimiAudio:
    """``kimia_infer.api.kimia.KimiAudio`` as the adapter sees it (alm, detokenizer, generate)."""

    kimia_text_audiodelaytokens = 6  # kimia.py: audio tokens start 6 steps after text
    max_audio_seconds = 9.6          # kimia.py uses 120 s ("both": int(12.5 * 120) - prompt length steps)

    def __init__(self, alm=None, load_detokenizer: bool = True):
        self.alm = alm if alm is not None else tiny_kimia_alm()
        self.detokenizer = _KimiDetokenizer() if load_detokenizer else None
        self.kimia_token_offset = self.alm.config.kimia_token_offset
        self.eod_ids = [K_MSG_END, K_MEDIA_END]
        self.forward_calls = 0
        self.positions_fed = 0  # positions alm.forward received in the last generate call

    # -- prompt (kimia_infer/api/prompt_manager.py: two aligned streams, audio as a path) --------------------------
    def _prompt(self, chats, output_type):
        audio, text, cont, feats = [], [], [], []

        def add(a, t, c=False):
            audio.extend(a), text.extend(t), cont.extend([c] * len(a) if isinstance(c, bool) else c)

        for msg in chats:
            if msg["role"] not in ("user", "assistant"):
                raise NotImplementedError(f"role: {msg['role']}")
            add([K_USER if msg["role"] == "user" else K_ASSISTANT], [K_BLANK])
            if msg["message_type"] == "text":
                ids = word_ids(msg["content"], 20, self.kimia_token_offset)
                add([K_BLANK] * len(ids), ids)
            elif msg["message_type"] == "audio":
                f = frames(load16k(msg["content"]), self.alm.config.whisper_dim)  # a path, like kimia_infer
                codes = (self.kimia_token_offset + (f.mean(1) * 7).long() % 60).tolist()
                add([K_MEDIA_BEGIN] + codes + [K_MEDIA_END, K_CT if output_type == "text" else K_CTD],
                    [K_BLANK] * (len(codes) + 3), [False] + [True] * len(codes) + [False, False])
                feats.append(f)
        add([K_ASSISTANT], [K_BLANK])
        return torch.tensor([audio]), torch.tensor([text]), torch.tensor([cont]), feats

    @torch.inference_mode()
    def generate(self, chats, output_type="text", audio_temperature=0.0, audio_top_k=5, text_temperature=0.0,
                 text_top_k=5, audio_repetition_penalty=1.0, audio_repetition_window_size=64,
                 text_repetition_penalty=1.0, text_repetition_window_size=16, max_new_tokens=-1):
        assert output_type in ("text", "both")
        audio_ids, text_ids, cont, feats = self._prompt(chats, output_type)
        if output_type == "both":
            max_new_tokens = int(12.5 * self.max_audio_seconds) - audio_ids.shape[1]
        elif max_new_tokens == -1:
            max_new_tokens = 7500 - audio_ids.shape[1]
        audio_out, text_out, past = [], [], None
        self.positions_fed = 0
        pos = torch.arange(audio_ids.shape[1])[None]
        text_done = False
        for i in range(max_new_tokens):
            self.forward_calls += 1
            self.positions_fed += audio_ids.shape[1]
            audio_logits, text_logits, past = self.alm.forward(
                input_ids=audio_ids, text_input_ids=text_ids, whisper_input_feature=feats if i == 0 else None,
                is_continuous_mask=cont if i == 0 else None, position_ids=pos, past_key_values=past,
                return_dict=False)
            nt = _kimi_sample(text_logits[:, -1], text_temperature, text_top_k)
            na = _kimi_sample(audio_logits[:, -1], audio_temperature, audio_top_k)
            if text_done:
                nt.fill_(K_BLANK)
            elif int(nt) == K_TEXT_EOS:
                text_done = True
            else:
                text_out.append(int(nt))
            if i < self.kimia_text_audiodelaytokens or output_type == "text":
                na.fill_(K_BLANK)
            else:
                audio_out.append(int(na))
            if (output_type == "text" and text_done) or (output_type == "both" and int(na) in self.eod_ids):
                break
            audio_ids, text_ids = na.view(1, 1), nt.view(1, 1)
            pos = pos[:, -1:] + 1
        text = " ".join(f"w{t}" for t in text_out if t < self.kimia_token_offset)
        codes = [t - self.kimia_token_offset for t in audio_out if t >= self.kimia_token_offset]
        wav = self.detokenizer(codes) if (self.detokenizer is not None and output_type == "both") else None
        return wav, text


def _kimi_sample(logits, temperature, top_k):
    if temperature > 1e-6:
        probs = torch.softmax(logits.float() / temperature, -1)
        top, idx = probs.topk(top_k, -1)
        return idx.gather(-1, torch.multinomial(top, 1)).view(-1)
    return logits.float().argmax(-1).view(-1)  # kimia_infer/utils/sampler.py: temperature 0 is argmax


class _KimiDetokenizer:
    """Codes -> a 24 kHz waveform [1, n] (one tone per code, 1920 samples = 12.5 Hz); deterministic."""

    def __call__(self, codes):
        t = torch.arange(1920) / 24000
        parts = [0.2 * torch.sin(2 * np.pi * (120 + 15 * c) * t) for c in codes] or [torch.zeros(1920)]
        return torch.cat(parts)[None]


# ------------------------------------------------------------------------------------------------------------------
# MiniCPM-o 4.5
# ------------------------------------------------------------------------------------------------------------------
M_VOCAB, M_AUDIO, M_IM_END, M_EOT, M_TTS_BOS, M_TTS_EOS = 128, 120, 2, 3, 121, 122
TTS_CODES, TTS_EOS = 40, 39


class TinyMiniCPMTTS(nn.Module):
    """MiniCPMTTS as its chat path uses it: a LlamaModel backbone driven by its own ``generate`` loop."""

    def __init__(self, llm_dim: int):
        super().__init__()
        from transformers import LlamaConfig, LlamaModel

        self.model = LlamaModel(LlamaConfig(vocab_size=8, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=1,
                                            max_position_embeddings=256))
        self.projector_semantic = nn.Linear(llm_dim, 24)
        self.emb_code = nn.Embedding(TTS_CODES, 24)
        self.head_code = nn.Linear(24, TTS_CODES, bias=False)

    def forward(self, *a, **kw):  # never called by chat(): the loop below calls self.model
        raise AssertionError("MiniCPM-o's TTS loop does not call tts.forward")

    @torch.inference_mode()
    def generate(self, inputs_embeds, eos_token, min_new_token=2, max_new_token=12, temperature=0.8, top_k=25):
        cond_len = inputs_embeds.shape[1]
        past, new = None, []
        self.positions_fed = 0  # positions self.model received in this call
        x = inputs_embeds
        for t in range(max_new_token):
            pos = torch.arange(cond_len)[None] if t == 0 else torch.tensor([[cond_len + t - 1]])
            out = self.model(inputs_embeds=x, position_ids=pos, past_key_values=past, use_cache=True)
            self.positions_fed += x.shape[1]
            past = out.past_key_values
            logits = self.head_code(out.last_hidden_state[:, -1]).float() / temperature
            if t > 0:  # the real applies its top-p/top-k warpers after the first step only (min 3 tokens kept)
                kth = logits.topk(max(top_k, 3), -1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -float("inf"))
            if t < min_new_token:
                logits[:, eos_token] = -float("inf")
            nxt = torch.multinomial(torch.softmax(logits, -1), 1)  # always sampled
            new.append(int(nxt))
            if int(nxt) == eos_token:
                break
            x = self.emb_code(nxt)
        return [c for c in new if c != eos_token]


class TinyMiniCPMO(nn.Module):
    """MiniCPMO as ``chat`` drives it: ``llm`` (Qwen3ForCausalLM), ``apm`` (audio encoder, no gated MLP), ``tts``."""

    def __init__(self, seed: int = 0):
        super().__init__()
        from transformers import Qwen3Config, Qwen3ForCausalLM

        torch.manual_seed(seed)
        self.llm = Qwen3ForCausalLM(Qwen3Config(vocab_size=M_VOCAB, hidden_size=32, intermediate_size=48,
                                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                head_dim=8, max_position_embeddings=512, eos_token_id=M_IM_END,
                                                pad_token_id=0, bos_token_id=1)).eval()
        self.apm = nn.Linear(8, 32)
        self.tts = TinyMiniCPMTTS(32)
        self.terminators = [M_IM_END, M_EOT]
        with torch.no_grad():
            self.llm.lm_head.weight[M_IM_END] += 0.05
        self.eval()

    @staticmethod
    def prepare_generation_config(do_sample, max_new_tokens=50, min_new_tokens=0, **kwargs):
        cfg = {"num_beams": kwargs.get("num_beams", 3), "do_sample": True, "repetition_penalty": 1.02}
        if not do_sample:
            cfg.update({"do_sample": False, "repetition_penalty": 1.2 if cfg["num_beams"] > 1 else 1.02})
        cfg.update((k, kwargs[k]) for k in cfg.keys() & kwargs.keys())
        cfg.update(min_new_tokens=min_new_tokens, max_new_tokens=max_new_tokens)
        return cfg

    def _embed(self, msgs, use_tts_template):
        ids, audios = [], []
        for m in msgs:
            ids += [1] + word_ids(m["role"], 10, 100)
            for c in (m["content"] if isinstance(m["content"], list) else [m["content"]]):
                if isinstance(c, np.ndarray):
                    f = frames(c, 8)
                    audios.append((len(ids), f))
                    ids += [M_AUDIO] * f.shape[0]
                elif isinstance(c, str):
                    ids += word_ids(c, 10, 100)
            ids.append(M_IM_END)
        ids += [1] + word_ids("assistant", 10, 100) + ([M_TTS_BOS] if use_tts_template else [])
        emb = self.llm.get_input_embeddings()(torch.tensor([ids]))
        for start, f in audios:
            emb[0, start:start + f.shape[0]] = self.apm(f)
        return emb

    @torch.inference_mode()
    def generate(self, inputs_embeds, max_new_tokens, **cfg):
        self.llm_prompt_len = inputs_embeds.shape[1]
        return self.llm.generate(inputs_embeds=inputs_embeds, attention_mask=torch.ones(inputs_embeds.shape[:2],
                                 dtype=torch.long), pad_token_id=0, eos_token_id=self.terminators,
                                 output_hidden_states=True, return_dict_in_generate=True,
                                 max_new_tokens=max_new_tokens, **cfg)

    def chat(self, image=None, msgs=None, max_new_tokens=4096, min_new_tokens=0, do_sample=True,
             use_tts_template=False, generate_audio=False, output_audio_path=None, tts_sampling_params=None,
             **kwargs):
        audios = [c for m in msgs for c in (m["content"] if isinstance(m["content"], list) else [])
                  if isinstance(c, np.ndarray)]
        use_tts_template = use_tts_template or bool(audios)
        cfg = self.prepare_generation_config(do_sample, max_new_tokens, min_new_tokens, **kwargs)
        max_new = cfg.pop("max_new_tokens")
        with torch.inference_mode():
            out = self.generate(self._embed(msgs, use_tts_template), max_new, **cfg)
        seq = out.sequences[0].tolist()
        self.llm_positions_fed = self.llm_prompt_len + len(seq) - 1  # the last new token is never fed back
        words = [f"w{t}" for t in seq if t not in (M_IM_END, M_EOT, 0) and t < M_TTS_BOS]
        answer = " ".join(words)
        if use_tts_template and generate_audio and output_audio_path:
            try:
                wav = self._speech(out, audios[0] if audios else None)
                import soundfile as sf

                sf.write(output_audio_path, wav, samplerate=24000)
            except:  # noqa: E722  (the real chat() swallows speech errors the same way)
                traceback.print_exc()
        return answer

    @torch.inference_mode()
    def _speech(self, out, audio_prompt):
        hidden = torch.vstack([h[-1][0] for h in out.hidden_states])  # last layer, first row, every position
        cond = self.tts.projector_semantic(hidden[-max(1, len(out.hidden_states) - 1):])[None]
        codes = self.tts.generate(cond, eos_token=TTS_EOS)
        # token2wav: one noisy tone per code (flow matching starts from noise), loudness of the voice prompt
        t = torch.arange(960) / 24000
        gain = 0.1 if audio_prompt is None else float(np.sqrt(np.mean(np.square(audio_prompt))) + 0.05)
        parts = [gain * torch.sin(2 * np.pi * (150 + 20 * c) * t) + 0.01 * torch.randn(960) for c in codes]
        return torch.cat(parts or [torch.zeros(960)]).numpy()


# ------------------------------------------------------------------------------------------------------------------
# adapters on the stand-ins (also for scripts/gpu_check.py --model contract_models:tiny_kimi_adapter)
# ------------------------------------------------------------------------------------------------------------------
def tiny_kimi_adapter(**kw):
    from esnlib.models.kimi_audio import KimiAudioAdapter

    return KimiAudioAdapter(TinyKimiAudio(), **{"max_new_tokens": 8, **kw})


def tiny_minicpm_adapter(**kw):
    from esnlib.models.minicpm_o import MiniCPMOAdapter

    return MiniCPMOAdapter(TinyMiniCPMO(), **{"max_new_tokens": 6, **kw})


def write_clips(root, n=2, seconds=(0.6, 0.9)):
    """n short tone clips at 16 kHz as Utterances (different lengths)."""
    from esnlib.audio import save_wav
    from esnlib.corpora.base import Utterance

    utts = []
    for i in range(n):
        t = np.arange(int(16000 * seconds[i % len(seconds)])) / 16000
        wav = (0.3 * np.sin(2 * np.pi * (170 + 50 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        path = save_wav(os.path.join(root, f"c{i}.wav"), wav)
        utts.append(Utterance(id=f"c{i}", corpus="fixture", speaker="s0", emotion="neutral", text="w5 w6",
                              path=str(path), index=i + 1))
    return utts
