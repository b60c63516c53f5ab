"""capture() against plain forward hooks (bit-identical), the tiny Qwen2.5-Omni end to end, StatsStore."""
import json
import weakref

import numpy as np
import pytest
import torch

from conftest import build_tiny_omni, hook_generate, hook_stats, tiny_llama, tiny_omni_inputs, tiny_qwen2
from esnlib.capture import CaptureStats, StatsStore, capture
from esnlib.sites import find_sites

GEN = dict(max_new_tokens=7, do_sample=False, pad_token_id=0)


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 128, (3, 6), generator=g)
    am = torch.ones_like(ids)
    am[0, :3] = 0  # left padding
    am[2, :1] = 0
    ids[am == 0] = 0
    return dict(input_ids=ids, attention_mask=am)


def _eos_that_stops_one_row(model, inputs):
    """A token generated early by some row but not by every row, used as EOS so rows finish at different steps."""
    out = model.generate(**inputs, **GEN)
    new = out[:, inputs["input_ids"].shape[1]:]
    for t in range(1, 4):
        for b in range(new.shape[0]):
            tok = int(new[b, t])
            others = [(new[r] == tok).any() for r in range(new.shape[0]) if r != b]
            if tok not in new[b, :t].tolist() and not all(others):
                return tok
    pytest.fail("could not find a token that ends one row early; change the seed")


@pytest.mark.parametrize("build", [tiny_qwen2, tiny_llama])
def test_capture_matches_hooks(build):
    m = build()
    sites = find_sites(m)
    inputs = _batch()
    eos = _eos_that_stops_one_row(m, inputs)
    out, st = capture(m, inputs, sites=sites, eos_token_id=eos, **GEN)
    ref_out, recs = hook_generate(m, [s.module for s in sites], inputs, eos_token_id=eos, **GEN)
    assert torch.equal(out, ref_out)
    new = out[:, inputs["input_ids"].shape[1]:]
    finished = (new == eos).any(1)
    assert finished.any() and not finished.all(), "the test needs rows that finish early and rows that do not"
    pos, s1, s2, tok = hook_stats(recs, inputs["attention_mask"], new, [eos])
    assert st.positive.dtype == torch.int32 and st.sum.dtype == torch.float32
    assert torch.equal(st.positive, pos) and torch.equal(st.sum, s1) and torch.equal(st.sumsq, s2)
    assert torch.equal(st.site_tokens, tok) and torch.equal(st.tokens, tok[:, 0])
    # tokens by hand: valid prompt positions + one per step until the EOS is generated (the last token never runs)
    for b in range(3):
        e = int((new[b] == eos).float().argmax()) if finished[b] else new.shape[1] - 1
        assert int(st.tokens[b]) == int(inputs["attention_mask"][b].sum()) + e


def test_capture_generated_positions_match_hooks():
    """stat_positions="generated": the statistics of the decoding steps alone (the answer as it is fed back), bit for
    bit those of hooks that skip the prompt call; the outputs do not change."""
    m = tiny_qwen2()
    sites = find_sites(m)
    inputs = _batch()
    eos = _eos_that_stops_one_row(m, inputs)
    out, st = capture(m, inputs, sites=sites, eos_token_id=eos, stat_positions="generated", **GEN)
    _, every = capture(m, inputs, sites=sites, eos_token_id=eos, **GEN)
    ref_out, recs = hook_generate(m, [s.module for s in sites], inputs, eos_token_id=eos, **GEN)
    assert torch.equal(out, ref_out)
    new = out[:, inputs["input_ids"].shape[1]:]
    pos, s1, s2, tok = hook_stats(recs, inputs["attention_mask"], new, [eos], skip_prompt=True)
    assert torch.equal(st.positive, pos) and torch.equal(st.sum, s1) and torch.equal(st.sumsq, s2)
    assert torch.equal(st.site_tokens, tok)
    # the prompt's positions are exactly what is missing
    assert torch.equal(every.tokens - st.tokens, inputs["attention_mask"].sum(1))
    assert (st.positive <= every.positive).all() and not torch.equal(st.positive, every.positive)
    with pytest.raises(ValueError, match="stat_positions must be one of"):
        capture(m, inputs, sites=sites, stat_positions="answer", **GEN)


def test_capture_reduces_each_prompt_activation_before_the_next_site():
    """At the prompt every site serves a (batch, t, width) activation; capture reduces it at once, so when a site
    fires, no earlier site's prompt activation is still alive (holding them all was 1.9 GB on a 7B model)."""
    m = tiny_qwen2()
    sites = find_sites(m)
    refs, alive = [], []

    def hook(module, args, out):
        if out.shape[1] > 1:
            alive.append(sum(r() is not None for r in refs))
            refs.append(weakref.ref(out))

    handles = [s.module.register_forward_hook(hook) for s in sites]
    try:
        capture(m, _batch(), sites=sites, **GEN)
    finally:
        for h in handles:
            h.remove()
    assert len(alive) == len(sites) >= 3
    assert alive == [0] * len(sites)


def test_capture_default_sites_and_numpy():
    m = tiny_qwen2()
    out, st = capture(m, _batch()["input_ids"][:1], max_new_tokens=3, do_sample=False)
    s = st.numpy()
    assert s.positive.dtype == np.uint32 and s.positive.shape == (1, 144) and s.site_tokens.shape == (1, 3)
    cat = CaptureStats.concat([s, s])
    assert cat.positive.shape == (2, 144) and np.array_equal(cat.sum[1], s.sum[0])
    with pytest.raises(TypeError, match="inputs must be"):
        capture(m, [1, 2, 3], max_new_tokens=2)


def test_omni_thinker_and_talker_in_one_generate():
    m = build_tiny_omni()
    sites = find_sites(m, "both")
    inputs = tiny_omni_inputs()
    kw = dict(thinker_max_new_tokens=5, thinker_do_sample=False, talker_max_new_tokens=8, talker_do_sample=False,
              talker_eos_token_id=[60, 62], token2wav_num_steps=2)
    torch.manual_seed(0)
    (seq, wavs), st = capture(m, inputs, sites=sites, **kw)
    torch.manual_seed(0)
    (rseq, rwavs), recs = hook_generate(m, [s.module for s in sites], inputs, **kw)
    assert torch.equal(seq, rseq) and all(torch.equal(a, b) for a, b in zip(wavs, rwavs))
    assert len(wavs) == 2 and wavs[0].numel() > 0
    new = seq[:, inputs["input_ids"].shape[1]:]
    pos, s1, s2, tok = hook_stats(recs[:2], inputs["attention_mask"], new, [3])
    assert torch.equal(st.positive[:, :96], pos) and torch.equal(st.sum[:, :96], s1)
    assert torch.equal(st.sumsq[:, :96], s2) and torch.equal(st.site_tokens[:, :2], tok)
    # talker: its prompt is the thinker prompt + 2 codec positions; one position per talker step
    n_talker_steps = len(recs[2])
    assert n_talker_steps > 1 and st.positive[:, 96:].sum() > 0
    am_t = torch.cat([inputs["attention_mask"], torch.ones(2, 2, dtype=torch.long)], 1)
    assert torch.equal(st.site_tokens[:, 2], st.site_tokens[:, 3])
    assert (st.site_tokens[:, 2] <= am_t.sum(1) + n_talker_steps - 1).all()
    assert (st.site_tokens[:, 2] > am_t.sum(1)).all()


def _fake_stats(rng, b, sites):
    n, s = sites[-1].stop, len(sites)
    tok = rng.integers(5, 20, size=(b, s)).astype(np.uint32)
    return CaptureStats(rng.integers(0, 5, size=(b, n)).astype(np.uint32),
                        rng.normal(size=(b, n)).astype(np.float32), rng.random((b, n)).astype(np.float32),
                        tok[:, 0].copy(), tok, sites)


def test_stats_store(tmp_path):
    sites = find_sites(tiny_qwen2())
    rng = np.random.default_rng(0)
    store = StatsStore.create(tmp_path / "st", sites, capacity=2)
    a, b = _fake_stats(rng, 2, sites), _fake_stats(rng, 3, sites)
    store.append(a, ["a0", "a1"])
    store.append(b, ["b0", "b1", "b2"])  # grows past capacity
    assert store.bytes_per_sample == 144 * 12 + 4 + 3 * 4
    again = StatsStore.open(tmp_path / "st")
    assert len(again) == 5 and again.ids == ["a0", "a1", "b0", "b1", "b2"] and again.has("b1")
    assert again.index_of(["b2", "a0"]).tolist() == [4, 0]
    k, t = again.aggregate(["a1", "b0"])
    assert np.array_equal(k, a.positive[1].astype(np.uint64) + b.positive[0])
    assert np.array_equal(t, np.repeat(a.site_tokens[1].astype(np.uint64) + b.site_tokens[0], 48))
    mean, var = again.moments([0])
    t0 = np.repeat(a.site_tokens[0], 48).astype(np.float64)
    assert np.allclose(mean, a.sum[0] / t0)
    assert np.allclose(var, np.maximum(a.sumsq[0] / t0 - (a.sum[0] / t0) ** 2, 0))
    assert np.array_equal(again.get(["b1"]).sum[0], b.sum[1])
    with pytest.raises(ValueError, match="already stored"):
        again.append(a, ["a0", "zz"])
    with pytest.raises(KeyError, match="nope"):
        again.index_of(["nope"])
    with pytest.raises(FileExistsError):
        StatsStore.create(tmp_path / "st", sites)


def test_stats_store_killed_append_loses_only_that_batch(tmp_path, monkeypatch):
    sites = find_sites(tiny_qwen2())
    rng = np.random.default_rng(1)
    store = StatsStore.create(tmp_path / "st", sites)
    first = _fake_stats(rng, 2, sites)
    store.append(first, ["x", "y"])

    def killed(*a, **k):
        raise KeyboardInterrupt("killed before the count was written")
    monkeypatch.setattr(store, "_commit", killed)
    with pytest.raises(KeyboardInterrupt):
        store.append(_fake_stats(rng, 2, sites), ["z", "w"])  # rows written, count not updated
    monkeypatch.undo()
    re = StatsStore.open(tmp_path / "st")
    assert len(re) == 2 and re.ids == ["x", "y"]
    assert json.loads((tmp_path / "st" / "state.json").read_text())["count"] == 2
    assert np.array_equal(re.get().positive, first.positive)
    re.append(_fake_stats(rng, 1, sites), ["z"])  # overwrites the orphan rows
    assert StatsStore.open(tmp_path / "st").ids == ["x", "y", "z"]


def test_public_capture_is_the_function_after_submodule_import():
    # `import esnlib.capture` binds the submodule on the package; the public name must stay the function.
    import importlib

    import esnlib
    importlib.import_module("esnlib.capture")
    import esnlib.capture  # noqa: F401

    assert callable(esnlib.capture) and esnlib.capture.__name__ == "capture"
    assert callable(esnlib.generate)
