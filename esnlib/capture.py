"""Stage 1 of the EVC pipeline (paper §3.1): per-sample, per-neuron activation statistics during generation.

``capture`` runs ``model.generate`` under an nnsight trace and accumulates, for every sample and neuron, the count of
positions with ``g > 0`` (the paper's K), the sum and the sum of squares of ``g`` and the number of positions (T).
``StatsStore`` keeps these per-sample rows on disk (memory-mapped) so success filtering and the cap c re-aggregate
without generating again.

Which positions count: every non-padding position the model processes. The prompt counts once at prefill (left
padding masked with the ``attention_mask`` the generating module receives), then one position per decoding step. A
row that has finished (its previous token was an EOS; HF generate then keeps feeding it pad) is padding too: the
runner reads the token ids the generating module receives at each decoding step and marks a row finished, for the
rest of the run, once an EOS id of that side arrives. The EOS id itself is therefore not counted (its output is
discarded by generate). EOS ids come from ``eos_token_id`` / ``<side>_eos_token_id`` in the generate kwargs, else the
default of the model's ``generate`` signature, else the generating module's ``generation_config``. When a side
decodes from embeddings only (no ids at decode steps), finished rows cannot be seen and every row counts.
"""
from __future__ import annotations

import inspect
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .edits import get_kind
from .sites import Site, find_sites, n_neurons, unwrap

__all__ = ["CaptureStats", "capture", "StatsStore", "run_traced"]


# --------------------------------------------------------------------------------------------------------------------
# CaptureStats
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class CaptureStats:
    """Per-sample statistics of one batch: positive/sum/sumsq (B, N), tokens (B,), site_tokens (B, S)."""

    positive: Any
    sum: Any
    sumsq: Any
    tokens: Any
    site_tokens: Any
    sites: list = field(default_factory=list, repr=False)

    @property
    def batch_size(self) -> int:
        return int(self.positive.shape[0])

    def numpy(self) -> "CaptureStats":
        """A copy with numpy arrays (uint32 counts, float32 sums)."""
        def f(x, dt):
            x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
            return x.astype(dt, copy=False)
        return CaptureStats(f(self.positive, np.uint32), f(self.sum, np.float32), f(self.sumsq, np.float32),
                            f(self.tokens, np.uint32), f(self.site_tokens, np.uint32), list(self.sites))

    def rows(self, idx) -> "CaptureStats":
        """The statistics of the selected rows (any index numpy accepts), as numpy."""
        s = self.numpy()
        return CaptureStats(s.positive[idx], s.sum[idx], s.sumsq[idx], s.tokens[idx], s.site_tokens[idx], s.sites)

    @staticmethod
    def concat(parts: Sequence["CaptureStats"]) -> "CaptureStats":
        """Stack the rows of several batches (same sites) into one CaptureStats (numpy)."""
        if not parts:
            raise ValueError("CaptureStats.concat needs at least one batch")
        ps = [p.numpy() for p in parts]
        n = ps[0].positive.shape[1]
        if any(p.positive.shape[1] != n for p in ps):
            raise ValueError("CaptureStats.concat: batches have different neuron counts (different sites)")
        cat = lambda name: np.concatenate([getattr(p, name) for p in ps], axis=0)  # noqa: E731
        return CaptureStats(cat("positive"), cat("sum"), cat("sumsq"), cat("tokens"), cat("site_tokens"),
                            ps[0].sites)


# --------------------------------------------------------------------------------------------------------------------
# The one traced runner shared by capture() and intervention.generate()
# --------------------------------------------------------------------------------------------------------------------
def _leaf_envoy_class():
    """An nnsight Envoy that wraps its module but none of its children (see ``_probe``)."""
    from nnsight import Envoy

    global _LEAF
    if _LEAF is None:
        class _LeafEnvoy(Envoy):
            def _add_envoy(self, name, module):  # children stay unwrapped: no controllers on them
                return None
        _LEAF = _LeafEnvoy
    return _LEAF


_LEAF = None


class _Probe(torch.nn.Module):
    """A container of the modules one run visits: the generating module(s) of each side and the sites."""

    def __init__(self, gens, acts):
        super().__init__()
        self.gens = torch.nn.ModuleList(gens)
        self.acts = torch.nn.ModuleList(acts)


def _envoy(model, site_paths: Sequence[str], gen_paths: Sequence[str]):
    """(envoy, act envoys, gen envoys): the caller's own nnsight wrapper as it is, else a probe envoy.

    nnsight's ``NNsight(model)`` installs its controller on every module, and while a trace has a worker each module
    call hands its input, skip gate and output to the interleaver, visited or not (~110 module calls per decoding
    step on a small decoder). The probe wraps only what the run reads: the sites (act_fn modules) and the generating
    module of each side as a leaf (its inputs, not its children). Cached on the module per (sites, generators)."""
    from nnsight import Envoy, NNsight

    if isinstance(model, Envoy):
        return model, [model.get(p) for p in site_paths], [model.get(p) if p else model for p in gen_paths]
    root = unwrap(model)
    cache = root.__dict__.setdefault("_esnlib_probes", {})
    key = (tuple(site_paths), tuple(gen_paths))
    env = cache.get(key)
    if env is None:
        gens = [root.get_submodule(p) if p else root for p in gen_paths]
        probe = _Probe(gens, [root.get_submodule(p) for p in site_paths])
        env = NNsight(probe, envoys={type(g): _leaf_envoy_class() for g in gens})
        cache[key] = env
    return env, list(env.acts), list(env.gens)


def _generates(mod) -> bool:
    """Whether ``mod.generate`` is a generation entry point. Under transformers 4.x every PreTrainedModel inherits a
    ``generate``, bare decoders (Qwen2Model) included; their ``can_generate()`` says False, so ask it where it exists."""
    if not callable(getattr(mod, "generate", None)):
        return False
    can = getattr(mod, "can_generate", None)
    return bool(can()) if callable(can) else True


def _generator_path(root: torch.nn.Module, site_path: str) -> str:
    """The module whose forward generate calls once per step: the nearest generating ancestor of a site."""
    parts = site_path.split(".")
    for k in range(len(parts) - 1, -1, -1):
        p = ".".join(parts[:k])
        mod = root.get_submodule(p) if p else root
        if _generates(mod):
            return p
    # No generating ancestor: fall back to the decoder that holds the layer stack (the parent of the ModuleList whose
    # numbered child holds the site: model.layers.3.mlp.act_fn -> model, model.mimo_layers.0.mlp.act_fn -> model).
    i = next((k for k, p in enumerate(parts) if p.isdigit()), len(parts) - 2)
    return ".".join(parts[:max(i - 1, 0)])


def _eos_ids(root, gen_path: str, gen_kwargs: dict) -> torch.Tensor | None:
    prefix = gen_path.split(".")[0] if gen_path else ""
    val = None
    if prefix and f"{prefix}_eos_token_id" in gen_kwargs:
        val = gen_kwargs[f"{prefix}_eos_token_id"]
    elif not prefix and "eos_token_id" in gen_kwargs:
        val = gen_kwargs["eos_token_id"]
    # A root without ``generate`` (remote code under transformers 5, e.g. Kimi-Audio's
    # MoonshotKimiaForCausalLM, driven by its own loop) has no defaults to read: nn.Module raises AttributeError.
    generate = getattr(root, "generate", None)
    if val is None and prefix and callable(generate):
        try:
            p = inspect.signature(generate).parameters.get(f"{prefix}_eos_token_id")
            if p is not None and p.default is not inspect.Parameter.empty:
                val = p.default
        except (TypeError, ValueError):
            pass
    if val is None:
        gen = root.get_submodule(gen_path) if gen_path else root
        cfg = getattr(gen, "generation_config", None)
        val = getattr(cfg, "eos_token_id", None)
    if val is None:
        return None
    return torch.as_tensor(val, dtype=torch.long).flatten()


class _Group:
    """Sites of one side: their envoys, the generating module's envoy, column slice and compiled edits."""

    def __init__(self, sites: list[Site], first: int, gen_path: str, eos, plan):
        self.sites = sites
        self.site_ids = list(range(first, first + len(sites)))
        self.gen_path = gen_path
        self.acts = self.gen = None  # envoys, set by run_traced once the wrapper is built
        self.start, self.stop = sites[0].offset, sites[-1].stop
        self.eos = eos
        self.edits = [_SiteEdits.build(plan[i]) for i in self.site_ids] if plan is not None else [None] * len(sites)


#: what the statistics count: every position of the generation (the paper's "full activation tensor produced during
#: generation") or, on the LM side, the decoding steps only (the generated tokens as they are fed back; the talker
#: side always counts everything)
STAT_POSITIONS = ("all", "generated")


def check_stat_positions(stat_positions: str) -> str:
    if stat_positions not in STAT_POSITIONS:
        raise ValueError(f"stat_positions must be one of {STAT_POSITIONS} (what the activation statistics count), got "
                         f"{stat_positions!r}")
    return stat_positions


class _State:
    """Accumulators created outside the trace; filled at the first step (batch size known then)."""

    def __init__(self, n: int, n_sites: int, capture: bool, stat_positions: str = "all"):
        self.n, self.n_sites, self.capture = n, n_sites, capture
        self.stat_positions = check_stat_positions(stat_positions)
        self.pos = self.sum = self.sumsq = self.site_tokens = None

    def alloc(self, b: int, device):
        if self.pos is None:
            self.pos = torch.zeros(b, self.n, dtype=torch.int32, device=device)
            self.sum = torch.zeros(b, self.n, dtype=torch.float32, device=device)
            self.sumsq = torch.zeros(b, self.n, dtype=torch.float32, device=device)
            self.site_tokens = torch.zeros(b, self.n_sites, dtype=torch.int64, device=device)
        elif self.pos.shape[0] != b:
            raise RuntimeError(f"batch size changed between sides ({self.pos.shape[0]} vs {b}): beam search and "
                               "num_return_sequences > 1 are not supported by capture")


# Edits: applied in place on the served activation, in list order, in the forms of the kind's entry in
# esnlib.edits.EDIT_KINDS (resolved once when the edits are compiled, not per step). A float32 activation of at most
# _DENSE_MAX elements (a decoding step) is edited with the kind's dense form, one full-width op per edit (per-column
# factor, offset or floor whose untouched columns hold the exact identity: x*1, x+(-0.0), where(x < -inf)); larger
# ones (the prompt at prefill), and kinds without a dense form (deactivate: index_fill_), with the indexed form on the
# selected columns. Both give the same bits as the indexed reference edit (tests/test_intervention.py); the dense
# form is ~10x cheaper on a decoding step (one op instead of gather/op/scatter).
_DENSE_MAX = 1 << 18


class _SiteEdits:
    """The compiled edits of one site: scalar edits (index, kind, alpha, positions) and per-row callables."""

    def __init__(self, edits):
        self.edits = list(edits)
        self._on: dict = {}

    @classmethod
    def build(cls, edits):
        return cls(edits) if edits else None

    def _tensors(self, device, width: int):
        key = (device, width)
        if key not in self._on:
            out = []
            for e in self.edits:
                if callable(e):
                    out.append(e)
                    continue
                ix, kind, alpha, positions = e
                k = get_kind(kind)
                ix = ix.to(device)
                dense = None
                if k.dense is not None:
                    dense = torch.full((width,), k.dense_identity, device=device)
                    dense[ix] = k.operand(alpha)
                out.append((ix, alpha, positions, dense, k.dense, k.indexed))
            self._on[key] = out
        return self._on[key]

    def __call__(self, g: torch.Tensor, step: int, rows: torch.Tensor | None = None):
        small = g.dtype == torch.float32 and g.numel() <= _DENSE_MAX
        for e in self._tensors(g.device, g.shape[-1]):
            if callable(e):  # a per-row edit (intervention.RowwiseIntervention) applies itself
                e(g, step) if rows is None else e(g, step, rows)
                continue
            ix, alpha, positions, dense, dense_op, indexed_op = e
            if positions == "generated" and step == 0:
                continue
            if small and dense is not None:
                dense_op(g, dense)
            else:
                indexed_op(g, ix, alpha)


class _Accumulator:
    """The statistics of one side, updated site by site as each activation is served.

    ``begin`` opens a step (rows finished by an EOS input and masked positions contribute nothing), ``site`` takes
    one site's served activation, ``end`` closes the step. A prompt (t > 1) is reduced site by site the moment it is
    served, so no site's (b, t, width) activation outlives its layer; a decoding step's (b, 1, width) activations
    are joined into a preallocated buffer (``cat``) and reduced in one fused update at ``end``. Same operations and
    order as the per-site reference (tests/conftest.py ``hook_stats``), so the sums are bit-identical to it. With
    ``stat_positions="generated"`` the LM side's prompt calls (more than one position a row) count nothing."""

    def __init__(self, group: _Group, state: _State):
        self.group, self.state = group, state
        self.prompt = not (state.stat_positions == "generated" and group.sites[0].side == "lm")
        self.cols = [slice(s.offset - group.start, s.stop - group.start) for s in group.sites]
        self.buf = None  # _alloc makes the side's tensors at the first step, when batch size and device are known
        self.t = self.valid = self.w = self.rows = None
        self.gs: list = []

    def _alloc(self, g0: torch.Tensor, b: int):
        dev = g0.device
        group, state = self.group, self.state
        state.alloc(b, dev)
        self.dev = dev
        sl = slice(group.start, group.stop)
        self.pos, self.sum, self.sumsq = state.pos[:, sl], state.sum[:, sl], state.sumsq[:, sl]
        self.tok = state.site_tokens[:, group.site_ids[0]:group.site_ids[-1] + 1]
        self.live = torch.ones(b, dtype=torch.bool, device=dev)
        self.eos = group.eos.to(dev) if group.eos is not None else None
        w = group.stop - group.start
        self.buf = torch.empty(b, 1, w, dtype=g0.dtype, device=dev)
        # a decoding step's temporaries (g > 0, g * g), reused across steps
        self.gt = torch.empty(b, w, dtype=torch.bool, device=dev)
        self.sq = torch.empty(b, w, dtype=torch.float32, device=dev)

    def begin(self, g0: torch.Tensor, ids, am, step: int, rows: torch.Tensor | None = None, batch: int | None = None):
        """Open a step from its first site's activation ``g0`` and the generating module's inputs. ``rows``: the
        batch rows a shared prompt-prefix call stands for (its one row's statistics are added to each of them);
        ``batch``: the batch size (default: g0's)."""
        if self.buf is None:
            self._alloc(g0, g0.shape[0] if batch is None else batch)
        dev = self.dev
        t = self.t = g0.shape[1]
        if t > 1 and not self.prompt:  # a prompt call, not counted: site() sees no weights and skips it
            return
        self.rows = rows.to(dev) if rows is not None else None
        if rows is not None:
            valid = am[:, -t:].to(dev).bool() if am is not None and am.dim() == 2 else \
                torch.ones(g0.shape[0], t, dtype=torch.bool, device=dev)
            self.tok[self.rows] += valid.sum(1)[:, None]
            self.w = valid.float()[..., None]
            return
        if step > 0 and ids is not None and self.eos is not None:
            self.live &= torch.isin(ids[:, -1].to(dev), self.eos, invert=True)
        if t == 1:
            self.valid = am[:, -1].to(dev).bool() & self.live if am is not None and am.dim() == 2 else self.live
            self.tok += self.valid[:, None]
            return
        if am is not None and am.dim() == 2:
            valid = am[:, -t:].to(dev).bool() & self.live[:, None]
        else:
            valid = self.live[:, None].expand(-1, t)
        self.tok += valid.sum(1)[:, None]
        self.w = valid.float()[..., None]

    def site(self, k: int, g: torch.Tensor):
        if self.t == 1:
            self.gs.append(g)
            return
        if self.w is None:
            return
        sl = self.cols[k]
        gv = g.float() * self.w
        if self.rows is not None:  # a shared prefix: its one row counts for every row of its group
            self.pos[self.rows, sl] += (gv > 0).sum(1, dtype=torch.int32)
            self.sum[self.rows, sl] += gv.sum(1)
            self.sumsq[self.rows, sl] += (gv * gv).sum(1)
            return
        self.pos[:, sl] += (gv > 0).sum(1, dtype=torch.int32)
        self.sum[:, sl] += gv.sum(1)
        self.sumsq[:, sl] += (gv * gv).sum(1)

    def end(self):
        if self.t == 1:
            gv = torch.cat(self.gs, dim=-1, out=self.buf)[:, 0]
            self.gs = []
            gv = gv.float() if gv.dtype != torch.float32 else gv
            # x * 1 is x, bit for bit: on CPU the mask is applied only once a row is out (on a GPU, asking would
            # cost a device sync a step)
            if gv.device.type != "cpu" or not bool(self.valid.all()):
                gv.mul_(self.valid[:, None])
            self.pos += torch.gt(gv, 0, out=self.gt)
            self.sum += gv
            self.sumsq += torch.mul(gv, gv, out=self.sq)
        self.valid = self.w = self.rows = None


def group_rows(groups) -> list[torch.Tensor]:
    """The batch rows of each prefix group, in group order, from one group id per row numbered 0..k-1
    (``intervention.prefix_groups``); anything else is a ValueError naming the ids given."""
    g = torch.as_tensor(groups, dtype=torch.long).flatten()
    k = int(g.max()) + 1 if len(g) else 0
    if sorted(set(g.tolist())) != list(range(k)):
        raise ValueError(f"prefix_groups must number the row groups 0..k-1 (intervention.prefix_groups), got "
                         f"{sorted(set(g.tolist()))}")
    return [torch.nonzero(g == j).flatten() for j in range(k)]


class _Prefix:
    """The generating-module calls of a model that runs a prompt prefix shared by all rows once per group of rows
    with equal edits (``generate(prefix_groups=...)``, ``intervention.prefix_groups``): calls 0..k-1 are the k groups'
    prefixes (one row each, in group order), call k the rest of the prompt for the whole batch, then the decoding
    steps. The model shares only when there are fewer groups than rows; a first call of the full batch means it did
    not, and the calls are the usual ones."""

    def __init__(self, groups):
        self.rows = group_rows(groups)
        self.n, self.k = sum(len(r) for r in self.rows), len(self.rows)
        self.shared = None

    def at(self, step: int, b: int):
        """(rows, step): the rows call ``step`` (a batch of ``b``) stands for when it is a group's prefix (else None),
        and the step as the edits and statistics count it (0 for every prompt call)."""
        if step == 0:
            self.shared = b != self.n
            if self.shared and b != 1:
                raise RuntimeError(f"a shared-prefix call holds one row per group, got a batch of {b} for {self.n} "
                                   "rows")
        if not self.shared:
            return None, step
        return (self.rows[step], 0) if step < self.k else (None, step - self.k)


class _Served:
    """What the runner does with the activations one side's sites serve during a call: each site's edit, then its
    statistics. ``open`` starts a call (a generation step) at its first visited site, ``site`` takes each visited
    site's activation in layer order, ``close`` ends the call. With ``prefix`` (a model sharing its prompt prefix
    across rows, :class:`_Prefix`) a group's prefix call is edited with the group's edit (its first row's) and its
    statistics count for each of the group's rows. The nnsight loop (:func:`_group_loop`) and the plain-hook floor
    of the benchmark (``bench/hook_floor.py``) both drive this, so they differ only in how activations are served."""

    def __init__(self, group: _Group, state: _State, prefix: _Prefix | None = None):
        self.edits, self.prefix = group.edits, prefix
        self.acc = _Accumulator(group, state) if state.capture else None
        self.n = None if prefix is None else prefix.n
        self.rows = self.edit_rows = None
        self.at = 0

    def open(self, step: int, g: torch.Tensor, ids=None, am=None):
        self.rows, self.at = self.prefix.at(step, g.shape[0]) if self.prefix is not None else (None, step)
        self.edit_rows = None if self.rows is None else self.rows[:1]
        if self.acc is not None:
            self.acc.begin(g, ids, am, self.at, self.rows, self.n)

    def site(self, k: int, g: torch.Tensor):
        ed = self.edits[k]
        if ed is not None:
            ed(g, self.at, self.edit_rows)
        if self.acc is not None:
            self.acc.site(k, g)

    def close(self):
        if self.acc is not None:
            self.acc.end()


def _group_loop(tracer, group: _Group, state: _State, prefix: _Prefix | None = None):
    """Per step: visit the sites (and, to count positions, the generating module's inputs) and hand each served
    activation to :class:`_Served`. Edit-only runs visit only the sites that carry an edit, and not the inputs:
    fewer handoffs per step."""
    visit = [(k, act) for k, act in enumerate(group.acts) if state.capture or group.edits[k] is not None]
    if not visit:
        return
    run = _Served(group, state, prefix)
    for step in tracer.iter[:]:
        ids = am = None
        if state.capture:
            _, kw = group.gen.inputs
            ids, am = kw.get("input_ids"), kw.get("attention_mask")
        for j, (k, act) in enumerate(visit):
            g = act.output
            if j == 0:
                run.open(step, g, ids, am)
            run.site(k, g)
            del g  # the served activation must not outlive its layer (a prompt's is (b, t, width))
        run.close()


def _trace_one(env, run, kwargs, generate_kwargs, group, state, prefix=None):
    with env.trace(fn=run, **kwargs, **generate_kwargs) as tracer:
        _group_loop(tracer, group, state, prefix)


def _trace_two(env, run, kwargs, generate_kwargs, groups, state, prefix=None):
    # One invoke per module group (LM side, talker side), each with its own step loop; a shared prompt prefix is
    # the LM side's (the talker reads the thinker's states once the text is generated).
    with env.trace(fn=run) as tracer:
        with tracer.invoke(**kwargs, **generate_kwargs):
            _group_loop(tracer, groups[0], state, prefix if groups[0].sites[0].side == "lm" else None)
        with tracer.invoke():
            _group_loop(tracer, groups[1], state, prefix if groups[1].sites[0].side == "lm" else None)


def _as_kwargs(inputs) -> dict:
    if torch.is_tensor(inputs):
        return {"input_ids": inputs}
    if hasattr(inputs, "items"):
        return dict(inputs.items())
    raise TypeError(f"inputs must be a dict of model inputs (input_ids, attention_mask, ...) or an input_ids tensor; "
                    f"got {type(inputs).__name__}")


def run_traced(model, inputs, sites: Sequence[Site] | None = None, scope: str = "lm", fn: Callable | None = None,
               capture: bool = True, plan=None, step_modules: dict | None = None, stat_positions: str = "all",
               **generate_kwargs):
    """Run generation once under nnsight, visiting each site once per step (capture and/or edits).

    plan: None or, per site, a list of edits: (local index tensor, kind, alpha, positions) tuples or callables
    ``edit(g, step)`` that edit g in place (per-row edits). Returns (out, stats|None).
    step_modules: {"lm" | "talker": module path} of the module a custom generation loop (``fn``) calls once per
    decoding step, for models whose loop bypasses the nearest ``generate``-owning ancestor's forward (MiniCPM-o's TTS
    loop calls ``tts.model``); default: that ancestor, else the decoder holding the layer stack.
    stat_positions: what the statistics count (:data:`STAT_POSITIONS`): "all" (default, the paper) or "generated"
    (the LM side's decoding steps only).
    """
    check_stat_positions(stat_positions)
    root = unwrap(model)
    if sites is None:
        sites = find_sites(root, scope=scope)
    sites = list(sites)
    if not sites:
        raise ValueError("no sites given: pass sites=find_sites(model, scope)")
    kwargs = _as_kwargs(inputs)
    call = fn if fn is not None else root.generate
    box: dict = {}

    def run(*a, **kw):
        box["out"] = call(*a, **kw)
        return box["out"]

    if sites[-1].stop != n_neurons(sites) or sites[0].offset != 0:
        raise ValueError("sites must be the full list returned by find_sites (offsets 0..N contiguous)")
    groups = []
    for side in ("lm", "talker"):
        ss = [s for s in sites if s.side == side]
        if ss:
            gp = (step_modules or {}).get(side)
            gp = _generator_path(root, ss[0].path) if gp is None else gp
            groups.append(_Group(ss, sites.index(ss[0]), gp, _eos_ids(root, gp, generate_kwargs), plan))
    gen_paths = list(dict.fromkeys(g.gen_path for g in groups))
    env, acts, gens = _envoy(model, [s.path for s in sites], gen_paths)
    for g in groups:
        g.acts = [acts[i] for i in g.site_ids]
        g.gen = gens[gen_paths.index(g.gen_path)]
    state = _State(n_neurons(sites), len(sites), capture, stat_positions)
    # a model that runs its prompt's shared prefix once per group of rows (DemoOmni.generate(prefix_groups=...))
    pg = generate_kwargs.get("prefix_groups")
    prefix = _Prefix(pg) if pg is not None else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was never reached.*")
        if len(groups) == 1:
            _trace_one(env, run, kwargs, generate_kwargs, groups[0], state,
                       prefix if groups[0].sites[0].side == "lm" else None)
        else:
            _trace_two(env, run, kwargs, generate_kwargs, groups, state, prefix)
    if "out" not in box:
        raise RuntimeError("generation did not complete under the trace (no output was produced)")
    stats = None
    if capture:
        if state.pos is None:
            raise RuntimeError("no site was visited during generation: are the sites from this model?")
        stats = CaptureStats(state.pos, state.sum, state.sumsq, state.site_tokens[:, 0].clone(), state.site_tokens,
                             sites)
    return box["out"], stats


def capture(model, inputs, sites: Sequence[Site] | None = None, scope: str = "lm", fn: Callable | None = None,
            stat_positions: str = "all", **generate_kwargs):
    """Generate under nnsight and return ``(out, CaptureStats)``; ``out`` is what generate returns.
    ``stat_positions="generated"``: the LM side's statistics count the decoding steps only (not the prompt)."""
    return run_traced(model, inputs, sites=sites, scope=scope, fn=fn, capture=True, plan=None,
                      stat_positions=stat_positions, **generate_kwargs)


# --------------------------------------------------------------------------------------------------------------------
# StatsStore: per-sample rows on disk, memory-mapped
# --------------------------------------------------------------------------------------------------------------------
_FIELDS = (("positive", np.uint32, "n"), ("sum", np.float32, "n"), ("sumsq", np.float32, "n"),
           ("tokens", np.uint32, 1), ("site_tokens", np.uint32, "s"))


def _atomic_json(path: Path, obj) -> None:
    from .fsutil import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj).encode())


class StatsStore:
    """Per-sample CaptureStats rows on disk: one raw memory-mapped file per field, a JSON with the committed count.

    ``append`` writes the rows past the committed count, flushes, then atomically replaces ``state.json`` (count and
    ids): a run killed mid-append loses only that batch. Counts are uint32, sums float32.

    Several processes may append to one store on one machine: ``append`` holds an exclusive lock on ``<path>/.lock``
    (``fcntl.flock``) while it re-reads the committed state, writes its rows past it and commits, so no writer
    overwrites another's rows. Readers pick up rows that other processes committed (``has``, ``index_of``, ``len``,
    ``get`` re-read ``state.json`` when it changed). The lock is local to one machine: do not share a store across
    hosts over NFS (docs/core.md, "Sharing stores between processes").
    """

    def __init__(self, path, meta: dict, state: dict, sig=None):
        from .fsutil import FileLock

        self.path = Path(path)
        self.meta = meta
        self._lock = FileLock(self.path / ".lock")
        self._set_state(state, sig)
        self._maps: dict[str, np.memmap] = {}
        self._capacity = 0
        self._remap()

    def _set_state(self, state: dict, sig) -> None:
        self._ids: list[str] = [str(i) for i in state["ids"]]
        self._count = int(state["count"])
        self._index = {k: i for i, k in enumerate(self._ids)}
        self._sig = sig

    # -- creation ---------------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path, sites: Sequence[Site], capacity: int | None = None) -> "StatsStore":
        """A new empty store for these sites at ``path`` (a directory; must not hold a store already)."""
        from .fsutil import FileLock

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with FileLock(path / ".lock"):
            return cls._create_locked(path, sites, capacity)

    @classmethod
    def open(cls, path) -> "StatsStore":
        """Reopen an existing store (rows past the committed count, from a killed append, are ignored)."""
        from .fsutil import FileLock

        path = Path(path)
        if not (path / "meta.json").exists():
            raise FileNotFoundError(f"no StatsStore at {path} (meta.json missing); create one with StatsStore.create")
        with FileLock(path / ".lock"):
            return cls._open_locked(path)

    @classmethod
    def open_or_create(cls, path, sites: Sequence[Site], capacity: int | None = None) -> "StatsStore":
        """Open the store at ``path``, or create it for ``sites``; safe when several processes do this at once. An
        existing store of other sites is a ValueError (its rows would not mean the same neurons)."""
        from .fsutil import FileLock

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with FileLock(path / ".lock"):
            if not (path / "meta.json").exists():
                return cls._create_locked(path, sites, capacity)
            store = cls._open_locked(path)
        have = [(s["path"], int(s["width"])) for s in store.meta["sites"]]
        if have != [(s.path, int(s.width)) for s in sites]:
            raise ValueError(f"the StatsStore at {path} holds statistics of other sites ({store.meta['n']} neurons "
                             f"over {store.meta['s']} sites), not of these ({n_neurons(sites)} neurons over "
                             f"{len(sites)} sites); give these sites another path")
        return store

    @classmethod
    def _create_locked(cls, path: Path, sites: Sequence[Site], capacity: int | None) -> "StatsStore":
        if (path / "meta.json").exists():
            raise FileExistsError(f"a StatsStore already exists at {path}; use StatsStore.open(path) to add to it")
        meta = {"n": n_neurons(sites), "s": len(sites), "version": 1,
                "sites": [{"path": s.path, "layer": s.layer, "width": s.width, "side": s.side, "offset": s.offset}
                          for s in sites]}
        cap = max(int(capacity or 64), 1)
        for name, dt, w in _FIELDS:
            with open(path / f"{name}.bin", "wb") as f:
                f.truncate(cap * cls._width(meta, w) * np.dtype(dt).itemsize)
        _atomic_json(path / "meta.json", meta)
        _atomic_json(path / "state.json", {"count": 0, "ids": []})
        return cls._open_locked(path)

    @classmethod
    def _open_locked(cls, path: Path) -> "StatsStore":
        for p in path.iterdir():  # every write happens under the lock we hold: a temporary file now is a killed one's
            if p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
        with open(path / "meta.json") as f:
            meta = json.load(f)
        state, sig = cls._read_state(path)
        return cls(path, meta, state, sig)

    @staticmethod
    def _read_state(path: Path):
        with open(path / "state.json") as f:
            st = os.fstat(f.fileno())
            return json.load(f), (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self) -> "StatsStore":
        """Pick up the rows other processes committed since this object last looked (one ``stat`` if none did)."""
        try:
            st = os.stat(self.path / "state.json")
        except FileNotFoundError:
            return self
        if (st.st_ino, st.st_mtime_ns, st.st_size) != self._sig:
            state, sig = self._read_state(self.path)
            self._set_state(state, sig)
            if self._count > self._capacity:
                self._remap()
        return self

    @staticmethod
    def _width(meta, w) -> int:
        return meta["n"] if w == "n" else meta["s"] if w == "s" else int(w)

    def _remap(self):
        self._maps = {}
        caps = []
        for name, dt, w in _FIELDS:
            width = self._width(self.meta, w)
            size = os.path.getsize(self.path / f"{name}.bin")
            rows = size // (width * np.dtype(dt).itemsize)
            caps.append(rows)
            self._maps[name] = np.memmap(self.path / f"{name}.bin", dtype=dt, mode="r+", shape=(rows, width))
        self._capacity = min(caps)

    def _grow(self, need: int):
        self._remap()  # another writer may have grown the files already
        if need <= self._capacity:
            return
        cap = max(self._capacity * 2, need)
        self._maps = {}
        for name, dt, w in _FIELDS:
            with open(self.path / f"{name}.bin", "r+b") as f:
                f.truncate(cap * self._width(self.meta, w) * np.dtype(dt).itemsize)
        self._remap()

    # -- properties -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.refresh()._count

    @property
    def ids(self) -> list[str]:
        return list(self.refresh()._ids)

    @property
    def n_neurons(self) -> int:
        return int(self.meta["n"])

    @property
    def widths(self) -> np.ndarray:
        return np.array([s["width"] for s in self.meta["sites"]], dtype=np.int64)

    @property
    def bytes_per_sample(self) -> int:
        return self.bytes_per_sample_for(self.meta["n"], self.meta["s"])

    @staticmethod
    def bytes_per_sample_for(n: int, s: int) -> int:
        """Bytes one sample takes on disk for N neurons over S sites."""
        return int(n * (4 + 4 + 4) + 4 + s * 4)

    def has(self, id) -> bool:
        k = str(id)
        return k in self._index or k in self.refresh()._index

    def index_of(self, ids) -> np.ndarray:
        """Row indices of these ids (KeyError naming the first missing one)."""
        ids = [str(i) for i in ids]
        if any(k not in self._index for k in ids):
            self.refresh()
        out = []
        for k in ids:
            if k not in self._index:
                raise KeyError(f"id {k!r} is not in the StatsStore at {self.path}")
            out.append(self._index[k])
        return np.asarray(out, dtype=np.int64)

    # -- writing ----------------------------------------------------------------------------------------------------
    def append(self, stats: CaptureStats, ids: Sequence, skip_existing: bool = False) -> None:
        """Append one row per sample (ids unique); rows are durable once this returns. An id already stored is a
        ValueError, or (``skip_existing``) its row is left out: another process may have appended it meanwhile."""
        s = stats.numpy()
        ids = [str(i) for i in ids]
        b = s.positive.shape[0]
        if len(ids) != b:
            raise ValueError(f"append: {len(ids)} ids for {b} rows of statistics")
        if s.positive.shape[1] != self.meta["n"] or s.site_tokens.shape[1] != self.meta["s"]:
            raise ValueError(f"append: statistics have {s.positive.shape[1]} neurons / {s.site_tokens.shape[1]} "
                             f"sites, the store expects {self.meta['n']} / {self.meta['s']} (different sites?)")
        if len(set(ids)) != len(ids):
            raise ValueError(f"append: id {next(i for i in ids if ids.count(i) > 1)!r} is repeated in this batch")
        with self._lock:  # other writers wait: the rows go past the count committed by whoever wrote last
            self.refresh()
            dup = [i for i in ids if i in self._index]
            if dup and not skip_existing:
                raise ValueError(f"append: id {dup[0]!r} already stored; use has(id) to skip done samples")
            if dup:
                keep = [k for k, i in enumerate(ids) if i not in self._index]
                if not keep:
                    return
                s, ids, b = s.rows(keep), [ids[k] for k in keep], len(keep)
            lo, hi = self._count, self._count + b
            if hi > self._capacity:
                self._grow(hi)
            for name, _, _ in _FIELDS:
                v = getattr(s, name)
                self._maps[name][lo:hi] = v.reshape(b, -1)
                self._maps[name].flush()
            self._commit(hi, self._ids + ids)

    def _commit(self, count: int, ids: list[str]) -> None:
        _atomic_json(self.path / "state.json", {"count": count, "ids": ids})
        st = os.stat(self.path / "state.json")  # ours: appends hold the lock
        self._set_state({"count": count, "ids": ids}, (st.st_ino, st.st_mtime_ns, st.st_size))

    # -- reading ----------------------------------------------------------------------------------------------------
    def _rows(self, rows) -> np.ndarray:
        self.refresh()
        if rows is None:
            return np.arange(self._count)
        r = np.asarray(rows)
        if r.dtype == bool:
            if r.shape != (self._count,):
                raise ValueError(f"boolean rows mask must have length {self._count}")
            return np.flatnonzero(r)
        if r.dtype.kind in "US O":
            return self.index_of(r.tolist())
        r = r.astype(np.int64)
        if r.size and (r.min() < 0 or r.max() >= self._count):
            raise IndexError(f"row index out of range [0, {self._count})")
        return r

    def get(self, rows=None) -> CaptureStats:
        """The stored rows (ints, ids or bool mask; None = all) as a numpy CaptureStats."""
        r = self._rows(rows)
        m = self._maps
        return CaptureStats(np.array(m["positive"][r]), np.array(m["sum"][r]), np.array(m["sumsq"][r]),
                            np.array(m["tokens"][r, 0]), np.array(m["site_tokens"][r]), list(self.meta["sites"]))

    def aggregate(self, rows=None) -> tuple[np.ndarray, np.ndarray]:
        """(K, T) over the rows: K (N,) summed positive counts, T (N,) summed positions per neuron (its site's)."""
        r = self._rows(rows)
        k = np.zeros(self.meta["n"], dtype=np.uint64)
        st = np.zeros(self.meta["s"], dtype=np.uint64)
        for c in range(0, len(r), 256):  # chunks keep memory bounded for large N
            rr = np.sort(r[c:c + 256])
            k += self._maps["positive"][rr].sum(0, dtype=np.uint64)
            st += self._maps["site_tokens"][rr].sum(0, dtype=np.uint64)
        return k, np.repeat(st, self.widths)

    def moments(self, rows=None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, var) of g per neuron over all counted positions of the rows (NaN where no position)."""
        r = self._rows(rows)
        s1 = np.zeros(self.meta["n"], dtype=np.float64)
        s2 = np.zeros(self.meta["n"], dtype=np.float64)
        for c in range(0, len(r), 256):
            rr = np.sort(r[c:c + 256])
            s1 += self._maps["sum"][rr].sum(0, dtype=np.float64)
            s2 += self._maps["sumsq"][rr].sum(0, dtype=np.float64)
        _, t = self.aggregate(r)
        t = t.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(t > 0, s1 / t, np.nan)
            var = np.where(t > 0, np.maximum(s2 / t - mean * mean, 0.0), np.nan)
        return mean, var
