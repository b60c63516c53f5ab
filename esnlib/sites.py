"""Where the neurons live: the gated-MLP activation sites ``g = act_fn(gate_proj(x))`` of a decoder (EVC paper §3.1).

A *site* is one ``act_fn`` module; its output ``g`` (last dim = intermediate size) holds the neuron activations
``a_{l,n,t}``. Neurons of all selected sites are numbered by one flat index: site ``s`` owns
``[s.offset, s.offset + s.width)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch.nn as nn

SCOPES = ("lm", "talker", "both")

# Gated MLPs that are not decoder neurons of the language model or the speech-generation decoder.
_EXCLUDED = re.compile(r"(^|\.)(visual|vision_tower|vision_model|audio_tower|audio_model|audio_encoder|encoder|"
                       r"token2wav|code2wav|vision|image)(\.|$)")
_MOE_ATTRS = ("experts", "router", "gate_up_proj", "shared_expert", "shared_experts")


@dataclass
class Site:
    """One gated-MLP activation site: module path of its ``act_fn``, layer index within its side, width, offset."""

    path: str
    layer: int
    width: int
    side: str
    offset: int
    module: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def stop(self) -> int:
        """One past the last flat index of this site."""
        return self.offset + self.width


def unwrap(model) -> nn.Module:
    """The plain ``nn.Module`` behind a module, an nnsight wrapper (``._module``) or an adapter (``.model``)."""
    seen = 0
    while not isinstance(model, nn.Module) or _is_nnsight(model):
        seen += 1
        if seen > 5:
            break
        if _is_nnsight(model):
            model = model._module
        elif isinstance(getattr(model, "model", None), nn.Module) or _is_nnsight(getattr(model, "model", None)):
            model = model.model
        else:
            break
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch nn.Module, an nnsight wrapper of one or an object with a `.model` module; "
                        f"got {type(model).__name__}")
    return model


def _is_nnsight(obj) -> bool:
    try:
        from nnsight import Envoy
    except Exception:  # pragma: no cover - nnsight is a dependency
        return False
    return isinstance(obj, Envoy)


def _is_gated_mlp(m: nn.Module) -> bool:
    return all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn"))


#: path components that mark a speech-generation decoder: Qwen2.5-Omni's ``talker``, Kimi-Audio's ``mimo_layers``,
#: MiniCPM-o's ``tts``
SPEECH_SIDE_MARKERS = ("talker", "mimo_layers", "tts")


def _side_of(path: str) -> str:
    parts = path.split(".")
    return "talker" if any(m in parts for m in SPEECH_SIDE_MARKERS) or "talker" in path else "lm"


_LAYER_RE = re.compile(r"\.(\d+)\.mlp$")


def find_sites(model, scope: str = "lm") -> list[Site]:
    """Find the gated-MLP activation sites of a decoder by structure, in layer order, LM side first.

    scope: "lm" (language-model decoder), "talker" (speech-generation decoder, a path containing "talker") or
    "both". Vision/audio encoders and token2wav are excluded. MoE layers raise NotImplementedError.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use one of {SCOPES}")
    root = unwrap(model)
    found: dict[str, list[tuple[int, str, nn.Module]]] = {"lm": [], "talker": []}
    moe: list[str] = []
    for name, mod in root.named_modules():
        if _EXCLUDED.search(name):
            continue
        if name.endswith(".mlp") and any(hasattr(mod, a) for a in _MOE_ATTRS) and not _is_gated_mlp(mod):
            moe.append(name)
            continue
        if not _is_gated_mlp(mod):
            continue
        m = _LAYER_RE.search(name)
        if m is None:
            continue  # a gated MLP outside a decoder layer stack (e.g. a projector)
        side = _side_of(name)
        found[side].append((int(m.group(1)), f"{name}.act_fn", mod.act_fn))
    wanted = ["lm", "talker"] if scope == "both" else [scope]
    moe_in_scope = [p for p in moe if _side_of(p) in wanted]
    if moe_in_scope:
        raise NotImplementedError(
            f"{type(root).__name__} has mixture-of-experts MLP layers (e.g. {moe_in_scope[0]}: experts/router). "
            "Each act_fn call there covers only the tokens routed to one expert, so per-neuron statistics need the "
            "router's indices; esnlib supports dense gated MLPs only.")
    sites: list[Site] = []
    offset = 0
    for side in wanted:
        # One decoder per side: keep the layer stack with the most layers if several prefixes match.
        entries = sorted(found[side], key=lambda e: (e[1].rsplit(".", 4)[0], e[0]))
        for layer, path, act in entries:
            width = _width(act, root, path)
            sites.append(Site(path=path, layer=layer, width=width, side=side, offset=offset, module=act))
            offset += width
    if not sites:
        raise ValueError(
            f"no gated MLP found in scope {scope!r} of {type(root).__name__}: looked for decoder layers "
            "`<...>.layers.<i>.mlp` with gate_proj, up_proj, down_proj and act_fn (SwiGLU-style); models with "
            "plain MLPs (e.g. GPT-2) have no such sites. Use scope='lm', 'talker' or 'both' as the model allows.")
    return sites


def _width(act: nn.Module, root: nn.Module, path: str) -> int:
    mlp = root.get_submodule(path.rsplit(".", 1)[0])
    return int(mlp.gate_proj.out_features)


def n_neurons(sites: Sequence[Site]) -> int:
    """Total number of neurons N over the sites."""
    return int(sum(s.width for s in sites))


def _offsets(sites: Sequence[Site]) -> np.ndarray:
    return np.array([s.offset for s in sites] + [n_neurons(sites)], dtype=np.int64)


def flat_to_layer(flat, sites: Sequence[Site]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices -> (site index, neuron index within the site), vectorized."""
    flat = np.asarray(flat, dtype=np.int64)
    n = n_neurons(sites)
    if flat.size and (flat.min() < 0 or flat.max() >= n):
        raise IndexError(f"flat neuron index out of range [0, {n}): min {flat.min()}, max {flat.max()}")
    off = _offsets(sites)
    site_idx = np.searchsorted(off, flat, side="right") - 1
    return site_idx, flat - off[site_idx]


def layer_to_flat(site_idx, neuron, sites: Sequence[Site]) -> np.ndarray:
    """(site index, neuron within the site) -> flat index, vectorized."""
    site_idx = np.asarray(site_idx, dtype=np.int64)
    neuron = np.asarray(neuron, dtype=np.int64)
    if site_idx.size and (site_idx.min() < 0 or site_idx.max() >= len(sites)):
        raise IndexError(f"site index out of range [0, {len(sites)})")
    widths = np.array([s.width for s in sites], dtype=np.int64)
    if neuron.size and (neuron.min() < 0 or np.any(neuron >= widths[site_idx])):
        raise IndexError("neuron index out of range for its site (0 <= neuron < site.width)")
    return _offsets(sites)[site_idx] + neuron


def split_by_site(flat_idx, sites: Sequence[Site]) -> list[np.ndarray]:
    """Flat indices -> one sorted array of local (within-site) indices per site (empty where none)."""
    site_idx, local = flat_to_layer(np.unique(np.asarray(flat_idx, dtype=np.int64)), sites)
    return [local[site_idx == s] for s in range(len(sites))]
