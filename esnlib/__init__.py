"""esnlib: find, validate and steer emotion-sensitive neurons (ESNs) in large audio-language models.

The public API (names follow the EVC paper, sections 3.1-3.5)::

    sites = esnlib.find_sites(model, scope="lm")
    out, stats = esnlib.capture(model, inputs, sites=sites, **generate_kwargs)
    masks = esnlib.select(P, method, rate, seed=0, lape_percentile=95.0)
    g2 = esnlib.edit(g, index, kind, alpha)
    out = esnlib.generate(model, inputs, intervention=esnlib.Intervention(...), sites=sites, **generate_kwargs)
"""
from __future__ import annotations

import importlib

from .constants import EMOTIONS, TARGET_EMOTIONS  # the shared vocabularies (esnlib/constants.py)

__version__ = "0.1.0"

_EXPORTS = {
    "find_sites": "sites",
    "Site": "sites",
    "flat_to_layer": "sites",
    "layer_to_flat": "sites",
    "n_neurons": "sites",
    "split_by_site": "sites",
    "capture": "capture",
    "CaptureStats": "capture",
    "StatsStore": "capture",
    "select": "selection",
    "activation_probabilities": "selection",
    "edit": "intervention",
    "Intervention": "intervention",
    "generate": "intervention",
    "run_traced": "capture",
    "RowwiseIntervention": "intervention",
    "run_grid": "grid",
    "Unit": "grid",
    "UnitGroup": "grid",
    "ResultStore": "store",
}

__all__ = ["EMOTIONS", "TARGET_EMOTIONS", *_EXPORTS]


# The core is imported eagerly: `esnlib.capture` must be the function even after `import esnlib.capture` (a lazy
# attribute would be shadowed by the submodule of the same name once that is imported).
from .capture import CaptureStats, StatsStore, capture, run_traced  # noqa: E402
from .intervention import Intervention, RowwiseIntervention, edit, generate  # noqa: E402
from .sites import Site, find_sites, flat_to_layer, layer_to_flat, n_neurons, split_by_site  # noqa: E402


def __getattr__(name: str):
    # The rest is lazy (selection, store pull in pandas/pyarrow).
    if name in _EXPORTS:
        mod = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module 'esnlib' has no attribute {name!r}")
