"""The paper notebooks' set-up, in one place: parameters checked, defaults resolved, the world loaded, and the
helpers that write a notebook's figures and tables.

A paper notebook (01-09) is its parameters cell, then::

    nb = setup("02_selectors", task="evc", params=globals())

then its analysis cells. :func:`setup` checks every parameter (:func:`esnlib.params.validate_params`: one
``ParameterError`` listing each bad one, before anything is loaded), caps torch at two threads, resolves the
defaults (:class:`NotebookConfig`: r and α of the demo LALM or the paper's, the sizes of ``X.defaults(smoke)``),
loads the world with :meth:`NotebookConfig.world_kwargs` (the same arguments for every notebook and the explorer, so
the result-store keys are shared), prints what it loaded and returns a :class:`Notebook`: ``cfg``, ``world``,
``judges``, ``n_lm`` and ``save`` / ``table`` / ``rows_csv`` / ``listen``, which write
``<figures_dir>/<notebook>_<name>.{pdf,png}`` and ``<figures_dir>/tables/<notebook>_<name>.{csv,tex}``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import experiments as X
from .params import validate_params

__all__ = ["DEMO_MODELS", "NotebookConfig", "Notebook", "setup"]

#: the model names that mean the demo LALM (its own r and α: ``X.DEMO_RATE``, ``X.DEMO_ALPHA``)
DEMO_MODELS = ("demo", "demo-lalm")

#: the parameters whose ``None`` means "the mode's default" (``X.defaults(smoke)``)
_SIZES = ("n_id", "n_eval", "n_cross", "n_sweep")


@dataclass(frozen=True)
class NotebookConfig:
    """The parameters of a paper notebook (01-09), with every default resolved as the notebooks use it.

    The fields and their defaults are those of the notebooks' parameters cell (docs/notebooks.md lists them); the
    paper's names: ``r`` (rate), ``c`` (cap), ``alpha`` (α), ``max_wer`` (τ_wer). ``None`` is resolved when the
    config is made: ``r`` / ``alpha`` to ``X.DEMO_RATE`` / ``X.DEMO_ALPHA`` on the demo LALM and ``X.PAPER_RATE`` /
    ``X.PAPER_ALPHA`` otherwise; ``n_id``, ``n_eval``, ``n_cross``, ``n_sweep``, ``batch_size`` and
    ``corpus_n_utts`` to the mode's sizes (:attr:`sizes`, ``X.defaults(smoke)``). ``n_id`` stays None (the whole
    IDENTIFICATION split) unless given; ``corpus_n_utts`` stays None (the corpus's own size) in full mode.
    Not validated here: :func:`setup` runs ``validate_params`` on the raw parameters first."""

    model: str = "demo"
    corpus_root: str | Path = X.DEFAULT_CORPUS_ROOT
    corpus: str | None = None
    corpus_n_utts: int | None = None
    judges: str | Sequence[str] = "prosody,spectral"
    naturalness: str | None = "dnsmos-p808"
    selector: str = "CAS"
    r: float | None = None
    c: int | None = X.PAPER_CAP
    max_wer: float = X.MAX_WER
    alpha: float | None = None
    kind: str = "steer"
    n_id: int | None = None
    n_eval: int | None = None
    n_cross: int | None = None
    n_sweep: int | None = None
    device: str = "cpu"
    seed: int = 0
    smoke: bool = False
    batch_size: int | None = None
    results_dir: str | Path = "data/results"
    stats_dir: str | Path | None = None
    figures_dir: str | Path = "figures"
    executor: str = "local"
    ray_address: str | None = None
    num_workers: int | None = None
    rowwise: bool = True
    # notebooks 02 and 06; 08
    human_filter: str | Path | None = None
    transfer_corpus_root: str | Path | None = None
    transfer_corpus: str | None = None
    attr_alpha: float = 0.1  # notebook 09: ATTR's steering strength (docs/demo_world.md)

    def __post_init__(self):
        S = self.sizes
        resolved = {
            "r": (X.DEMO_RATE if self.demo else X.PAPER_RATE) if self.r is None else self.r,
            "alpha": (X.DEMO_ALPHA if self.demo else X.PAPER_ALPHA) if self.alpha is None else self.alpha,
            **{k: S[k] if getattr(self, k) is None else getattr(self, k) for k in _SIZES},
            "batch_size": self.batch_size or S["batch_size"],
            "corpus_n_utts": self.corpus_n_utts or S["corpus_n_utts"],
        }
        for k, v in resolved.items():
            object.__setattr__(self, k, v)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "NotebookConfig":
        """The config of a notebook's parameters (its ``globals()``: names that are not parameters are ignored,
        parameters it does not define keep the defaults)."""
        return cls(**{f.name: params[f.name] for f in dataclasses.fields(cls) if f.name in params})

    @property
    def demo(self) -> bool:
        """True on the demo LALM (``model`` "demo" or "demo-lalm")."""
        return self.model in DEMO_MODELS

    @property
    def sizes(self) -> dict:
        """The mode's sizes, ``X.defaults(smoke)`` (n_ser, n_causal, the sweeps' points, ...): a fresh dict."""
        return X.defaults(self.smoke)

    def world_kwargs(self, task: str | None = None) -> dict:
        """The arguments of ``X.load_world`` for this config; ``task`` ("evc" or "ser") decides which corpus kinds
        are accepted. Every notebook and the explorer build their world from these, so they share result keys."""
        S = self.sizes
        return dict(model=self.model, corpus_root=self.corpus_root, judges=self.judges, naturalness=self.naturalness,
                    results_dir=self.results_dir, stats_dir=self.stats_dir, device=self.device, seed=self.seed,
                    batch_size=self.batch_size, shard_size=S["shard_size"],
                    naturalness_per_shard=S["naturalness_per_shard"], n_utts=self.corpus_n_utts,
                    executor=self.executor, ray_address=self.ray_address, num_workers=self.num_workers,
                    rowwise=self.rowwise, corpus=self.corpus, task=task)


@dataclass
class Notebook:
    """What a paper notebook works with after :func:`setup`: its name (the prefix of every file it writes), the
    task, the resolved config, the world, the emotion judges' names (the first filters successes) and N(lm), the
    number of gate neurons on the LM side."""

    name: str
    task: str
    cfg: NotebookConfig
    world: Any
    judges: list[str]
    n_lm: int

    @property
    def figures_dir(self) -> str | Path:
        return self.cfg.figures_dir

    def describe(self) -> str:
        """The line :func:`setup` prints: model, corpus, judges, N(lm), r, c, α and the sizes."""
        w, c = self.world, self.cfg
        return (f"model {w.adapter.describe()} | corpus {w.corpus} ({w.corpus_kind}, {len(w.utts)} utterances) | "
                f"judges {self.judges} | N(lm) = {self.n_lm} | r = {c.r:.4f} -> {math.floor(c.r * self.n_lm)} neurons "
                f"per emotion | c = {c.c} | alpha = {c.alpha} | evaluation: {c.n_eval} sources (cross cells "
                f"{c.n_cross}), sweeps {c.n_sweep}")

    # -- the helpers every notebook uses
    def save(self, fig, name: str) -> None:
        """Save a figure as ``<figures_dir>/<notebook>_<name>.{pdf,png}``, show it and close it."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        from . import plots

        plots.save(fig, f"{self.name}_{name}", self.figures_dir)
        display(fig)
        plt.close(fig)

    def table(self, df, name: str, latex: bool = True):
        """Write ``df`` as ``<figures_dir>/tables/<notebook>_<name>.csv`` (and ``.tex`` with ``latex``); returns it."""
        X.save_table(df, f"{self.name}_{name}", self.figures_dir, latex=latex)
        return df

    def rows_csv(self, *frames) -> Path:
        """The per-sample rows behind this notebook's tables: ``<figures_dir>/tables/<notebook>_rows.csv`` (SER
        notebooks: one row per item and condition, ``X.export_ser_rows``)."""
        export = X.export_ser_rows if self.task == "ser" else X.export_rows
        return export(frames, f"{self.name}_rows", self.figures_dir)

    def listen(self, base_rows, rows, k: int = 2) -> None:
        """Inline audio: baseline vs intervened for up to ``k`` samples (``X.audio_pairs``)."""
        from IPython.display import Audio, Markdown, display

        for _, p in X.audio_pairs(base_rows, rows, k=k).iterrows():
            display(Markdown(f"**{p.sample_id}** (e_tgt = {p.target}, e_mask = {p.mask_emotion}) — "
                             f"baseline: *{p.hyp_base}* / intervened: *{p.hyp}*"))
            display(Audio(filename=p.audio_path_base), Audio(filename=p.audio_path))


def setup(name: str, task: str, params: Mapping[str, Any], *, verbose: bool = True) -> Notebook:
    """The set-up of paper notebook ``name`` ("02_selectors") for ``task`` ("evc" or "ser"): check ``params`` (the
    notebook's ``globals()``) with ``validate_params`` — a ``ParameterError`` naming every bad parameter, raised
    before anything is loaded —, cap torch at two threads, resolve the defaults (:class:`NotebookConfig`), load the
    world (``X.load_world(**cfg.world_kwargs(task))``) and, with ``verbose``, print what was loaded."""
    validate_params(params)  # every parameter; a bad one is a ParameterError before anything is loaded
    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    cfg = NotebookConfig.from_params(params)
    world = X.load_world(**cfg.world_kwargs(task))
    nb = Notebook(name=name, task=task, cfg=cfg, world=world, judges=list(world.judges),
                  n_lm=sum(s.width for s in world.sites("lm")))
    if verbose:
        print(nb.describe())
    return nb
