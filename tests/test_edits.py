"""One table of edit kinds (esnlib.edits.EDIT_KINDS) read by every edit path: ``intervention.edit``, the runner's
scalar edits (dense and indexed forms, ``capture._SiteEdits``) and the row-wise edits (``intervention._RowEdit``)."""
import importlib

import numpy as np
import pytest
import torch

from conftest import tiny_qwen2
from esnlib import edits
from esnlib.intervention import KINDS, Intervention, RowwiseIntervention, _plan, edit, generate
from esnlib.sites import Site

cap = importlib.import_module("esnlib.capture")  # the module (esnlib.capture the attribute is the function)

GEN = dict(max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=None, return_dict_in_generate=True,
           output_logits=True)
ALPHAS = {"steer": 0.7, "add": 0.3, "clamp": 0.2, "deactivate": 0.0}
W = 64


def _g(batch, signed_zero=True, seed=0):
    """Random activations with the special values at the front: signed zeros, subnormals, infinities, NaN."""
    special = [0.0, 1e-40, -1e-40, float("inf"), float("-inf"), float("nan"), 0.2, -0.3, 5.0]
    special = ([-0.0] if signed_zero else []) + special
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.cat([torch.tensor(special), torch.randn(W - len(special), generator=gen)]) for _ in range(batch)]
    return torch.stack(rows)[:, None, :]  # (B, 1, W): one decoding step


def _bits(x):
    return x.contiguous().view(torch.int32)


def _same(a, b):
    """Bit for bit, except that any NaN equals any NaN (torch.maximum may give a NaN of another sign)."""
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(_bits(a)[~nan], _bits(b)[~nan])


def test_the_table_is_the_vocabulary():
    assert KINDS == tuple(edits.EDIT_KINDS) == ("steer", "add", "clamp", "deactivate")
    for name, k in edits.EDIT_KINDS.items():
        assert k.name == name and k.formula and k.doc
        assert edits.check_kind_alpha(name, None) == k.default_alpha
        assert Intervention([0], name).alpha == k.default_alpha
        # the dense identity and the exact row-wise identity leave every value as it is
        g = _g(1)
        if k.dense is not None:
            d = g.clone()
            k.dense(d, torch.full((W,), k.dense_identity))
            assert torch.equal(_bits(d), _bits(g)), name
        if k.row_exact:
            r = torch.full((1, 1, W), k.row_identity, dtype=torch.bool if isinstance(k.row_identity, bool) else None)
            assert _same(k.rowwise(g, r), g), name
    for path in (lambda: edit(torch.zeros(1, 4), [0], "scale", 1.0), lambda: Intervention([0], "scale"),
                 lambda: cap._SiteEdits.build([(torch.tensor([0]), "scale", 1.0, "all")])(torch.zeros(1, 1, 4), 1)):
        with pytest.raises(ValueError, match=r"unknown intervention kind 'scale'; use one of \('steer', 'add'"):
            path()


@pytest.mark.parametrize("kind", KINDS)
def test_every_path_gives_the_bits_of_edit(kind, monkeypatch):
    """edit() vs the runner's dense form (a decoding step) and indexed form (large activations), bit for bit."""
    alpha = ALPHAS[kind]
    g = _g(3)
    ix = torch.arange(0, W, 3)
    want = edit(g, ix, kind, alpha)
    assert not torch.equal(_bits(want), _bits(g)), "the edit must change something"
    dense = g.clone()
    cap._SiteEdits.build([(ix, kind, alpha, "all")])(dense, 1)
    monkeypatch.setattr(cap, "_DENSE_MAX", 0)
    indexed = g.clone()
    cap._SiteEdits.build([(ix, kind, alpha, "all")])(indexed, 1)
    assert torch.equal(_bits(dense), _bits(want)) and torch.equal(_bits(indexed), _bits(want))


def test_rowwise_mixed_kinds_per_row_equal_edit():
    """One row per kind of the table (plus a row without an edit and a row with two edits in turn): each row of the
    row-wise edit is edit() of that row alone, bit for bit (NaN aside; no -0.0 in the input: the row-wise add's x+0.0
    turns it into +0.0, see esnlib/edits.py)."""
    sites = [Site(path="a", layer=0, width=W, side="lm", offset=0), Site(path="b", layer=1, width=W, side="lm",
                                                                         offset=W)]
    rng = np.random.default_rng(1)
    rows = [None] + [Intervention(rng.choice(2 * W, 40, replace=False), k, ALPHAS[k]) for k in KINDS]
    rows.append([Intervention(rng.choice(2 * W, 30, replace=False), "steer", 1.5),
                 Intervention(rng.choice(2 * W, 30, replace=False), "clamp", 0.1)])
    plan = _plan(RowwiseIntervention(rows), sites)
    for s, site in enumerate(sites):
        g = _g(len(rows), signed_zero=False, seed=s)
        got = g.clone()
        for e in plan[s]:
            e(got, 1)
        for b, r in enumerate(rows):
            want = g[b:b + 1].clone()
            for iv in ([] if r is None else r if isinstance(r, list) else [r]):
                local = iv.index[(iv.index >= site.offset) & (iv.index < site.stop)] - site.offset
                want = edit(want, local, iv.kind, iv.alpha)
            assert _same(got[b:b + 1], want), f"site {s}, row {b}"


def _scale(g, ix, alpha):
    g[..., ix] *= alpha


def test_a_kind_added_to_the_table_works_in_every_path(monkeypatch):
    """A kind that is only an entry of the table (scale: a <- a*alpha) is accepted and applied by edit(), the scalar
    runner (dense and indexed) and the row-wise edits; scale by 2 gives the bits of steer with alpha 1."""
    scale = edits.EditKind("scale", "a ← a·α", "test kind", 1.0, True, indexed=_scale, operand=lambda a: a,
                           row_identity=1.0, row_exact=True, rowwise=torch.mul, dense_identity=1.0,
                           dense=torch.Tensor.mul_)
    monkeypatch.setitem(edits.EDIT_KINDS, "scale", scale)
    g = _g(2)
    assert torch.equal(_bits(edit(g, [1, 5], "scale", 2.0)), _bits(edit(g, [1, 5], "steer", 1.0)))
    m = tiny_qwen2()
    ids = torch.randint(4, 128, (2, 5), generator=torch.Generator().manual_seed(3))
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
    idx = np.random.default_rng(0).choice(144, 60, replace=False)
    ref = generate(m, inputs, Intervention(idx, "steer", 1.0), **GEN)
    out = generate(m, inputs, Intervention(idx, "scale", 2.0), **GEN)
    rw = generate(m, inputs, RowwiseIntervention([Intervention(idx, "scale", 2.0), Intervention(idx, "steer", 1.0)]),
                  **GEN)
    base = m.generate(**inputs, **GEN)
    assert not torch.equal(ref.logits[1], base.logits[1]), "the edit must change the logits"
    for o in (out, rw):
        assert torch.equal(o.sequences, ref.sequences)
        assert all(torch.equal(a, b) for a, b in zip(o.logits, ref.logits))
