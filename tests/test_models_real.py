"""Real-model adapters on tiny random-weight configs of the real transformers classes (no weights, no network)."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

from esnlib.corpora.base import Utterance

transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)
transformers.logging.set_verbosity_error()

V = 300
SPECIAL = {"<pad>": 0, "<unk>": 1, "<|im_end|>": 2, "<|im_start|>": 3, "<|AUDIO|>": 250, "<|audio_bos|>": 251,
           "<|audio_eos|>": 252}
AUD, ABOS, AEOS = 250, 251, 252
IMG, VID, VS, VE = 253, 254, 255, 256
TXT_PAD, TXT_BOS, TXT_EOS = 257, 258, 259
N_MELS = 16


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_tokenizer(extra_special: dict | None = None, names: dict | None = None):
    """A word-level tokenizer with the Qwen special tokens at fixed ids, built offline with `tokenizers`; ``names``
    adds model-specific special-token attributes (``tok.audio_token`` ...), as the Qwen2.5-Omni tokenizer has."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = {**SPECIAL, **(extra_special or {})}
    vocab = dict(special)
    taken = set(vocab.values())
    for i in range(V):
        if i not in taken:
            vocab[f"w{i}"] = i
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece()
    extra = [k for k in special if k not in ("<pad>", "<unk>")]
    if names:
        tk.add_special_tokens(extra)
        return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>",
                                       eos_token="<|im_end|>", extra_special_tokens=names)
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
                                   additional_special_tokens=extra)


def tiny_qwen_omni():
    """Qwen2_5OmniForConditionalGeneration with 2-layer thinker and talker, tiny token2wav, a hand-built speaker."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    rope = {"rope_type": "default", "rope_theta": 10000.0}
    text = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, rope_parameters={**rope, "mrope_section": [1, 1, 2]}, eos_token_id=2,
                pad_token_id=0)
    thinker = dict(text_config=text,
                   audio_config=dict(num_mel_bins=N_MELS, encoder_layers=1, encoder_attention_heads=2,
                                     encoder_ffn_dim=32, d_model=16, output_dim=32, n_window=8,
                                     max_source_positions=1500),
                   vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                                      fullatt_block_indexes=[0]),
                   audio_token_index=AUD, image_token_index=IMG, video_token_index=VID, audio_start_token_id=ABOS,
                   audio_end_token_id=AEOS, user_token_id=4, vision_start_token_id=VS, vision_end_token_id=VE)
    cv = 40
    talker = dict(vocab_size=cv, embedding_size=32, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=12,
                  rope_parameters={**rope, "mrope_section": [1, 1, 4]}, audio_token_index=AUD,
                  image_token_index=IMG, video_token_index=VID, vision_start_token_id=VS, vision_end_token_id=VE,
                  audio_start_token_id=ABOS, audio_end_token_id=AEOS, tts_text_start_token_id=TXT_BOS,
                  tts_text_end_token_id=TXT_EOS, tts_text_pad_token_id=TXT_PAD, tts_codec_start_token_id=cv - 4,
                  tts_codec_end_token_id=cv - 3, tts_codec_pad_token_id=cv - 5, tts_codec_mask_token_id=cv - 1)
    t2w = dict(dit_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ff_mult=1, emb_dim=16,
                               head_dim=16, num_embeds=cv, mel_dim=16, enc_emb_dim=8, enc_dim=16,
                               enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8, enc_se_channels=8,
                               look_ahead_layers=[1], look_backward_layers=[0], block_size=4),
               bigvgan_config=dict(mel_dim=16, upsample_initial_channel=16, resblock_kernel_sizes=[3],
                                   resblock_dilation_sizes=[[1, 3, 5]], upsample_rates=[4, 4],
                                   upsample_kernel_sizes=[8, 8]))
    cfg = Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, token2wav_config=t2w,
                            enable_audio_output=True)
    torch.manual_seed(0)
    model = Qwen2_5OmniForConditionalGeneration(cfg).eval()
    g = torch.Generator().manual_seed(1)
    model.speaker_map = {name: {"bos_token": TXT_BOS, "cond": torch.randn(1, 8, generator=g),
                                "ref_mel": torch.randn(1, 20, 16, generator=g)} for name in ("Chelsie", "Ethan")}
    return model


def write_utts(root, n=3, seconds=(0.6, 1.0, 0.8)):
    """n short sine clips (different lengths, so batches need padding) as Utterances."""
    from esnlib.audio import save_wav

    utts = []
    for i in range(n):
        sec = seconds[i % len(seconds)]
        t = np.arange(int(16000 * sec)) / 16000
        wav = (0.3 * np.sin(2 * np.pi * (180 + 40 * i) * t)).astype(np.float32)
        path = save_wav(os.path.join(root, f"u{i}.wav"), wav)
        utts.append(Utterance(id=f"u{i}", corpus="fixture", speaker="s0", emotion="neutral", text="w5 w6", path=str(path),
                              index=i + 1))
    return utts


@pytest.fixture(scope="module")
def omni():
    from transformers import WhisperFeatureExtractor

    from esnlib.models.qwen_omni import QwenOmniAdapter

    model = tiny_qwen_omni()
    return QwenOmniAdapter(model, tokenizer=tiny_tokenizer(), feature_extractor=WhisperFeatureExtractor(
        feature_size=N_MELS), max_new_tokens=4, talker_max_new_tokens=8, token2wav_kwargs={"num_steps": 2})


# ---------------------------------------------------------------------------------------------------------------
# Qwen2.5-Omni
def test_omni_prompt_has_one_audio_token_per_encoder_frame(omni, tmp_path):
    from esnlib.models.qwen_omni import audio_token_count, evc_instruction

    utts = write_utts(str(tmp_path), 2, seconds=(0.5, 1.0))
    from esnlib.models._hf import load_audios

    inputs = omni.build_inputs(load_audios(utts), [evc_instruction("happy")] * 2, "sys")
    ids, am = inputs["input_ids"], inputs["attention_mask"]
    frames = inputs["feature_attention_mask"].sum(-1)
    assert frames.tolist() == [50, 100]
    for row in range(2):
        assert int((ids[row] == AUD).sum()) == audio_token_count(int(frames[row]))
    # Left padding: the shorter prompt (fewer audio tokens) is padded on the left, the last column is real.
    assert am[0, 0] == 0 and am[:, -1].all()
    assert "surprised" in evc_instruction("surprise")
    with pytest.raises(ValueError, match="unknown target"):
        evc_instruction("bored")


def test_omni_evc_returns_text_and_16k_audio(omni, tmp_path):
    utts = write_utts(str(tmp_path), 3)
    torch.manual_seed(0)
    gens = omni.evc(utts, ["happy", "sad", "angry"], batch_size=2)
    assert len(gens) == 3
    for g, target in zip(gens, ["happy", "sad", "angry"]):
        assert isinstance(g.text, str)
        assert g.audio.dtype == np.float32 and g.audio.ndim == 1 and g.audio.size > 0
        assert g.extra["target"] == target
    # The same waveform as a bare generate, 24 kHz token2wav output resampled to 16 kHz (length ratio 2/3), with
    # token2wav's noise seeded by the sample's own seed: the persona is the whole system turn, the EVC instruction
    # opens the user turn.
    from esnlib.audio import resample
    from esnlib.models._hf import load_audios, sample_seed
    from esnlib.models.qwen_omni import QWEN_OMNI_PERSONA, evc_user_text

    one = omni.evc(utts[:1], ["happy"])[0]
    np.testing.assert_array_equal(one.audio, gens[0].audio)  # seeded per sample: batch and order do not matter
    inputs = omni.build_inputs(load_audios(utts[:1]), [evc_user_text("happy")], QWEN_OMNI_PERSONA)
    assert inputs["input_ids"][0].tolist().count(omni.tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3
    torch.manual_seed(sample_seed(0, utts[0].id, "happy"))
    seq, raw = omni.model.generate(**inputs, speaker="Chelsie", thinker_max_new_tokens=4, talker_max_new_tokens=8,
                                   talker_do_sample=False, thinker_do_sample=False, token2wav_num_steps=2)
    expected = resample(raw.numpy(), 24000, 16000)
    assert abs(one.audio.size - raw.numel() * 2 / 3) <= 1
    np.testing.assert_allclose(one.audio, expected, atol=1e-6)
    with pytest.raises(ValueError, match="targets"):
        omni.evc(utts, ["happy"])


def test_omni_batched_text_matches_single(omni, tmp_path):
    """Left padding is correct: greedy thinker text of each row is the same alone and in a padded batch."""
    utts = write_utts(str(tmp_path), 3)
    batched = [g.text for g in omni.ser(utts, batch_size=3)]
    single = [omni.ser([u], batch_size=1)[0].text for u in utts]
    assert batched == single


def test_omni_ser_label_or_none(omni, tmp_path):
    utts = write_utts(str(tmp_path), 2)
    gens = omni.ser(utts, batch_size=2)
    for g in gens:
        assert g.label is None or g.label in omni.labels
        assert g.audio is None


def test_omni_sites_lm_and_talker(omni):
    lm = omni.sites("lm")
    talker = omni.sites("talker")
    assert [s.path for s in lm] == [f"thinker.model.language_model.layers.{i}.mlp.act_fn" for i in range(2)]
    assert [s.path for s in talker] == [f"talker.model.layers.{i}.mlp.act_fn" for i in range(2)]
    assert [s.width for s in lm] == [64, 64] and [s.width for s in talker] == [48, 48]
    both = omni.sites("both")
    assert [s.side for s in both] == ["lm", "lm", "talker", "talker"]


def test_omni_speaker_and_missing_talker_errors():
    from transformers import WhisperFeatureExtractor

    from esnlib.models.qwen_omni import QwenOmniAdapter

    model = tiny_qwen_omni()
    with pytest.raises(ValueError, match="speaker"):
        QwenOmniAdapter(model, tokenizer=tiny_tokenizer(), feature_extractor=WhisperFeatureExtractor(feature_size=16),
                        speaker="Nobody")
    with pytest.raises(ValueError, match="tokenizer"):
        QwenOmniAdapter(model)


@pytest.mark.parametrize("scope", ["lm", "talker"])
def test_omni_capture_through_esnlib(omni, tmp_path, scope):
    """Capture runs under the core (nnsight) and leaves the generation unchanged; rows follow the input order."""
    utts = write_utts(str(tmp_path), 3)
    targets = ["happy", "sad", "angry"]
    torch.manual_seed(0)
    plain = omni.evc(utts, targets, batch_size=2)
    torch.manual_seed(0)
    gens, stats = omni.evc(utts, targets, capture=True, scope=scope, batch_size=2)
    assert [g.text for g in gens] == [g.text for g in plain]
    for a, b in zip(gens, plain):
        np.testing.assert_allclose(a.audio, b.audio, atol=1e-6)
    sites = omni.sites(scope)
    assert stats.positive.shape == (3, sites[-1].stop) and stats.site_tokens.shape == (3, len(sites))
    assert (stats.tokens > 0).all()
    assert (stats.positive <= stats.tokens[:, None]).all()
    # Row order: utterance 1 alone gives the same counts as row 1 of the padded batch.
    torch.manual_seed(0)
    _, one = omni.evc(utts[1:2], ["sad"], capture=True, scope=scope)
    if scope == "lm":
        np.testing.assert_array_equal(one.positive[0], stats.positive[1])
    assert one.tokens[0] == stats.tokens[1]


def test_omni_capture_both_sides(omni, tmp_path):
    """Thinker and talker sites in one generate: both sides count positions."""
    utts = write_utts(str(tmp_path), 2)
    _, stats = omni.evc(utts, ["happy", "sad"], capture=True, scope="both")
    sites = omni.sites("both")
    assert (stats.site_tokens[:, 0] > 0).all() and (stats.site_tokens[:, -1] > 0).all()
    assert stats.positive.shape == (2, sites[-1].stop)


def test_omni_steer_and_deactivate_through_esnlib(omni, tmp_path):
    import esnlib

    utts = write_utts(str(tmp_path), 2)
    sites = omni.sites("lm")
    all_lm = np.arange(sites[-1].stop)
    # Deactivating every LM neuron: the served (edited) activations are all zero.
    _, stats = omni.ser(utts, capture=True, intervention=esnlib.Intervention(index=all_lm, kind="deactivate",
                                                                              alpha=0.0))
    assert stats.sum.sum() == 0 and stats.positive.sum() == 0 and stats.tokens.min() > 0
    # Steering with alpha=0 is the identity; a strong steer changes what the thinker says on random weights.
    base = [g.text for g in omni.ser(utts)]
    same = [g.text for g in omni.ser(utts, intervention=esnlib.Intervention(index=all_lm, kind="steer", alpha=0.0))]
    assert same == base
    moved = [g.text for g in omni.ser(utts, intervention=esnlib.Intervention(index=all_lm, kind="steer",
                                                                            alpha=50.0))]
    assert moved != base


# ---------------------------------------------------------------------------------------------------------------
# Qwen2-Audio and Audio Flamingo 3 (SER only)
def _tiny_text(**kw):
    return dict(model_type="qwen2", vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, eos_token_id=2, pad_token_id=0, **kw)


_AUDIO = dict(num_mel_bins=N_MELS, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16)
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
          "{% if c['type'] == 'audio' %}<sound>{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def qwen2_audio():
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor, \
        WhisperFeatureExtractor

    from esnlib.models.qwen2_audio import Qwen2AudioAdapter

    torch.manual_seed(0)
    cfg = Qwen2AudioConfig(audio_config=dict(_AUDIO), text_config=_tiny_text(), audio_token_index=AUD)
    model = Qwen2AudioForConditionalGeneration(cfg).eval()
    proc = Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=N_MELS),
                               tokenizer=tiny_tokenizer())
    return Qwen2AudioAdapter(model, proc, max_new_tokens=4)


@pytest.fixture(scope="module")
def flamingo():
    from transformers import AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor, \
        WhisperFeatureExtractor

    from esnlib.models.audio_flamingo import AudioFlamingo3Adapter

    torch.manual_seed(0)
    cfg = AudioFlamingo3Config(audio_config=dict(_AUDIO), text_config=_tiny_text(), audio_token_id=249)
    model = AudioFlamingo3ForConditionalGeneration(cfg).eval()
    proc = AudioFlamingo3Processor(feature_extractor=WhisperFeatureExtractor(feature_size=N_MELS),
                                   tokenizer=tiny_tokenizer({"<sound>": 249}), chat_template=CHATML)
    return AudioFlamingo3Adapter(model, proc, max_new_tokens=4)


@pytest.mark.parametrize("which", ["qwen2_audio", "flamingo"])
def test_ser_models_run_and_find_sites(which, request, tmp_path):
    import esnlib

    adapter = request.getfixturevalue(which)
    utts = write_utts(str(tmp_path), 3)
    sites = adapter.sites("lm")
    assert [s.path for s in sites] == [f"model.language_model.layers.{i}.mlp.act_fn" for i in range(2)]
    gens = adapter.ser(utts, batch_size=2)
    assert len(gens) == 3 and all(g.label is None or g.label in adapter.labels for g in gens)
    # Left-padded batch gives the same greedy answers as one at a time.
    assert [g.text for g in gens] == [adapter.ser([u])[0].text for u in utts]
    _, stats = adapter.ser(utts, capture=True, batch_size=2)
    assert stats.positive.shape == (3, sites[-1].stop) and (stats.tokens > 0).all()
    iv = esnlib.Intervention(index=np.arange(sites[-1].stop), kind="deactivate", alpha=0.0)
    _, edited = adapter.ser(utts[:1], capture=True, intervention=iv)
    assert edited.sum.sum() == 0
    with pytest.raises(NotImplementedError, match="EVC"):
        adapter.evc(utts, ["happy"] * 3)
    with pytest.raises(ValueError, match="scope"):
        adapter.sites("talker")


# ---------------------------------------------------------------------------------------------------------------
# Qwen2.5-Omni: the processor path, thinker EOS, the processor fallback
OMNI_TOKEN_NAMES = {"image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
                    "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
                    "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"}


def omni_processor(monkeypatch):
    """The real Qwen2_5OmniProcessor, built offline: a tokenizer carrying the Qwen2.5-Omni model-specific special
    tokens, a WhisperFeatureExtractor and the PIL image processor. Its video processor needs torchvision, which
    cannot load next to the CPU torch here, so only the constructor's class check for that one argument is
    bypassed; no video is ever passed, and every text/audio step is the processor's own code."""
    import transformers.processing_utils as pu
    from transformers import Qwen2_5OmniProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    check = pu.ProcessorMixin.check_argument_for_proper_class
    monkeypatch.setattr(pu.ProcessorMixin, "check_argument_for_proper_class",
                        lambda self, name, arg: type(arg) if name == "video_processor" else check(self, name, arg))
    tok = tiny_tokenizer({"<|IMAGE|>": IMG, "<|VIDEO|>": VID, "<|vision_bos|>": VS, "<|vision_eos|>": VE},
                         names=OMNI_TOKEN_NAMES)
    return Qwen2_5OmniProcessor(image_processor=Qwen2VLImageProcessorPil(), video_processor=object(),
                                feature_extractor=WhisperFeatureExtractor(feature_size=N_MELS), tokenizer=tok)


def test_omni_processor_path_equals_direct_path(omni, tmp_path, monkeypatch):
    """Qwen2_5OmniProcessor (what real users get) builds the same tensors as the direct path the other tests use,
    so EVC through it gives the same text and audio."""
    from esnlib.models._hf import load_audios
    from esnlib.models.qwen_omni import QWEN_OMNI_PERSONA, QwenOmniAdapter, evc_user_text

    proc = QwenOmniAdapter(omni.model, processor=omni_processor(monkeypatch), max_new_tokens=4,
                           talker_max_new_tokens=8, token2wav_kwargs={"num_steps": 2})
    utts = write_utts(str(tmp_path), 2, seconds=(0.6, 1.3))
    audios, texts = load_audios(utts), [evc_user_text("happy"), evc_user_text("sad")]
    a = proc.build_inputs(audios, texts, QWEN_OMNI_PERSONA)
    b = omni.build_inputs(audios, texts, QWEN_OMNI_PERSONA)
    assert sorted(a) == sorted(b)
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert (a["attention_mask"][:, 0] == 0).any()  # different lengths: left padding happened
    ga, gb = proc.evc(utts, ["happy", "sad"]), omni.evc(utts, ["happy", "sad"])
    assert [g.text for g in ga] == [g.text for g in gb]
    for x, y in zip(ga, gb):
        np.testing.assert_array_equal(x.audio, y.audio)


def test_omni_thinker_eos_from_the_tokenizer_when_the_config_has_none(tmp_path):
    """A checkpoint whose thinker generation config has no EOS: the adapter passes the tokenizer's <|im_end|>, so the
    thinker stops there and capture counts only the prompt positions when EOS comes first."""
    from transformers import WhisperFeatureExtractor

    from esnlib.models._hf import load_audios, ser_prompt
    from esnlib.models.qwen_omni import QWEN_OMNI_PERSONA, QwenOmniAdapter

    model = tiny_qwen_omni()
    model.thinker.generation_config.eos_token_id = None
    with torch.no_grad():
        model.thinker.lm_head.bias = torch.nn.Parameter(torch.zeros(V))
        model.thinker.lm_head.bias[2] = 1e4  # <|im_end|> always wins
    ad = QwenOmniAdapter(model, tokenizer=tiny_tokenizer(), feature_extractor=WhisperFeatureExtractor(
        feature_size=N_MELS), max_new_tokens=4)
    assert ad.thinker_eos == [2]
    utts = write_utts(str(tmp_path), 2)
    gens, stats = ad.ser(utts, capture=True, batch_size=2)
    assert [g.text for g in gens] == ["", ""]
    mask = ad.build_inputs(load_audios(utts), [ser_prompt(ad.labels)] * 2, QWEN_OMNI_PERSONA)["attention_mask"]
    assert stats.tokens.tolist() == mask.sum(1).tolist()


def test_omni_processor_fallback_without_torchvision(tmp_path):
    """A checkpoint folder whose processor cannot load (torchvision missing: transformers raises ImportError) falls
    back to the tokenizer + WhisperFeatureExtractor, with a warning."""
    import importlib.util
    import json

    from transformers import WhisperFeatureExtractor

    from esnlib.models.qwen_omni import input_builders

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the processor loads")
    tiny_tokenizer().save_pretrained(tmp_path)
    fe = WhisperFeatureExtractor(feature_size=N_MELS).to_dict()
    fe.update(image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen2_5OmniProcessor")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(fe))
    with pytest.warns(UserWarning, match="Qwen2_5OmniProcessor unavailable"):
        kw = input_builders(str(tmp_path))
    assert sorted(kw) == ["feature_extractor", "tokenizer"] and kw["feature_extractor"].feature_size == N_MELS


# ---------------------------------------------------------------------------------------------------------------
# Kimi-Audio and MiniCPM-o: not runnable offline; module trees built from the transformers layer classes they use
def test_kimi_audio_sites_on_a_tree_of_its_layer_type():
    from torch import nn
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

    from esnlib.models.kimi_audio import kimi_sites

    cfg = Qwen2Config(hidden_size=16, intermediate_size=24, num_attention_heads=2, num_key_value_heads=1)
    alm = nn.Module()
    alm.model = nn.Module()
    alm.model.layers = nn.ModuleList([Qwen2DecoderLayer(cfg, i) for i in range(3)])
    alm.model.mimo_layers = nn.ModuleList([Qwen2DecoderLayer(cfg, i) for i in range(2)])
    lm, talker, both = kimi_sites(alm, "lm"), kimi_sites(alm, "talker"), kimi_sites(alm, "both")
    assert [s.path for s in lm] == [f"model.layers.{i}.mlp.act_fn" for i in range(3)]
    assert [s.path for s in talker] == [f"model.mimo_layers.{i}.mlp.act_fn" for i in range(2)]
    assert [s.side for s in both] == ["lm"] * 3 + ["talker"] * 2
    assert [s.offset for s in both] == [0, 24, 48, 72, 96] and talker[0].offset == 0
    bare = nn.Module()
    bare.model = nn.Module()
    bare.model.layers = alm.model.layers
    with pytest.raises(ValueError, match="mimo_layers"):
        kimi_sites(bare, "talker")


def test_kimi_audio_chats_and_missing_package(monkeypatch):
    import builtins

    from esnlib.models.kimi_audio import KimiAudioAdapter, evc_chats, ser_chats

    chats = evc_chats("/x/a.wav", "surprise")
    assert [c["message_type"] for c in chats] == ["text", "audio", "text"]
    assert all(c["role"] == "user" for c in chats)  # kimia_infer accepts only user/assistant roles
    assert chats[1]["content"] == "/x/a.wav" and "surprised" in chats[2]["content"]
    assert "(E) surprise" in ser_chats("/x/a.wav", ("neutral", "angry", "happy", "sad", "surprise"))[0]["content"]
    real_import = builtins.__import__

    def no_kimia(name, *a, **kw):
        if name.startswith("kimia_infer"):
            raise ImportError("No module named 'kimia_infer'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_kimia)
    monkeypatch.setattr("esnlib.models.envs.check_environment", lambda name: None)  # as in .venv-kimi-audio
    with pytest.raises(ImportError, match="kimia_infer.*pip install"):
        KimiAudioAdapter.from_pretrained("/nonexistent")


def test_minicpm_o_sites_on_a_tree_of_its_layer_types():
    from torch import nn
    from transformers import LlamaConfig, LlamaModel, Qwen3Config, Qwen3ForCausalLM

    from esnlib.models.minicpm_o import MiniCPMOAdapter, evc_msgs

    class MiniCPMOLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.llm = Qwen3ForCausalLM(Qwen3Config(vocab_size=50, hidden_size=16, intermediate_size=40,
                                                    num_hidden_layers=2, num_attention_heads=2,
                                                    num_key_value_heads=1, head_dim=8))
            self.tts = nn.Module()
            self.tts.model = LlamaModel(LlamaConfig(vocab_size=10, hidden_size=16, intermediate_size=20,
                                                    num_hidden_layers=3, num_attention_heads=2,
                                                    num_key_value_heads=1))

        def chat(self, **kw):
            raise AssertionError("not called")

    ad = MiniCPMOAdapter(MiniCPMOLike())
    lm, talker = ad.sites("lm"), ad.sites("talker")
    assert [s.path for s in lm] == ["llm.model.layers.0.mlp.act_fn", "llm.model.layers.1.mlp.act_fn"]
    assert [s.path for s in talker] == [f"tts.model.layers.{i}.mlp.act_fn" for i in range(3)]
    assert [s.width for s in ad.sites("both")] == [40, 40, 20, 20, 20]
    msgs = evc_msgs(np.zeros(16000, np.float32), "angry")
    assert msgs[0]["role"] == "system" and isinstance(msgs[1]["content"][0], np.ndarray)
    assert "angry" in msgs[1]["content"][1]
    with pytest.raises(TypeError, match="MiniCPM-o"):
        MiniCPMOAdapter(nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------------------------
# registry
def test_registry_resolves_names_paths_and_errors(tmp_path):
    import json

    from esnlib.models.registry import MODELS, load_model, resolve

    assert resolve("qwen2.5-omni-7b") == ("qwen2.5-omni-7b", "Qwen/Qwen2.5-Omni-7B")
    assert resolve("Qwen/Qwen2-Audio-7B-Instruct")[0] == "qwen2-audio-7b"
    ck = tmp_path / "ckpt"
    ck.mkdir()
    (ck / "config.json").write_text(json.dumps({"model_type": "audioflamingo3"}))
    assert resolve(str(ck)) == ("audio-flamingo-3", str(ck))
    (ck / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="gpt2"):
        resolve(str(ck))
    with pytest.raises(ValueError, match="unknown model"):
        load_model("no-such-model")
    assert set(MODELS) >= {"demo", "qwen2.5-omni-7b", "qwen2-audio-7b", "audio-flamingo-3", "kimi-audio-7b",
                           "minicpm-o-4.5"}
    # A local folder without weights: a clear error from the loader (no network is tried for a path).
    (ck / "config.json").write_text(json.dumps({"model_type": "qwen2_audio"}))
    with pytest.raises((OSError, ValueError)):
        load_model(str(ck), device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from esnlib.models._hf import from_pretrained
        from transformers import Qwen2AudioForConditionalGeneration

        from_pretrained(Qwen2AudioForConditionalGeneration, str(tmp_path / "missing"), device="cpu", dtype=None)


def test_gpu_request_without_gpu_is_a_clear_error():
    from esnlib.models._hf import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_loaders_name_the_missing_checkpoint(tmp_path):
    from esnlib.models.audio_flamingo import AudioFlamingo3Adapter
    from esnlib.models.qwen_omni import QwenOmniAdapter

    for cls in (QwenOmniAdapter, AudioFlamingo3Adapter):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            cls.from_pretrained(str(tmp_path / "no-weights"), device="cpu")


def test_describe_identifies_the_model(omni, qwen2_audio):
    d = omni.describe()
    assert d["model"] == "qwen2.5-omni-7b" and d["speaker"] == "Chelsie" and d["dtype"] == "torch.float32"
    assert qwen2_audio.describe()["model"] == "qwen2-audio-7b"


def test_omni_speaker_choice_changes_the_voice(tmp_path):
    from transformers import WhisperFeatureExtractor

    from esnlib.models.qwen_omni import QwenOmniAdapter

    model = tiny_qwen_omni()
    utts = write_utts(str(tmp_path), 1)
    out = {}
    for spk in ("Chelsie", "Ethan"):
        ad = QwenOmniAdapter(model, tokenizer=tiny_tokenizer(), feature_extractor=WhisperFeatureExtractor(
            feature_size=N_MELS), speaker=spk, max_new_tokens=4, talker_max_new_tokens=8,
            token2wav_kwargs={"num_steps": 2})
        torch.manual_seed(0)
        out[spk] = ad.evc(utts, ["happy"])[0]
    assert out["Chelsie"].text == out["Ethan"].text  # the thinker does not depend on the voice
    a, b = out["Chelsie"].audio, out["Ethan"].audio
    assert a.shape != b.shape or not np.allclose(a, b)


def tiny_omni_adapter():
    """A tiny random-weight Qwen2.5-Omni adapter, for ``load_world(model="test_models_real:tiny_omni_adapter")``."""
    from transformers import WhisperFeatureExtractor

    from esnlib.models.qwen_omni import QwenOmniAdapter

    return QwenOmniAdapter(tiny_qwen_omni(), tokenizer=tiny_tokenizer(), feature_extractor=WhisperFeatureExtractor(
        feature_size=N_MELS), max_new_tokens=4, talker_max_new_tokens=8, token2wav_kwargs={"num_steps": 2})


def test_baseline_notebook_runs_on_tiny_qwen_omni(tmp_path, tmp_path_factory, monkeypatch):
    """Notebook 01 end to end (smoke) on the tiny Qwen2.5-Omni: the code path a 7B run takes (adapter prompts,
    thinker -> talker -> token2wav, 24 -> 16 kHz, judges, WER, the results store), only the weights differ."""
    import importlib.util
    import json
    import os
    import sys
    from pathlib import Path

    from esnlib.corpora.synthetic import build_demo_corpus

    root = Path(__file__).resolve().parents[1]
    corpus = tmp_path_factory.getbasetemp() / "demo_corpus_small"
    if not (corpus / "demo_corpus.json").exists():
        build_demo_corpus(corpus, n_utts=7, seed=0, workers=2, progress=False)
    monkeypatch.setenv("PYTHONPATH", str(root / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    spec = importlib.util.spec_from_file_location("run_notebooks", root / "scripts" / "run_notebooks.py")
    rn = importlib.util.module_from_spec(spec)
    sys.modules["run_notebooks"] = rn
    spec.loader.exec_module(rn)
    rc = rn.main(["--smoke", "--only", "01", "--out", str(tmp_path / "run"),
                  "-p", "model", "test_models_real:tiny_omni_adapter", "-p", "corpus_root", str(corpus),
                  "-p", "corpus_n_utts", "7", "-p", "results_dir", str(tmp_path / "results"),
                  "-p", "figures_dir", str(tmp_path / "figures")])
    nb = json.loads((tmp_path / "run" / "01_baseline.ipynb").read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert rc == 0 and not errors, errors[:1]
    assert (tmp_path / "figures" / "01_baseline_emotion_match.png").exists()
    from esnlib.store import ResultStore

    rows = ResultStore(tmp_path / "results").read("evc")
    assert len(rows) > 0 and set(rows["model_name"]) == {"qwen2.5-omni-7b"}
    assert rows["audio_path"].str.len().gt(0).any()  # token2wav waveforms were kept (resampled to 16 kHz)
