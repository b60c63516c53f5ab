"""Row-wise interventions: one generate call carrying a different edit per batch row gives, row by row, exactly
what one call per condition gives (tokens and logits, greedy, CPU, left padding)."""
import numpy as np
import pytest
import torch

from conftest import DemoLALM, hook_generate, tiny_qwen2  # noqa: F401
from esnlib.intervention import Intervention, RowwiseIntervention, generate
from esnlib.sites import find_sites, split_by_site

GEN = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None, return_dict_in_generate=True,
           output_logits=True)
N = 144  # 3 layers x 48 neurons of tiny_qwen2


def _prompts(n=3, seed=5):
    """n left-padded prompts of different lengths."""
    g = torch.Generator().manual_seed(seed)
    lens = [6, 4, 3, 5][:n]
    ids = torch.zeros(n, max(lens), dtype=torch.long)
    am = torch.zeros_like(ids)
    for i, L in enumerate(lens):
        ids[i, -L:] = torch.randint(4, 128, (L,), generator=g)
        am[i, -L:] = 1
    return ids, am


def _tile(ids, am, k):
    return dict(input_ids=ids.repeat(k, 1), attention_mask=am.repeat(k, 1))


def _conditions():
    rng = np.random.default_rng(0)
    m1, m2 = rng.choice(N, 40, replace=False), rng.choice(N, 25, replace=False)
    return [None,
            Intervention(m1, "steer", 3.0),
            Intervention(m1, "deactivate", 0.0),
            Intervention(m2, "add", 0.7, positions="generated"),
            Intervention(m2, "clamp", 0.4),
            [Intervention(m1, "steer", 1.5), Intervention(m2, "add", 0.3)]]


def test_rowwise_equals_one_call_per_condition():
    m = tiny_qwen2()
    sites = find_sites(m)
    ids, am = _prompts()
    n = ids.shape[0]
    conds = _conditions()
    rw = RowwiseIntervention.repeat(conds, n)
    out = generate(m, _tile(ids, am, len(conds)), rw, sites=sites, **GEN)
    seen = set()
    for c, iv in enumerate(conds):
        # one call per condition on the same padded batch layout (every row gets this condition's edit)
        ref = generate(m, _tile(ids, am, len(conds)), iv, sites=sites, **GEN) if iv is not None else \
            m.generate(**_tile(ids, am, len(conds)), **GEN)
        rows = slice(c * n, (c + 1) * n)
        assert torch.equal(out.sequences[rows], ref.sequences[rows]), f"condition {c}: tokens differ"
        for a, b in zip(out.logits, ref.logits):
            assert torch.equal(a[rows], b[rows]), f"condition {c}: logits differ"
        seen.add(tuple(out.logits[1][c * n].tolist()))
    assert len(seen) == len(conds), "every condition must change the logits (else the test proves nothing)"


def test_rowwise_matches_each_row_alone_against_hooks():
    """Each row against an independent reference: plain torch hooks on a batch of that row alone (no padding).
    Tokens must be equal; logits equal up to float rounding of a different batch shape."""
    m = tiny_qwen2()
    sites = find_sites(m)
    ids, am = _prompts()
    conds = _conditions()
    rw = RowwiseIntervention([conds[i % len(conds)] for i in range(ids.shape[0] * 2)])
    batch = _tile(ids, am, 2)
    out = generate(m, batch, rw, sites=sites, **GEN)
    for b, r in enumerate(rw.rows):
        keep = batch["attention_mask"][b].bool()
        alone = dict(input_ids=batch["input_ids"][b:b + 1, keep], attention_mask=torch.ones(1, int(keep.sum()),
                                                                                              dtype=torch.long))
        edits = [[] for _ in sites]
        for iv in r:
            for s, local in enumerate(split_by_site(iv.index, sites)):
                if local.size:
                    edits[s].append((torch.as_tensor(local), iv.kind, iv.alpha, iv.positions))
        ref, _ = hook_generate(m, [s.module for s in sites], alone, edits=edits, **GEN)
        assert torch.equal(out.sequences[b, -GEN["max_new_tokens"]:], ref.sequences[0, -GEN["max_new_tokens"]:])
        for x, y in zip(out.logits, ref.logits):
            torch.testing.assert_close(x[b], y[0], rtol=1e-5, atol=1e-5)


def test_rowwise_with_capture_and_two_sides_shapes():
    m = tiny_qwen2()
    ids, am = _prompts(2)
    iv = Intervention(np.arange(0, N, 3), "deactivate")
    out, st = generate(m, _tile(ids, am, 2), RowwiseIntervention.repeat([None, iv], 2), capture=True, **GEN)
    # served (edited) activations: deactivated neurons never fire in the edited rows, do in the baseline rows
    cols = np.arange(0, N, 3)
    assert st.positive[2:, cols].sum() == 0 and st.positive[:2, cols].sum() > 0


def test_rowwise_errors_and_slicing():
    m = tiny_qwen2()
    ids, am = _prompts(2)
    iv = Intervention([1, 2], "steer", 1.0)
    with pytest.raises(ValueError, match="rows but the inputs hold"):
        generate(m, dict(input_ids=ids, attention_mask=am), RowwiseIntervention([iv, None, iv]), **GEN)
    with pytest.raises(IndexError, match="out of range"):
        generate(m, dict(input_ids=ids, attention_mask=am), RowwiseIntervention([iv, Intervention([10_000])]), **GEN)
    with pytest.raises(TypeError, match="row 1"):
        RowwiseIntervention([iv, "steer"])
    rw = RowwiseIntervention.repeat([None, iv], 3)
    assert len(rw) == 6 and len(rw[2:5]) == 3 and rw[3:4].rows[0] == (iv,) and rw[0:1].rows[0] == ()


# ------------------------------------------------------------------ SER through the one driver (esnlib.runs)
@pytest.fixture(scope="module")
def ser_world(tmp_path_factory):
    import esnlib.experiments as X
    from esnlib.models.demo import DemoAdapter, DemoOmni
    from test_experiments import CountingAdapter, shared_corpus

    class Counting(CountingAdapter):
        ser_calls = 0

        def ser(self, utts, **kw):
            self.ser_calls += 1
            return super().ser(utts, **kw)

    torch.manual_seed(0)
    adapter = Counting(DemoAdapter(model=DemoOmni.tiny(), evc_stat_positions="all"))  # its answers: one token
    # shard_size 2: SER shards of 8 utterances, so 10 utterances make a full and a partial shard
    return X.load_world(adapter=adapter, corpus_root=shared_corpus(tmp_path_factory), judges="prosody",
                        naturalness=None, results_dir=tmp_path_factory.mktemp("ser") / "results", shard_size=2,
                        progress=False)


def test_rowwise_ser_equals_one_call_per_condition(ser_world, tmp_path):
    """SER conditions sharing generate calls (one RowwiseIntervention edit per row, batches cut across conditions)
    store the same units with the same predictions as one call per condition; a condition whose generations another
    holds (same mask, kind, α) is generated once and stored as a copy."""
    import dataclasses

    import pandas as pd

    import esnlib.experiments as X
    from esnlib.store import ResultStore

    w0 = ser_world
    n_lm = sum(s.width for s in w0.sites("lm"))
    m1, m2 = np.arange(0, n_lm, 3), np.arange(1, n_lm, 3)
    conditions = [({"mask_emotion": "none"}, None),
                  ({"mask_emotion": "angry"}, Intervention(m1, "clamp", 20.0)),
                  ({"mask_emotion": "sad"}, Intervention(m2, "clamp", 20.0)),
                  ({"mask_emotion": "happy"}, Intervention(m1, "deactivate")),
                  ({"mask_emotion": "surprise", "selector": "copy"}, Intervention(m1, "clamp", 20.0))]  # = angry's
    utts = w0.split("TEST", 10, emotion=None)
    got = {}
    for rowwise in (True, False):
        w = dataclasses.replace(w0, store=ResultStore(tmp_path / f"ser-{rowwise}"), rowwise=rowwise, batch_size=3)
        calls, samples = w0.adapter.ser_calls, w0.adapter.ser_samples
        frames = X.run_ser_conditions(w, utts, conditions)
        got[rowwise] = (frames, w0.adapter.ser_calls - calls, w0.adapter.ser_samples - samples,
                        sorted(p.name for p in (w.store.root / "ser").glob("*.parquet")))
        again = X.run_ser_conditions(w, utts, conditions)  # cached: nothing generated
        assert w0.adapter.ser_samples - samples == got[rowwise][2]
        for a, b in zip(frames, again):
            pd.testing.assert_frame_equal(a, b)
    assert got[True][2] == got[False][2] == 4 * 10  # four distinct generations of 10 utterances
    assert (got[True][1], got[False][1]) == (2, 8)  # one call per shard against one per distinct condition
    assert got[True][3] == got[False][3] and len(got[True][3]) == 5 * 2  # the same units (keys)
    for a, b in zip(got[True][0], got[False][0]):
        pd.testing.assert_frame_equal(a, b)
    angry, copy = got[True][0][1], got[True][0][4]
    assert angry[["utt_id", "pred", "answer"]].equals(copy[["utt_id", "pred", "answer"]])
    assert (copy["mask_emotion"] == "surprise").all() and (copy["selector"] == "copy").all()
    # the conditions really differ, so a row given another row's edit would show
    answers = [tuple(f["answer"]) for f in got[True][0][:4]]
    assert len(set(answers)) > 1
