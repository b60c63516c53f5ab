"""The MiniCPM-o adapter against MiniCPM-o 4.5's *real* remote code on a tiny random config (its own environment).

Runs only where the checkpoint's Python files are on disk and the active transformers is the one they need:

    make env MODEL=minicpm-o                # transformers 4.51.0
    git clone https://github.com/OpenBMB/minicpm-o-4_5-pytorch-simple-demo /tmp/mcpmo   # or the HF checkpoint folder
    ESNLIB_MINICPMO_CODE=/tmp/mcpmo/MiniCPMO45 .venv-minicpm-o/bin/python -m pytest -q tests/test_minicpm_o_remote.py

The folder needs ``configuration_minicpmo.py``, ``modeling_minicpmo.py``, ``modeling_navit_siglip.py``,
``processing_minicpmo.py``, ``utils.py``, ``tokenization_minicpmo_fast.py``, the tokenizer files (``vocab.json``,
``merges.txt``, ``tokenizer_config.json``, ``added_tokens.json``, ``special_tokens_map.json``) and
``preprocessor_config.json``. Nothing of it is copied into esnlib. Two things are not the real model's: the weights
(random, tiny config) and the vocoder (CosyVoice2's token2wav, which needs ``minicpmo-utils[all]``, is replaced by a
tone generator with the same ``token2wav`` call). Because a random LM never says ``<|tts_eos|>``, up to which chat()
slices the TTS condition, a logits processor added to ``llm.generate`` makes it end its reply after three tokens.
"""
from __future__ import annotations

import importlib
import os
import shutil
import sys

import numpy as np
import pytest
import torch

import contract_models as cm
import esnlib

CODE = os.environ.get("ESNLIB_MINICPMO_CODE")
pytestmark = pytest.mark.skipif(not CODE or not os.path.isfile(os.path.join(CODE or "", "modeling_minicpmo.py")),
                                reason="set ESNLIB_MINICPMO_CODE to a folder with MiniCPM-o 4.5's remote code")


class ToyVocoder:
    """Stands in for CosyVoice2's token2wav: one tone per code plus noise (so the seed matters), 24 kHz."""

    sample_rate = 24000

    def token2wav(self, speech_token, speech_token_len, prompt_speech_16k=None, stream=False):
        t = torch.arange(960) / 24000
        parts = [0.1 * torch.sin(2 * np.pi * (150 + 20 * c) * t) + 0.01 * torch.randn(960)
                 for c in speech_token.reshape(-1).tolist()]
        yield {"tts_speech": torch.cat(parts or [torch.zeros(960)])[None]}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    import transformers
    from transformers import AutoTokenizer, LogitsProcessor, LogitsProcessorList

    if transformers.__version__ != "4.51.0":
        pytest.skip(f"MiniCPM-o's remote code needs transformers 4.51.0 (make env MODEL=minicpm-o), not "
                    f"{transformers.__version__}")
    work = tmp_path_factory.mktemp("minicpmo")
    pkg = work / "minicpmo_remote"
    shutil.copytree(CODE, pkg, ignore=shutil.ignore_patterns("tokenizer.json", "*.md"))  # tokenizer: vocab + merges
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(work))
    conf = importlib.import_module("minicpmo_remote.configuration_minicpmo")
    modeling = importlib.import_module("minicpmo_remote.modeling_minicpmo")
    tok = AutoTokenizer.from_pretrained(str(pkg), trust_remote_code=True)
    ids = tok.convert_tokens_to_ids
    cfg = conf.MiniCPMOConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=1024, init_vision=False, init_audio=True,
        init_tts=True, eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        audio_config=dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=128,
                          num_mel_bins=80, max_source_positions=1500),
        tts_config=dict(llm_dim=32, hidden_size=24, intermediate_size=40, num_attention_heads=2, num_hidden_layers=2,
                        num_key_value_heads=1, num_audio_tokens=64, num_text_tokens=len(tok), num_vq=1,
                        projector_type="mlp", condition_type="hidden_text_merge", audio_tokenizer_type="s3tokenizer",
                        s3_stream_generate=False, audio_bos_token_id=ids("<|im_end|>") - 1,
                        text_eos_token_id=ids("<|im_end|>"), attention_type="full_attention"),
        _attn_implementation="sdpa")
    cfg._name_or_path = str(pkg)  # chat() loads its processor from here
    torch.manual_seed(0)
    model = modeling.MiniCPMO(cfg).eval()
    model.tts.audio_tokenizer = ToyVocoder()
    end = {3: ids("<|tts_eos|>"), 4: ids("<|im_end|>")}

    class EndReply(LogitsProcessor):
        def __call__(self, input_ids, scores):
            force = end.get(input_ids.shape[1])
            if force is None:
                return scores
            out = torch.full_like(scores, -float("inf"))
            out[:, force] = 0
            return out

    generate = model.llm.generate
    model.llm.generate = lambda *a, **kw: generate(*a, **{**kw, "logits_processor": LogitsProcessorList([EndReply()])})
    from esnlib.models.minicpm_o import MiniCPMOAdapter

    return MiniCPMOAdapter(model, max_new_tokens=6)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return cm.write_clips(str(tmp_path_factory.mktemp("clips")), 2)


def _same(a, b):
    assert [g.text for g in a] == [g.text for g in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.audio, y.audio)


def test_real_remote_code_evc_ser_and_seeded_speech(real, clips):
    assert type(real.model.llm).__name__ == "Qwen3ForCausalLM" and type(real.model.tts.model).__name__ == "LlamaModel"
    gens = real.evc(clips, ["happy", "sad"])
    assert all(g.audio is not None and g.audio.size > 0 and g.text for g in gens)
    _same(real.evc(clips[::-1], ["sad", "happy"])[::-1], gens)
    assert len(real.ser(clips)) == 2


@pytest.mark.parametrize("scope", ["lm", "talker", "both"])
def test_real_remote_code_capture(real, clips, scope):
    plain = real.evc(clips, ["happy", "sad"])
    gens, stats = real.evc(clips, ["happy", "sad"], capture=True, scope=scope)
    _same(gens, plain)
    sites = real.sites(scope)
    assert stats.positive.shape == (2, sites[-1].stop) and (stats.site_tokens > 0).all()


@pytest.mark.parametrize("scope", ["lm", "talker"])
@pytest.mark.parametrize("kind,alpha", [("steer", 1.0), ("add", 2.0), ("clamp", 0.5), ("deactivate", 0.0)])
def test_real_remote_code_interventions(real, clips, scope, kind, alpha):
    sites = real.sites(scope)
    idx = np.arange(0, sites[-1].stop, 2)
    gens, stats = real.evc(clips, ["happy", "sad"], capture=True, scope=scope,
                           intervention=esnlib.Intervention(index=idx, kind=kind, alpha=alpha))
    assert all(g.audio is not None for g in gens)
    tok = np.repeat(stats.site_tokens, [s.width for s in sites], axis=1)[:, idx]
    if kind == "deactivate":
        assert (stats.sum[:, idx] == 0).all()
    elif kind in ("add", "clamp"):
        assert (stats.positive[:, idx] == tok).all()
