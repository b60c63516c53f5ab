"""The world every step works in: the model adapter, the corpus with its Table 1 split, the judges and the stores.

Why one module: everything that identifies *where* a result comes from lives here, so a newcomer finds how a run is
set up (:func:`load_world`, :func:`load_corpus`, :func:`with_corpus`, :func:`second_demo_world`), where its files go
(:func:`run_dirs`) and how conditions are fingerprinted (:func:`fingerprint`, ``World.base_condition``) in one
place. The paper's identification defaults (r, c, α) and the notebooks' run sizes (:func:`defaults`) are here too.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .constants import EMOTIONS, POOLED_SPLITS, SPLITS
from .corpora.base import CorpusError, Utterance
from .edits import EDIT_KINDS

#: the paper's identification defaults (EVC paper, section 5.2): c = 50, r = 0.5 %, steering with α = 1.0
PAPER_RATE = 0.005
PAPER_CAP = 50
PAPER_ALPHA = 1.0
#: The demo LALM's thinker (SmolLM2-135M, 30 x 1,536 = 46,080 gate neurons; Qwen2.5-Omni-7B: 530k) uses twice the
#: paper's rate, r = 1 % (460 neurons per emotion). Chosen on the DEVELOPMENT split (never on TEST) with an earlier
#: demo model (docs/demo_world.md has the table): at r = 0.5 % the self effect of α = 1 was +3.8 / +4.4 pp (CIs
#: touching 0), at r = 1 % it was +6.9 / +7.5 pp with ΔWER +10 pp.
RATE_SCALE = 2.0
DEMO_RATE = PAPER_RATE * RATE_SCALE
#: α on the demo LALM: the paper's 1. (α = 2 with answer-only statistics, chosen on DEVELOPMENT in the seventh round,
#: was withdrawn in the eighth: its effect came from a closing-quote token the answer did not stop at; with the stop
#: fixed, α = 0.5 / 1 / 2 / 4 gave 0.0 / +1.3 / 0.0 / -6.3 pp on DEVELOPMENT; docs/demo_world.md.)
DEMO_ALPHA = 1.0
PAPER_RATES = (0.001, 0.003, 0.005, 0.010)
DEMO_RATES = tuple(r * RATE_SCALE for r in PAPER_RATES)
CAPS = (10, 20, 50, 100)
ALPHAS = (0.3, 0.5, 1.0, 2.0)
#: the α sweep on the demo LALM: the paper's 0.5, 1 and 2 (its 0.3 left out to fit the CPU budget), and 4. The paper's
#: sweep ends where content breaks (α = 2: WER +185 pp); on the demo α = 2 costs +6 pp of WER and α = 4 is where the
#: text breaks (+31 pp on DEVELOPMENT, ninth round), so the sweep reaches it (added 2026-12-02; docs/demo_world.md).
DEMO_ALPHAS = (0.5, 1.0, 2.0, 4.0)
#: method-specific strengths for Figure 6 (the paper picks α per kind to keep strength roughly comparable): each kind's
#: default α in the edit-kind table (steer 1.0, add 0.5, clamp 0.5, deactivate 0.0)
KIND_ALPHAS = {name: k.default_alpha for name, k in EDIT_KINDS.items()}
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
            positions = getattr(self.adapter, "stat_positions", lambda task: "all")(task)  # ModelAdapter's, or "all"
            if positions != "all":  # other statistics of the same generations
                cond["stat_positions"] = positions
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
    naturalness: str | None = "dnsmos-p808",
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
    """A judge by name through ``esnlib.judges.registry`` (demo: prosody, spectral, dnsmos-p808, dnsmos)."""
    from .judges.registry import load_judge

    return load_judge(name)


def defaults(smoke: bool = False) -> dict:
    """Sizes of the notebooks' runs. Full: sized so that the headline conditions (baseline, CAS and random at the
    default r, c, α, the α sweep, deactivation) have ``n_eval`` x 4 = 320 self pairs on the diagonal, the other
    conditions ``n_sweep`` sources per cell. Naturalness (DNSMOS P.808, ~0.015 s of CPU a clip) scores every
    sample (``naturalness_per_shard`` None); the tables give the n behind every naturalness value. SER (notebook
    08): ``n_ser`` pooled TEST items (80 per emotion) for corpus A's deactivation, amplification and label-free
    tables — with 100 items the deactivation CI was 18 pp wide and contained 0 (docs/notebooks.md) —, and
    ``n_ser_transfer`` items of corpus B for the cross-dataset transfer (a secondary table). Smoke: tiny,
    for tests (every figure still drawn, sweeps shortened to two points)."""
    if smoke:
        return {"n_id": None, "n_eval": 2, "n_cross": 1, "n_sweep": 1, "n_ser": 10, "n_ser_transfer": 10, "n_causal": 1,
                "n_candidates": 6, "corpus_n_utts": 7, "second_corpus_n_utts": 7, "shard_size": 8, "batch_size": 16,
                "naturalness_per_shard": None, "paper_rates": (PAPER_RATES[0], PAPER_RATE), "caps": (10, PAPER_CAP),
                "alphas": (0.5, DEMO_ALPHA), "talker_selectors": ("CAS",)}
    return {"n_id": None, "n_eval": 80, "n_cross": 8, "n_sweep": 8, "n_ser": 400, "n_ser_transfer": 100,
            "n_causal": 2, "n_candidates": 40, "corpus_n_utts": None, "second_corpus_n_utts": 40, "shard_size": 16,
            "batch_size": 64, "naturalness_per_shard": None, "paper_rates": PAPER_RATES, "caps": CAPS,
            "alphas": DEMO_ALPHAS, "talker_selectors": SELECTORS}
