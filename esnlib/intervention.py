"""Stage 4 of the EVC pipeline (paper §3.4): inference-time neuron interventions on the activated gate g.

Kinds (α ≥ 0 as in the paper): steer g·(1+α) (eq. 5), add g+α (eq. 6), clamp max(g, α) (eq. 7), deactivate 0.
Edits are applied in place on the served activation of every selected site at every step under nnsight; weights are
never touched. ``generate`` shares the traced runner of ``esnlib.capture`` (one visit per site per step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .capture import run_traced
from .sites import Site, find_sites, n_neurons, split_by_site, unwrap

__all__ = ["KINDS", "POSITIONS", "edit", "Intervention", "generate"]

KINDS = ("steer", "add", "clamp", "deactivate")
POSITIONS = ("all", "generated")


def _check_kind_alpha(kind: str, alpha: float) -> float:
    if kind not in KINDS:
        raise ValueError(f"unknown intervention kind {kind!r}; use one of {KINDS}")
    alpha = float(alpha)
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    if kind != "deactivate" and alpha < 0:
        raise ValueError(f"alpha must be >= 0 for {kind!r} (paper §3.4); got {alpha}. Use 'deactivate' to silence "
                         "neurons")
    return alpha


def edit(g: torch.Tensor, index, kind: str, alpha: float = 1.0) -> torch.Tensor:
    """Return a copy of g with the intervention applied on the last-dim indices ``index`` (g is unchanged)."""
    alpha = _check_kind_alpha(kind, alpha)
    ix = torch.as_tensor(np.asarray(index, dtype=np.int64), device=g.device).flatten()
    width = g.shape[-1]
    if ix.numel() and (int(ix.min()) < 0 or int(ix.max()) >= width):
        raise IndexError(f"neuron index out of range [0, {width}) for g of shape {tuple(g.shape)}")
    out = g.clone()
    if kind == "steer":
        out[..., ix] = out[..., ix] * (1.0 + alpha)
    elif kind == "add":
        out[..., ix] = out[..., ix] + alpha
    elif kind == "clamp":
        out[..., ix] = out[..., ix].clamp_min(alpha)
    else:
        out[..., ix] = 0
    return out


@dataclass
class Intervention:
    """An edit of the selected neurons (flat indices over the sites) with one kind and strength α.

    positions: "all" edits prompt and generated positions; "generated" skips the prefill (prompt) positions.
    """

    index: np.ndarray
    kind: str = "steer"
    alpha: float = 1.0
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
        self.alpha = _check_kind_alpha(self.kind, self.alpha)
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


def _plan(interventions, sites: Sequence[Site]):
    """Per site, the list of (local index tensor, kind, alpha, positions) edits, built once before the run."""
    if isinstance(interventions, Intervention):
        interventions = [interventions]
    interventions = list(interventions)
    for iv in interventions:
        if not isinstance(iv, Intervention):
            raise TypeError(f"intervention must be an esnlib.Intervention or a list of them; got {type(iv).__name__}")
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
             fn: Callable | None = None, capture: bool = False, **generate_kwargs):
    """Generate with the intervention(s) applied at every step; returns what generate returns (and CaptureStats
    of the served, edited activations when capture=True).

    intervention: None, an Intervention, or a list of them applied in turn on each site (use
    ``Intervention.union`` to merge masks that share kind/alpha).
    """
    if sites is None:
        sites = find_sites(unwrap(model), scope=scope)
    plan = _plan(intervention, sites) if intervention is not None else None
    out, stats = run_traced(model, inputs, sites=sites, scope=scope, fn=fn, capture=capture, plan=plan,
                            **generate_kwargs)
    return (out, stats) if capture else out
