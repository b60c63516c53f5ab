"""The floor for bench_core.py: plain PyTorch forward hooks doing what esnlib's nnsight runner does.

Same edits (``capture._SiteEdits``) and the same accumulation (``capture._Accumulator``) on the same sites, driven
by ``register_forward_pre_hook`` on the generating module (step count, input ids, attention mask) and
``register_forward_hook`` on each site's act_fn. The difference between this and ``esnlib.capture`` /
``esnlib.generate`` is therefore the interface (nnsight's trace and handoffs) and nothing else.
"""
from __future__ import annotations

import torch

from esnlib.capture import (CaptureStats, _Accumulator, _eos_ids, _generator_path, _Group, _State,  # noqa: F401
                            _as_kwargs)
from esnlib.intervention import _plan
from esnlib.sites import n_neurons, unwrap


def hook_run(model, inputs, sites, intervention=None, capture=True, fn=None, **generate_kwargs):
    """``(out, CaptureStats | None)`` like ``esnlib.generate(..., capture=capture)``, with forward hooks."""
    root = unwrap(model)
    sites = list(sites)
    plan = _plan(intervention, sites) if intervention is not None else None
    groups = []
    for side in ("lm", "talker"):
        ss = [s for s in sites if s.side == side]
        if ss:
            gp = _generator_path(root, ss[0].path)
            groups.append(_Group(ss, sites.index(ss[0]), gp, _eos_ids(root, gp, generate_kwargs), plan))
    state = _State(n_neurons(sites), len(sites), capture)
    handles = []
    for grp in groups:
        ctx = {"step": -1, "ids": None, "am": None, "acc": _Accumulator(grp, state)}

        def pre(mod, args, kwargs, ctx=ctx):
            ctx["step"] += 1
            ctx["ids"], ctx["am"] = kwargs.get("input_ids"), kwargs.get("attention_mask")

        gen_mod = root.get_submodule(grp.gen_path) if grp.gen_path else root
        handles.append(gen_mod.register_forward_pre_hook(pre, with_kwargs=True))
        for k, site in enumerate(grp.sites):
            def hook(mod, args, out, ctx=ctx, ed=grp.edits[k], k=k, last=k == len(grp.sites) - 1, grp=grp):
                if ed is not None:
                    ed(out, ctx["step"])
                if capture:
                    if k == 0:
                        ctx["acc"].begin(out, ctx["ids"], ctx["am"], ctx["step"])
                    ctx["acc"].site(k, out)
                    if last:
                        ctx["acc"].end()
            if capture or grp.edits[k] is not None:
                handles.append(site.module.register_forward_hook(hook))
    try:
        call = fn if fn is not None else root.generate
        out = call(**_as_kwargs(inputs), **generate_kwargs)
    finally:
        for h in handles:
            h.remove()
    stats = None
    if capture:
        stats = CaptureStats(state.pos, state.sum, state.sumsq, state.site_tokens[:, 0].clone(), state.site_tokens,
                             sites)
    return out, stats
