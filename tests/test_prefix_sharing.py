"""The demo LALM's shared prompt prefix (DemoOmni.generate(prefix_groups=...)): the EVC prompt's common prefix runs
once per group of rows with the same edit, and the rows continue from its cached keys and values.

It must compute the same function as the left-padded prompt (tokens equal, prosody to float rounding), and under
nnsight every group's prefix call must be edited with the group's edit and counted for each of its rows: checked bit
for bit against plain forward hooks that do the same by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import _ref_edit
from esnlib.capture import _Prefix
from esnlib.intervention import Intervention, RowwiseIntervention, generate, prefix_groups
from esnlib.models import demo as D
from esnlib.models.demo import DemoAdapter, DemoOmni
from esnlib.sites import split_by_site

TEXTS = ["The boat is red.", "We walked home after the long game.", "Open it."]
TARGETS = ["angry", "sad"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DemoOmni.tiny()


def _inputs(m, n_rep: int = 1):
    """Rows: every text x every target (6), repeated n_rep times (condition-major), random audio features."""
    g = np.random.default_rng(0)
    feats = [g.normal(size=(40 + 7 * i, D.N_FEATURES)).astype(np.float32) for i in range(len(TEXTS))]
    rows = [(f, t, s) for f, s in zip(feats, TEXTS) for t in TARGETS] * n_rep
    return m.prepare_inputs([r[0] for r in rows], "evc", [r[1] for r in rows], [r[2] for r in rows])


def test_prefix_groups_helper_and_validation():
    a, b = Intervention(np.arange(3)), Intervention(np.arange(3))  # equal content, distinct objects
    assert prefix_groups(None, 4).tolist() == [0, 0, 0, 0]
    assert prefix_groups(a, 3).tolist() == [0, 0, 0]
    assert prefix_groups(RowwiseIntervention([a, a, None, b, None]), 5).tolist() == [0, 0, 1, 2, 1]
    with pytest.raises(ValueError, match="5 rows but the batch holds 4"):
        prefix_groups(RowwiseIntervention([a] * 5), 4)
    with pytest.raises(ValueError, match="0..k-1"):
        _Prefix(torch.tensor([0, 2, 2]))


def test_shared_prefix_is_the_same_function(tiny):
    inputs = _inputs(tiny)
    B = inputs["input_ids"].shape[0]
    ref = tiny.generate(**inputs, return_audio=True)
    ids2, am2, P, _ = tiny._shared_prefix(inputs["input_ids"], inputs["attention_mask"], torch.zeros(B))
    assert P > 40 and int(ids2[0, P - 1]) != tiny.audio_id  # the system turn and the worked exchange
    out = tiny.generate(**inputs, return_audio=True, prefix_groups=torch.zeros(B, dtype=torch.long))
    assert torch.equal(ref.sequences, out.sequences)
    torch.testing.assert_close(out.prosody, ref.prosody, rtol=1e-4, atol=1e-4)
    # as many groups as rows: nothing to share, the left-padded path itself
    same = tiny.generate(**inputs, return_audio=True, prefix_groups=torch.arange(B))
    assert torch.equal(same.prosody, ref.prosody)
    with pytest.raises(ValueError, match="one group id per row"):
        tiny.generate(**inputs, return_audio=True, prefix_groups=torch.zeros(B - 1, dtype=torch.long))
    # groups not numbered 0..k-1 (here 0 and 2): the same ValueError as the runner's, before any prefix runs
    gaps = torch.tensor([0, 2] * (B // 2))
    with pytest.raises(ValueError, match=r"0\.\.k-1 .*got \[0, 2\]"):
        tiny.generate(**inputs, return_audio=True, prefix_groups=gaps)


def test_a_talker_that_reads_the_turn_reads_the_same_positions_either_way():
    """talker_reads="turn": the shared-prefix layout [prefix][padding][rest] and the left-padded prompt give the
    talker the same positions (from the audio on), so the same prosody to float rounding."""
    torch.manual_seed(0)
    turn = DemoOmni.tiny(talker_reads="turn")
    inputs = _inputs(turn)
    B = inputs["input_ids"].shape[0]
    ref = turn.generate(**inputs, return_audio=True)
    out = turn.generate(**inputs, return_audio=True, prefix_groups=torch.zeros(B, dtype=torch.long))
    assert torch.equal(ref.sequences, out.sequences)
    torch.testing.assert_close(out.prosody, ref.prosody, rtol=1e-4, atol=1e-4)
    # and the turn matters: the default talker (same weights) reading only the last prompt position differs
    default = DemoOmni.tiny()
    default.load_state_dict(turn.state_dict())
    assert not torch.allclose(default.generate(**inputs, return_audio=True).prosody, ref.prosody, atol=1e-3)


def _hook_run(m, sites, inputs, groups, row_edits):
    """Plain forward hooks: calls 0..k-1 are the groups' prefixes (edited with the group's first row's edit), then
    the batch. Returns (output, per-site per-call activations as served)."""
    k = int(groups.max()) + 1
    reps = [int(torch.nonzero(groups == j)[0]) for j in range(k)]
    records, calls = [[] for _ in sites], [0] * len(sites)

    def make(si):
        def hook(_mod, _args, out):
            c = calls[si]
            calls[si] += 1
            rows = [reps[c]] if c < k else list(range(out.shape[0]))
            out = out.clone()
            for i, r in enumerate(rows):
                for ix, kind, alpha, positions in row_edits[r][si]:
                    if positions == "generated" and c <= k:
                        continue
                    out[i:i + 1] = _ref_edit(out[i:i + 1], ix, kind, alpha)
            records[si].append(out.detach().clone())
            return out
        return hook

    handles = [s.module.register_forward_hook(make(i)) for i, s in enumerate(sites)]
    try:
        out = m.generate(**inputs, return_audio=True, prefix_groups=groups)
    finally:
        for h in handles:
            h.remove()
    return out, records


def _hook_stats(records, groups, am2, P, new_tokens, eos):
    """Statistics in the runner's order: each group's prefix added to its rows, then the rest of the prompt (by the
    laid-out attention mask), then every decoding step while the row has not emitted an EOS."""
    k, B = int(groups.max()) + 1, len(groups)
    is_eos = torch.isin(new_tokens, torch.as_tensor(eos))
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full((B,), 10 ** 9))
    out = []
    for recs in records:
        w = recs[0].shape[-1]
        p, a, q = torch.zeros(B, w, dtype=torch.int32), torch.zeros(B, w), torch.zeros(B, w)
        for j in range(k):
            rows = torch.nonzero(groups == j).flatten()
            gv = recs[j].float() * torch.ones(1, P, 1)
            p[rows] += (gv > 0).sum(1, dtype=torch.int32)
            a[rows] += gv.sum(1)
            q[rows] += (gv * gv).sum(1)
        for t, g in enumerate(recs[k:]):
            valid = am2[:, -g.shape[1]:].bool() if t == 0 else (t <= first)[:, None]
            if t == 0:
                gv = g.float() * valid.float()[..., None]
                p += (gv > 0).sum(1, dtype=torch.int32)
                a += gv.sum(1)
                q += (gv * gv).sum(1)
            else:
                gv = g[:, 0].float() * valid.float()
                p += gv > 0
                a += gv
                q += gv * gv
        out.append((p, a, q))
    return [torch.cat(x, 1) for x in zip(*out)]


def _row_edits(rw: RowwiseIntervention, sites):
    """Per row, per site, the (local index, kind, alpha, positions) edits of the row's interventions."""
    res = []
    for r in rw.rows:
        per = [[] for _ in sites]
        for iv in r:
            for s, local in enumerate(split_by_site(iv.index, sites)):
                if local.size:
                    per[s].append((torch.as_tensor(local), iv.kind, iv.alpha, iv.positions))
        res.append(per)
    return res


@pytest.mark.parametrize("kind", ["scalar", "rowwise"])
def test_shared_prefix_edits_and_capture_match_hooks(tiny, kind):
    """Each group's prefix call carries its own group's edit and counts for each of the group's rows, bit for bit."""
    sites = DemoAdapter(model=tiny).sites("lm")
    n = sum(s.width for s in sites)
    g = np.random.default_rng(1)
    a = Intervention(g.choice(n, n // 4, replace=False), "steer", 3.0)
    b = Intervention(g.choice(n, n // 4, replace=False), "deactivate", 0.0)
    c = Intervention(g.choice(n, n // 8, replace=False), "add", 0.5, positions="generated")
    if kind == "scalar":
        inputs, iv = _inputs(tiny), a
        rw = RowwiseIntervention([a] * inputs["input_ids"].shape[0])
    else:
        inputs = _inputs(tiny, n_rep=3)
        iv = rw = RowwiseIntervention([a] * 6 + [b] * 6 + [[b, c]] * 6)
    B = inputs["input_ids"].shape[0]
    groups = prefix_groups(iv, B)
    assert int(groups.max()) + 1 == (1 if kind == "scalar" else 3)
    out, stats = generate(tiny, inputs, intervention=iv, sites=sites, capture=True, return_audio=True,
                          prefix_groups=groups)
    ref, recs = _hook_run(tiny, sites, inputs, groups, _row_edits(rw, sites))
    assert torch.equal(out.sequences, ref.sequences)
    assert torch.equal(out.prosody, ref.prosody)
    _, am2, P, _ = tiny._shared_prefix(inputs["input_ids"], inputs["attention_mask"], groups)
    pos, s1, s2 = _hook_stats(recs, groups, am2, P, out.sequences, list(tiny.stop_ids))
    assert torch.equal(stats.positive, pos)
    assert torch.equal(stats.sum, s1)
    assert torch.equal(stats.sumsq, s2)
    # without capture the runner visits only the edited sites: the same bits
    edited = generate(tiny, inputs, intervention=iv, sites=sites, return_audio=True, prefix_groups=groups)
    assert torch.equal(edited.sequences, out.sequences) and torch.equal(edited.prosody, out.prosody)
    # and the groups' edits matter: the unshared run of the same edits gives the same function
    plain = generate(tiny, inputs, intervention=iv, sites=sites, return_audio=True)
    assert torch.equal(plain.sequences, out.sequences)
    torch.testing.assert_close(plain.prosody, out.prosody, rtol=1e-4, atol=1e-4)
    if kind == "rowwise":  # a group given another group's prefix edit would show
        wrong = generate(tiny, inputs, intervention=iv, sites=sites, return_audio=True,
                         prefix_groups=torch.zeros(B, dtype=torch.long))
        assert not torch.allclose(wrong.prosody, out.prosody, rtol=1e-3, atol=1e-3)


def test_adapter_shares_by_default_and_keys_it(tiny):
    on, off = DemoAdapter(model=tiny), DemoAdapter(model=tiny, share_prefix=False)
    assert on.describe()["prompt_prefix"] == "shared" and "prompt_prefix" not in off.describe()


def test_generated_positions_under_the_shared_prefix(tiny):
    """stat_positions="generated" (the demo adapter's optional EVC identification counting): with a shared prompt
    prefix, neither the groups' prefix calls nor the rest of the prompt count, so each row's LM statistics are its
    decoding steps' alone — the same token counts as without sharing and the same sums to float rounding; the talker
    side keeps every position."""
    from esnlib.capture import capture

    sites = DemoAdapter(model=tiny).sites("both")
    lm = [i for i, s in enumerate(sites) if s.side == "lm"]
    talker = [i for i, s in enumerate(sites) if s.side == "talker"]
    cols = slice(sites[lm[0]].offset, sites[lm[-1]].stop)
    inputs = _inputs(tiny, n_rep=2)
    groups = torch.zeros(inputs["input_ids"].shape[0], dtype=torch.long)
    kw = {"return_audio": True, "thinker_eos_token_id": []}  # the random tiny model would stop at once
    _, st = capture(tiny, inputs, sites=sites, prefix_groups=groups, stat_positions="generated", **kw)
    _, plain = capture(tiny, inputs, sites=sites, stat_positions="generated", **kw)
    _, every = capture(tiny, inputs, sites=sites, prefix_groups=groups, **kw)
    assert torch.equal(st.site_tokens[:, lm], plain.site_tokens[:, lm])
    assert torch.equal(st.positive[:, cols], plain.positive[:, cols])
    torch.testing.assert_close(st.sum[:, cols], plain.sum[:, cols], rtol=1e-4, atol=1e-4)
    prompt = inputs["attention_mask"].sum(1)
    assert torch.equal(every.site_tokens[:, lm[0]] - st.site_tokens[:, lm[0]], prompt)
    assert (st.site_tokens[:, lm] > 0).all()
    assert torch.equal(st.site_tokens[:, talker], every.site_tokens[:, talker])
    assert (st.site_tokens[:, talker] > 0).all()
    # the adapter: EVC counts what the paper counts by default (every position), the answer on request; SER everything
    ad = DemoAdapter(model=tiny)
    assert ad.stat_positions("evc") == "all" and ad.stat_positions("ser") == "all"
    assert DemoAdapter(model=tiny, evc_stat_positions="generated").stat_positions("evc") == "generated"
    with pytest.raises(ValueError, match="stat_positions must be one of"):
        DemoAdapter(model=tiny, evc_stat_positions="answer")


def test_benchmark_hook_floor_follows_the_shared_prefix(tiny):
    """bench/hook_floor.py (the plain-hook floor of bench/bench_core.py's demo configuration) with ``prefix_groups``:
    the same bits as the runner, so the benchmark compares the two interfaces doing the same work."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from hook_floor import hook_run

    sites = DemoAdapter(model=tiny).sites("lm")
    n = sum(s.width for s in sites)
    g = np.random.default_rng(2)
    inputs = _inputs(tiny, n_rep=2)
    B = inputs["input_ids"].shape[0]
    a = Intervention(g.choice(n, n // 4, replace=False), "steer", 3.0)
    rw = RowwiseIntervention([None, a] * (B // 2))
    groups = prefix_groups(rw, B)
    out, stats = generate(tiny, inputs, intervention=rw, sites=sites, capture=True, return_audio=True,
                          prefix_groups=groups)
    ref, ref_stats = hook_run(tiny, inputs, sites, rw, capture=True, return_audio=True, prefix_groups=groups)
    assert torch.equal(out.sequences, ref.sequences) and torch.equal(out.prosody, ref.prosody)
    for f in ("positive", "sum", "sumsq", "site_tokens"):
        assert torch.equal(getattr(stats, f), getattr(ref_stats, f)), f
    # capture alone agrees too, and the edit moved the statistics (so the equalities above are not vacuous)
    _, one = hook_run(tiny, inputs, sites, None, capture=True, return_audio=True, prefix_groups=groups)
    _, plain = generate(tiny, inputs, sites=sites, capture=True, return_audio=True, prefix_groups=groups)
    assert torch.equal(one.sum, plain.sum)
    assert not torch.equal(one.sum, stats.sum)
