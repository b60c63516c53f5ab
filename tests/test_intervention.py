"""Interventions vs plain forward hooks: identical tokens and logits for every kind, positions all/generated."""
import numpy as np
import pytest
import torch

from conftest import build_tiny_omni, hook_generate, tiny_omni_inputs, tiny_qwen2
from esnlib.intervention import Intervention, edit, generate
from esnlib.sites import find_sites, split_by_site

GEN = dict(max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None, return_dict_in_generate=True,
           output_logits=True)


def _inputs():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, 128, (2, 5), generator=g)
    am = torch.ones_like(ids)
    am[1, :2] = 0
    return dict(input_ids=ids, attention_mask=am)


@pytest.mark.parametrize("kind,alpha", [("steer", 20.0), ("add", 0.5), ("clamp", 0.3), ("deactivate", 0.0)])
@pytest.mark.parametrize("positions", ["all", "generated"])
def test_kinds_match_hooks(kind, alpha, positions):
    m = tiny_qwen2()
    sites = find_sites(m)
    idx = np.random.default_rng(0).choice(144, 60, replace=False)
    iv = Intervention(idx, kind=kind, alpha=alpha, positions=positions)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out = generate(m, _inputs(), iv, sites=sites, **GEN)
    edits = [[(torch.as_tensor(l), kind, alpha, positions)] if l.size else [] for l in split_by_site(idx, sites)]
    ref, _ = hook_generate(m, [s.module for s in sites], _inputs(), edits=edits, **GEN)
    base = m.generate(**_inputs(), **GEN)
    assert torch.equal(out.sequences, ref.sequences)
    assert all(torch.equal(a, b) for a, b in zip(out.logits, ref.logits))
    assert not torch.equal(out.logits[1], base.logits[1]), "the edit must change the logits"
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())  # weights untouched
    again = m.generate(**_inputs(), **GEN)
    assert all(torch.equal(a, b) for a, b in zip(again.logits, base.logits))


def test_generated_positions_leave_prefill_alone():
    m = tiny_qwen2()
    iv = Intervention(np.arange(144), kind="deactivate", positions="generated")
    out = generate(m, _inputs(), iv, **GEN)
    base = m.generate(**_inputs(), **GEN)
    assert torch.equal(out.logits[0], base.logits[0]) and not torch.equal(out.logits[1], base.logits[1])


def test_deactivate_all_equals_zero_mlp_output():
    m = tiny_qwen2()
    out = generate(m, _inputs(), Intervention(np.arange(144), "deactivate"), **GEN)
    hs = [layer.mlp.register_forward_hook(lambda mod, a, o: torch.zeros_like(o)) for layer in m.model.layers]
    try:
        ref = m.generate(**_inputs(), **GEN)
    finally:
        for h in hs:
            h.remove()
    assert torch.equal(out.sequences, ref.sequences)
    assert all(torch.equal(a, b) for a, b in zip(out.logits, ref.logits))


def test_union_list_and_capture_in_one_trace():
    m = tiny_qwen2()
    a, b = Intervention([1, 50], "steer", 2.0), Intervention([50, 140], "steer", 2.0)
    u = Intervention.union(a, b)
    assert u.index.tolist() == [1, 50, 140]
    o1 = generate(m, _inputs(), u, **GEN)
    o2, st = generate(m, _inputs(), [u], capture=True, **GEN)
    assert all(torch.equal(x, y) for x, y in zip(o1.logits, o2.logits)) and st.positive.shape == (2, 144)
    # a list with different kinds applies each in turn: steer then add on neuron 1
    o3 = generate(m, _inputs(), [Intervention([1], "steer", 1.0), Intervention([1], "add", 0.5)], **GEN)
    ref, _ = hook_generate(m, [l.mlp.act_fn for l in m.model.layers], _inputs(),
                           edits=[[(torch.tensor([1]), "steer", 1.0, "all"), (torch.tensor([1]), "add", 0.5, "all")],
                                  [], []], **GEN)
    assert all(torch.equal(x, y) for x, y in zip(o3.logits, ref.logits))
    with pytest.raises(ValueError, match="differ"):
        Intervention.union(a, Intervention([2], "add", 2.0))


def test_edit_function_and_bad_input():
    g = torch.tensor([[-1.0, 0.5, 2.0]])
    assert torch.equal(edit(g, [1, 2], "steer", 1.0), torch.tensor([[-1.0, 1.0, 4.0]]))
    assert torch.equal(edit(g, [0], "add", 0.5), torch.tensor([[-0.5, 0.5, 2.0]]))
    assert torch.equal(edit(g, [0, 1], "clamp", 1.0), torch.tensor([[1.0, 1.0, 2.0]]))
    assert torch.equal(edit(g, [2], "deactivate", 0), torch.tensor([[-1.0, 0.5, 0.0]]))
    assert torch.equal(g, torch.tensor([[-1.0, 0.5, 2.0]]))  # unchanged
    with pytest.raises(ValueError, match="unknown intervention kind"):
        edit(g, [0], "scale", 1.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        edit(g, [0], "steer", -0.5)
    with pytest.raises(IndexError, match="out of range"):
        edit(g, [3], "steer", 1.0)
    with pytest.raises(ValueError, match="unknown positions"):
        Intervention([0], positions="prompt")
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        Intervention([0], "add", -1.0)
    with pytest.raises(IndexError, match="out of range"):
        generate(tiny_qwen2(), _inputs(), Intervention([144]), max_new_tokens=2)
    with pytest.raises(TypeError, match="Intervention"):
        generate(tiny_qwen2(), _inputs(), [[1, 2]], max_new_tokens=2)


def test_omni_edit_thinker_and_talker_in_one_generate():
    m = build_tiny_omni()
    sites = find_sites(m, "both")
    kw = dict(thinker_max_new_tokens=4, thinker_do_sample=False, talker_max_new_tokens=6, talker_do_sample=False,
              talker_eos_token_id=[60, 62], token2wav_num_steps=2)
    idx = np.r_[0:40, 100:130]  # thinker layer 0 and talker layer 0
    iv = Intervention(idx, "steer", 30.0)
    torch.manual_seed(0)
    (seq, wavs), st = generate(m, tiny_omni_inputs(), iv, sites=sites, capture=True, **kw)
    edits = [[(torch.as_tensor(l), "steer", 30.0, "all")] if l.size else [] for l in split_by_site(idx, sites)]
    torch.manual_seed(0)
    (rseq, rwavs), _ = hook_generate(m, [s.module for s in sites], tiny_omni_inputs(), edits=edits, **kw)
    torch.manual_seed(0)
    bseq, bwavs = m.generate(**tiny_omni_inputs(), **kw)
    assert torch.equal(seq, rseq) and all(torch.equal(a, b) for a, b in zip(wavs, rwavs))
    assert not all(torch.equal(a, b) for a, b in zip(wavs, bwavs)), "steering should change the waveform"
    assert st.site_tokens[:, 2].min() > 0


@pytest.mark.parametrize("kind,alpha", [("steer", 0.3), ("add", 0.5), ("clamp", 0.0), ("clamp", 0.3),
                                        ("deactivate", 0.0)])
def test_dense_decode_edit_is_bitwise_the_indexed_edit(kind, alpha, monkeypatch):
    """The runner edits small float32 activations (a decoding step) with one full-width op; larger ones with indexed
    ops. Both must give the same bits, signed zeros, infinities and NaN included."""
    import importlib

    cap = importlib.import_module("esnlib.capture")  # the module (esnlib.capture the attribute is the function)

    special = torch.tensor([-0.0, 0.0, 1e-40, -1e-40, float("inf"), float("-inf"), float("nan"), 0.3, -0.3, 5.0])
    g = torch.cat([special, torch.randn(246, generator=torch.Generator().manual_seed(0))]).reshape(1, 1, 256)
    g = g.repeat(3, 1, 1)
    ix = torch.arange(0, 256, 2)
    ed = cap._SiteEdits.build([(ix, kind, alpha, "all")])
    dense = g.clone()
    ed(dense, 1)
    monkeypatch.setattr(cap, "_DENSE_MAX", 0)
    indexed = g.clone()
    ed(indexed, 1)
    assert torch.equal(dense.view(torch.int32), indexed.view(torch.int32))
    assert not torch.equal(dense.view(torch.int32), g.view(torch.int32)), "the edit must change something"
