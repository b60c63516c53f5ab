"""The steps the notebooks call: baseline, identification, evaluation of masks, sweeps, SER, selector validity.

No logic lives only in a notebook: every notebook is a few calls into this module plus tables and figures.

Everything expensive goes through one :class:`esnlib.store.ResultStore`. A *unit* of work is one shard of utterances
under one condition; its key is the full condition (model ``describe()``, corpus fingerprint, split, task, targets,
selector, r, c, kind, α, scope, filter judge, seed, e_mask, the mask's own fingerprint and the shard's utterance ids).
So notebooks share the baseline, a killed run resumes at the first missing shard without lost or duplicated rows, and
re-running a notebook whose results exist only re-plots. Per-sample activation statistics (stage 1) go to one
:class:`esnlib.capture.StatsStore` per (model, corpus, task, scope, sites); the cap c, success filtering, selectors
and rates re-aggregate them and never regenerate. For a model with a talker, one identification pass captures both
sides and serves LM-side and talker-side identification.

Sample ids: EVC ``"<utt_id>|<e_tgt>"``, SER ``"<utt_id>"``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .constants import EMOTIONS, PAPER_NAMES, POOLED_SPLITS, SPLITS, TARGET_EMOTIONS, TEST
from .corpora.base import CorpusError, Utterance
from .evaluation import MIN_NATURALNESS_N, naturalness_note  # noqa: F401  (tables mark naturalness from few clips)
from .fsutil import atomic_write_bytes
from .intervention import per_condition
from .progress import tqdm
from .selection import selector_scores  # noqa: F401  (notebook 09 ranks with it; X.selector_scores)

#: the paper's identification defaults (EVC paper, section 5.2): c = 50, r = 0.5 %, steering with α = 1.0
PAPER_RATE = 0.005
PAPER_CAP = 50
PAPER_ALPHA = 1.0
#: The demo LALM's thinker (SmolLM2-135M, 30 x 1,536 = 46,080 gate neurons; Qwen2.5-Omni-7B: 530k) uses twice the
#: paper's rate, r = 1 % (460 neurons per emotion), at the paper's α = 1. Chosen on the DEVELOPMENT split (never on
#: TEST; docs/demo_world.md has the table): at r = 0.5 % the self effect of α = 1 was +3.8 / +4.4 pp (CIs touching
#: 0), at r = 1 % it was +6.9 / +7.5 pp with ΔWER +10 pp; stronger α raised WER faster than the self effect.
RATE_SCALE = 2.0
DEMO_RATE = PAPER_RATE * RATE_SCALE
DEMO_ALPHA = 1.0
PAPER_RATES = (0.001, 0.003, 0.005, 0.010)
DEMO_RATES = tuple(r * RATE_SCALE for r in PAPER_RATES)
CAPS = (10, 20, 50, 100)
ALPHAS = (0.3, 0.5, 1.0, 2.0)
#: the α sweep on the demo LALM: the paper's 0.5, 1 and 2 (its 0.3 left out to fit the CPU budget)
DEMO_ALPHAS = (0.5, 1.0, 2.0)
#: method-specific strengths for Figure 6 (the paper picks α per kind to keep strength roughly comparable)
KIND_ALPHAS = {"steer": 1.0, "add": 0.5, "clamp": 0.5, "deactivate": 0.0}
SELECTORS = ("LAP", "LAPE", "MAD", "CAS", "random")
MAX_WER = 0.15


# ----------------------------------------------------------------------------------------------------------- helpers
def fingerprint(obj: Any, n: int = 12) -> str:
    """A short stable hash of a JSON-able object (lists of ids, masks as int lists, dicts)."""
    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (np.integer,)):
            return int(o)
        if isinstance(o, (np.floating,)):
            return float(o)
        return str(o)

    s = json.dumps(obj, sort_keys=True, default=default, separators=(",", ":"))
    return hashlib.sha1(s.encode()).hexdigest()[:n]


def mask_fingerprint(index: np.ndarray | None) -> str:
    """Fingerprint of a mask (sorted flat indices); ``"none"`` for no intervention."""
    if index is None:
        return "none"
    return fingerprint(sorted(int(i) for i in np.asarray(index).ravel()))


def _chunks(seq: Sequence, size: int) -> list[Sequence]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]


def _parse_list(x: str | Sequence[str] | None) -> tuple[str, ...]:
    if x is None:
        return ()
    if isinstance(x, str):
        return tuple(s.strip() for s in x.split(",") if s.strip())
    return tuple(x)


# ------------------------------------------------------------------------------------------------------------ world
@dataclass
class World:
    """What every step needs: the model adapter, the corpus with its Table 1 split, judges and the stores.

    ``utts``: every utterance of the corpus with ``split`` set (IDENTIFICATION / DEVELOPMENT / TEST-SEEN /
    TEST-UNSEEN). ``judges``: name -> EmotionJudge. ``naturalness``: a NaturalnessJudge or None.
    """

    adapter: Any
    utts: list[Utterance]
    judges: dict[str, Any]
    naturalness: Any
    store: Any
    stats_dir: Path
    corpus: str
    corpus_fp: str
    batch_size: int = 16
    shard_size: int = 16
    audio_per_shard: int = 1
    #: generated samples per shard scored for naturalness (the first ones); None: every sample
    naturalness_per_shard: int | None = None
    seed: int = 0
    progress: bool = True
    share_capture: bool = True
    #: "local" (in-process, the default) or "ray" (esnlib.grid: one actor per GPU/worker holding the model once);
    #: generation without capture goes through the grid, identification (capture) stays local
    executor: str = "local"
    ray_address: str | None = None
    num_workers: int | None = None
    #: conditions of one shard share generate calls (one RowwiseIntervention edit per row); False: one call each
    rowwise: bool = True
    #: the corpus kind (esnlib.corpora.registry.KINDS: demo, esd, iemocap, meld, msp-podcast)
    corpus_kind: str = "esd"
    #: the load_world arguments, so a Ray worker can build the same world
    spec: dict = field(default_factory=dict, repr=False)
    _stats: dict = field(default_factory=dict, repr=False)

    # -- conditions
    def base_condition(self, task: str, scope: str = "lm") -> dict:
        """Fields shared by every unit: model, corpus, judges, task, scope."""
        judges = {n: (j.describe() if hasattr(j, "describe") else {"judge": n}) for n, j in sorted(self.judges.items())}
        nat = getattr(self.naturalness, "name", None) if self.naturalness is not None else None
        return {
            "model": fingerprint(self.adapter.describe()),
            "model_name": self.adapter.describe().get("model", getattr(self.adapter, "name", "model")),
            "corpus": self.corpus,
            "corpus_fp": self.corpus_fp,
            "judges": fingerprint(judges),
            "naturalness_judge": str(nat),
            "naturalness_per_shard": (-1 if self.naturalness_per_shard is None else int(self.naturalness_per_shard))
            if nat else 0,
            "task": task,
            "scope": scope,
        }

    # -- utterances
    def split(self, name: str, n: int | None = None, emotion: str | None = "neutral", seed: int | None = None) -> list[Utterance]:
        """Utterances of one Table 1 split, or of ``"TEST"`` (TEST-SEEN + TEST-UNSEEN, as the paper pools its
        results); EVC sources are ``neutral``, ``emotion=None`` for all.

        ``n`` takes a seeded subsample that is nested (the first 20 of a 40-sample draw are the 20-sample draw) and
        spread over speakers (round robin over speakers in a seeded order); the pooled split interleaves its parts
        in proportion to their sizes, so any ``n`` keeps the paper's seen/unseen mix.
        """
        if name in POOLED_SPLITS:
            # a corpus may lack one part (IEMOCAP and MSP-Podcast test unseen speakers only, MELD seen ones)
            held = {u.split for u in self.utts if emotion is None or u.emotion == emotion}
            parts = [self.split(p, None, emotion, seed) for p in POOLED_SPLITS[name] if p in held]
            if not parts:
                raise CorpusError(f"split {name} ({' + '.join(POOLED_SPLITS[name])}) has no {emotion or ''} "
                                  f"utterances in corpus {self.corpus!r}")
            total = sum(map(len, parts))
            out, taken = [], [0] * len(parts)
            while len(out) < total:
                k = max(range(len(parts)), key=lambda i: (len(out) + 1) * len(parts[i]) / total - taken[i])
                out.append(parts[k][taken[k]])
                taken[k] += 1
            return out if n is None else out[: int(n)]
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS + tuple(POOLED_SPLITS)}")
        pool = [u for u in self.utts if u.split == name and (emotion is None or u.emotion == emotion)]
        if not pool:
            raise CorpusError(f"split {name} has no {emotion or ''} utterances in corpus {self.corpus!r}: "
                              "check the corpus size (table1_split needs 10 speakers)")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        by_spk: dict[str, list[Utterance]] = {}
        for u in sorted(pool, key=lambda u: u.id):
            by_spk.setdefault(u.speaker, []).append(u)
        for spk in by_spk:
            order = rng.permutation(len(by_spk[spk]))
            by_spk[spk] = [by_spk[spk][i] for i in order]
        spks = sorted(by_spk)
        out: list[Utterance] = []
        depth = 0
        while len(out) < len(pool):
            for s in spks:
                if depth < len(by_spk[s]):
                    out.append(by_spk[s][depth])
            depth += 1
        return out if n is None else out[: int(n)]

    # -- per-sample statistics
    def stats(self, task: str, scope: str = "lm"):
        """The StatsStore for (model, corpus, task, scope); created on first use."""
        from .capture import StatsStore

        key = (task, scope)
        if key not in self._stats:
            cond = self.base_condition(task, scope)
            sites = self.adapter.sites(scope)
            # the sites' shapes are part of the key: a retrained model with other sizes never mixes statistics
            cond["sites"] = fingerprint([(s.path, s.width, s.side) for s in sites])
            path = self.stats_dir / f"{cond['model_name']}-{task}-{scope}-{fingerprint(cond)}"
            self._stats[key] = StatsStore.open_or_create(path, sites)  # safe with two runs at once
        return self._stats[key]

    def sites(self, scope: str = "lm"):
        return self.adapter.sites(scope)


def corpus_fingerprint(utts: Sequence[Utterance]) -> str:
    """Identifies a corpus by its ids, texts and file sizes (a rebuilt corpus with another seed gets a new key)."""
    items = []
    for u in sorted(utts, key=lambda u: u.id):
        try:
            size = os.path.getsize(u.path)
        except OSError:
            size = -1
        items.append((u.id, u.text, u.emotion, size))
    return fingerprint(items)


#: where the demo corpus lives by default; a missing corpus root is built only there (and at the other demo corpus
#: names of the checkout's data/ folder, DEMO_CORPUS_NAMES) or where the caller asks for it with ``corpus="demo"``
DEFAULT_CORPUS_ROOT = "data/demo_corpus"
DEMO_CORPUS_NAMES = ("demo_corpus", "smoke_corpus")
#: what ``corpus=`` accepts (esnlib.corpora.registry: layouts, split mapping, which notebooks take which)
CORPUS_KINDS = ("demo", "esd", "iemocap", "meld", "msp-podcast")


def _default_data_dir(root: Path) -> bool:
    """True for the default corpus root and for demo corpus folders of this checkout's data/ (named demo_corpus* or
    smoke_corpus*: notebook 07's second corpus data/demo_corpus_b, the smoke runner's data/smoke_corpus). Not for
    other names there (data/esd must never become a synthetic corpus)."""
    root = root.resolve()
    if root == Path(DEFAULT_CORPUS_ROOT).resolve():
        return True
    repo = Path(__file__).resolve().parents[1]
    return ((repo / "pyproject.toml").is_file() and root.parent == repo / "data"
            and root.name.startswith(DEMO_CORPUS_NAMES))


def _present(root: Path) -> bool:
    return root.is_dir() and ((root / "demo_corpus.json").exists() or any(True for _ in root.iterdir()))


def corpus_kind(corpus_root: str | Path, corpus: str | None = None) -> str | None:
    """The kind ``load_corpus`` will read: ``corpus`` when given, else the folder's layout (None when it has none
    of the known layouts), "demo" for a missing folder that would be built."""
    from .corpora import registry

    if corpus is not None:
        if corpus not in CORPUS_KINDS:
            raise ValueError(f"unknown corpus kind {corpus!r}; use one of {CORPUS_KINDS} (or None: from the folder's "
                             "layout; the demo corpus is built only at data/demo_corpus or with corpus='demo')")
        return corpus
    root = Path(corpus_root)
    return registry.detect(root) if _present(root) else "demo"


def load_corpus(corpus_root: str | Path, build: bool = True, n_utts: int | None = None, corpus_seed: int = 0,
                progress: bool = True, corpus: str | None = None) -> list[Utterance]:
    """Load a corpus with the World's subsets set on every utterance (IDENTIFICATION / DEVELOPMENT / TEST-SEEN /
    TEST-UNSEEN: the EVC paper's Table 1 split for ESD layouts, the corpus's own splits mapped onto them for IEMOCAP,
    MELD and MSP-Podcast; esnlib.corpora.registry). Audio headers are checked (unreadable, truncated or too short
    files are a CorpusError naming the file, before any generation).

    ``corpus``: one of :data:`CORPUS_KINDS`. The folder must have that kind's layout (else a CorpusError naming the
    expected layout). ``"demo"`` builds the demo corpus at ``corpus_root`` when it is missing (``n_utts`` sentences
    per speaker and emotion, default the generator's default); the others never build. None (the default): the kind
    of the folder's layout; a missing folder is built only at the default data folder (``data/demo_corpus``, or
    ``data/demo_corpus*`` / ``data/smoke_corpus*`` of this checkout). Any other missing ``corpus_root`` is a
    CorpusError naming the path (a typo must not turn into a synthetic corpus). ``build=False`` never builds.
    """
    from .corpora import registry

    kind = corpus_kind(corpus_root, corpus)  # checks the name first
    root = Path(corpus_root)
    if not _present(root):
        asked = corpus == "demo" or (corpus is None and _default_data_dir(root))
        if not (build and asked):
            state = "is an empty folder" if root.is_dir() else "does not exist"
            what = registry.LAYOUTS[corpus] if corpus else "a corpus folder"
            raise CorpusError(
                f"corpus root {root.resolve()} {state}; check the path (-p corpus_root): expected {what}. To build "
                f"the synthetic demo corpus there, ask for it explicitly: load_world(corpus_root={str(root)!r}, "
                f"corpus='demo') or `python scripts/make_demo_corpus.py --out {root}`")
        from .corpora.synthetic import DEFAULT_N_UTTS, build_demo_corpus

        build_demo_corpus(root, n_utts=n_utts or DEFAULT_N_UTTS, seed=corpus_seed, progress=progress)
        kind = "demo"
    if kind is None:
        raise CorpusError(f"{root.resolve()} has none of the corpus layouts esnlib reads (" +
                          "; ".join(registry.LAYOUTS[k] for k in CORPUS_KINDS[1:]) +
                          f"){registry._nested_hint(root, None)}. Point corpus_root at the corpus folder and pass "
                          f"corpus= one of {CORPUS_KINDS}")
    return registry.load(kind, root, verify_audio=True)


def load_world(
    model: str = "demo",
    corpus_root: str | Path = DEFAULT_CORPUS_ROOT,
    judges: str | Sequence[str] = ("prosody", "spectral"),
    naturalness: str | None = "dnsmos",
    results_dir: str | Path = "data/results",
    stats_dir: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    shard_size: int = 16,
    audio_per_shard: int = 1,
    naturalness_per_shard: int | None = None,
    seed: int = 0,
    build_corpus: bool = True,
    n_utts: int | None = None,
    corpus_seed: int = 0,
    corpus_name: str | None = None,
    progress: bool = True,
    adapter: Any = None,
    executor: str = "local",
    ray_address: str | None = None,
    num_workers: int | None = None,
    rowwise: bool = True,
    corpus: str | None = None,
    task: str | None = None,
) -> World:
    """Build the :class:`World` the notebooks work in.

    model: a name for ``esnlib.models.registry.load_model`` ("demo" = the demo LALM), or "package.module:factory"
    (a callable returning your own ModelAdapter), unless ``adapter`` (an adapter object) is given.
    corpus_root: the corpus folder (the demo corpus, ESD, IEMOCAP, MELD or MSP-Podcast). A missing folder is an error
    naming it, except at the default data folder (``data/demo_corpus``) or with ``corpus="demo"``, where the demo
    corpus is built.
    corpus: "demo", "esd", "iemocap", "meld", "msp-podcast" or None (the folder's layout; see :func:`load_corpus`).
    task: "evc" (the EVC notebooks: only ESD-like corpora, "demo" or "esd"), "ser" (any corpus) or None (no check);
    checked before anything is loaded. On the SER corpora, utterances whose label the model's SER question does not
    offer (``adapter.labels``; e.g. MELD's fear and disgust) are left out, with a warning.
    judges: names for ``esnlib.judges.registry.load_judge`` (comma-separated string or list); naturalness likewise.
    stats_dir: where per-sample statistics live (default :func:`run_dirs`: ``data/stats`` next to ``data/results``,
    else ``<results_dir>/_stats``, so a run with its own results_dir never writes another run's statistics).
    audio_per_shard: utterances per shard whose waveforms are kept (all their targets); naturalness_per_shard:
    generated samples per shard (the first ones) scored for naturalness.
    executor: "local" or "ray" (``ray_address``: an existing cluster, None: start or join a local one; num_workers:
    Ray actors, default one per GPU, else one per CPU). Nothing else changes: the tables are identical.
    rowwise: the conditions of a sweep that share utterances share ``generate`` calls (``batch_size`` rows, filled
    across conditions, each row with its own edit); False: one call per condition. The tables are identical.
    """
    from .store import ResultStore

    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    if executor == "ray" and adapter is not None:
        raise ValueError("executor='ray' builds the model in each worker: pass model=<name>, not adapter=<object>")
    spec = dict(model=model, corpus_root=str(corpus_root), judges=judges, naturalness=naturalness,
                results_dir=str(results_dir), stats_dir=None if stats_dir is None else str(stats_dir), device=device,
                batch_size=batch_size, shard_size=shard_size, audio_per_shard=audio_per_shard,
                naturalness_per_shard=naturalness_per_shard, seed=seed, build_corpus=False, n_utts=n_utts,
                corpus_seed=corpus_seed, corpus_name=corpus_name, progress=False, rowwise=rowwise, corpus=corpus,
                task=task)

    judge_names = _parse_list(judges)
    if not judge_names:
        raise ValueError("at least one emotion judge is needed (e.g. judges='prosody,spectral')")
    utts, kind = _corpus_for(corpus_root, corpus, task, build_corpus, n_utts, corpus_seed, progress)
    if adapter is None:
        adapter = _load_model(model, device)
    utts = _offered_labels(utts, kind, adapter)
    jd = {name: _load_judge(name, device) for name in judge_names}
    nat = _load_judge(naturalness, device) if naturalness else None
    results_dir = Path(results_dir)
    stats_dir = Path(stats_dir) if stats_dir is not None else run_dirs(results_dir)["stats"]
    stats_dir.mkdir(parents=True, exist_ok=True)
    return World(
        adapter=adapter, utts=utts, judges=jd, naturalness=nat, store=ResultStore(results_dir), stats_dir=stats_dir,
        corpus=corpus_name or Path(corpus_root).name, corpus_fp=corpus_fingerprint(utts), batch_size=batch_size,
        shard_size=shard_size, audio_per_shard=audio_per_shard, naturalness_per_shard=naturalness_per_shard,
        seed=seed, progress=progress, executor=executor, ray_address=ray_address, num_workers=num_workers, rowwise=rowwise,
        corpus_kind=kind, spec=spec,
    )


def _corpus_for(corpus_root, corpus, task, build, n_utts, corpus_seed, progress) -> tuple[list[Utterance], str]:
    """The corpus's utterances and kind; the task/corpus check comes before any file is read or built."""
    from .corpora import registry

    kind = corpus_kind(corpus_root, corpus)
    if kind is not None:
        registry.check_task(kind, task, corpus_root)
    utts = load_corpus(corpus_root, build=build, n_utts=n_utts, corpus_seed=corpus_seed, progress=progress,
                       corpus=corpus)
    kind = kind or corpus_kind(corpus_root, corpus)
    return utts, kind


def _offered_labels(utts: list[Utterance], kind: str, adapter) -> list[Utterance]:
    """SER corpora: drop utterances whose label the model's SER question does not offer (they can never be right)."""
    if kind in ("demo", "esd"):
        return utts
    import warnings

    labels = tuple(getattr(adapter, "labels", EMOTIONS))
    keep = [u for u in utts if u.emotion in labels]
    dropped = sorted({u.emotion for u in utts} - set(labels))
    if dropped:
        warnings.warn(f"{kind}: {len(utts) - len(keep)} utterances labelled {dropped} left out: the model's SER "
                      f"question offers {list(labels)}", stacklevel=3)
    if not keep:
        raise CorpusError(f"no {kind} utterance has a label the model's SER question offers ({list(labels)})")
    return keep


def with_corpus(world: World, corpus_root: str | Path, corpus: str | None = None, n_utts: int | None = None,
                corpus_seed: int = 0, corpus_name: str | None = None, task: str | None = None) -> World:
    """The same world (model, judges, stores, settings) on another corpus: cross-corpus transfer without loading the
    model or the judges twice. Results stay apart by the corpus name and fingerprint in every key."""
    from dataclasses import replace

    utts, kind = _corpus_for(corpus_root, corpus, task, True, n_utts, corpus_seed, world.progress)
    utts = _offered_labels(utts, kind, world.adapter)
    spec = {**world.spec, "corpus_root": str(corpus_root), "corpus": corpus, "n_utts": n_utts,
            "corpus_seed": corpus_seed, "corpus_name": corpus_name, "task": task}
    return replace(world, utts=utts, corpus=corpus_name or Path(corpus_root).name, corpus_fp=corpus_fingerprint(utts),
                   corpus_kind=kind, spec=spec, _stats={})


def second_demo_world(world: World, n_utts: int | None = None, seed: int = 0) -> World:
    """The demo world's second corpus (notebook 07's mask transfer, notebook 08's cross-corpus SER transfer): a demo
    corpus ``<corpus_root>_b`` next to the first, built once with ``corpus_seed = seed + 1`` (other sentences of the
    corpus pool, other per-utterance prosody, the same ten corpus voices). Both notebooks get the same corpus and so
    share its cached generations."""
    if world.corpus_kind != "demo":
        raise ValueError(f"a second demo corpus belongs to the demo world; this world's corpus is "
                         f"{world.corpus_kind!r}: name a second corpus (transfer_corpus_root, transfer_corpus)")
    root = Path(world.spec.get("corpus_root", DEFAULT_CORPUS_ROOT))
    return with_corpus(world, root.with_name(root.name + "_b"), corpus="demo", n_utts=n_utts, corpus_seed=seed + 1)


def run_dirs(results_dir: str | Path) -> dict[str, Path]:
    """Where a run whose result tables go to ``results_dir`` keeps its other files: ``stats`` (per-sample activation
    statistics) and ``listening`` (notebook 10's pages and answers). Next to it for the data/ layout (``results_dir``
    named ``results``: data/results, data/stats, data/listening), else inside it (``<results_dir>/_stats``,
    ``<results_dir>/_listening``): a smoke or scratch run never writes into data/stats or data/listening."""
    results_dir = Path(results_dir)
    if results_dir.name == "results":
        return {"stats": results_dir.parent / "stats", "listening": results_dir.parent / "listening"}
    return {"stats": results_dir / "_stats", "listening": results_dir / "_listening"}


def _worker_world(spec: dict) -> World:
    """A Ray worker's world: the same model, corpus, judges and stores as the driver's (spec from load_world)."""
    import torch

    torch.set_num_threads(1)
    return load_world(**spec)


def _load_model(name: str, device: str):
    """The demo LALM directly (no registry needed for the demo world); other names via the model registry."""
    if name in ("demo", "demo-lalm"):
        from .models.demo import DemoAdapter

        return DemoAdapter(device=device)
    if ":" in name and not Path(name).exists():  # "package.module:factory" -> factory() (your own adapter)
        import importlib

        mod, _, attr = name.partition(":")
        return getattr(importlib.import_module(mod), attr)()
    from .models.registry import load_model

    return load_model(name, device=device)


def _load_judge(name: str, device: str = "cpu"):
    """A judge by name through ``esnlib.judges.registry`` (demo: prosody, spectral, dnsmos)."""
    from .judges.registry import load_judge

    return load_judge(name)


# ------------------------------------------------------------------------------------------------------ generation
def _judge_rows(world: World, audios: list, task_rows: list[dict], n_naturalness: int | None = None) -> None:
    """Add pred_<judge>, match_<judge>, post_<judge> (the judge's posterior of the row's e_tgt, when the judge gives
    posteriors) and naturalness to rows in place (None audio -> no label, NaN scores).

    Naturalness is scored on the first ``n_naturalness`` rows only (None: every row, the default).
    """
    # clips shorter than 0.1 s or silent (e.g. an empty decoded text) get no label and a NaN score
    ok = [i for i, a in enumerate(audios) if a is not None and len(a) >= 1600 and np.any(np.asarray(a) != 0)]
    clips = [audios[i] for i in ok]
    for name, judge in world.judges.items():
        col, post = [None] * len(audios), [float("nan")] * len(audios)
        if clips and hasattr(judge, "predict_proba") and hasattr(judge, "labels"):
            proba = np.asarray(judge.predict_proba(clips, sample_rate=16000))
            labels = list(judge.labels)
            for i, p in zip(ok, proba):
                col[i] = labels[int(np.argmax(p))]
                t = task_rows[i].get("target")
                post[i] = float(p[labels.index(t)]) if t in labels else float("nan")
        elif clips:
            for i, p in zip(ok, judge.predict(clips, sample_rate=16000)):
                col[i] = p
        for r, p, q in zip(task_rows, col, post):
            r[f"pred_{name}"] = p
            if "target" in r:
                r[f"match_{name}"] = bool(p is not None and p == r["target"])
                r[f"post_{name}"] = q
    if world.naturalness is not None:
        nat = [i for i in ok if n_naturalness is None or i < n_naturalness]
        scores = world.naturalness.score([audios[i] for i in nat], sample_rate=16000) if nat else []
        col = [float("nan")] * len(audios)
        for i, s in zip(nat, scores):
            col[i] = float(s)
        for r, s in zip(task_rows, col):
            r["naturalness"] = s
    else:
        for r in task_rows:
            r["naturalness"] = float("nan")


def _read_unit(world: World, table: str, cond: dict) -> pd.DataFrame:
    # one unit by its key (store.read would scan every unit's condition)
    return world.store.read_unit(table, cond)


def _stats_missing(stats, ids: Iterable[str]) -> list[str]:
    return [i for i in ids if not stats.has(i)]


def _append_missing_stats(stats, captured, ids: Sequence[str]) -> None:
    """Append the rows of ``captured`` (CaptureStats, one row per id) whose ids the StatsStore does not hold yet."""
    missing = set(_stats_missing(stats, ids))
    keep = [i for i, s in enumerate(ids) if s in missing]
    if keep:  # skip_existing: another run of the same step may have appended some of them meanwhile
        stats.append(captured.rows(keep), [ids[i] for i in keep], skip_existing=True)


def run_evc(
    world: World,
    utts: Sequence[Utterance],
    targets: Sequence[str] = TARGET_EMOTIONS,
    condition: Mapping[str, Any] | None = None,
    intervention=None,
    capture: bool = False,
    scope: str = "lm",
    table: str = "evc",
    desc: str = "EVC",
) -> pd.DataFrame:
    """Generate EVC for every (utterance, e_tgt), judge it, and return tidy rows (cached per shard).

    Rows: utt_id, sample_id, speaker, split, target (e_tgt), mask_emotion (e_mask or "none"), text (reference), hyp
    (decoded text), wer, speech_tokens (the talker's tokens when the model reports them), pred_<judge>,
    match_<judge>, naturalness, audio_path ("" unless kept) — plus every field of the condition (the store adds
    them). ``capture=True`` also appends each sample's activation statistics to the EVC StatsStore of ``scope`` (ids
    ``"<utt_id>|<e_tgt>"``); a shard already in the store is regenerated only if its statistics are missing.
    """
    return run_evc_conditions(world, utts, [(condition, intervention)], targets, capture=capture, scope=scope,
                              table=table, desc=desc)[0]


def run_evc_conditions(
    world: World,
    utts: Sequence[Utterance],
    conditions: Sequence[tuple[Mapping[str, Any] | None, Any]],
    targets: Sequence[str] = TARGET_EMOTIONS,
    capture: bool = False,
    scope: str = "lm",
    table: str = "evc",
    desc: str = "EVC",
) -> list[pd.DataFrame]:
    """EVC of the same utterances under several conditions, ``[(condition fields, intervention), ...]``: one frame of
    :func:`run_evc` rows per condition, in order.

    Every (condition, shard) is its own unit in the store, exactly as with one ``run_evc`` call per condition. What
    is shared is the work: with ``world.rowwise`` (the default) the conditions a shard still needs are generated
    together, the shard's rows repeated once per condition and each copy edited by its own intervention
    (:class:`esnlib.intervention.RowwiseIntervention`), so ``world.batch_size`` rows fill each ``generate`` call
    across conditions. Conditions whose generations are identical (same mask, kind, α, positions: e.g. the random
    control's single mask, or a cap c that does not bind) are generated once and stored under each condition.
    """
    bad = [t for t in targets if t not in EMOTIONS]
    if bad:
        raise ValueError(f"unknown target emotions {bad}; expected a subset of {EMOTIONS}")
    if not conditions:
        raise ValueError("run_evc_conditions needs at least one (condition, intervention) pair")
    if capture and len(conditions) != 1:
        raise ValueError("capture=True (identification) takes one condition: capture the baseline, not a sweep")
    specs = [_evc_condition(world, targets, c, iv, scope) for c, iv in conditions]
    ivs = [iv for _, iv in conditions]
    stats = world.stats("evc", scope) if capture else None
    shards = [(sh, fingerprint([u.id for u in sh])) for sh in _chunks(list(utts), world.shard_size)]
    if world.executor == "ray" and not capture:
        # the grid computes the missing units (one actor per GPU/worker); the loop below then only reads them
        _evc_on_grid(world, shards, targets, specs, ivs, scope, table)
    frames: list[list[pd.DataFrame]] = [[] for _ in specs]
    for shard, shard_fp in tqdm(shards, desc=desc, disable=not world.progress or len(shards) < 2, leave=False):
        sample_ids = [f"{u.id}|{t}" for u in shard for t in targets]
        need_stats = capture and bool(_stats_missing(stats, sample_ids))
        todo = _missing_generations(world, table, specs, shard_fp, regenerate=need_stats)
        if todo:
            firsts = [ks[0] for ks in todo.values()]
            new = _evc_shard_frames(world, shard, targets, [{**specs[k][0], "shard": shard_fp} for k in firsts],
                                    [ivs[k] for k in firsts], scope, stats, sample_ids)
            for ks, df in zip(todo.values(), new):
                cond = {**specs[ks[0]][0], "shard": shard_fp}
                world.store.write(table, cond, df)
                _write_alias(world, table, specs[ks[0]][1], shard_fp, cond)
                for k in ks[1:]:
                    cond_k = {**specs[k][0], "shard": shard_fp}
                    if not world.store.has(table, cond_k):  # a repeated condition is stored already
                        _reuse_generation(world, table, specs[k][1], shard_fp, cond_k)
        for k, (cond0, _) in enumerate(specs):
            frames[k].append(_read_unit(world, table, {**cond0, "shard": shard_fp}))
    return [pd.concat(f, ignore_index=True) if f else pd.DataFrame() for f in frames]


def _intervention_fields(iv) -> dict:
    """The condition fields that identify an intervention: mask (fingerprint of the indices), kind, alpha, positions.
    A list of Interventions (applied in turn) gets one fingerprint over all of them and kind "composite"."""
    from .intervention import Intervention

    if iv is None:
        return {"mask": "none", "kind": "none", "alpha": 0.0, "positions": "none"}
    if isinstance(iv, Intervention):
        return {"mask": mask_fingerprint(iv.index), "kind": iv.kind, "alpha": float(iv.alpha),
                "positions": iv.positions}
    if isinstance(iv, (list, tuple)) and iv and all(isinstance(x, Intervention) for x in iv):
        return {"mask": fingerprint([[mask_fingerprint(x.index), x.kind, float(x.alpha), x.positions] for x in iv]),
                "kind": "composite", "alpha": 0.0, "positions": "composite"}
    raise TypeError(f"a condition's intervention must be None, an esnlib.Intervention or a list of them, got "
                    f"{type(iv).__name__} (the row-wise batching of conditions is built here, from the conditions)")


def _missing_generations(world: World, table: str, specs, shard_fp: str, regenerate: bool = False
                         ) -> dict[str, list[int]]:
    """The conditions of one shard that need generating, by generation key: key -> indices into ``specs`` (the first
    is generated, the others get copies). A condition already stored, or one whose generations another stored unit
    holds (then copied now), needs nothing; ``regenerate`` (statistics missing) makes every condition needed."""
    todo: dict[str, list[int]] = {}
    for k, (cond0, gen0) in enumerate(specs):
        cond = {**cond0, "shard": shard_fp}
        if regenerate or not (world.store.has(table, cond) or _reuse_generation(world, table, gen0, shard_fp, cond)):
            todo.setdefault(_generation_key(gen0, shard_fp), []).append(k)
    return todo


def _evc_condition(world: World, targets: Sequence[str], condition, intervention, scope: str) -> tuple[dict, dict]:
    """(cond0, gen0): the unit condition without its shard, and the fields that determine the generations (not
    which selector/r/c produced the mask), so identical generations are computed once."""
    f = _intervention_fields(intervention)
    cond0 = {**world.base_condition("evc", scope), "targets": ",".join(targets), "mask_emotion": "none",
             "mask": f["mask"], "kind": f["kind"], "alpha": f["alpha"], **(dict(condition) if condition else {})}
    gen0 = {k: cond0[k] for k in ("model", "corpus_fp", "judges", "naturalness_judge", "naturalness_per_shard",
                                  "task", "targets")}
    # from the intervention itself, whatever the condition fields say
    gen0.update(mask=f["mask"], kind=f["kind"], alpha=f["alpha"], positions=f["positions"],
                scope=scope if intervention is not None else "none")
    return cond0, gen0


def _generation_key(gen0: dict, shard_fp: str) -> str:
    return fingerprint({**gen0, "shard": shard_fp}, 16)


def _alias_path(world: World, table: str, gen0: dict, shard_fp: str) -> Path:
    return world.store.root / "_generations" / f"{table}-{_generation_key(gen0, shard_fp)}"


def _write_alias(world: World, table: str, gen0: dict, shard_fp: str, cond: dict) -> None:
    """Record that ``cond``'s unit holds the generations of (gen0, shard), for conditions that generate the same."""
    alias = _alias_path(world, table, gen0, shard_fp)
    alias.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(alias, world.store.key(cond).encode())


def _reuse_generation(world: World, table: str, gen0: dict, shard_fp: str, cond: dict) -> bool:
    """Store ``cond``'s unit as a copy of an already stored unit with the same generations; False if there is none."""
    alias = _alias_path(world, table, gen0, shard_fp)
    if not alias.exists():
        return False
    src_path = world.store._dir(table) / f"{alias.read_text().strip()}.parquet"
    if not src_path.exists():
        return False
    old = pd.read_parquet(src_path)
    keep = [c for c in old.columns if c in _ROW_COLS or c.startswith(("pred_", "match_", "post_"))]
    world.store.write(table, cond, old[keep])
    return True


def _evc_shard_frames(world: World, shard: Sequence[Utterance], targets: Sequence[str], conds: Sequence[dict],
                      interventions: Sequence, scope: str, stats=None,
                      sample_ids: Sequence[str] | None = None) -> list[pd.DataFrame]:
    """The EVC work of one shard under each condition: generate every (utterance, e_tgt), judge it, keep a few
    waveforms; one frame per condition.

    Several conditions go through one ``adapter.evc`` call with a RowwiseIntervention when ``world.rowwise``;
    greedy rows do not depend on their batch neighbours, so the frames equal one call per condition. ``stats``: the
    StatsStore to append the samples' activation statistics to (capture, one condition only), or None. Used
    in-process and by Ray workers (:func:`_evc_group_work`), so both executors give identical rows.
    """
    capture = stats is not None
    if sample_ids is None:
        sample_ids = [f"{u.id}|{t}" for u in shard for t in targets]
    src = [u for u in shard for _ in targets]
    tgt = [t for _ in shard for t in targets]
    if capture:
        gens, st = world.adapter.evc(src, tgt, capture=True, intervention=interventions[0], scope=scope,
                                     batch_size=world.batch_size)
        _append_missing_stats(stats, st, sample_ids)
        per_cond = [gens]
    else:
        per_cond = per_condition(lambda k, iv: world.adapter.evc(
            src * k, tgt * k, intervention=iv, scope=scope, batch_size=world.batch_size), len(src), interventions,
            world.rowwise)
    return [_evc_rows(world, src, tgt, sample_ids, cond, gens) for cond, gens in zip(conds, per_cond)]


def _evc_rows(world: World, src, tgt, sample_ids, cond: dict, gens) -> pd.DataFrame:
    """Tidy rows of one (condition, shard): text, WER, speech tokens, judges, naturalness, kept waveforms."""
    from .evaluation import sample_wer

    rows = []
    key = world.store.key(cond)
    for j, (u, t, g) in enumerate(zip(src, tgt, gens)):
        hyp = g.text or ""
        speech = (g.extra or {}).get("speech_tokens")
        prosody = (g.extra or {}).get("prosody")
        rows.append({"utt_id": u.id, "sample_id": sample_ids[j], "speaker": u.speaker, "split": u.split,
                     "target": t, "text": u.text, "hyp": hyp, "wer": float(sample_wer(u.text, hyp)),
                     "speech_tokens": " ".join(map(str, speech)) if speech is not None else "",
                     "prosody": json.dumps({k: round(float(v), 3) for k, v in prosody.items()}) if prosody else "",
                     "audio_path": ""})
    audios = [g.audio for g in gens]
    # naturalness and kept waveforms (for listening in the notebooks): the first few utterances of each shard
    n_keep = world.audio_per_shard * len(set(tgt))
    _judge_rows(world, audios, rows, n_naturalness=world.naturalness_per_shard)
    for j in range(min(n_keep, len(rows))):
        if audios[j] is not None:
            rows[j]["audio_path"] = str(world.store.write_audio(key, rows[j]["sample_id"], audios[j]))
    return pd.DataFrame(rows)


def _evc_group_work(world: World, group, targets: Sequence[str], scope: str) -> list[pd.DataFrame]:
    """esnlib.grid work function: the EVC frames of a UnitGroup (one shard, its missing conditions; each member's
    payload: {"utts", "intervention"})."""
    shard = group.units[0].payload["utts"]
    return _evc_shard_frames(world, shard, targets, [u.condition for u in group.units],
                             [u.payload["intervention"] for u in group.units], scope)


def _evc_on_grid(world: World, shards, targets, specs, ivs, scope: str, table: str) -> None:
    """Compute the missing (condition, shard) units of an EVC run on the Ray executor (esnlib.grid): one UnitGroup
    per shard (its missing conditions share generate calls when ``world.rowwise``, else one group per unit)."""
    import functools

    from .grid import Unit, UnitGroup, run_grid

    groups, first_of = [], []
    for sh, shard_fp in shards:
        todo = []
        for ks in _missing_generations(world, table, specs, shard_fp).values():
            cond0, gen0 = specs[ks[0]]
            cond = {**cond0, "shard": shard_fp}
            todo.append(Unit(table, cond, payload={"utts": list(sh), "intervention": ivs[ks[0]]}))
            first_of.append((gen0, shard_fp, cond))  # the copies for ks[1:] are made by the driver's loop
        if todo:
            groups += [UnitGroup(todo)] if world.rowwise else [UnitGroup([u]) for u in todo]
    if not groups:
        return
    n_units = sum(len(g.units) for g in groups)
    try:
        run_grid(groups, functools.partial(_evc_group_work, targets=tuple(targets), scope=scope),
                 functools.partial(_worker_world, world.spec), world.store, executor="ray",
                 ray_address=world.ray_address, num_workers=world.num_workers, progress=world.progress,
                 desc=f"EVC on Ray ({n_units} units in {len(groups)} groups)")
    finally:  # also after a failed grid: the finished units serve their copies
        for gen0, shard_fp, cond in first_of:
            if world.store.has(table, cond):
                _write_alias(world, table, gen0, shard_fp, cond)


_ROW_COLS = ("utt_id", "sample_id", "speaker", "split", "target", "text", "hyp", "wer", "speech_tokens", "prosody",
             "audio_path",
             "naturalness")


# ------------------------------------------------------------------------------------------- baseline / identify
def baseline(world: World, split: str = TEST, n: int | None = None, targets: Sequence[str] = TARGET_EMOTIONS,
             capture: bool = False, scope: str = "lm") -> pd.DataFrame:
    """Unintervened EVC on the neutral utterances of ``split`` (Table 2). Shared by every notebook through the store.

    ``capture=True`` (identification) also stores per-sample statistics for ``scope``.
    """
    utts = world.split(split, n)
    return run_evc(world, utts, targets, condition={"eval_split": split}, capture=capture, scope=scope,
                   desc=f"baseline {split}")


@dataclass
class MaskSet:
    """ESN masks per e_mask plus how they were identified.

    masks: e_mask -> sorted flat indices over ``world.sites(scope)``; n_success: |S_e| after the cap c;
    n_success_all: |S_e| before the cap; P: activation probabilities (E, N) in ``emotions`` order.
    """

    masks: dict[str, np.ndarray]
    selector: str
    rate: float
    cap: int | None
    filter_judge: str
    scope: str = "lm"
    seed: int = 0
    n_success: dict[str, int] = field(default_factory=dict)
    n_success_all: dict[str, int] = field(default_factory=dict)
    P: np.ndarray | None = field(default=None, repr=False)
    emotions: tuple[str, ...] = ()
    source: str = ""

    def condition(self) -> dict:
        return {"selector": self.selector, "rate": float(self.rate), "cap": int(self.cap) if self.cap else 0,
                "filter_judge": self.filter_judge, "scope": self.scope, "seed": int(self.seed),
                "mask_source": self.source}

    def frame(self, sites=None) -> pd.DataFrame:
        from .selection import masks_to_frame

        emos = list(self.masks)
        return masks_to_frame([self.masks[e] for e in emos], emos, sites)

    def sizes(self) -> dict[str, int]:
        return {e: int(len(m)) for e, m in self.masks.items()}


def success_frame(world: World, rows: pd.DataFrame, filter_judge: str | None = None, max_wer: float = MAX_WER,
                  human: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows with a ``success`` column: the judge says e_tgt AND WER <= τ_wer (section 3.2).

    ``human``: a frame with utt_id, target, human_success (esnlib.listening.read_filter_answers) replaces the judge
    (CAS-H); rows without a human answer are not successes.
    """
    from .selection import is_success

    rows = rows.copy()
    if human is not None:
        h = human[["utt_id", "target", "human_success"]]
        rows = rows.merge(h, on=["utt_id", "target"], how="left")
        hs = rows["human_success"].fillna(False).astype(bool).to_numpy()
        rows["success"] = hs & (rows["wer"].to_numpy() <= max_wer)
        return rows
    judge = filter_judge or next(iter(world.judges))
    col = f"pred_{judge}"
    if col not in rows.columns:
        raise KeyError(f"no predictions of judge {judge!r} in the rows; loaded judges: {list(world.judges)}")
    pred = rows[col].where(rows[col].notna(), None).to_numpy(dtype=object)
    rows["success"] = is_success(pred, rows["target"].to_numpy(dtype=object), rows["wer"].to_numpy(dtype=float),
                                 max_wer)
    return rows


def identify(
    world: World,
    selector: str = "CAS",
    rate: float = DEMO_RATE,
    cap: int | None = PAPER_CAP,
    filter_judge: str | None = None,
    scope: str = "lm",
    seed: int = 0,
    n: int | None = None,
    targets: Sequence[str] = TARGET_EMOTIONS,
    max_wer: float = MAX_WER,
    human: pd.DataFrame | None = None,
) -> MaskSet:
    """Stages 1-3: identification baseline with capture -> success filter -> cap c -> P -> selector masks.

    The identification generations are made once (cached with their statistics); every (selector, r, c, judge)
    re-aggregates the stored per-sample statistics, never regenerating.
    """
    from .selection import check_method, check_rate, probabilities_from_store, select, success_sets

    check_method(selector, "identify"), check_rate(rate, "identify")  # before generating anything
    if human is not None:
        _check_human(world, human, n, targets)
    rows, store = _identification_rows(world, "evc", scope, lambda sc: baseline(
        world, "IDENTIFICATION", n=n, targets=targets, capture=True, scope=sc))
    judge = filter_judge or next(iter(world.judges))
    rows = success_frame(world, rows, judge, max_wer, human)
    all_sets = success_sets(rows, None, seed=seed, id_col="sample_id", emotions=list(targets), allow_empty=True)
    groups = _nonempty_groups(all_sets, cap, "EVC identification")
    P, emos = probabilities_from_store(store, groups)
    masks = select(P, selector, rate, seed=seed, emotions=emos)
    return MaskSet(masks=dict(zip(emos, masks)), selector=selector, rate=rate, cap=cap,
                   filter_judge="human" if human is not None else judge, scope=scope, seed=seed,
                   n_success={e: len(g) for e, g in groups.items()},
                   n_success_all={e: len(g) for e, g in all_sets.items()}, P=P, emotions=tuple(emos),
                   source=world.corpus)


def _check_human(world: World, human: pd.DataFrame, n: int | None, targets: Sequence[str]) -> None:
    """A human filter (CAS-H) must rate this world's identification conversions: checked before generating."""
    lacking = [c for c in ("utt_id", "target", "human_success") if c not in getattr(human, "columns", [])]
    if lacking:
        raise ValueError(f"human filter lacks column(s) {lacking}; pass esnlib.listening.read_filter_file(path) or "
                         "read_filter_answers(...) (utt_id, target, human_success)")
    ids = {(u.id, t) for u in world.split("IDENTIFICATION", n) for t in targets}
    rated = set(zip(human["utt_id"].astype(str), human["target"].astype(str)))
    if not ids & rated:
        raise ValueError(f"the human filter rates none of the {len(ids)} identification conversions (utt_id, e_tgt) of "
                         f"corpus {world.corpus!r}: it must come from a filter-mode listening test on this corpus's "
                         "IDENTIFICATION outputs (X.identification_clips -> listening.export_filter_test; "
                         "docs/listening_test.md)")


def identification_clips(world: World, n: int | None = None, targets: Sequence[str] = TARGET_EMOTIONS,
                         scope: str = "lm") -> pd.DataFrame:
    """The identification conversions that kept their waveform (``utt_id, target, audio_path, wer`` ...): the clips
    for a filter-mode listening test whose answers become a CAS-H filter file. Only kept waveforms can be rated:
    build the world with ``audio_per_shard=shard_size`` to keep every one (before the identification run)."""
    rows, _ = _identification_rows(world, "evc", scope, lambda sc: baseline(
        world, "IDENTIFICATION", n=n, targets=targets, capture=True, scope=sc))
    return rows[rows["audio_path"].astype(str) != ""].reset_index(drop=True)


def mask_similarity(ma: MaskSet, mb: MaskSet, sites) -> pd.DataFrame:
    """Table 5: per emotion both mask sets have, Jaccard overlap, direct match and the JSD of the layer
    distributions (``sites``: the masks' sites, e.g. ``world.sites("lm")``)."""
    from .evaluation import direct_match, jaccard, jsd, layer_distribution

    return pd.DataFrame([{"emotion": e, "jaccard": jaccard(ma.masks[e], mb.masks[e]),
                          "direct_match": direct_match(ma.masks[e], mb.masks[e]),
                          "jsd": jsd(layer_distribution(ma.masks[e], sites), layer_distribution(mb.masks[e], sites))}
                         for e in ma.masks if e in mb.masks])


def _nonempty_groups(all_sets: dict, cap: int | None, what: str) -> dict:
    """Success sets capped at c; an emotion without any success gets no mask (warned), at least two must remain."""
    import warnings

    empty = [e for e, ids in all_sets.items() if not ids]
    groups = {e: (ids[: int(cap)] if cap else ids) for e, ids in all_sets.items() if ids}
    if empty:
        warnings.warn(f"{what}: no successful sample for {empty}; these emotions get no ESN mask (raise the "
                      "identification pool or check the model/judge)")
    if len(groups) < 2:
        raise ValueError(f"{what}: only {list(groups)} have successful samples (sizes "
                         f"{ {e: len(v) for e, v in all_sets.items()} }); selectors compare emotions and need at "
                         "least two. Raise the identification pool (n_id, corpus size) or relax the filter.")
    return groups


class _SiteSlice:
    """A StatsStore view restricted to the neurons of ``sub`` sites (a subset of the store's ``full`` sites), so
    one capture over both sides serves LM-side and talker-side identification."""

    def __init__(self, store, full, sub):
        by_path = {s.path: s for s in full}
        missing = [s.path for s in sub if s.path not in by_path]
        if missing:
            raise ValueError(f"sites {missing} are not in the captured sites")
        self.store = store
        self.idx = np.concatenate([np.arange(by_path[s.path].offset, by_path[s.path].offset + s.width) for s in sub])

    def index_of(self, ids):
        return self.store.index_of(ids)

    def aggregate(self, rows):
        K, T = self.store.aggregate(rows)
        return np.asarray(K)[self.idx], np.broadcast_to(np.asarray(T), np.asarray(K).shape)[self.idx]


def _identification_rows(world: World, task: str, scope: str, run: Callable[[str], pd.DataFrame]):
    """Identification generations with capture. Models with a talker capture both sides in one pass ("both") and
    serve "lm" and "talker" from it; if the adapter cannot capture both sides, ``scope`` alone is captured."""
    if task == "evc" and world.share_capture and getattr(world.adapter, "has_talker", False) \
            and scope in ("lm", "talker"):
        try:
            rows = run("both")
            return rows, _SiteSlice(world.stats(task, "both"), world.sites("both"), world.sites(scope))
        except (NotImplementedError, ValueError, TypeError) as exc:
            import warnings

            warnings.warn(f"capturing both sides in one pass failed ({exc}); capturing {scope!r} only")
            world.share_capture = False
    return run(scope), world.stats(task, scope)


def evaluate_masks(
    world: World,
    maskset: MaskSet,
    kind: str = "steer",
    alpha: float = 1.0,
    split: str = TEST,
    n: int | None = None,
    targets: Sequence[str] = TARGET_EMOTIONS,
    mask_emotions: Sequence[str] | None = None,
    positions: str = "all",
    n_cross: int | None = None,
) -> pd.DataFrame:
    """Generate with each e_mask's ESNs intervened, for every e_tgt: rows for the e_mask x e_tgt table.

    Masks with identical indices (the random control gives one mask to every emotion) are generated once and stored
    under each e_mask (greedy decoding is deterministic, so this is the same result, cheaper). ``n_cross``: see
    :func:`evaluate_settings`.
    """
    return evaluate_settings(world, [(maskset, kind, alpha)], split, n, targets, mask_emotions, positions, n_cross)[0]


def evaluate_settings(
    world: World,
    settings: Sequence[tuple[MaskSet, str, float]],
    split: str = TEST,
    n: int | None = None,
    targets: Sequence[str] = TARGET_EMOTIONS,
    mask_emotions: Sequence[str] | None = None,
    positions: str = "all",
    n_cross: int | None = None,
) -> list[pd.DataFrame]:
    """Several ``(mask set, kind, α)`` settings on the same utterances (the selectors of Table 3, an r, c, α or kind
    sweep): one frame of :func:`evaluate_masks` rows per setting, in order.

    Every e_mask of every setting of one scope is a condition of one :func:`run_evc_conditions` pass, so they share
    ``generate`` calls (``world.rowwise``) and identical masks are generated once; the stored units and the rows are
    the same as calling ``evaluate_masks`` once per setting.

    ``n_cross`` (< ``n``): the off-diagonal cells (e_mask != e_tgt) use only the first ``n_cross`` of the ``n``
    sources (the draws are nested); the diagonal (self) cells use all ``n``. Self effects get their full power at a
    fraction of the cost; cross effects rest on ``n_cross`` sources per cell (the tables say how many pairs).
    """
    from . import Intervention

    jobs = []  # (setting, condition fields, intervention, scope)
    for i, setting in enumerate(settings):
        if not (isinstance(setting, (tuple, list)) and len(setting) == 3 and isinstance(setting[0], MaskSet)):
            raise TypeError(f"settings[{i}]: expected (MaskSet, kind, alpha), got {setting!r}")
        maskset, kind, alpha = setting
        for e_mask in (mask_emotions or list(maskset.masks)):
            if e_mask not in maskset.masks:
                raise KeyError(f"no {e_mask!r} mask in this {maskset.selector} mask set; it has {list(maskset.masks)}")
            index = np.asarray(maskset.masks[e_mask], dtype=np.int64)
            if len(index) == 0:
                raise ValueError(f"the {maskset.selector} mask of {e_mask!r} is empty; raise the rate r or the cap c")
            cond = {**maskset.condition(), "eval_split": split, "mask_emotion": e_mask, "positions": positions}
            jobs.append((i, cond, Intervention(index=index, kind=kind, alpha=alpha, positions=positions),
                         maskset.scope))
    utts = world.split(split, n)
    if n_cross is not None and not 0 < int(n_cross) <= len(utts):
        raise ValueError(f"n_cross must be in 1..n ({len(utts)} sources), got {n_cross}")
    head, tail = (utts, []) if n_cross is None else (utts[: int(n_cross)], utts[int(n_cross):])
    out: list[list[pd.DataFrame]] = [[] for _ in settings]
    for scope in dict.fromkeys(j[3] for j in jobs):
        js = [j for j in jobs if j[3] == scope]
        what = settings[js[0][0]]
        desc = (f"{what[0].selector} {what[1]} α={what[2]}" if len(settings) == 1 else f"{len(settings)} settings") \
            + f": {len(js)} conditions"
        frames = run_evc_conditions(world, head, [(j[1], j[2]) for j in js], targets, scope=scope, desc=desc)
        for j, df in zip(js, frames):
            out[j[0]].append(df)
        if tail:  # the diagonal on the remaining sources: each e_mask's own e_tgt only
            for e_mask in dict.fromkeys(j[1]["mask_emotion"] for j in js):
                if e_mask not in targets:
                    continue
                sub = [j for j in js if j[1]["mask_emotion"] == e_mask]
                frames = run_evc_conditions(world, tail, [({**j[1], "part": "self"}, j[2]) for j in sub], [e_mask],
                                            scope=scope, desc=f"{desc} (self, {e_mask})")
                for j, df in zip(sub, frames):
                    out[j[0]].append(df)
    return [pd.concat(f, ignore_index=True) for f in out]


# ------------------------------------------------------------------------------------------------------- summaries
def judge_names(rows: pd.DataFrame) -> list[str]:
    """Judges present in a frame of EVC rows (from the pred_<judge> columns)."""
    return [c[len("pred_"):] for c in rows.columns if c.startswith("pred_")]


def baseline_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 2: per e_tgt (and 'avg') the emotion match rate (%) per judge, WER (%) and naturalness, with the number
    of clips the naturalness rests on (``naturalness_n``) and a note where that is under MIN_NATURALNESS_N."""
    judges = judge_names(rows)
    out = []
    for tgt, g in list(rows.groupby("target", sort=False)) + [("avg", rows)]:
        rec = {"e_tgt": tgt, "n": len(g)}
        for j in judges:
            rec[f"match_{j} (%)"] = 100.0 * float((g[f"pred_{j}"] == g["target"]).mean())
        rec["WER (%)"] = 100.0 * float(g["wer"].mean())
        rec["naturalness"] = float(g["naturalness"].mean())  # pandas skips NaN (unscored rows)
        scored = g[g["naturalness"].notna()]
        rec["naturalness_n"], rec["naturalness_note"] = len(scored), naturalness_note(scored, "clip")
        out.append(rec)
    order = {e: i for i, e in enumerate(EMOTIONS)}
    df = pd.DataFrame(out)
    df["_o"] = df["e_tgt"].map(lambda e: order.get(e, 99))
    return df.sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)


def label_distribution(rows: pd.DataFrame) -> pd.DataFrame:
    """Predicted-label distribution (%) per judge and e_tgt (the neutral bias of Table 2's discussion)."""
    recs = []
    for j in judge_names(rows):
        for tgt, g in rows.groupby("target"):
            vc = g[f"pred_{j}"].fillna("none").value_counts(normalize=True) * 100
            for lab, pct in vc.items():
                recs.append({"judge": j, "e_tgt": tgt, "label": lab, "percent": float(pct)})
    return pd.DataFrame(recs)


def effect_tables(rows: pd.DataFrame, base: pd.DataFrame, targets: Sequence[str] = TARGET_EMOTIONS) -> dict:
    """judge -> the e_mask x e_tgt table of Δ emotion match (pp) of ``rows`` against the baseline ``base``."""
    return {j: _effect(rows, base, j, targets) for j in judge_names(rows)}


def _effect(rows, base, judge, targets):
    from .evaluation import effect_table

    cols = ["utt_id", "target", "mask_emotion", f"pred_{judge}"]
    b = base[["utt_id", "target", f"pred_{judge}"]].drop_duplicates(["utt_id", "target"])
    return effect_table(rows[cols], b, f"pred_{judge}", emotions=list(targets))


def effect_pairs(rows: pd.DataFrame, base: pd.DataFrame, judge: str) -> pd.DataFrame:
    """Intervened rows joined to the unintervened baseline of the same (source, e_tgt): one row per (source, e_tgt,
    e_mask) with match / match_base, post / post_base (the judge's posterior of e_tgt) and wer / wer_base."""
    keys = ["utt_id", "target"]
    cols = keys + [c for c in (f"pred_{judge}", f"post_{judge}", "wer") if c in base.columns]
    b = base.drop_duplicates(keys)[cols]
    m = rows.merge(b, on=keys, suffixes=("", "_b"))
    out = pd.DataFrame({"utt_id": m["utt_id"], "target": m["target"], "mask_emotion": m["mask_emotion"],
                        "match": (m[f"pred_{judge}"] == m["target"]).astype(int),
                        "match_base": (m[f"pred_{judge}_b"] == m["target"]).astype(int),
                        "wer": m["wer"], "wer_base": m["wer_b"]})
    if f"post_{judge}" in m.columns and f"post_{judge}_b" in m.columns:
        out["post"], out["post_base"] = m[f"post_{judge}"].astype(float), m[f"post_{judge}_b"].astype(float)
    return out


def summarize(rows: pd.DataFrame, base: pd.DataFrame, targets: Sequence[str] = TARGET_EMOTIONS, max_wer: float = MAX_WER,
              **labels) -> pd.DataFrame:
    """Per judge: self / cross / gap of Δ emotion match (pp) with 95 % cluster-bootstrap CIs over source utterances
    (``self_lo`` .. ``cross_hi``), ``n_pairs`` (self pairs, the diagonal) and ``n_cross_pairs``, McNemar's p of the
    self pairs, Δ posterior of e_tgt (``d_post``, pp, with CI), the self-effect on the text-preserving pairs only
    (both WERs <= ``max_wer``: ``self_textok`` with CI and ``n_textok``), plus ΔWER (fraction), Δnaturalness (with
    ``naturalness_n``, the pairs where both sides were scored, and its note) and the intervened WER (fraction).

    ``labels`` (e.g. selector="CAS", alpha=1.0) are added as columns so several summaries concatenate into a table.
    """
    from .evaluation import clustered_mean_ci, paired_effects

    keys = ["utt_id", "target"]
    rows = rows[rows["target"].isin(targets)]
    b = base.drop_duplicates(keys).set_index(keys)
    r = rows.set_index(keys)
    d_wer = float((r["wer"] - b["wer"].reindex(r.index)).mean())
    nat_pairs = (r["naturalness"] - b["naturalness"].reindex(r.index)).dropna()
    d_nat = float(nat_pairs.mean()) if len(nat_pairs) else float("nan")
    nat_note = naturalness_note(nat_pairs.reset_index(), "pair")
    recs = []
    for j in judge_names(rows):
        pairs = effect_pairs(rows, base, j)
        eff = paired_effects(pairs)
        ok = (pairs["mask_emotion"] == pairs["target"]) & (pairs["wer"] <= max_wer) & (pairs["wer_base"] <= max_wer)
        tk = clustered_mean_ci((pairs["match"] - pairs["match_base"])[ok].to_numpy(float), pairs["utt_id"][ok])
        recs.append({**labels, "judge": j, **eff, "self_textok": 100 * tk.estimate, "self_textok_lo": 100 * tk.low,
                     "self_textok_hi": 100 * tk.high, "n_textok": int(ok.sum()), "d_wer": d_wer,
                     "d_naturalness": d_nat, "naturalness_n": len(nat_pairs), "naturalness_note": nat_note,
                     "wer": float(r["wer"].mean())})
    return pd.DataFrame(recs)


def effect_ci(rows: pd.DataFrame, base: pd.DataFrame, judge: str, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Self-effect per e_tgt (rows with e_mask == e_tgt) with a paired bootstrap 95% CI over source utterances
    (pp), McNemar's p and the Δ posterior of e_tgt (pp)."""
    from .evaluation import paired_effects

    pairs = effect_pairs(rows[rows["mask_emotion"] == rows["target"]], base, judge)
    out = []
    for tgt, g in pairs.groupby("target"):
        e = paired_effects(g, n_boot=n_boot, seed=seed)
        out.append({"emotion": tgt, "delta": e["self"], "low": e["self_lo"], "high": e["self_hi"],
                    "n": e["n_pairs"], "mcnemar_p": e["mcnemar_p"], "d_post": e.get("d_post", float("nan")),
                    "d_post_lo": e.get("d_post_lo", float("nan")), "d_post_hi": e.get("d_post_hi", float("nan"))})
    return pd.DataFrame(out)


def export_rows(frames: Sequence[pd.DataFrame], name: str, figures_dir: str | Path = "figures") -> Path:
    """The tidy per-sample rows a notebook's tables were computed from, one row per (sample, judge), as
    ``<figures_dir>/tables/<name>.csv``: sample_id, utt_id (source), speaker, split, e_tgt, selector, e_mask, kind,
    alpha, r, c, judge, pred, post (posterior of e_tgt), match, wer, naturalness. Baseline rows have selector
    ``none``. Anyone can recompute every table from it. Columns carry the paper's names (``PAPER_NAMES``)."""
    P = PAPER_NAMES
    parts = []
    for df in frames:
        if df is None or df.empty:
            continue
        df = df.copy()
        for col, default in (("selector", "none"), ("mask_emotion", "none"), ("kind", "none"), ("alpha", 0.0),
                             ("rate", float("nan")), ("cap", float("nan"))):
            if col not in df.columns:
                df[col] = default
        for j in judge_names(df):
            parts.append(pd.DataFrame({
                "sample_id": df["sample_id"], "utt_id": df["utt_id"], "speaker": df["speaker"], "split": df["split"],
                P["target"]: df["target"], "selector": df["selector"].fillna("none"),
                P["mask_emotion"]: df["mask_emotion"], "kind": df["kind"], "alpha": df["alpha"],
                P["rate"]: df["rate"], P["cap"]: df["cap"], "judge": j,
                "pred": df[f"pred_{j}"], "post": df.get(f"post_{j}", pd.Series(np.nan, index=df.index)),
                "match": df[f"pred_{j}"] == df["target"], "wer": df["wer"], "naturalness": df["naturalness"]}))
    out = Path(figures_dir) / "tables" / f"{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    atomic_write_bytes(out, data.to_csv(index=False).encode())
    return out


# ------------------------------------------------------------------------------------------------ SER (notebook 08)
def run_ser(world: World, utts: Sequence[Utterance], condition: Mapping[str, Any] | None = None, intervention=None,
            capture: bool = False, scope: str = "lm", table: str = "ser", desc: str = "SER") -> pd.DataFrame:
    """Speech emotion recognition by the LALM itself (the SER paper's task), cached per shard.

    Rows: utt_id, sample_id (= utt_id), speaker, split, emotion (true label), pred (parsed label or None), correct,
    answer (the model's raw answer text).
    ``capture=True`` appends per-sample statistics to the SER StatsStore of ``scope``.
    """
    return run_ser_conditions(world, utts, [(condition, intervention)], capture=capture, scope=scope, table=table,
                              desc=desc)[0]


def run_ser_conditions(world: World, utts: Sequence[Utterance], conditions: Sequence[tuple[Mapping | None, Any]],
                       capture: bool = False, scope: str = "lm", table: str = "ser",
                       desc: str = "SER") -> list[pd.DataFrame]:
    """SER of the same utterances under several ``(condition fields, intervention)``: one :func:`run_ser` frame per
    condition; a shard's missing conditions share ``generate`` calls (row-wise edits) when ``world.rowwise``."""
    if not conditions:
        raise ValueError("run_ser_conditions needs at least one (condition, intervention) pair")
    if capture and len(conditions) != 1:
        raise ValueError("capture=True (identification) takes one condition: capture the baseline, not a sweep")
    conds0 = []
    for c, iv in conditions:
        f = _intervention_fields(iv)
        conds0.append({**world.base_condition("ser", scope), "mask_emotion": "none", "mask": f["mask"],
                       "kind": f["kind"], "alpha": f["alpha"], **(dict(c) if c else {})})
    ivs = [iv for _, iv in conditions]
    stats = world.stats("ser", scope) if capture else None
    frames: list[list[pd.DataFrame]] = [[] for _ in conditions]
    shards = _chunks(list(utts), world.shard_size * 4)
    for shard in tqdm(shards, desc=desc, disable=not world.progress or len(shards) < 2, leave=False):
        ids = [u.id for u in shard]
        conds = [{**c0, "shard": fingerprint(ids)} for c0 in conds0]
        need_stats = capture and bool(_stats_missing(stats, ids))
        todo = [k for k, c in enumerate(conds) if need_stats or not world.store.has(table, c)]
        if capture and todo:
            gens, st = world.adapter.ser(list(shard), capture=True, intervention=ivs[0], scope=scope,
                                         batch_size=world.batch_size)
            _append_missing_stats(stats, st, ids)
            per_cond = [gens]
        else:
            per_cond = per_condition(lambda k, iv: world.adapter.ser(
                list(shard) * k, intervention=iv, scope=scope, batch_size=world.batch_size), len(shard),
                [ivs[k] for k in todo], world.rowwise)
        for k, gens in zip(todo, per_cond):
            rows = [{"utt_id": u.id, "sample_id": u.id, "speaker": u.speaker, "split": u.split, "emotion": u.emotion,
                     "pred": g.label, "correct": bool(g.label == u.emotion), "answer": g.text or ""}
                    for u, g in zip(shard, gens)]
            world.store.write(table, conds[k], pd.DataFrame(rows))
        for k, c in enumerate(conds):
            frames[k].append(_read_unit(world, table, c))
    return [pd.concat(f, ignore_index=True) if f else pd.DataFrame() for f in frames]


def ser_baseline(world: World, split: str = TEST, n: int | None = None, capture: bool = False,
                 scope: str = "lm") -> pd.DataFrame:
    """Unintervened SER on every emotion of ``split`` (``n`` utterances, spread over speakers and emotions)."""
    utts = world.split(split, n, emotion=None)
    return run_ser(world, utts, {"eval_split": split}, capture=capture, scope=scope, desc=f"SER baseline {split}")


def identify_ser(world: World, selector: str = "CAS", rate: float = DEMO_RATE, cap: int | None = None,
                 scope: str = "lm", seed: int = 0, n: int | None = None, split: str = "IDENTIFICATION") -> MaskSet:
    """SER-side identification: success = the LALM recognizes the true emotion; S_e = correctly recognized
    utterances of emotion e (capped at c); P over the LALM's labels; masks per emotion."""
    from .selection import check_method, check_rate, probabilities_from_store, select, success_sets

    check_method(selector, "identify_ser"), check_rate(rate, "identify_ser")  # before generating anything
    rows, store = _identification_rows(world, "ser", scope, lambda sc: ser_baseline(
        world, split, n=n, capture=True, scope=sc))
    rows = rows.assign(target=rows["emotion"], success=rows["correct"])
    labels = [e for e in getattr(world.adapter, "labels", EMOTIONS) if (rows["emotion"] == e).any()]
    all_sets = success_sets(rows, None, seed=seed, id_col="sample_id", emotions=labels, allow_empty=True)
    groups = _nonempty_groups(all_sets, cap, "SER identification")
    P, emos = probabilities_from_store(store, groups)
    masks = select(P, selector, rate, seed=seed, emotions=emos)
    return MaskSet(masks=dict(zip(emos, masks)), selector=selector, rate=rate, cap=cap, filter_judge="self-ser",
                   scope=scope, seed=seed, n_success={e: len(g) for e, g in groups.items()},
                   n_success_all={e: len(g) for e, g in all_sets.items()}, P=P, emotions=tuple(emos),
                   source=world.corpus)


def ser_effects(world: World, maskset: MaskSet, kind: str = "deactivate", alpha: float = 0.0,
                split: str = TEST, n: int | None = None) -> pd.DataFrame:
    """SER with each emotion's mask intervened on every test utterance: rows with mask_emotion (the masks share
    generate calls, one edit per batch row, when ``world.rowwise``)."""
    from . import Intervention

    utts = world.split(split, n, emotion=None)
    conditions = [({**maskset.condition(), "eval_split": split, "mask_emotion": e_mask},
                   Intervention(index=np.asarray(index, dtype=np.int64), kind=kind, alpha=alpha))
                  for e_mask, index in maskset.masks.items()]
    return pd.concat(run_ser_conditions(world, utts, conditions, scope=maskset.scope,
                                        desc=f"SER {kind} α={alpha}: {len(conditions)} masks"), ignore_index=True)


def ser_effect_table(rows: pd.DataFrame, base: pd.DataFrame, measure: str = "accuracy") -> pd.DataFrame:
    """e_mask x true-emotion table (pp) against the SER baseline on the same utterances.

    measure="accuracy": Δ recall of each true emotion (deactivation: self cells should drop most).
    measure="predicted": Δ share of items predicted as e_mask (amplification: self-steering toward e_mask).
    """
    b = base.drop_duplicates("utt_id").set_index("utt_id")
    recs = []
    for e_mask, g in rows.groupby("mask_emotion"):
        g = g.set_index("utt_id")
        bb = b.reindex(g.index)
        for emo, gg in g.groupby("emotion"):
            idx = gg.index
            if measure == "accuracy":
                d = (gg["pred"] == emo).mean() - (bb.loc[idx, "pred"] == emo).mean()
            elif measure == "predicted":
                d = (gg["pred"] == e_mask).mean() - (bb.loc[idx, "pred"] == e_mask).mean()
            else:
                raise ValueError(f"measure must be 'accuracy' or 'predicted', got {measure!r}")
            recs.append({"e_mask": e_mask, "emotion": emo, "delta": 100.0 * float(d)})
    t = pd.DataFrame(recs).pivot(index="e_mask", columns="emotion", values="delta")
    order = [e for e in EMOTIONS if e in t.index] + [e for e in t.index if e not in EMOTIONS]
    cols = [e for e in EMOTIONS if e in t.columns] + [e for e in t.columns if e not in EMOTIONS]
    return t.reindex(index=order, columns=cols)


def ser_effect_ci(rows: pd.DataFrame, base: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The long companion of :func:`ser_effect_table` (accuracy): per (e_mask, true emotion) Δ recall (pp) with a
    paired bootstrap 95 % CI over items, n and McNemar's p."""
    from .evaluation import clustered_mean_ci, mcnemar_p

    b = base.drop_duplicates("utt_id").set_index("utt_id")
    recs = []
    for (e_mask, emo), g in rows.groupby(["mask_emotion", "emotion"]):
        t = (g["pred"] == emo).to_numpy()
        bb = (b.loc[g["utt_id"], "pred"] == emo).to_numpy()
        ci = clustered_mean_ci(t.astype(float) - bb, g["utt_id"].to_numpy(), n_boot, seed=seed)
        recs.append({"e_mask": e_mask, "emotion": emo, "delta": 100 * ci.estimate, "low": 100 * ci.low,
                     "high": 100 * ci.high, "n": len(g), "mcnemar_p": mcnemar_p(t, bb)})
    return pd.DataFrame(recs)


def ser_self_other(rows: pd.DataFrame, base: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean Δ recall (pp) of each mask's own emotion ("self", items whose true emotion is e_mask) and of the other
    emotions ("other"), with 95 % cluster-bootstrap CIs over items."""
    from .evaluation import clustered_mean_ci

    b = base.drop_duplicates("utt_id").set_index("utt_id")
    d = (rows["pred"] == rows["emotion"]).astype(float).to_numpy() - \
        (b.loc[rows["utt_id"], "pred"].to_numpy() == rows["emotion"].to_numpy()).astype(float)
    own = (rows["mask_emotion"] == rows["emotion"]).to_numpy()
    out = {}
    for name, sel in (("self", own), ("other", ~own)):
        ci = clustered_mean_ci(d[sel], rows["utt_id"].to_numpy()[sel], n_boot, seed=seed)
        out.update({name: 100 * ci.estimate, f"{name}_lo": 100 * ci.low, f"{name}_hi": 100 * ci.high,
                    f"n_{name}": int(sel.sum())})
    return out


def ser_label_free(world: World, maskset: MaskSet, base: pd.DataFrame, per_mask: pd.DataFrame,
                   kind: str = "deactivate", alpha: float = 0.0, split: str = TEST,
                   n: int | None = None) -> pd.DataFrame:
    """Label-free application of SER masks at test time (this project's reading of the SER paper's strategies).

    - ``oracle``: the mask of the true emotion (needs the label; the reference point).
    - ``2pass``: pass 1 without intervention predicts ê; pass 2 applies the mask of ê.
    - ``mix``: the expectation over a uniformly chosen mask: every mask applied to every item (``per_mask``, from
      :func:`ser_effects`), accuracy averaged over masks.
    - ``union``: one pass with the union of all emotions' masks.
    Returns per strategy and true emotion the accuracy (%) and its change against the baseline (pp).
    """
    from . import Intervention

    utts = {u.id: u for u in world.split(split, n, emotion=None)}
    b = base.drop_duplicates("utt_id").set_index("utt_id")
    out = []

    def acc_rows(name, df):
        for emo, g in df.groupby("emotion"):
            base_acc = float((b.loc[g["utt_id"], "pred"].to_numpy() == emo).mean())
            out.append({"strategy": name, "emotion": emo, "accuracy": 100 * float(g["correct"].mean()),
                        "delta": 100 * (float(g["correct"].mean()) - base_acc), "n": len(g)})

    oracle = per_mask[per_mask["mask_emotion"] == per_mask["emotion"]]
    acc_rows("oracle", oracle)
    # 2-pass: pass-1 predictions are the baseline rows; items predicted as a label with no mask stay unintervened
    parts = []
    for e_hat, g in b.loc[list(utts)].groupby("pred", dropna=False):
        ids = list(g.index)
        if isinstance(e_hat, str) and e_hat in maskset.masks:
            sel = per_mask[(per_mask["mask_emotion"] == e_hat) & per_mask["utt_id"].isin(ids)]
            parts.append(sel)
        else:
            parts.append(base[base["utt_id"].isin(ids)])
    acc_rows("2pass", pd.concat(parts, ignore_index=True))
    mix = per_mask.groupby(["utt_id", "emotion"], as_index=False)["correct"].mean()
    acc_rows("mix", mix)
    union = np.unique(np.concatenate([np.asarray(m) for m in maskset.masks.values()]))
    iv = Intervention(index=union.astype(np.int64), kind=kind, alpha=alpha)
    urows = run_ser(world, list(utts.values()), {**maskset.condition(), "eval_split": split, "mask_emotion": "union"},
                    intervention=iv, scope=maskset.scope, desc="SER union")
    acc_rows("union", urows)
    return pd.DataFrame(out)


def ser_transfer(world: World, masksets: Mapping[str, MaskSet], base: pd.DataFrame, kind: str = "deactivate",
                 alpha: float = 0.0, split: str = TEST, n: int | None = None, n_boot: int = 2000,
                 seed: int = 0) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Cross-corpus transfer (the SER paper): each mask set (label -> MaskSet, e.g. identified on corpus A and on
    ``world``'s own corpus) intervened on ``world``'s ``split`` items. Returns one summary row per mask set —
    Δ recall of each mask's own emotion (``self``) and of the other emotions (``other``), pp, with 95 %
    cluster-bootstrap CIs over items and their n — and the per-cell rows (label -> :func:`ser_effect_ci` frame).
    ``base``: the unintervened SER rows of the same items (:func:`ser_baseline`)."""
    out, cells = [], {}
    for label, ms in masksets.items():
        rows = ser_effects(world, ms, kind=kind, alpha=alpha, split=split, n=n)
        so = ser_self_other(rows, base, n_boot=n_boot, seed=seed)
        out.append({"masks": label, "identified_on": ms.source, "applied_to": world.corpus, "kind": kind,
                    "alpha": float(alpha), **so, "n_items": int(rows["utt_id"].nunique())})
        cells[label] = ser_effect_ci(rows, base, n_boot=n_boot, seed=seed).assign(masks=label)
    return pd.DataFrame(out), cells


# ------------------------------------------------------------------------------------ selector validity (notebook 09)
def emotion_score(prosody: Mapping[str, float], emotion: str) -> float:
    """How far a rendered prosody lies along the neutral -> ``emotion`` profile direction (0 = neutral, 1 = the
    full profile), fields standardized by the corpus jitter (``tts.to_vector``). A continuous stand-in for "probability
    of the target emotion" that needs no judge (demo world only: the demo talker's prosody)."""
    from . import tts

    d = tts.to_vector(tts.PROFILES[emotion]).astype(float)
    return float(tts.to_vector(prosody) @ d / (d @ d))


def _prosody_of(g) -> dict:
    pros = (g.extra or {}).get("prosody")
    if pros is None:
        raise ValueError("selector validity needs the demo talker's prosody (Generation.extra['prosody']); this "
                         "model does not expose it — notebook 09 runs on the demo LALM only")
    return pros if isinstance(pros, dict) else pros.as_dict()


def causal_effects(world: World, candidates: Sequence[int], targets: Sequence[str] = TARGET_EMOTIONS,
                   split: str = "DEVELOPMENT", n: int = 8, kind: str = "deactivate", alpha: float = 0.0,
                   scope: str = "lm") -> pd.DataFrame:
    """Per-neuron causal effect on the demo model: ablate each candidate neuron alone and measure the drop in
    :func:`emotion_score` of the talker's prosody for each instructed e_tgt, against the unintervened run.

    Returns rows neuron, e_tgt, effect (mean over the ``n`` utterances of score(base) - score(ablated); positive =
    the neuron supports that emotion). Cached in the store (table "causal") one unit per neuron.
    """
    from . import Intervention

    utts = world.split(split, n)
    src = [u for u in utts for _ in targets]
    tgt = [t for _ in utts for t in targets]
    cond0 = {**world.base_condition("evc-causal", scope), "eval_split": split, "n": len(utts),
             "utts": fingerprint([u.id for u in utts]), "targets": ",".join(targets), "kind": kind,
             "alpha": float(alpha)}

    def run(index):
        cond = {**cond0, "neuron": int(index) if index is not None else -1}
        if world.store.has("causal", cond):
            return _read_unit(world, "causal", cond)
        iv = None if index is None else Intervention(index=np.array([index], dtype=np.int64), kind=kind, alpha=alpha)
        gens = world.adapter.evc(src, tgt, intervention=iv, scope=scope, batch_size=world.batch_size)
        df = pd.DataFrame({"utt_id": [u.id for u in src], "target": tgt,
                           "score": [emotion_score(_prosody_of(g), t) for g, t in zip(gens, tgt)]})
        world.store.write("causal", cond, df)
        return _read_unit(world, "causal", cond)

    base = run(None).set_index(["utt_id", "target"])["score"]
    recs = []
    for idx in tqdm(list(candidates), desc="ablating candidates", disable=not world.progress):
        s = run(int(idx)).set_index(["utt_id", "target"])["score"]
        d = (base - s.reindex(base.index)).groupby(level="target").mean()
        for t in targets:
            recs.append({"neuron": int(idx), "e_tgt": t, "effect": float(d[t])})
    return pd.DataFrame(recs)


def selector_validity(P: np.ndarray, emotions: Sequence[str], causal: pd.DataFrame, rate: float = DEMO_RATE,
                      selectors: Sequence[str] = SELECTORS, seed: int = 0) -> pd.DataFrame:
    """Precision@N_sel and Spearman ρ of each selector's ranking against the measured causal effects.

    Over the candidate neurons of ``causal``: the causal top set of e = the N_sel candidates with the largest effect
    on e (N_sel = the selector's own mask size for e, capped by the number of candidates); precision@N_sel = share
    of the selector's mask (restricted to candidates) inside it, ties split evenly; ``chance`` = the precision of a
    random pick; ρ = Spearman correlation between the selector's score and the effect over all candidates (-inf
    scores tie at the bottom; NaN when either side is constant).
    """
    from scipy.stats import spearmanr

    from .selection import select

    cand = np.array(sorted(causal["neuron"].unique()), dtype=np.int64)
    recs = []
    for sel in selectors:
        scores = selector_scores(P, sel, rate, seed)
        masks = select(P, sel, rate, seed=seed)
        for e_i, e in enumerate(emotions):
            eff = causal[causal["e_tgt"] == e].set_index("neuron")["effect"].reindex(cand).to_numpy()
            sc = scores[e_i, cand]
            sc = np.where(np.isfinite(sc), sc, np.nanmin(np.where(np.isfinite(sc), sc, np.nan)) - 1
                          if np.isfinite(sc).any() else 0.0)
            in_mask = np.isin(cand, masks[e_i])
            k = int(in_mask.sum())
            prec = _precision_with_ties(eff, in_mask) if k else float("nan")
            rho = float(spearmanr(sc, eff).statistic) if np.ptp(sc) > 0 and np.ptp(eff) > 0 else float("nan")
            recs.append({"selector": sel, "emotion": e, "n_in_candidates": k, "precision": prec,
                         "chance": k / len(cand), "spearman": rho,
                         "mean_effect_of_mask": float(np.mean(eff[in_mask])) if k else float("nan")})
    return pd.DataFrame(recs)


def _precision_with_ties(eff: np.ndarray, in_mask: np.ndarray) -> float:
    """Share of the mask inside the causal top-k (k = mask size), ties at the k-th value split evenly (the expected
    precision under random tie-breaking: all-equal effects give the chance level k / n, not an artefact of order)."""
    k = int(in_mask.sum())
    order = np.sort(eff)[::-1]
    theta = order[k - 1]
    above = eff > theta
    at = eff == theta
    slots = k - int(above.sum())
    credit = above[in_mask].sum() + at[in_mask].sum() * (slots / at.sum())
    return float(credit / k)


def candidate_neurons(P: np.ndarray, rate: float = DEMO_RATE, selectors: Sequence[str] = SELECTORS,
                      n_random: int = 0, seed: int = 0, per_emotion: int | None = None) -> np.ndarray:
    """The union of every selector's masks (optionally only the ``per_emotion`` top-scored of each) plus
    ``n_random`` uniformly drawn neurons, so the candidate pool is not made only of selector picks."""
    from .selection import select

    picks = []
    for sel in selectors:
        if sel == "random":
            continue
        if per_emotion is None:
            picks += [np.asarray(m) for m in select(P, sel, rate, seed=seed)]
        else:
            sc = selector_scores(P, sel, rate, seed)
            for row in sc:
                fin = np.nonzero(np.isfinite(row))[0]
                picks.append(fin[np.argsort(-row[fin], kind="stable")[:per_emotion]])
    cand = np.unique(np.concatenate(picks)) if picks else np.array([], dtype=np.int64)
    if n_random:
        rng = np.random.default_rng(seed + 1)
        rest = np.setdiff1d(np.arange(P.shape[1]), cand)
        cand = np.union1d(cand, rng.choice(rest, size=min(n_random, len(rest)), replace=False))
    return cand.astype(np.int64)


# ------------------------------------------------------------------------------------------------ notebook helpers
def defaults(smoke: bool = False) -> dict:
    """Sizes of the notebooks' runs. Full: sized so that the headline conditions (baseline, CAS and random at the
    default r, c, α, the α sweep, deactivation) have ``n_eval`` x 4 = 320 self pairs on the diagonal, the other
    conditions ``n_sweep`` sources per cell. Naturalness (DNSMOS, ~0.2 s of CPU per clip) scores the first 16
    samples of every shard (a quarter of a 16-source, 4-target shard; all of a self-only shard), which keeps
    ``make paper`` near 30 minutes on 2 CPU cores; the tables give the n behind every naturalness value. Smoke: tiny,
    for tests (every figure still drawn, sweeps shortened to two points)."""
    if smoke:
        return {"n_id": None, "n_eval": 2, "n_cross": 1, "n_sweep": 1, "n_ser": 10, "n_causal": 1, "n_candidates": 6,
                "corpus_n_utts": 7, "second_corpus_n_utts": 7, "shard_size": 8, "batch_size": 16,
                "naturalness_per_shard": None, "paper_rates": (PAPER_RATES[0], PAPER_RATE), "caps": (10, PAPER_CAP),
                "alphas": (0.5, DEMO_ALPHA), "talker_selectors": ("CAS",)}
    return {"n_id": None, "n_eval": 80, "n_cross": 8, "n_sweep": 8, "n_ser": 100, "n_causal": 2,
            "n_candidates": 40, "corpus_n_utts": None, "second_corpus_n_utts": 40, "shard_size": 16,
            "batch_size": 64, "naturalness_per_shard": 16, "paper_rates": PAPER_RATES, "caps": CAPS,
            "alphas": DEMO_ALPHAS, "talker_selectors": SELECTORS}


def save_table(df: pd.DataFrame, name: str, figures_dir: str | Path = "figures", latex: bool = True,
               float_format: str = "%.4g") -> list[Path]:
    """Write a result table as CSV (full precision: it is data) and LaTeX (``float_format``, 4 significant
    digits so small rates such as r = 0.004 survive) under ``<figures_dir>/tables/``."""
    out = Path(figures_dir) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.csv"]
    df.to_csv(paths[0])
    if latex:
        paths.append(out / f"{name}.tex")
        paths[-1].write_text(df.to_latex(float_format=lambda v: float_format % v, na_rep="--"), encoding="utf-8")
    return paths


def audio_pairs(base: pd.DataFrame, rows: pd.DataFrame, k: int = 2, self_only: bool = True) -> pd.DataFrame:
    """Up to ``k`` (baseline, intervened) sample pairs that both kept their waveform, for listening in notebooks."""
    b = base[base["audio_path"].astype(str) != ""][["sample_id", "target", "hyp", "audio_path"]]
    r = rows[rows["audio_path"].astype(str) != ""]
    if self_only and "mask_emotion" in r.columns:
        r = r[r["mask_emotion"] == r["target"]]
    m = r[["sample_id", "mask_emotion", "hyp", "audio_path"]].merge(b, on="sample_id", suffixes=("", "_base"))
    return m.drop_duplicates("sample_id").head(k).reset_index(drop=True)
