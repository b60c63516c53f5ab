"""Every notebook parameter checked in one place, before anything is loaded or generated.

The notebooks call it on ``globals()`` first thing in their set-up (``esnlib.notebook.setup``; notebook 10 directly),
and ``scripts/run_notebooks.py`` calls it on the ``-p`` values before it starts any kernel. A bad value is a
:class:`ParameterError` that lists every bad parameter at once: its name, what it got, and what is allowed. Only
the names in :data:`RULES` are read, so passing ``globals()`` is fine; a name missing from the mapping is not
checked (the runner checks the values it is given, the notebook all of its own).

The checks reuse the library's own (selection.check_method / check_rate, the intervention kinds, the model and
judge registries), so a parameter is refused here exactly when the step using it would refuse it later.
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["ParameterError", "validate_params", "RULES"]


class ParameterError(ValueError):
    """One or more notebook parameters are bad; the message lists each with what it got and what is allowed."""


class _Bad(Exception):
    """A failed check: ``allowed`` says what the parameter accepts, ``why`` (optional) what is wrong in detail."""

    def __init__(self, allowed: str, why: str = ""):
        super().__init__(allowed)
        self.allowed, self.why = allowed, why


# --------------------------------------------------------------------------------------------------- basic checks
def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and type(v).__name__ != "bool_"


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and type(v).__name__ != "bool_"


def _int(lo: int, none: str | None = None) -> Callable:
    allowed = f"a whole number >= {lo}" + (f", or None ({none})" if none else "")

    def check(v, p):
        if v is None and none:
            return
        if not _is_int(v) or v < lo:
            raise _Bad(allowed)
    return check


def _bool(v, p):
    if not isinstance(v, bool) and type(v).__name__ != "bool_":
        raise _Bad("True or False (a bool, not a string)")


def _text(none: str | None = None, what: str = "a non-empty string") -> Callable:
    allowed = what + (f", or None ({none})" if none else "")

    def check(v, p):
        if v is None and none:
            return
        if not isinstance(v, (str, os.PathLike)) or not str(v).strip():
            raise _Bad(allowed)
    return check


def _folder(none: str | None = None) -> Callable:
    allowed = "a folder path (created if missing)" + (f", or None ({none})" if none else "")

    def check(v, p):
        if v is None and none:
            return
        if not isinstance(v, (str, os.PathLike)) or not str(v).strip():
            raise _Bad(allowed)
        if Path(v).exists() and not Path(v).is_dir():
            raise _Bad(allowed, f"{v} exists and is a file")
    return check


def _choice(options: tuple, none: str | None = None) -> Callable:
    allowed = f"one of {list(options)}" + (f", or None ({none})" if none else "")

    def check(v, p):
        if v is None and none:
            return
        if v not in options:
            raise _Bad(allowed)
    return check


# ------------------------------------------------------------------------------------------- parameter checks
def _model(v, p):
    allowed = ("a model registry name (esnlib.models.registry.MODELS, e.g. 'demo', 'qwen2.5-omni-7b'), a hub id or "
               "checkpoint folder of one of them, or 'package.module:factory'")
    if not isinstance(v, str) or not v.strip():
        raise _Bad(allowed)
    if v in ("demo", "demo-lalm"):
        return
    if ":" in v and not Path(v).exists():
        import importlib.util

        mod, _, attr = v.partition(":")
        try:
            found = bool(mod and attr) and importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise _Bad(allowed, f"module {mod!r} is not importable here" if attr else "no factory name after ':'")
        return
    from .models import registry

    try:
        name, _ = registry.resolve(v)
    except ValueError as e:
        raise _Bad(allowed, str(e)) from None
    if name != "demo":
        from .models.envs import check_environment

        try:
            check_environment(name)
        except RuntimeError as e:
            raise _Bad(allowed, str(e)) from None


def _judge_list(v) -> list[str]:
    if isinstance(v, str):
        return [n.strip() for n in v.split(",") if n.strip()]
    if isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v):
        return [n.strip() for n in v if n.strip()]
    raise _Bad("")


def _judges(v, p):
    from .judges.registry import JUDGES, NATURALNESS_JUDGES, judge_key

    emotion = sorted(set(JUDGES) - set(NATURALNESS_JUDGES))
    allowed = f"emotion judges, comma-separated (the first filters successes), from {emotion}"
    try:
        names = _judge_list(v)
    except _Bad:
        raise _Bad(allowed) from None
    if not names:
        raise _Bad(allowed, "no judge named")
    keys = []
    for n in names:
        try:
            keys.append(judge_key(n))
        except ValueError as e:
            raise _Bad(allowed, str(e)) from None
    wrong = [n for n, k in zip(names, keys) if k in NATURALNESS_JUDGES]
    if wrong:
        raise _Bad(allowed, f"{wrong} score naturalness, not emotion: pass them as naturalness=")
    if len(set(keys)) < len(keys):
        raise _Bad(allowed, "a judge is listed twice")


def _naturalness(v, p):
    from .judges.registry import NATURALNESS_JUDGES, judge_key

    allowed = f"a naturalness judge from {sorted(NATURALNESS_JUDGES)}, or None / '' (no naturalness score)"
    if v is None or v == "":
        return
    if not isinstance(v, str):
        raise _Bad(allowed)
    try:
        key = judge_key(v)
    except ValueError as e:
        raise _Bad(allowed, str(e)) from None
    if key not in NATURALNESS_JUDGES:
        raise _Bad(allowed, f"{v!r} is an emotion judge: list it in judges=")


def _corpus(v, p):
    from .experiments import CORPUS_KINDS

    _choice(tuple(CORPUS_KINDS), "the kind of corpus_root's layout")(v, p)


def _selector(v, p):
    from .attribution import canonical_selector
    from .selection import METHODS

    try:
        canonical_selector(v)  # ATTR too: identify says so if the model has no gradients
    except ValueError:
        raise _Bad(f"one of {list(METHODS)} or ATTR (any case)") from None


def _rate(v, p):
    from .selection import check_rate

    allowed = ("a number in (0, 1): the share of neurons kept per emotion (0.005 = the paper's 0.5 %), or None "
               "(the paper's rate, X.DEMO_RATE on the demo LALM)")
    if v is None:
        return
    try:
        check_rate(v)
    except ValueError:
        raise _Bad(allowed) from None


def _cap(v, p):
    _int(1, "no cap: every success")(v, p)


def _max_wer(v, p):
    if not _is_number(v) or math.isnan(v) or v < 0:
        raise _Bad("a number >= 0 (the success filter's WER threshold tau_wer; the paper: 0.15)")


def _kind(v, p):
    from .intervention import KINDS

    _choice(KINDS)(v, p)


def _alpha(v, p):
    allowed = ("a finite number (>= 0 unless kind='deactivate'), or None (the paper's 1.0, X.DEMO_ALPHA on the demo "
               "LALM)")
    if v is None:
        return
    if not _is_number(v) or not math.isfinite(v):
        raise _Bad(allowed)
    kind = p.get("kind", "steer")
    from .edits import EDIT_KINDS

    if v < 0 and kind in EDIT_KINDS and EDIT_KINDS[kind].alpha_nonneg:
        raise _Bad(allowed, f"kind={kind!r} takes alpha >= 0 (paper §3.4); to silence neurons use kind='deactivate'")


def _attr_alpha(v, p):
    if not _is_number(v) or not math.isfinite(v) or v <= 0:
        raise _Bad("a finite number > 0 (ATTR's steering strength in notebook 09)")


def _device(v, p):
    allowed = "a torch device this machine has: 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
    if not isinstance(v, str):
        raise _Bad(allowed)
    import torch

    try:
        dev = torch.device(v)
    except (RuntimeError, ValueError) as e:
        raise _Bad(allowed, str(e)) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise _Bad(allowed, "torch sees no CUDA device here (torch.cuda.is_available() is False)")
        if dev.index is not None and dev.index >= n:
            raise _Bad(allowed, f"torch sees {n} CUDA device(s): cuda:0 .. cuda:{n - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise _Bad(allowed, "torch has no MPS backend here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise _Bad(allowed)


def _executor(v, p):
    _choice(("local", "ray"))(v, p)
    if v == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise _Bad("one of ['local', 'ray']", "ray is not installed: pip install -e '.[ray]' (docs/scaling.md)")


def _file(allowed: str) -> Callable:
    def check(v, p):
        if v is None:
            return
        if not isinstance(v, (str, os.PathLike)) or not Path(v).is_file():
            raise _Bad(allowed, f"no file at {v}" if isinstance(v, (str, os.PathLike)) else "")
    return check


#: parameter name -> check(value, all parameters). Notebooks 01-09 and notebook 10 (listening test).
RULES: dict[str, Callable[[Any, Mapping], None]] = {
    "model": _model,
    "corpus": _corpus,
    "corpus_root": _text(what="a corpus folder path (checked, or built for the demo corpus, by load_world)"),
    "corpus_n_utts": _int(1, "the mode's default"),
    "transfer_corpus": _corpus,
    "transfer_corpus_root": _text("the second demo corpus", "a corpus folder path"),
    "human_filter": _file("None, or an existing CSV of filter-mode listening answers "
                          "(esnlib.listening.save_filter_file)"),
    "judges": _judges,
    "naturalness": _naturalness,
    "selector": _selector,
    "r": _rate,
    "c": _cap,
    "max_wer": _max_wer,
    "alpha": _alpha,
    "attr_alpha": _attr_alpha,
    "kind": _kind,
    "n_id": _int(1, "the whole IDENTIFICATION split"),
    "n_eval": _int(1, "the mode's default"),
    "n_cross": _int(1, "the mode's default"),
    "n_sweep": _int(1, "the mode's default"),
    "device": _device,
    "seed": _int(0),
    "smoke": _bool,
    "batch_size": _int(1, "the mode's default"),
    "results_dir": _folder(),
    "stats_dir": _folder("next to results_dir"),
    "figures_dir": _folder(),
    "executor": _executor,
    "ray_address": _text("start or join a local Ray cluster", "a Ray address ('auto', 'ray://head:10001')"),
    "num_workers": _int(1, "one Ray actor per GPU, else per CPU"),
    "rowwise": _bool,
    # notebook 10
    "pairs_path": _file("None (SIMULATED pairs), or an existing parquet/csv file of pairs"),
    "answers_glob": _text("SIMULATED raters", "a glob of answer files"),
    "filter_answers_glob": _text("SIMULATED raters", "a glob of answer files"),
    "filter_clips_path": _file("None (the stand-in clips), or an existing csv/parquet of IDENTIFICATION outputs "
                               "(X.identification_clips)"),
    "out_dir": _folder(),
    "n_per_emotion": _int(1),
    "attention_checks": _int(0),
    "n_simulated_raters": _int(1),
}


def validate_params(params: Mapping[str, Any]) -> None:
    """Check every known parameter in ``params`` (a notebook's ``globals()`` or the runner's ``-p`` values); raise
    one :class:`ParameterError` naming each bad parameter, what it got and what is allowed."""
    problems = []
    for name, check in RULES.items():
        if name not in params:
            continue
        value = params[name]
        try:
            check(value, params)
        except _Bad as bad:
            got = f"{value!r}" + ("" if value is None else f" ({type(value).__name__})")
            why = f" — {bad.why}" if bad.why else ""
            problems.append(f"  {name}: got {got}; allowed: {bad.allowed}{why}")
    if problems:
        raise ParameterError(f"{len(problems)} bad notebook parameter(s), checked before anything was loaded or "
                             "generated:\n" + "\n".join(problems)
                             + "\nSet them in the parameters cell, or with -p NAME VALUE (scripts/run_notebooks.py, "
                             "papermill).")
