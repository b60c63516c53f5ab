"""Shared fixtures: tiny random-weight models of the real transformers classes, built offline."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

TEXT = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256)
AUDIO_ENC = dict(num_mel_bins=16, d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                 max_source_positions=64)


def tiny_qwen2(seed=0, eos=3, **kw):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(**{**TEXT, **kw}, eos_token_id=eos, pad_token_id=0, bos_token_id=1)
    return Qwen2ForCausalLM(cfg).eval()


def tiny_llama(seed=0, eos=3, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**TEXT, **kw}, eos_token_id=eos, pad_token_id=0, bos_token_id=1)
    return LlamaForCausalLM(cfg).eval()


def tiny_qwen2_audio(seed=0):
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    torch.manual_seed(seed)
    cfg = Qwen2AudioConfig(audio_config=dict(model_type="qwen2_audio_encoder", **AUDIO_ENC),
                           text_config=dict(model_type="qwen2", **TEXT), audio_token_index=100)
    return Qwen2AudioForConditionalGeneration(cfg).eval()


def tiny_audio_flamingo3(seed=0):
    from transformers import AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration

    torch.manual_seed(seed)
    enc = {k: v for k, v in AUDIO_ENC.items()}
    cfg = AudioFlamingo3Config(audio_config=dict(model_type="audioflamingo3_encoder", **enc),
                               text_config=dict(model_type="qwen2", **TEXT), audio_token_id=100)
    return AudioFlamingo3ForConditionalGeneration(cfg).eval()


class DemoLALM(torch.nn.Module):
    """A stand-in with the demo model's layout: thinker and talker are Qwen2 decoders."""

    def __init__(self):
        super().__init__()
        from transformers import Qwen2Config, Qwen2Model

        self.thinker = torch.nn.Module()
        self.thinker.model = Qwen2Model(Qwen2Config(**TEXT))
        self.talker = torch.nn.Module()
        self.talker.model = Qwen2Model(Qwen2Config(**{**TEXT, "num_hidden_layers": 2, "intermediate_size": 40}))


@pytest.fixture
def qwen2():
    return tiny_qwen2()


@pytest.fixture
def llama():
    return tiny_llama()


@pytest.fixture(scope="session")
def tiny_omni():
    return build_tiny_omni()


# ---- tiny Qwen2.5-Omni (thinker -> talker -> token2wav), built offline --------------------------------------------
OMNI_IDS = dict(audio=150, audio_bos=151, audio_eos=152, image=153, video=154, vis_start=155, vis_end=156,
                tts_start=157, tts_end=158, tts_pad=159, eos=3)
OMNI_CODEC = dict(pad=60, start=61, end=62, mask=63)


def build_tiny_omni(seed=0):
    """A Qwen2_5OmniForConditionalGeneration with tiny random weights and a hand-built speaker_map."""
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:  # a per-model environment (make env MODEL=...)
        pytest.skip(f"Qwen2.5-Omni runs in the main environment (transformers 5), not {transformers.__version__}")
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    i, c = OMNI_IDS, OMNI_CODEC
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}
    text = dict(vocab_size=160, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, rope_parameters=rope, eos_token_id=i["eos"],
                pad_token_id=0)
    thinker = dict(
        text_config=text,
        audio_config=dict(num_mel_bins=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
                          d_model=16, max_source_positions=64, n_window=8, output_dim=32),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=24, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[0], patch_size=2, window_size=4),
        audio_token_index=i["audio"], image_token_index=i["image"], video_token_index=i["video"],
        audio_start_token_id=i["audio_bos"], audio_end_token_id=i["audio_eos"], user_token_id=140)
    talker = dict(vocab_size=64, embedding_size=32, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=12, max_position_embeddings=512,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 2]},
                  audio_token_index=i["audio"], image_token_index=i["image"], video_token_index=i["video"],
                  vision_start_token_id=i["vis_start"], vision_end_token_id=i["vis_end"],
                  audio_start_token_id=i["audio_bos"], audio_end_token_id=i["audio_eos"],
                  tts_text_start_token_id=i["tts_start"], tts_text_end_token_id=i["tts_end"],
                  tts_text_pad_token_id=i["tts_pad"], tts_codec_start_token_id=c["start"],
                  tts_codec_end_token_id=c["end"], tts_codec_pad_token_id=c["pad"],
                  tts_codec_mask_token_id=c["mask"])
    token2wav = dict(
        dit_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ff_mult=1, emb_dim=16, head_dim=16,
                        block_size=4, look_ahead_layers=[1], look_backward_layers=[0], repeats=2, num_embeds=64,
                        mel_dim=16, enc_emb_dim=8, enc_dim=16, enc_channels=[16, 16, 16], enc_kernel_sizes=[3, 3, 1],
                        enc_dilations=[1, 1, 1], enc_attention_channels=8, enc_se_channels=8),
        bigvgan_config=dict(mel_dim=16, upsample_initial_channel=16, resblock_kernel_sizes=[3],
                            resblock_dilation_sizes=[[1, 3, 5]], upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4]))
    torch.manual_seed(seed)
    cfg = Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, token2wav_config=token2wav)
    # The released config.json carries these on the thinker too; get_rope_index reads them.
    cfg.thinker_config.vision_start_token_id = i["vis_start"]
    cfg.thinker_config.vision_end_token_id = i["vis_end"]
    model = Qwen2_5OmniForConditionalGeneration(cfg).eval()
    model.speaker_map = {"Chelsie": {"bos_token": i["tts_start"], "cond": torch.randn(1, 8),
                                     "ref_mel": torch.randn(1, 12, 16)}}
    return model


def tiny_omni_inputs(batch=2, n_frames=(40, 24), text_len=4, seed=0):
    """Audio-in inputs for build_tiny_omni: input_ids with audio tokens, input_features, feature_attention_mask."""
    g = torch.Generator().manual_seed(seed)
    i = OMNI_IDS
    n_frames = list(n_frames)[:batch]
    fmax = max(n_frames)
    feats = torch.randn(batch, 16, fmax, generator=g)
    fmask = torch.zeros(batch, fmax, dtype=torch.long)
    rows = []
    for b, f in enumerate(n_frames):
        fmask[b, :f] = 1
        n_audio = ((f - 1) // 2 + 1 - 2) // 2 + 1
        text = torch.randint(4, 140, (text_len,), generator=g).tolist()
        rows.append([i["audio_bos"]] + [i["audio"]] * n_audio + [i["audio_eos"]] + text)
    width = max(len(r) for r in rows)
    ids = torch.zeros(batch, width, dtype=torch.long)
    am = torch.zeros(batch, width, dtype=torch.long)
    for b, r in enumerate(rows):  # left padding
        ids[b, width - len(r):] = torch.tensor(r)
        am[b, width - len(r):] = 1
    return dict(input_ids=ids, attention_mask=am, input_features=feats, feature_attention_mask=fmask)


# ---- reference: plain PyTorch forward hooks (independent of nnsight and of esnlib's runner) ------------------------
def _ref_edit(out, ix, kind, alpha):
    if kind == "steer":
        out[..., ix] = out[..., ix] * (1.0 + alpha)
    elif kind == "add":
        out[..., ix] = out[..., ix] + alpha
    elif kind == "clamp":
        out[..., ix] = torch.maximum(out[..., ix], torch.tensor(alpha, dtype=out.dtype))
    elif kind == "deactivate":
        out[..., ix] = 0.0
    return out


def hook_generate(model, act_modules, inputs, edits=None, **gen):
    """Generate with forward hooks on the act_fn modules; returns (out, per-site list of per-call outputs).

    edits: per site, a list of (local index tensor, kind, alpha, positions).
    """
    records = [[] for _ in act_modules]
    calls = [0] * len(act_modules)

    def make(k):
        def hook(mod, args, out):
            step = calls[k]
            calls[k] += 1
            if edits is not None and edits[k]:
                out = out.clone()
                for ix, kind, alpha, positions in edits[k]:
                    if positions == "generated" and step == 0:
                        continue
                    out = _ref_edit(out, ix, kind, alpha)
            records[k].append(out.detach().clone())
            return out
        return hook

    handles = [m.register_forward_hook(make(k)) for k, m in enumerate(act_modules)]
    try:
        with torch.no_grad():
            out = model.generate(**inputs, **gen)
    finally:
        for h in handles:
            h.remove()
    return out, records


def hook_stats(records, attention_mask, new_tokens, eos_ids, skip_prompt=False):
    """Reference statistics from per-call records: prompt positions by attention_mask, decode step t counted for a
    row while no EOS occurred among its first t generated tokens (computed post hoc from the output).
    ``skip_prompt``: the prompt call counts nothing (capture's ``stat_positions="generated"``)."""
    b = new_tokens.shape[0]
    is_eos = torch.isin(new_tokens, torch.as_tensor(eos_ids).flatten())
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full((b,), 10**9))
    pos, s1, s2, tok = [], [], [], []
    for recs in records:
        w_ = recs[0].shape[-1]
        p = torch.zeros(b, w_, dtype=torch.int32)
        a = torch.zeros(b, w_)
        q = torch.zeros(b, w_)
        n = torch.zeros(b, dtype=torch.int64)
        for t, g in enumerate(recs):
            if t == 0 and skip_prompt:
                continue
            if t == 0:
                valid = attention_mask[:, -g.shape[1]:].bool()
            else:
                valid = (t <= first)[:, None]
            gv = g.float() * valid.float()[..., None]
            p += (gv > 0).sum(1, dtype=torch.int32)
            a += gv.sum(1)
            q += (gv * gv).sum(1)
            n += valid.sum(1)
        pos.append(p), s1.append(a), s2.append(q), tok.append(n)
    return torch.cat(pos, 1), torch.cat(s1, 1), torch.cat(s2, 1), torch.stack(tok, 1)
