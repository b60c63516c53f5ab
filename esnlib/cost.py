"""What a sweep costs at paper scale: generations, GPU-hours and wall-clock hours per notebook (docs/scaling.md).

The sizes are the EVC paper's (Table 1 splits, section 5); the seconds per generation are a stated assumption for
Qwen2.5-Omni-7B, to be replaced by a measurement. ``estimate_cost`` also counts a grid of ``esnlib.grid`` units.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import pandas as pd

from .grid import UnitGroup

__all__ = ["QWEN_OMNI_7B_EVC_S", "PAPER", "NOTEBOOK_SPECS", "estimate_cost", "cost_table"]

#: Assumed seconds per EVC generation of Qwen2.5-Omni-7B (bf16, one H100/A100, HF generate, batch 1, under nnsight).
#: Arithmetic (an assumption, not a measurement): a 3 s ESD clip gives ~75 audio tokens + ~60 prompt tokens; the
#: thinker decodes ~20 text tokens at ~30 ms/token (HF eager decode of a 7B model: 0.6 s); the talker decodes ~50 Hz
#: codec tokens for ~3 s of speech (~150 tokens) at ~20 ms/token (per-step overhead bound: 3.0 s); token2wav (DiT,
#: 10 ODE steps + BigVGAN) ~0.4 s; prefill and audio encoder ~0.1 s; nnsight edits ~1.2x -> (0.6+3.0+0.4+0.1)*1.2
#: = 4.9 s, rounded to 5 s. Replace it with your own measurement (time one shard of `adapter.evc`).
QWEN_OMNI_7B_EVC_S = 5.0

#: Paper-scale sizes (EVC paper: Table 1 splits, §5): test = TEST-SEEN 800 + TEST-UNSEEN 700 neutral sources
PAPER = dict(n_test=1500, n_id=1200, n_targets=4, n_masks=4, n_selectors=5, rates=4, caps=4, alphas=4, kinds=4)


def _specs(p: Mapping) -> dict:
    """Per notebook, the list of (what, generations) at the sizes in ``p`` (shared units counted once, where first
    needed: the baseline in 01, the CAS/r=0.5%/c=50/steer/α=1 masks in 02)."""
    per_mask = p["n_targets"] * p["n_test"]  # one e_mask applied to every (utterance, e_tgt)
    grid = p["n_masks"] * per_mask          # one mask set (4 e_mask) over the test split
    return {
        "01_baseline": [("baseline EVC, test split x targets", per_mask)],
        "02_selectors": [("identification EVC with capture (IDENTIFICATION x targets)", p["n_id"] * p["n_targets"]),
                         ("selectors x e_mask x e_tgt x test", p["n_selectors"] * grid)],
        "03_rate_sweep": [("r values besides the default", (p["rates"] - 1) * grid)],
        "04_cap_sweep": [("c values besides the default (re-aggregated, no new identification)", (p["caps"] - 1) * grid)],
        "05_intervention": [("kinds besides steer", (p["kinds"] - 1) * grid),
                            ("alpha values besides 1.0", (p["alphas"] - 1) * grid)],
        "06_localization": [("talker identification with capture", p["n_id"] * p["n_targets"]),
                            ("talker masks: selectors x e_mask x e_tgt x test", (p["n_selectors"] - 1) * grid),
                            ("masks from the second judge's filter", grid)],
        "07_generalization": [("seen/unseen: reuses 02's units", 0)],
        "08_recognition": [("SER: identification (5 emotions) + deactivate/amplify x 5 masks x test x 5 emotions, "
                            "in EVC-generation equivalents (one label token, no talker: ~1/20)",
                            (p["n_id"] * 5 + 2 * 5 * p["n_test"] * 5) / 20)],
        "09_selector_validity": [("demo world only (reads the demo talker's prosody tokens)", 0)],
    }


NOTEBOOK_SPECS = _specs(PAPER)


def estimate_cost(spec: str | Mapping | Sequence = "all", per_generation_s: float = QWEN_OMNI_7B_EVC_S,
                  n_gpus: int = 1, batch_speedup: float = 1.0, samples_per_unit: int | Callable | None = None,
                  **sizes) -> pd.DataFrame:
    """Generations, GPU-hours and wall-clock hours of a notebook, of all notebooks, or of a grid spec.

    spec: a notebook name ("02_selectors" or "02"), "all", a dict {what: generations}, or a list of Units
    (``samples_per_unit``: an int or ``f(unit) -> int``; default ``len(payload)`` for a list payload, else 1). per_generation_s: seconds per generation on one GPU (default: the
    stated Qwen2.5-Omni-7B assumption). batch_speedup: throughput gain of batching/row-wise batching (1 = none).
    sizes: override paper sizes (n_test, n_id, n_targets, n_masks, n_selectors, rates, caps, alphas, kinds).
    """
    if per_generation_s <= 0 or n_gpus < 1 or batch_speedup <= 0:
        raise ValueError("per_generation_s and batch_speedup must be > 0 and n_gpus >= 1")
    bad = set(sizes) - set(PAPER)
    if bad:
        raise ValueError(f"unknown size(s) {sorted(bad)}; use {sorted(PAPER)}")
    specs = _specs({**PAPER, **sizes})
    rows = []
    if isinstance(spec, str):
        names = list(specs) if spec == "all" else [n for n in specs if n == spec or n.split("_")[0] == spec]
        if not names:
            raise ValueError(f"unknown notebook {spec!r}; use one of {list(specs)} or 'all'")
        for nb in names:
            for what, n in specs[nb]:
                rows.append((nb, what, n))
    elif isinstance(spec, Mapping):
        rows = [("custom", str(k), float(v)) for k, v in spec.items()]
    else:
        units = [m for x in spec for m in (x.units if isinstance(x, UnitGroup) else [x])]

        def count(u):
            if callable(samples_per_unit):
                return int(samples_per_unit(u))
            if samples_per_unit is not None:
                return int(samples_per_unit)
            return len(u.payload) if isinstance(u.payload, (list, tuple)) else 1
        rows = [("grid", f"{len(units)} units", float(sum(count(u) for u in units)))]
    df = pd.DataFrame(rows, columns=["notebook", "what", "generations"])
    df["gpu_hours"] = df["generations"] * per_generation_s / batch_speedup / 3600.0
    df["wall_hours"] = df["gpu_hours"] / n_gpus
    return df


def cost_table(per_generation_s: float = QWEN_OMNI_7B_EVC_S, n_gpus: int = 8, **kw) -> pd.DataFrame:
    """Per notebook: generations, GPU-hours and wall hours on ``n_gpus`` (with a total row)."""
    df = estimate_cost("all", per_generation_s=per_generation_s, n_gpus=n_gpus, **kw)
    t = df.groupby("notebook", sort=False)[["generations", "gpu_hours", "wall_hours"]].sum().reset_index()
    total = pd.DataFrame([{"notebook": "total", **t[["generations", "gpu_hours", "wall_hours"]].sum().to_dict()}])
    return pd.concat([t, total], ignore_index=True)
