"""Stage 4 of the EVC pipeline (paper §3.4): inference-time neuron interventions on the activated gate g.

Kinds (α ≥ 0 as in the paper): steer g·(1+α) (eq. 5), add g+α (eq. 6), clamp max(g, α) (eq. 7), deactivate 0. They
are defined once, in ``esnlib.edits.EDIT_KINDS`` (formula, default α, indexed / dense / row-wise forms), which
``edit``, the runner's scalar edits and the row-wise edits all read. Edits are applied in place on the served
activation of every selected site at every step under nnsight; weights are never touched. ``generate`` shares the
traced runner of ``esnlib.capture`` (one visit per site per step).

``RowwiseIntervention`` gives each batch row its own edit, so conditions that differ only in their edits (baseline,
several masks, several α) share one ``generate`` call; row i gets exactly what a call with row i's edit alone gives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .capture import group_rows, run_traced  # noqa: F401 (group_rows: for models that share a prompt prefix)
from .edits import EDIT_KINDS, KINDS, check_kind_alpha
from .sites import Site, find_sites, n_neurons, split_by_site, unwrap

__all__ = ["KINDS", "POSITIONS", "edit", "Intervention", "RowwiseIntervention", "batch_rows", "prefix_groups",
           "per_condition", "generate"]

POSITIONS = ("all", "generated")
_check_kind_alpha = check_kind_alpha  # the name explorer.py imports


def edit(g: torch.Tensor, index, kind: str, alpha: float | None = None) -> torch.Tensor:
    """Return a copy of g with the intervention applied on the last-dim indices ``index`` (g is unchanged).

    alpha: None takes the kind's default α (``esnlib.edits.EDIT_KINDS``)."""
    alpha = check_kind_alpha(kind, alpha)
    ix = torch.as_tensor(np.asarray(index, dtype=np.int64), device=g.device).flatten()
    width = g.shape[-1]
    if ix.numel() and (int(ix.min()) < 0 or int(ix.max()) >= width):
        raise IndexError(f"neuron index out of range [0, {width}) for g of shape {tuple(g.shape)}")
    out = g.clone()
    EDIT_KINDS[kind].indexed(out, ix, alpha)
    return out


@dataclass
class Intervention:
    """An edit of the selected neurons (flat indices over the sites) with one kind and strength α (None: the kind's
    default α: steer 1.0, add 0.5, clamp 0.5, deactivate 0.0).

    positions: "all" edits prompt and generated positions; "generated" skips the prefill (prompt) positions.
    """

    index: np.ndarray
    kind: str = "steer"
    alpha: float | None = None  # None: the kind's default α (esnlib.edits.EDIT_KINDS)
    positions: str = "all"

    def __post_init__(self):
        idx = np.asarray(self.index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size and idx.dtype.kind not in "iu":
            raise TypeError(f"Intervention.index must hold integer flat neuron indices; got dtype {idx.dtype}")
        idx = np.unique(idx.astype(np.int64).ravel())
        if idx.size and idx.min() < 0:
            raise IndexError(f"Intervention.index has a negative neuron index ({idx.min()})")
        self.index = idx
        self.alpha = check_kind_alpha(self.kind, self.alpha)
        if self.positions not in POSITIONS:
            raise ValueError(f"unknown positions {self.positions!r}; use one of {POSITIONS}")

    @staticmethod
    def union(*ivs: "Intervention") -> "Intervention":
        """One intervention over the union of the indices (kind, alpha and positions must agree)."""
        if len(ivs) == 1 and not isinstance(ivs[0], Intervention):
            ivs = tuple(ivs[0])
        if not ivs:
            raise ValueError("Intervention.union needs at least one intervention")
        keys = {(iv.kind, iv.alpha, iv.positions) for iv in ivs}
        if len(keys) != 1:
            raise ValueError(f"Intervention.union: kind/alpha/positions differ ({sorted(keys)}); pass the list to "
                             "generate(intervention=[...]) to apply each in turn instead")
        k, a, p = keys.pop()
        return Intervention(np.concatenate([iv.index for iv in ivs]), kind=k, alpha=a, positions=p)


class RowwiseIntervention:
    """One edit per batch row: ``rows[i]`` is None (no edit), an Intervention, or a list of them applied in turn.

    Rows of one batch run through the model independently, so conditions that differ only in their edits can share
    a batch: build the batch as the same utterances repeated once per condition (``repeat``) and pass this as
    ``intervention=``. Slicing (``rw[i:j]``) gives the rows of a sub-batch, for adapters that split into batches.
    """

    def __init__(self, rows: Sequence):
        norm = []
        for i, r in enumerate(rows):
            if r is None:
                norm.append(())
            elif isinstance(r, Intervention):
                norm.append((r,))
            elif isinstance(r, (list, tuple)) and all(isinstance(x, Intervention) for x in r):
                norm.append(tuple(r))
            else:
                raise TypeError(f"RowwiseIntervention row {i}: expected None, an Intervention or a list of them; "
                                f"got {type(r).__name__}")
        if not norm:
            raise ValueError("RowwiseIntervention needs at least one row (one entry per batch row)")
        self.rows: tuple[tuple[Intervention, ...], ...] = tuple(norm)

    @classmethod
    def repeat(cls, conditions: Sequence, n: int) -> "RowwiseIntervention":
        """Rows for a batch laid out condition-major: ``n`` rows of conditions[0], then n of conditions[1], ..."""
        if n < 1:
            raise ValueError(f"RowwiseIntervention.repeat: n must be >= 1 (rows per condition), got {n}")
        return cls([c for c in conditions for _ in range(n)])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item) -> "RowwiseIntervention":
        if not isinstance(item, slice):
            raise TypeError("index a RowwiseIntervention with a slice (rw[i:j]); rows are at .rows[i]")
        return RowwiseIntervention([list(r) for r in self.rows[item]])

    def __repr__(self) -> str:
        kinds = sorted({f"{iv.kind}:{iv.alpha:g}" for r in self.rows for iv in r})
        return f"RowwiseIntervention({len(self)} rows, {sum(1 for r in self.rows if r)} edited, {kinds})"


def batch_rows(intervention, rows, n_rows: int):
    """The edit for the batch rows ``rows`` (a range) of an input of ``n_rows`` rows.

    Adapters split their inputs into batches; a RowwiseIntervention (one edit per input row) is sliced to the batch,
    any other intervention (or None) applies to every row and is returned unchanged.
    """
    if not isinstance(intervention, RowwiseIntervention):
        return intervention
    if len(intervention) != n_rows:
        raise ValueError(f"RowwiseIntervention has {len(intervention)} rows but the call has {n_rows} inputs; give "
                         "one row per input (RowwiseIntervention.repeat(conditions, n) for n inputs per condition)")
    return intervention[rows.start: rows.stop]


def prefix_groups(intervention, n_rows: int) -> torch.Tensor:
    """Group ids (0, 1, ... in order of first appearance) of ``n_rows`` batch rows: rows with the same edit share a
    group. A model that computes a prompt prefix shared by every row once per group (the demo LALM's fixed system
    turn) passes these to ``generate(prefix_groups=...)``; the runner then edits and captures each group's prefix
    call for all of the group's rows. None, an Intervention or a list of them: one group."""
    if not isinstance(intervention, RowwiseIntervention):
        return torch.zeros(n_rows, dtype=torch.long)
    if len(intervention) != n_rows:
        raise ValueError(f"RowwiseIntervention has {len(intervention)} rows but the batch holds {n_rows}")
    ids: dict = {}
    # a row's edit is its tuple of Intervention objects (shared by the rows of one condition: repeat / slicing)
    return torch.tensor([ids.setdefault(tuple(id(iv) for iv in r), len(ids)) for r in intervention.rows],
                        dtype=torch.long)


def per_condition(run: Callable, n: int, conditions: Sequence, rowwise: bool = True) -> list[list]:
    """The outputs of ``n`` inputs under each condition (None, an Intervention or a list of them): one list per
    condition, in order. ``run(k, intervention)`` must return the outputs of the inputs repeated ``k`` times
    (condition-major). ``rowwise``: every condition in one call through a RowwiseIntervention; else one call each."""
    K = len(conditions)
    if K > 1 and rowwise:
        out = run(K, RowwiseIntervention.repeat(list(conditions), n))
        return [out[k * n:(k + 1) * n] for k in range(K)]
    return [run(1, c) for c in conditions]


class _RowEdit:
    """Edits of one site for a RowwiseIntervention, as per-row operands over the union of touched columns.

    Layer j applies the j-th Intervention of every row: per edit kind of ``esnlib.edits.EDIT_KINDS`` (table order),
    ``sub = kind.rowwise(sub, operand)`` with a (B, 1, U) operand holding ``kind.operand(α)`` where a row applies
    that kind and the kind's identity elsewhere. A kind no row of the layer uses is left out when its identity is
    exact (x*1, max(x, -inf), an empty fill); add's x+0.0 is not (it turns -0.0 into +0.0) and always runs. Built
    once before the run, in float32 (like the scalar edits, whose α is not rounded to a half-precision activation
    dtype).
    """

    def __init__(self, cols: np.ndarray, layers: list[dict], batch: int):
        self.cols = torch.as_tensor(cols, dtype=torch.long)
        self.layers = layers  # each: {"prefill": [(rowwise op, operand), ...], "decode": [...]}
        self.batch = batch
        self._dev: dict = {}

    def _on(self, device):
        if device not in self._dev:
            self._dev[device] = (self.cols.to(device), [{k: [(op, x.to(device)) for op, x in v] for k, v in L.items()}
                                                        for L in self.layers])
        return self._dev[device]

    def __call__(self, g: torch.Tensor, step: int, rows: torch.Tensor | None = None):
        """Edit g in place; ``rows``: the batch rows g holds (a shared prompt prefix run for one row), else all."""
        n = self.batch if rows is None else len(rows)
        if g.shape[0] != n:
            raise ValueError(f"RowwiseIntervention has {n} rows but the batch has {g.shape[0]}; give one "
                             "row per batch row (slice it per sub-batch: rw[i:j])")
        cols, layers = self._on(g.device)
        sub = g[..., cols]
        sub = sub.float() if sub.dtype != torch.float32 else sub
        which = "prefill" if step == 0 else "decode"
        for L in layers:
            for op, x in L[which]:
                sub = op(sub, x if rows is None else x[rows.to(x.device)])
        g[..., cols] = sub.to(g.dtype)


def _row_operands(rows, j: int, which: str, per_row, pos, shape):
    """The (op, operand) pairs of layer j in one phase: one per kind of the table that changes something."""
    ops = []
    for kind in EDIT_KINDS.values():
        ident = np.full(shape, kind.row_identity, bool if isinstance(kind.row_identity, bool) else np.float32)
        x = ident.copy()
        for b, r in enumerate(rows):
            if j >= len(r) or r[j].kind != kind.name or (which == "prefill" and r[j].positions == "generated"):
                continue
            x[b, 0, [pos[int(c)] for c in per_row[b][j]]] = kind.operand(r[j].alpha)
        if not kind.row_exact or x.tobytes() != ident.tobytes():
            ops.append((kind.rowwise, torch.from_numpy(x)))
    return ops


def _rowwise_plan(rw: RowwiseIntervention, sites: Sequence[Site]):
    n, B = n_neurons(sites), len(rw)
    for i, r in enumerate(rw.rows):
        for iv in r:
            if iv.index.size and iv.index.max() >= n:
                raise IndexError(f"RowwiseIntervention row {i}: index {iv.index.max()} out of range: the sites hold "
                                 f"{n} neurons (flat indices must come from the same sites/scope)")
    depth = max((len(r) for r in rw.rows), default=0)
    split = [[split_by_site(iv.index, sites) for iv in r] for r in rw.rows]
    plan: list[list] = [[] for _ in sites]
    for s in range(len(sites)):
        per_row = [[parts[s] for parts in r] for r in split]
        cols = np.unique(np.concatenate([c for r in per_row for c in r] or [np.zeros(0, np.int64)]))
        if not cols.size:
            continue
        pos = {int(c): k for k, c in enumerate(cols)}
        layers = [{which: _row_operands(rw.rows, j, which, per_row, pos, (B, 1, len(cols)))
                   for which in ("prefill", "decode")} for j in range(depth)]
        plan[s].append(_RowEdit(cols, layers, B))
    return plan


def _plan(interventions, sites: Sequence[Site]):
    """Per site, the list of (local index tensor, kind, alpha, positions) edits, built once before the run."""
    if isinstance(interventions, RowwiseIntervention):
        return _rowwise_plan(interventions, sites)
    if isinstance(interventions, Intervention):
        interventions = [interventions]
    interventions = list(interventions)
    for iv in interventions:
        if not isinstance(iv, Intervention):
            raise TypeError(f"intervention must be an esnlib.Intervention, a list of them or a RowwiseIntervention; "
                            f"got {type(iv).__name__}")
    n = n_neurons(sites)
    plan: list[list] = [[] for _ in sites]
    for iv in interventions:
        if iv.index.size and iv.index.max() >= n:
            raise IndexError(f"intervention index {iv.index.max()} out of range: the sites hold {n} neurons "
                             "(flat indices must come from the same sites/scope)")
        for s, local in enumerate(split_by_site(iv.index, sites)):
            if local.size:
                plan[s].append((torch.as_tensor(local, dtype=torch.long), iv.kind, iv.alpha, iv.positions))
    return plan


def generate(model, inputs, intervention=None, sites: Sequence[Site] | None = None, scope: str = "lm",
             fn: Callable | None = None, capture: bool = False, stat_positions: str = "all", **generate_kwargs):
    """Generate with the intervention(s) applied at every step; returns what generate returns (and CaptureStats
    of the served, edited activations when capture=True).

    intervention: None, an Intervention, or a list of them applied in turn on each site (use
    ``Intervention.union`` to merge masks that share kind/alpha), or a RowwiseIntervention (one edit per batch row).
    stat_positions: what the statistics count when capture=True (``esnlib.capture.STAT_POSITIONS``).
    """
    if sites is None:
        sites = find_sites(unwrap(model), scope=scope)
    if isinstance(intervention, RowwiseIntervention):
        b = _batch_size(inputs)
        if b is not None and b != len(intervention):
            raise ValueError(f"RowwiseIntervention has {len(intervention)} rows but the inputs hold {b}; give one "
                             "row per batch row (RowwiseIntervention.repeat(conditions, n) for n utterances)")
    plan = _plan(intervention, sites) if intervention is not None else None
    out, stats = run_traced(model, inputs, sites=sites, scope=scope, fn=fn, capture=capture, plan=plan,
                            stat_positions=stat_positions, **generate_kwargs)
    return (out, stats) if capture else out


def _batch_size(inputs) -> int | None:
    if torch.is_tensor(inputs):
        return int(inputs.shape[0])
    if hasattr(inputs, "items"):
        for k in ("input_ids", "inputs_embeds", "input_features"):
            v = inputs.get(k) if hasattr(inputs, "get") else None
            if torch.is_tensor(v):
                return int(v.shape[0])
    return None
