"""The edit kinds of paper §3.4, in one table that every edit path reads.

``EDIT_KINDS`` maps a kind's name to an :class:`EditKind`: the paper's formula, its default α, whether α ≥ 0 is
required, and the forms the three edit paths need:

* ``indexed(g, ix, alpha)``: in place on the columns ``ix`` of the last dim. ``intervention.edit`` applies it to a
  copy; the runner (``capture._SiteEdits``) to the served activation when it is large (the prompt at prefill), or
  always when the kind has no dense form.
* ``dense(g, d)`` with ``operand(alpha)`` and ``dense_identity``: one full-width in-place op with a per-column operand
  ``d`` (``operand(alpha)`` on the selected columns, ``dense_identity`` elsewhere, which must leave every value
  bitwise unchanged). The runner uses it on small float32 activations (a decoding step); it gives the same bits as
  ``indexed`` (tests/test_intervention.py).
* ``rowwise(sub, r)`` with ``operand(alpha)`` and ``row_identity``: out of place on the gathered float32 columns of a
  batch, ``r`` of shape (B, 1, U) (``intervention._RowEdit``: each batch row its own edit). ``row_exact``: the
  identity leaves every value bitwise unchanged (NaN stays NaN, maybe of another sign), so an all-identity ``r`` is
  skipped; a kind whose identity is not exact is applied on every step. Within one layer of a RowwiseIntervention
  the kinds apply in table order.

Adding a kind is one entry here. The runner resolves a kind's functions once per ``generate`` call (when the edits
are compiled), never per step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["EditKind", "EDIT_KINDS", "KINDS", "get_kind", "check_kind_alpha"]


@dataclass(frozen=True)
class EditKind:
    """One edit kind: ``a ← f(a, α)`` on the selected neurons, in each form an edit path needs (module docstring)."""

    name: str
    formula: str
    doc: str
    default_alpha: float
    alpha_nonneg: bool
    indexed: Callable[[torch.Tensor, torch.Tensor, float], None]
    operand: Callable[[float], float | bool]
    row_identity: float | bool
    row_exact: bool
    rowwise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    dense_identity: float | None = None
    dense: Callable[[torch.Tensor, torch.Tensor], None] | None = None


def _steer(g, ix, alpha):
    g[..., ix] *= 1.0 + alpha


def _add(g, ix, alpha):
    g[..., ix] += alpha


def _clamp(g, ix, alpha):
    g[..., ix] = g[..., ix].clamp_min(alpha)


def _deactivate(g, ix, alpha):
    g.index_fill_(-1, ix, 0)


def _floor_dense(g, d):
    torch.where(g < d, d, g, out=g)  # = clamp_min bitwise (signed zeros, NaN); d = -inf leaves g as it is


def _zero_rows(sub, zero):
    return sub.masked_fill(zero, 0.0)


_TABLE = (
    EditKind("steer", "a ← a·(1+α)", "paper eq. 5: scale the activation by 1+α", 1.0, True,
             indexed=_steer, operand=lambda alpha: 1.0 + alpha, row_identity=1.0, row_exact=True, rowwise=torch.mul,
             dense_identity=1.0, dense=torch.Tensor.mul_),
    # the row-wise identity +0.0 turns -0.0 into +0.0 (not exact): applied on every step, as the runner always did
    EditKind("add", "a ← a+α", "paper eq. 6: add α to the activation", 0.5, True,
             indexed=_add, operand=lambda alpha: alpha, row_identity=0.0, row_exact=False, rowwise=torch.add,
             dense_identity=-0.0, dense=torch.Tensor.add_),
    EditKind("clamp", "a ← max(a, α)", "paper eq. 7: floor clamp, the activation is at least α", 0.5, True,
             indexed=_clamp, operand=lambda alpha: alpha, row_identity=-math.inf, row_exact=True,
             rowwise=torch.maximum, dense_identity=-math.inf, dense=_floor_dense),
    # no dense form: index_fill_ is already one op on any size
    EditKind("deactivate", "a ← 0", "silence the neuron (α plays no part)", 0.0, False,
             indexed=_deactivate, operand=lambda alpha: True, row_identity=False, row_exact=True,
             rowwise=_zero_rows),
)

#: name -> EditKind, in the order a RowwiseIntervention layer applies them
EDIT_KINDS: dict[str, EditKind] = {k.name: k for k in _TABLE}
#: the kind names (``Intervention.kind``, the notebooks' ``kind`` parameter)
KINDS: tuple[str, ...] = tuple(EDIT_KINDS)


def get_kind(kind: str) -> EditKind:
    """The table entry of ``kind``, or the ValueError every edit path raises for an unknown kind."""
    try:
        return EDIT_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown intervention kind {kind!r}; use one of {KINDS}") from None


def check_kind_alpha(kind: str, alpha: float | None) -> float:
    """α as a float (``None``: the kind's default α), or a ValueError for an unknown kind or a bad α."""
    k = get_kind(kind)
    alpha = k.default_alpha if alpha is None else float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    if k.alpha_nonneg and alpha < 0:
        raise ValueError(f"alpha must be >= 0 for {kind!r} (paper §3.4); got {alpha}. Use 'deactivate' to silence "
                         "neurons")
    return alpha
