"""find_sites on tiny configs of every supported class; flat index helpers; bad input."""
import numpy as np
import pytest
import torch

from conftest import DemoLALM, build_tiny_omni, tiny_audio_flamingo3, tiny_llama, tiny_qwen2, tiny_qwen2_audio
from esnlib.sites import find_sites, flat_to_layer, layer_to_flat, n_neurons, split_by_site


@pytest.mark.parametrize("build,prefix", [
    (tiny_qwen2, "model.layers"),
    (tiny_llama, "model.layers"),
    (tiny_qwen2_audio, "model.language_model.layers"),
    (tiny_audio_flamingo3, "model.language_model.layers"),
])
def test_lm_sites(build, prefix):
    m = build()
    sites = find_sites(m)
    assert [s.path for s in sites] == [f"{prefix}.{i}.mlp.act_fn" for i in range(3)]
    assert [s.layer for s in sites] == [0, 1, 2]
    assert [s.offset for s in sites] == [0, 48, 96] and n_neurons(sites) == 144
    assert all(s.side == "lm" and s.module is m.get_submodule(s.path) for s in sites)
    with pytest.raises(ValueError, match="no gated MLP.*talker"):
        find_sites(m, scope="talker")


def test_omni_sites():
    m = build_tiny_omni()
    both = find_sites(m, "both")
    assert [s.path for s in both] == ["thinker.model.language_model.layers.0.mlp.act_fn",
                                     "thinker.model.language_model.layers.1.mlp.act_fn",
                                     "talker.model.layers.0.mlp.act_fn", "talker.model.layers.1.mlp.act_fn"]
    assert [s.side for s in both] == ["lm", "lm", "talker", "talker"]
    assert [s.width for s in both] == [48, 48, 40, 40] and [s.offset for s in both] == [0, 48, 96, 136]
    # the vision blocks also have gated MLPs: they must not be sites
    assert any("visual" in n and hasattr(mm, "gate_proj") for n, mm in m.named_modules())
    assert [s.path for s in find_sites(m, "talker")] == [s.path for s in both[2:]]
    assert find_sites(m, "talker")[0].offset == 0


def test_demo_layout_and_wrappers():
    from nnsight import NNsight

    m = DemoLALM()
    assert [s.path for s in find_sites(m, "talker")] == ["talker.model.layers.0.mlp.act_fn",
                                                         "talker.model.layers.1.mlp.act_fn"]
    class Adapter:
        model = m
    assert find_sites(Adapter(), "both") == find_sites(NNsight(m), "both") == find_sites(m, "both")


def test_bad_models_and_scope():
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2MoeConfig, Qwen2MoeForCausalLM

    with pytest.raises(ValueError, match="unknown scope"):
        find_sites(tiny_qwen2(), scope="decoder")
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32))
    with pytest.raises(ValueError, match="GPT2LMHeadModel.*gate_proj"):
        find_sites(gpt2)
    moe = Qwen2MoeForCausalLM(Qwen2MoeConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
                                             moe_intermediate_size=8, shared_expert_intermediate_size=16,
                                             num_experts=4, num_experts_per_tok=2, num_hidden_layers=1,
                                             num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(NotImplementedError, match="mixture-of-experts"):
        find_sites(moe)
    with pytest.raises(TypeError, match="nn.Module"):
        find_sites(object())


def test_flat_index_helpers():
    sites = find_sites(build_tiny_omni(), "both")
    flat = np.array([0, 47, 48, 95, 96, 135, 136, 175])
    s, n = flat_to_layer(flat, sites)
    assert s.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and n.tolist() == [0, 47, 0, 47, 0, 39, 0, 39]
    assert layer_to_flat(s, n, sites).tolist() == flat.tolist()
    parts = split_by_site([175, 0, 50, 0], sites)
    assert [p.tolist() for p in parts] == [[0], [2], [], [39]]
    for bad in ([-1], [176]):
        with pytest.raises(IndexError):
            flat_to_layer(bad, sites)
    with pytest.raises(IndexError):
        layer_to_flat([2], [40], sites)
    with pytest.raises(IndexError):
        layer_to_flat([4], [0], sites)


def test_speech_side_markers_file_non_talker_stacks_on_the_talker_side():
    from esnlib.sites import _side_of

    assert _side_of("thinker.model.language_model.layers.3.mlp.act_fn") == "lm"
    assert _side_of("talker.model.layers.0.mlp.act_fn") == "talker"
    assert _side_of("model.mimo_layers.2.mlp.act_fn") == "talker"  # Kimi-Audio
    assert _side_of("tts.model.layers.1.mlp.act_fn") == "talker"  # MiniCPM-o
    assert _side_of("llm.model.layers.1.mlp.act_fn") == "lm"
