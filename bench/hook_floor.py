"""The floor for bench_core.py: plain PyTorch forward hooks doing what esnlib's nnsight runner does.

The same per-call code as the runner (``capture._Served``: each site's edit, then the statistics) on the same sites,
driven by ``register_forward_pre_hook`` on the generating module (step count, input ids, attention mask) and
``register_forward_hook`` on each visited site's act_fn (every site under capture, the edited ones otherwise, as the
runner visits them). The difference between this and ``esnlib.capture`` / ``esnlib.generate`` is therefore the
interface (nnsight's trace and handoffs) and nothing else. A model that shares its prompt prefix across rows
(``generate_kwargs["prefix_groups"]``, the demo LALM's EVC batches) is followed with the runner's own bookkeeping
(``capture._Prefix``): each group's prefix call edited with the group's edit and counted for each of its rows.
"""
from __future__ import annotations

from esnlib.capture import CaptureStats, _as_kwargs, _eos_ids, _generator_path, _Group, _Prefix, _Served, _State
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
    pg = generate_kwargs.get("prefix_groups")
    handles = []
    for grp in groups:
        prefix = _Prefix(pg) if pg is not None and grp.sites[0].side == "lm" else None
        run = _Served(grp, state, prefix)
        ctx = {"step": -1, "ids": None, "am": None}

        def pre(mod, args, kwargs, ctx=ctx):
            ctx["step"] += 1
            ctx["ids"], ctx["am"] = kwargs.get("input_ids"), kwargs.get("attention_mask")

        gen_mod = root.get_submodule(grp.gen_path) if grp.gen_path else root
        handles.append(gen_mod.register_forward_pre_hook(pre, with_kwargs=True))
        visit = [k for k in range(len(grp.sites)) if capture or grp.edits[k] is not None]
        for k in visit:
            def hook(mod, args, out, k=k, first=k == visit[0], last=k == visit[-1], run=run, ctx=ctx):
                if first:
                    run.open(ctx["step"], out, ctx["ids"], ctx["am"])
                run.site(k, out)
                if last:
                    run.close()
            handles.append(grp.sites[k].module.register_forward_hook(hook))
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
