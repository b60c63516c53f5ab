"""The explorer (notebooks/00_explore): pick one condition — model, split, selector, e_mask, r, c, α, kind — then see
its mask's layer distribution, its Δ emotion match (self / cross with 95 % CI and n) and hear baseline and
intervened clips of chosen sources side by side with the judges' labels and posteriors.

Two layers, so that the logic is testable without a browser:

* :class:`Explorer` computes, only through ``esnlib.experiments`` (``identify``, ``baseline``,
  ``evaluate_settings``, ``summarize``, ``effect_tables``) and the result store. A condition already in the store is
  read and nothing is generated; a missing one is generated and stored under the same condition keys as the
  notebooks use, so the explorer and notebooks 01-07 share their work both ways.
* :class:`ExplorerUI` (ipywidgets) turns its controls into :class:`Settings`, calls the Explorer and shows what it
  returns. Its only logic is which controls are enabled or visible.
"""
from __future__ import annotations

import dataclasses
import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import TARGET_EMOTIONS
from . import experiments as X
from .notebook import DEMO_MODELS, NotebookConfig

#: evaluation splits offered: held out from identification (the masks come from IDENTIFICATION)
EVAL_SPLITS = (X.TEST, "TEST-SEEN", "TEST-UNSEEN", "DEVELOPMENT")
#: what one run does, in order (the progress bar counts these)
STEPS = ("world", "identification", "baseline", "evaluation", "summary")


# ---------------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """One condition of the explorer, in the paper's names. ``None`` means the notebooks' default
    (:meth:`resolved`): r and α of the demo LALM (``X.DEMO_RATE``, ``X.DEMO_ALPHA``) or the paper's for other models,
    ``X.KIND_ALPHAS`` for add / clamp, α = 0 for deactivate; ``n`` sources (pooled draw, nested) with the
    off-diagonal (cross) cells on the first ``n_cross`` of them, as in notebook 02's headline conditions."""

    model: str = "demo"
    split: str = X.TEST
    selector: str = "CAS"
    e_mask: str = TARGET_EMOTIONS[0]
    r: float | None = None
    c: int | None = X.PAPER_CAP
    alpha: float | None = None
    kind: str = "steer"
    n: int | None = None
    n_cross: int | None = None

    def resolved(self, smoke: bool = False) -> "Settings":
        """A copy with every ``None`` replaced by the notebooks' default (``X.defaults(smoke)`` for n, n_cross)."""
        demo = self.model in DEMO_MODELS
        S = X.defaults(smoke)
        r = self.r if self.r is not None else (X.DEMO_RATE if demo else X.PAPER_RATE)
        alpha = self.alpha
        if self.kind == "deactivate":
            alpha = 0.0  # α plays no part; one value keeps one condition key
        elif alpha is None:
            alpha = (X.DEMO_ALPHA if demo else X.PAPER_ALPHA) if self.kind == "steer" else X.KIND_ALPHAS.get(self.kind)
        n = self.n if self.n is not None else S["n_eval"]
        n_cross = self.n_cross if self.n_cross is not None else (min(S["n_cross"], n) if S["n_cross"] else None)
        return dataclasses.replace(self, r=r, alpha=alpha, n=n, n_cross=n_cross)

    def check(self) -> "Settings":
        """These settings (resolved) with the selector's canonical name, or a ValueError naming the field and the
        fix; called before anything is loaded or generated."""
        from .attribution import canonical_selector
        from .intervention import KINDS, _check_kind_alpha
        from .selection import check_rate

        s = self if None not in (self.r, self.alpha, self.n) else self.resolved()
        if not isinstance(s.model, str) or not s.model.strip():
            raise ValueError("model: give a model name (e.g. 'demo' or a name of esnlib.models.registry.MODELS)")
        if s.split not in EVAL_SPLITS:
            raise ValueError(f"split {s.split!r}: evaluate on one of {EVAL_SPLITS} (the masks are identified on "
                             "IDENTIFICATION, so evaluating there would reuse the identification sources)")
        selector = canonical_selector(s.selector, "explorer selector")
        if s.e_mask not in TARGET_EMOTIONS:
            raise ValueError(f"e_mask {s.e_mask!r}: pick one of {TARGET_EMOTIONS}")
        check_rate(s.r, "explorer")
        if s.c is not None and (isinstance(s.c, bool) or not isinstance(s.c, (int, np.integer)) or s.c < 1):
            raise ValueError(f"c (success-set cap) must be a whole number >= 1 or None (no cap), got {s.c!r}")
        if s.kind not in KINDS:
            raise ValueError(f"kind {s.kind!r}: pick one of {KINDS}")
        _check_kind_alpha(s.kind, s.alpha)
        for name in ("n", "n_cross"):
            v = getattr(s, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{name} (number of sources) must be a whole number >= 1, got {v!r}")
        if s.n_cross is not None and s.n_cross > s.n:
            raise ValueError(f"n_cross ({s.n_cross}) must not exceed n ({s.n}): the cross cells use the first "
                             "n_cross of the n sources")
        return dataclasses.replace(s, selector=selector)


# ------------------------------------------------------------------------------------------------------ the adapter
class WouldGenerate(Exception):
    """Raised by a probing world when a step would have to generate (its result is not in the store). Derives from
    Exception only: the library's fallbacks catch ValueError / TypeError / NotImplementedError, never this."""


class _Watched:
    """The model adapter seen through the explorer: counts generated samples, or (probing) refuses to generate.
    Everything else is the adapter's own, so condition keys (``describe()``) and sites are unchanged."""

    def __init__(self, inner, allow: bool = True):
        self._inner, self.allow, self.samples = inner, allow, 0

    def __getattr__(self, name):
        found = getattr(self._inner, name)
        if name == "attribution":  # ATTR's gradient passes generate too: counted, or refused while probing
            def watched(utts, targets, **kw):
                utts = list(utts)
                self._count(len(utts))
                return found(utts, targets, **kw)
            return watched
        return found

    def _count(self, n: int):
        if not self.allow:
            raise WouldGenerate(n)
        self.samples += n

    def evc(self, utts, targets, **kw):
        utts = list(utts)
        self._count(len(utts))
        return self._inner.evc(utts, targets, **kw)

    def ser(self, utts, **kw):
        utts = list(utts)
        self._count(len(utts))
        return self._inner.ser(utts, **kw)


def notebook_world(model: str = "demo", corpus_root: str | Path = X.DEFAULT_CORPUS_ROOT, corpus: str | None = None,
                   judges: str = "prosody,spectral", naturalness: str | None = "dnsmos-p808",
                   results_dir: str | Path = "data/results", stats_dir: str | Path | None = None, device: str = "cpu",
                   seed: int = 0, smoke: bool = False, corpus_n_utts: int | None = None,
                   batch_size: int | None = None) -> X.World:
    """The world notebooks 01-07 build from the same parameters (``esnlib.notebook.NotebookConfig.world_kwargs``,
    sizes from ``X.defaults(smoke)``), so every unit the explorer reads or writes has the notebooks' condition keys."""
    cfg = NotebookConfig(model=model, corpus_root=corpus_root, corpus=corpus, judges=judges, naturalness=naturalness,
                         results_dir=results_dir, stats_dir=stats_dir, device=device, seed=seed, smoke=smoke,
                         corpus_n_utts=corpus_n_utts, batch_size=batch_size)
    return X.load_world(**cfg.world_kwargs("evc"))


# ------------------------------------------------------------------------------------------------------- results
@dataclass
class Clip:
    """One side of a listening pair: the wav (16-bit PCM bytes) and what the judges say about it.

    ``origin``: "stored" (the waveform kept with the unit) or "re-rendered" (generated again now for listening:
    greedy decoding, same source, e_tgt and edit). ``labels`` / ``posteriors``: the judges on this clip (posteriors
    over the judge's labels where it gives them); ``stored_labels``: the labels in the stored row the Δ counts."""

    side: str
    wav: bytes
    origin: str
    hyp: str
    labels: dict[str, str | None]
    posteriors: dict[str, dict[str, float]]
    stored_labels: dict[str, str | None]


@dataclass
class Pair:
    utt_id: str
    e_tgt: str
    text: str
    baseline: Clip
    intervened: Clip


@dataclass
class Exploration:
    """What one run of the explorer found for one :class:`Settings`.

    ``missing``: the steps that were not in the store before this run (``[]``: everything was read);
    ``generated``: samples generated by this run; ``summary``: ``X.summarize`` (one row per judge: self / cross /
    gap in pp with 95 % CIs, ``n_pairs`` self pairs, ``n_cross_pairs``, McNemar's p, Δ posterior);
    ``effects``: judge -> the e_mask x e_tgt Δ table (``X.effect_tables``); ``layers``: ESNs per layer (rows) and
    e_mask (columns) of the whole mask set (``evaluation.layer_counts``)."""

    settings: Settings
    maskset: X.MaskSet
    layers: pd.DataFrame
    base: pd.DataFrame
    rows: pd.DataFrame
    summary: pd.DataFrame
    effects: dict[str, pd.DataFrame]
    missing: list[str]
    generated: int
    seconds: float
    _pairs: dict = field(default_factory=dict, repr=False)

    @property
    def cached(self) -> bool:
        return not self.missing

    def delta_table(self) -> pd.DataFrame:
        """The Δ emotion match of this condition per judge: self and cross (pp) with their 95 % CIs and n."""
        cols = {"judge": "judge", "self": "self (pp)", "self_lo": "self lo", "self_hi": "self hi",
                "n_pairs": "n self pairs", "cross": "cross (pp)", "cross_lo": "cross lo", "cross_hi": "cross hi",
                "n_cross_pairs": "n cross pairs", "gap": "gap (pp)", "mcnemar_p": "McNemar p",
                "d_post": "Δ posterior (pp)", "d_wer": "ΔWER"}
        s = self.summary
        return s[[c for c in cols if c in s.columns]].rename(columns=cols).reset_index(drop=True)

    def sources(self, e_tgt: str | None = None) -> pd.DataFrame:
        """Sources with a baseline and an intervened sample for ``e_tgt`` (default e_mask: the self pairs), stored
        waveforms on both sides first (they play without generating)."""
        e_tgt = e_tgt or self.settings.e_mask
        r = self.rows[self.rows["target"] == e_tgt][["utt_id", "text", "audio_path"]]
        b = self.base[self.base["target"] == e_tgt][["utt_id", "audio_path"]].drop_duplicates("utt_id")
        m = r.drop_duplicates("utt_id").merge(b, on="utt_id", suffixes=("", "_base"))
        m["stored_audio"] = (m["audio_path"].astype(str) != "") & (m["audio_path_base"].astype(str) != "")
        m = m.sort_values("stored_audio", ascending=False, kind="stable")
        return m[["utt_id", "text", "stored_audio"]].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------------ computation
class Explorer:
    """Computes what the explorer shows, headless. ``make_world(model) -> World`` builds a world on first use of a
    model (default :func:`notebook_world` with ``world_options``); ``n_id`` (None: the whole IDENTIFICATION split),
    ``max_wer`` (the success filter's τ_wer) and ``identify_options`` (e.g. ``human=`` answers) go to
    ``X.identify``."""

    def __init__(self, make_world: Callable[[str], X.World] | None = None, *, smoke: bool = False,
                 n_id: int | None = None, seed: int = 0, max_wer: float = X.MAX_WER, identify_options: Mapping[str, Any] | None = None,
                 **world_options):
        if make_world is not None and world_options:
            raise TypeError(f"pass either make_world or world options {sorted(world_options)}, not both")
        self.make_world = make_world or (lambda model: notebook_world(model, smoke=smoke, seed=seed,
                                                                      **world_options))
        self.smoke, self.n_id, self.seed, self.max_wer = smoke, n_id, seed, float(max_wer)
        self.identify_options = dict(identify_options or {})
        self._worlds: dict[str, X.World] = {}
        self._masks: dict[tuple, X.MaskSet] = {}

    # -- pieces
    def world(self, model: str) -> X.World:
        """The world of ``model`` (built once), its adapter watched so that generated samples are counted."""
        if model not in self._worlds:
            w = self.make_world(model)
            self._worlds[model] = dataclasses.replace(w, adapter=_Watched(w.adapter), executor="local")
        return self._worlds[model]

    def settings(self, s: Settings) -> Settings:
        return s.resolved(self.smoke).check()

    def mask(self, s: Settings, world: X.World | None = None) -> X.MaskSet:
        """The mask set of (model, selector, r, c): ``X.identify`` (identification generations and statistics are
        read from the stores when there; every selector, r and c re-aggregates them)."""
        key = (s.model, s.selector, float(s.r), s.c)
        if key not in self._masks:
            opts = {"max_wer": self.max_wer, **self.identify_options}
            self._masks[key] = X.identify(world or self.world(s.model), s.selector, rate=s.r, cap=s.c,
                                          seed=self.seed, n=self.n_id, **opts)
        ms = self._masks[key]
        if s.e_mask not in ms.masks:
            raise ValueError(f"e_mask {s.e_mask!r} has no {ms.selector} mask: no identification sample of it passed "
                             f"the success filter (success sets {ms.n_success_all}); pick one of {list(ms.masks)}")
        return ms

    def layer_counts(self, s: Settings, maskset: X.MaskSet | None = None) -> pd.DataFrame:
        """ESNs per layer (rows) and e_mask (columns) of the mask set of ``s``."""
        from .evaluation import layer_counts

        ms = maskset or self.mask(s)
        return layer_counts([ms.masks[e] for e in ms.masks], list(ms.masks), self.world(s.model).sites(ms.scope))

    def missing(self, s: Settings) -> list[str]:
        """The steps of ``s`` whose results are not in the store (``[]``: a run only reads). Found by running the
        steps on a copy of the world whose adapter refuses to generate, so "cached" means exactly what the library
        would read; nothing is generated."""
        s = self.settings(s)
        w = self.world(s.model)
        probe = dataclasses.replace(w, adapter=_Watched(w.adapter._inner, allow=False), progress=False)
        steps = [("identification", lambda: self.mask(s, probe)),
                 ("baseline", lambda: X.baseline(probe, s.split, n=s.n)),
                 ("evaluation", lambda: X.evaluate_settings(probe, [(self.mask(s, probe), s.kind, s.alpha)], s.split,
                                                            s.n, mask_emotions=[s.e_mask], n_cross=s.n_cross))]
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, step in steps:
                if name == "evaluation" and "identification" in out:
                    out.append(name)  # no mask yet, so no unit of it can be stored
                    continue
                try:
                    step()
                except WouldGenerate:
                    out.append(name)
        return out

    # -- one run
    def run(self, s: Settings, on_step: Callable[[int, str], None] | None = None,
            missing: list[str] | None = None) -> Exploration:
        """Read or generate everything ``s`` needs; ``on_step(k, name)`` is called as step k of :data:`STEPS`
        starts (and with k = len(STEPS), "done", at the end). ``missing``: :meth:`missing` of ``s`` when the caller
        has just asked (saves a second probe)."""
        say = on_step or (lambda k, name: None)
        s = self.settings(s)
        t0 = time.perf_counter()
        say(0, STEPS[0])
        w = self.world(s.model)
        missing = self.missing(s) if missing is None else list(missing)
        before = w.adapter.samples
        say(1, STEPS[1])
        ms = self.mask(s)
        layers = self.layer_counts(s, ms)
        say(2, STEPS[2])
        base = X.baseline(w, s.split, n=s.n)
        say(3, STEPS[3])
        rows = X.evaluate_settings(w, [(ms, s.kind, s.alpha)], s.split, s.n, mask_emotions=[s.e_mask],
                                   n_cross=s.n_cross)[0]
        say(4, STEPS[4])
        summary = X.summarize(rows, base, selector=s.selector, e_mask=s.e_mask, r=s.r, c=s.c, kind=s.kind,
                              alpha=s.alpha, split=s.split)
        exp = Exploration(settings=s, maskset=ms, layers=layers, base=base, rows=rows, summary=summary,
                          effects=X.effect_tables(rows, base), missing=missing,
                          generated=w.adapter.samples - before, seconds=time.perf_counter() - t0)
        say(len(STEPS), "done")
        return exp

    # -- listening
    def listen(self, exp: Exploration, utt_ids: Sequence[str], e_tgt: str | None = None) -> list[Pair]:
        """Baseline and intervened clip of each source for ``e_tgt`` (default e_mask), judged: stored waveforms
        when the unit kept them, else re-rendered now (two samples per source, remembered in ``exp``)."""
        from . import Intervention

        s, ms = exp.settings, exp.maskset
        e_tgt = e_tgt or s.e_mask
        w = self.world(s.model)
        utts = {u.id: u for u in w.utts}
        allowed = set(exp.sources(e_tgt)["utt_id"])
        iv = Intervention(index=np.asarray(ms.masks[s.e_mask], dtype=np.int64), kind=s.kind, alpha=s.alpha)
        out = []
        for utt_id in utt_ids:
            if utt_id not in allowed:
                raise ValueError(f"source {utt_id!r} has no e_tgt = {e_tgt} pair in this exploration; pick one of "
                                 f"exp.sources({e_tgt!r}) ({len(allowed)} sources)")
            if (utt_id, e_tgt) not in exp._pairs:
                b = exp.base[(exp.base["utt_id"] == utt_id) & (exp.base["target"] == e_tgt)].iloc[0]
                r = exp.rows[(exp.rows["utt_id"] == utt_id) & (exp.rows["target"] == e_tgt)].iloc[0]
                u = utts[utt_id]
                exp._pairs[(utt_id, e_tgt)] = Pair(
                    utt_id, e_tgt, u.text, self._clip(w, "baseline", b, u, e_tgt, None, ms.scope),
                    self._clip(w, "intervened", r, u, e_tgt, iv, ms.scope))
            out.append(exp._pairs[(utt_id, e_tgt)])
        return out

    def _clip(self, w: X.World, side: str, row: pd.Series, utt, e_tgt: str, iv, scope: str) -> Clip:
        from .audio import load_wav

        path = str(row.get("audio_path", "") or "")
        if path and Path(path).is_file():
            audio, origin, hyp = load_wav(path), "stored", str(row["hyp"])
        else:
            g = w.adapter.evc([utt], [e_tgt], intervention=iv, scope=scope, batch_size=1)[0]
            audio, origin, hyp = g.audio, "re-rendered", g.text or ""
        judged = {"target": e_tgt}
        X._judge_rows(w, [audio], [judged], n_naturalness=0)  # the labels exactly as the stored rows got theirs
        posts = {}
        for name, judge in w.judges.items():
            labelled = judged.get(f"pred_{name}") is not None  # the clip passed _judge_rows' length/silence check
            if labelled and hasattr(judge, "predict_proba") and hasattr(judge, "labels"):
                p = np.asarray(judge.predict_proba([audio], sample_rate=16000))[0]
                posts[name] = {lab: float(v) for lab, v in zip(judge.labels, p)}
        return Clip(side=side, wav=_wav_bytes(audio), origin=origin, hyp=hyp,
                    labels={j: judged.get(f"pred_{j}") for j in w.judges}, posteriors=posts,
                    stored_labels={j: (None if pd.isna(row.get(f"pred_{j}")) else row.get(f"pred_{j}"))
                                   for j in w.judges})


def _wav_bytes(audio) -> bytes:
    """16-bit PCM wav bytes (plays in every browser); an empty clip for no audio."""
    import soundfile as sf

    buf = io.BytesIO()
    x = np.zeros(0, np.float32) if audio is None else np.clip(np.asarray(audio, np.float32), -1, 1)
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def layer_figure(layers: pd.DataFrame, e_mask: str, title: str | None = None):
    """Bars: the ESNs of ``e_mask``'s mask per layer; thin lines: the other e_masks of the same mask set."""
    from matplotlib.figure import Figure

    if e_mask not in layers.columns:
        raise ValueError(f"layer_figure: no column {e_mask!r}; the mask set has {list(layers.columns)}")
    labels = [" ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in layers.index]
    x = np.arange(len(labels))
    fig = Figure(figsize=(max(4.0, 0.22 * len(labels) + 1.5), 2.8))
    ax = fig.subplots()
    ax.bar(x, layers[e_mask].to_numpy(), color="C3", label=f"e_mask = {e_mask}")
    for k, other in enumerate(c for c in layers.columns if c != e_mask):
        ax.plot(x, layers[other].to_numpy(), lw=0.8, alpha=0.6, color=f"C{k}", label=other)
    step = max(1, len(labels) // 16)
    ax.set_xticks(x[::step], labels[::step], fontsize=7, rotation=90 if len(labels) > 16 else 0)
    ax.set_xlabel("layer")
    ax.set_ylabel("ESNs")
    ax.legend(fontsize=7, ncols=2)
    ax.set_title(title or f"{int(layers[e_mask].sum())} ESNs of e_mask = {e_mask} per layer", fontsize=9)
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------------- widgets
class ExplorerUI:
    """The ipywidgets front end of an :class:`Explorer`. Display it in JupyterLab (``ui`` as a cell's last line).

    ``controls``: name -> widget for each field of :class:`Settings`; ``show_button`` reads or generates the
    condition (``status`` says which, ``progress`` counts :data:`STEPS`, the library's own progress bars go to
    ``log``); then ``layers_image``, ``delta`` and the listening controls (``sources``, ``e_tgt``,
    ``play_button``, whose pairs land in ``pairs_box``). ``exploration``, ``pairs`` and ``error`` keep what was last
    shown, for tests and for use from code."""

    def __init__(self, explorer: Explorer, settings: Settings | None = None, models: Sequence[str] | None = None):
        import ipywidgets as W

        from .intervention import KINDS
        from .models.registry import MODELS

        self.explorer = explorer
        s = (settings or Settings()).resolved(explorer.smoke)
        models = list(dict.fromkeys([s.model, *(models or MODELS)]))
        wide = {"description_width": "90px"}
        self.controls = {
            "model": W.Dropdown(options=models, value=s.model, description="model", style=wide),
            "split": W.Dropdown(options=EVAL_SPLITS, value=s.split, description="split", style=wide),
            "selector": W.Dropdown(options=X.SELECTORS + ("ATTR",), value=s.selector, description="selector",
                                   style=wide),
            "e_mask": W.Dropdown(options=TARGET_EMOTIONS, value=s.e_mask, description="e_mask", style=wide),
            "r": W.BoundedFloatText(value=s.r, min=1e-6, max=0.999, step=0.001, description="r", style=wide),
            "c": W.BoundedIntText(value=s.c or 0, min=0, max=10 ** 6, description="c (0: none)", style=wide),
            "kind": W.Dropdown(options=KINDS, value=s.kind, description="kind", style=wide),
            "alpha": W.BoundedFloatText(value=s.alpha, min=0.0, max=1000.0, step=0.1, description="α", style=wide),
            "n": W.BoundedIntText(value=s.n, min=1, max=10 ** 6, description="sources n", style=wide),
            "n_cross": W.BoundedIntText(value=s.n_cross or s.n, min=1, max=10 ** 6, description="cross n",
                                        style=wide),
        }
        self.show_button = W.Button(description="Show", button_style="primary", icon="play",
                                    tooltip="read the condition from the store, or generate it")
        self.status = W.HTML()
        self.progress = W.IntProgress(value=0, min=0, max=len(STEPS), description="", bar_style="info")
        self.log = W.Output()
        self.layers_image = W.Image(format="png")
        self.delta = W.HTML()
        self.e_tgt = W.Dropdown(options=TARGET_EMOTIONS, value=s.e_mask, description="e_tgt", style=wide)
        self.sources = W.SelectMultiple(options=[], rows=6, description="sources", style=wide,
                                        layout=W.Layout(width="520px"))
        self.play_button = W.Button(description="Play", icon="volume-up",
                                    tooltip="baseline and intervened clips of the chosen sources")
        self.pairs_box = W.VBox()
        self.results = W.VBox([W.HTML("<b>Mask: ESNs per layer</b>"), self.layers_image,
                               W.HTML("<b>Δ emotion match vs the baseline</b>"), self.delta,
                               W.HTML("<b>Listen</b>"), W.HBox([self.e_tgt, self.play_button]), self.sources,
                               self.pairs_box])
        self.results.layout.display = "none"  # nothing to show or play before a run
        c = self.controls
        grid = W.HBox([W.VBox([c[k] for k in ("model", "split", "selector", "e_mask", "n")]),
                       W.VBox([c[k] for k in ("r", "c", "kind", "alpha", "n_cross")])])
        self.widget = W.VBox([grid, W.HBox([self.show_button, self.progress]), self.status, self.log, self.results])
        self.exploration: Exploration | None = None
        self.pairs: list[Pair] = []
        self.error: Exception | None = None
        c["kind"].observe(self._on_kind, names="value")
        c["model"].observe(self._on_model, names="value")
        c["n"].observe(self._on_n, names="value")
        for k, wdg in c.items():
            wdg.observe(self._on_change, names="value")
        self.e_tgt.observe(self._on_e_tgt, names="value")
        self.show_button.on_click(lambda _: self.show())
        self.play_button.on_click(lambda _: self.play())
        c["alpha"].disabled = s.kind == "deactivate"
        c["n_cross"].max = s.n
        self._set_status("Pick a condition and press <b>Show</b>: a condition in the store is read; a missing one "
                         "is generated (identification, baseline, evaluation) and stored for the notebooks too.")

    def _repr_mimebundle_(self, **kw):
        return self.widget._repr_mimebundle_(**kw)

    # -- controls -> settings
    def settings(self) -> Settings:
        c = {k: w.value for k, w in self.controls.items()}
        return Settings(model=c["model"], split=c["split"], selector=c["selector"], e_mask=c["e_mask"],
                        r=float(c["r"]), c=int(c["c"]) or None, alpha=float(c["alpha"]), kind=c["kind"],
                        n=int(c["n"]), n_cross=int(c["n_cross"]))

    def _on_kind(self, change):
        alpha = self.controls["alpha"]
        if change["new"] == "deactivate":
            alpha.value, alpha.disabled = 0.0, True  # deactivation has no strength
        else:
            alpha.disabled = False
            alpha.value = Settings(model=self.controls["model"].value, kind=change["new"]).resolved().alpha

    def _on_model(self, change):
        d = Settings(model=change["new"], kind=self.controls["kind"].value).resolved(self.explorer.smoke)
        self.controls["r"].value = d.r
        if not self.controls["alpha"].disabled:
            self.controls["alpha"].value = d.alpha

    def _on_n(self, change):
        self.controls["n_cross"].max = change["new"]  # the cross cells use the first n_cross of the n sources

    def _on_change(self, change):
        try:
            now = self.explorer.settings(self.settings())
        except ValueError:
            now = None
        if self.exploration is not None and now != self.exploration.settings:
            self._set_status("Settings changed: press <b>Show</b> for the new condition (the results below are "
                             "still those of the previous one).")

    def _on_e_tgt(self, change):
        if self.exploration is not None:
            self._fill_sources()

    # -- actions
    def show(self) -> Exploration | None:
        """Read or generate the condition of the controls, then show its mask, Δ and listening controls."""
        self.error = None
        try:
            s = self.explorer.settings(self.settings())
        except ValueError as exc:
            return self._fail(exc)
        self.show_button.disabled = True
        self.progress.value, self.progress.bar_style = 0, "info"
        self.log.clear_output()
        try:
            self._set_status(f"Loading model {s.model!r} and the corpus…")
            self.explorer.world(s.model)
            missing = self.explorer.missing(s)
            self._set_status("In the store: reading it." if not missing else
                             f"Not in the store ({', '.join(missing)}): generating — the bars below show progress.")
            exp = self._in_log(lambda: self.explorer.run(s, on_step=self._step, missing=missing))
        except Exception as exc:  # shown where the user looks; kept in self.error
            return self._fail(exc)
        finally:
            self.show_button.disabled = False
        self.log.clear_output()
        self.exploration, self.pairs = exp, []
        self._render(exp)
        return exp

    def play(self) -> list[Pair]:
        """The clips of the chosen sources for the chosen e_tgt, side by side."""
        import ipywidgets as W

        if self.exploration is None or not self.sources.value:
            self._set_status("Choose one or more sources first.", error=True)
            return []
        self.play_button.disabled = True
        try:
            self.pairs = self.explorer.listen(self.exploration, list(self.sources.value), self.e_tgt.value)
        except Exception as exc:
            self._fail(exc)
            return []
        finally:
            self.play_button.disabled = False
        self.pairs_box.children = [W.HBox([self._clip_box(p, p.baseline), self._clip_box(p, p.intervened)])
                                   for p in self.pairs]
        return self.pairs

    def _in_log(self, fn):
        """``fn()`` with its printed output and progress bars in ``log``; its exception re-raised here.

        Inside a kernel, ipywidgets' ``Output.__exit__`` prints an exception into the widget and swallows it, so a
        plain ``with self.log:`` would leave the status at "generating" (and ``log`` is cleared before a result)."""
        with self.log:
            try:
                return fn()
            except Exception as exc:
                error = exc
        raise error

    # -- rendering
    def _step(self, k: int, name: str):
        self.progress.value = k
        self.progress.description = name if k < len(STEPS) else "done"

    def _set_status(self, html: str, error: bool = False):
        self.status.value = f"<span style='color:#b00'>{html}</span>" if error else html

    def _fail(self, exc: Exception):
        import html

        self.error = exc
        self.progress.bar_style = "danger"
        self._set_status(f"<b>{type(exc).__name__}</b>: {html.escape(str(exc), quote=False)}", error=True)
        return None

    def _render(self, exp: Exploration):
        s = exp.settings
        self.progress.bar_style = "success"
        how = "read from the store (nothing generated)" if exp.cached else \
            f"generated {exp.generated} samples ({', '.join(exp.missing)}), now stored"
        self._set_status(f"{s.selector} r = {s.r:.4g}, c = {s.c}, {s.kind} α = {s.alpha:g}, e_mask = {s.e_mask}, "
                         f"{s.split}: {how} in {exp.seconds:.1f} s.")
        self.layers_image.value = _png(layer_figure(exp.layers, s.e_mask, title=(
            f"{s.selector} (r = {s.r:.3%}, c = {s.c}): {len(exp.maskset.masks[s.e_mask])} ESNs of "
            f"e_mask = {s.e_mask} per layer")))
        self.delta.value = _delta_html(exp)
        self.results.layout.display = ""
        self.pairs_box.children = []
        self.e_tgt.value = s.e_mask
        self._fill_sources()

    def _fill_sources(self):
        src = self.exploration.sources(self.e_tgt.value)
        self.sources.options = [(f"{r.utt_id} · {r.text[:48]}" + ("" if r.stored_audio else " (re-rendered)"),
                                 r.utt_id) for r in src.itertuples()]
        self.sources.value = tuple(src["utt_id"][: min(2, len(src))])

    def _clip_box(self, p: Pair, clip: Clip):
        import html

        import ipywidgets as W

        s = self.exploration.settings
        head = "baseline" if clip.side == "baseline" else f"{s.kind} α = {s.alpha:g}, e_mask = {s.e_mask}"
        rows = []
        for j, lab in clip.labels.items():
            post = clip.posteriors.get(j, {})
            dist = " ".join(f"{e} {v:.2f}" for e, v in sorted(post.items(), key=lambda kv: -kv[1]))
            note = "" if clip.stored_labels.get(j) == lab else f" (stored row: {clip.stored_labels.get(j)})"
            rows.append(f"<tr><td>{html.escape(j)}</td><td><b>{lab}</b>{note}</td>"
                        f"<td>P({p.e_tgt}) = {post.get(p.e_tgt, float('nan')):.2f}</td><td>{dist}</td></tr>")
        info = W.HTML(f"<div><b>{html.escape(p.utt_id)}</b> · e_tgt = {p.e_tgt} · <i>{head}</i> "
                      f"({clip.origin})<br>“{html.escape(clip.hyp)}”<table>{''.join(rows)}</table></div>")
        return W.VBox([info, W.Audio(value=clip.wav, format="wav", autoplay=False, controls=True)],
                      layout=W.Layout(width="50%"))


def _delta_html(exp: Exploration) -> str:
    """The Δ table as HTML: estimate [95 % CI] and n for self and cross, per judge."""
    t = exp.summary
    rows = []
    for r in t.itertuples():
        post = f"{r.d_post:+.1f} [{r.d_post_lo:+.1f}, {r.d_post_hi:+.1f}]" if hasattr(r, "d_post") else "—"
        rows.append(f"<tr><td>{r.judge}</td><td>{r.self:+.1f} [{r.self_lo:+.1f}, {r.self_hi:+.1f}]</td>"
                    f"<td>{int(r.n_pairs)}</td><td>{r.cross:+.1f} [{r.cross_lo:+.1f}, {r.cross_hi:+.1f}]</td>"
                    f"<td>{int(r.n_cross_pairs)}</td><td>{r.mcnemar_p:.2g}</td><td>{post}</td>"
                    f"<td>{100 * r.d_wer:+.1f}</td></tr>")
    head = ("<tr><th>judge</th><th>self Δ (pp) [95 % CI]</th><th>n self pairs</th><th>cross Δ (pp) [95 % CI]</th>"
            "<th>n cross pairs</th><th>McNemar p</th><th>Δ P(e_tgt) (pp)</th><th>ΔWER (pp)</th></tr>")
    return f"<table class='esn-delta'>{head}{''.join(rows)}</table>"
