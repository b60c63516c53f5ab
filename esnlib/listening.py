"""Human listening tests (EVC paper, section 5.4): blind A/B preference pages, a human filtering pass, and analysis.

Two kinds of static page, both written by this module into a folder that opens from ``file://`` with no network:

* A/B mode (:func:`export_ab_test`): per trial, one baseline clip and one intervened clip of the same source utterance
  and instruction; the rater picks the clip that better matches the target emotion, or "No difference"
  (the paper's win/tie/loss protocol behind Figure 8).
* filter mode (:func:`export_filter_test`): per clip, "does this clip sound <emotion>?" yes/no; the majority vote is
  the human success set used to build CAS-H masks (:func:`read_filter_answers`).

Layout written by an export::

    out_dir/
      key.json        the answer key (which clip is baseline/intervened, utt_id, condition fields); never shipped
      page/           the self-contained folder to send to raters (zip it)
        index.html app.js style.css
        data.js       opaque ids + target emotion only, embedded as JS (file:// forbids fetch() of local JSON)
        pairs.json    the same content as data.js, for tools
        audio/<opaque-id>.wav   loudness-normalized 16 kHz mono, names carry no model or condition

Blinding: the page sees only opaque ids; the order of the two clips inside ``data.js`` is itself randomized at
export, and each rater's trial order and A/B sides are shuffled in the browser by a seeded PRNG keyed by
``(page seed, rater id)``; :func:`shown_order` is the Python mirror used to verify answer files.

Attention checks: in A/B mode a check trial plays the *same* clip twice (two opaque copies of one baseline clip), so
the correct answer is "No difference"; picking A or B fails it. In filter mode a check repeats a clip under a second
opaque id; giving it two different answers fails it. Failed checks are flagged per rater (column ``rater_flagged``).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = "esnlib-listening-answers"
ASSETS = Path(__file__).parent / "assets" / "listening"
AB_CHOICES = ("A", "B", "tie")
FILTER_CHOICES = ("yes", "no")
_M32 = 0xFFFFFFFF


class ListeningError(ValueError):
    """An export input or an answers file is malformed or belongs to another test; the message names file and fix."""


@dataclass(frozen=True)
class ListeningExport:
    """Where an export went: ``page_dir`` is what raters get, ``key_dir`` (holding key.json) stays with you."""

    key_dir: Path
    page_dir: Path
    test_id: str
    mode: str
    n_items: int

    @property
    def index_html(self) -> Path:
        return self.page_dir / "index.html"


# --------------------------------------------------------------------------------------------------------------
# seeded order (mirrors app.js exactly)


def _fnv1a(text: str) -> int:
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & _M32
    return h


def _mulberry32(seed: int):
    a = seed & _M32

    def rnd() -> float:
        nonlocal a
        a = (a + 0x6D2B79F5) & _M32
        t = ((a ^ (a >> 15)) * (1 | a)) & _M32
        t = ((t + (((t ^ (t >> 7)) * (61 | t)) & _M32)) & _M32) ^ t
        return ((t ^ (t >> 14)) & _M32) / 4294967296.0

    return rnd


def shown_order(seed: int, rater_id: str, items: list[dict]) -> list[dict]:
    """The trial order and sides one rater sees: ``[{"item": id, "clips": [clip shown first (A), second (B)]}]``.

    ``items`` are the page's items (``data.js`` order). Mirrors ``order()`` in app.js: FNV-1a of
    ``f"{seed}|{rater_id}"`` seeds mulberry32, a Fisher-Yates shuffle sets the order, then one draw per position
    swaps the two clips (A/B mode only).
    """
    rnd = _mulberry32(_fnv1a(f"{int(seed)}|{rater_id}"))
    idx = list(range(len(items)))
    for i in range(len(idx) - 1, 0, -1):
        j = int(rnd() * (i + 1))
        idx[i], idx[j] = idx[j], idx[i]
    out = []
    for k in idx:
        clips = list(items[k]["clips"])
        if len(clips) == 2 and rnd() < 0.5:
            clips = clips[::-1]
        out.append({"item": items[k]["id"], "clips": clips})
    return out


# --------------------------------------------------------------------------------------------------------------
# export


def _require_columns(df: pd.DataFrame, cols: tuple[str, ...], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ListeningError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ListeningError(f"{what} lacks column(s) {missing}; it needs {list(cols)} (one row per item)")
    if df.empty:
        raise ListeningError(f"{what} is empty; pass at least one row per target emotion")


def _balanced(df: pd.DataFrame, n_per_emotion: int | None, rng: np.random.Generator, what: str) -> pd.DataFrame:
    counts = df["target"].value_counts()
    n = int(counts.min()) if n_per_emotion is None else int(n_per_emotion)
    if n < 1:
        raise ListeningError(f"n_per_emotion must be >= 1, got {n_per_emotion}")
    short = {str(e): int(c) for e, c in counts.items() if c < n}
    if short:
        raise ListeningError(
            f"{what} has too few rows for a balanced test of {n} per emotion: {short}; lower n_per_emotion or "
            f"generate more items for those emotions"
        )
    parts = []
    for emo in sorted(counts.index):
        sub = df[df["target"] == emo]
        parts.append(sub.iloc[np.sort(rng.choice(len(sub), size=n, replace=False))])
    return pd.concat(parts, ignore_index=True)


def _opaque(rng: np.random.Generator, used: set[str], prefix: str) -> str:
    while True:
        s = prefix + "".join(f"{b:02x}" for b in rng.integers(0, 256, size=5))
        if s not in used:
            used.add(s)
            return s


def _write_clip(src, dst: Path, loudness_dbfs: float) -> float:
    from .audio import load_wav, loudness_normalize, rms_dbfs, save_wav
    from .corpora.base import CorpusError

    try:
        wav = load_wav(src)
    except CorpusError as e:
        raise ListeningError(f"cannot export clip {src}: {e}") from e
    if not np.isfinite(rms_dbfs(wav)):
        warnings.warn(f"clip {src} is silent; exported unchanged (it cannot be loudness-normalized)", stacklevel=3)
    save_wav(dst, loudness_normalize(wav, loudness_dbfs))
    return rms_dbfs(wav)


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, Path):
        return str(v)
    return v


def _write_page(out_dir: Path, page_data: dict, key: dict) -> ListeningExport:
    page = out_dir / "page"
    for name in ("index.html", "app.js", "style.css"):
        shutil.copyfile(ASSETS / name, page / name)
    blob = json.dumps(page_data, indent=1, sort_keys=True)
    (page / "pairs.json").write_text(blob + "\n")
    (page / "data.js").write_text(f"// generated by esnlib.listening; opaque ids only\nwindow.ESN_TEST = {blob};\n")
    (out_dir / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True, default=_jsonable) + "\n")
    return ListeningExport(out_dir, page, page_data["test_id"], page_data["mode"], len(page_data["items"]))


def _prepare_out(out_dir) -> Path:
    out_dir = Path(out_dir)
    if (out_dir / "key.json").exists() or (out_dir / "page").exists():
        raise ListeningError(
            f"{out_dir} already holds a listening test (key.json/page); pick a new folder so answers already "
            f"collected for the old test keep matching their key"
        )
    (out_dir / "page" / "audio").mkdir(parents=True, exist_ok=True)
    return out_dir


def _test_id(mode: str, seed: int, rows: list[tuple]) -> str:
    h = hashlib.sha1(json.dumps([mode, int(seed), rows], default=str).encode()).hexdigest()[:10]
    return f"{mode}-{h}"


def export_ab_test(
    pairs: pd.DataFrame,
    out_dir,
    n_per_emotion: int | None = 25,
    seed: int = 0,
    attention_checks: int = 2,
    loudness_dbfs: float = -23.0,
    title: str = "Which clip sounds more like the emotion?",
) -> ListeningExport:
    """Write a blind A/B page: baseline vs intervened clip per pair, balanced to ``n_per_emotion`` pairs per target.

    ``pairs``: one row per pair with ``pair_id, target, utt_id, audio_a_path`` (baseline wav),
    ``audio_b_path`` (intervened wav) and any condition fields (selector, alpha, ...), which go to key.json only.
    ``n_per_emotion=None`` uses the smallest per-emotion count. ``attention_checks`` same-clip-twice trials are added.
    """
    from .progress import tqdm

    _require_columns(pairs, ("pair_id", "target", "utt_id", "audio_a_path", "audio_b_path"), "pairs")
    if pairs["pair_id"].duplicated().any():
        dup = pairs.loc[pairs["pair_id"].duplicated(), "pair_id"].tolist()[:5]
        raise ListeningError(f"pairs has duplicate pair_id values {dup}; give every pair a unique id")
    if attention_checks < 0:
        raise ListeningError(f"attention_checks must be >= 0, got {attention_checks}")
    rng = np.random.default_rng(seed)
    sel = _balanced(pairs.reset_index(drop=True), n_per_emotion, rng, "pairs")
    out_dir = _prepare_out(out_dir)
    used: set[str] = set()
    items, key_items = [], {}
    cond_cols = [c for c in sel.columns if c not in ("audio_a_path", "audio_b_path")]
    for row in tqdm(sel.to_dict("records"), desc="export A/B pairs", leave=False):
        iid = _opaque(rng, used, "p")
        cb, ci = _opaque(rng, used, "c"), _opaque(rng, used, "c")
        lb = _write_clip(row["audio_a_path"], out_dir / "page" / "audio" / f"{cb}.wav", loudness_dbfs)
        li = _write_clip(row["audio_b_path"], out_dir / "page" / "audio" / f"{ci}.wav", loudness_dbfs)
        clips = [cb, ci] if rng.random() < 0.5 else [ci, cb]
        items.append({"id": iid, "target": str(row["target"]), "clips": clips})
        key_items[iid] = {
            "item_kind": "pair", "baseline": cb, "intervened": ci,
            "source_baseline": str(row["audio_a_path"]), "source_intervened": str(row["audio_b_path"]),
            "level_dbfs_baseline": lb, "level_dbfs_intervened": li,
            "condition": {c: _jsonable(row[c]) for c in cond_cols},
        }
    for k in range(attention_checks):
        row = sel.iloc[int(rng.integers(len(sel)))]
        iid, c1, c2 = _opaque(rng, used, "p"), _opaque(rng, used, "c"), _opaque(rng, used, "c")
        for c in (c1, c2):
            _write_clip(row["audio_a_path"], out_dir / "page" / "audio" / f"{c}.wav", loudness_dbfs)
        items.append({"id": iid, "target": str(row["target"]), "clips": [c1, c2]})
        key_items[iid] = {"item_kind": "check", "check": "same_clip", "expected": "tie", "source": str(row["audio_a_path"]),
                          "condition": {"target": str(row["target"]), "utt_id": _jsonable(row["utt_id"])}}
    perm = rng.permutation(len(items))  # data.js order must not reveal which items are checks
    items = [items[i] for i in perm]
    test_id = _test_id("ab", seed, sorted((str(r["pair_id"]), str(r["audio_a_path"]), str(r["audio_b_path"]))
                                          for r in sel.to_dict("records")))
    page_data = {"format": "esnlib-listening-test", "version": 1, "mode": "ab", "test_id": test_id, "seed": int(seed),
                 "title": title, "items": items}
    key = {"format": "esnlib-listening-key", "version": 1, "mode": "ab", "test_id": test_id, "seed": int(seed),
           "loudness_dbfs": float(loudness_dbfs), "n_per_emotion": int(sel["target"].value_counts().min()),
           "items": key_items}
    return _write_page(out_dir, page_data, key)


def export_filter_test(
    clips: pd.DataFrame,
    out_dir,
    n_per_emotion: int | None = None,
    seed: int = 0,
    attention_checks: int = 2,
    loudness_dbfs: float = -23.0,
    title: str = "Does this clip sound like the emotion?",
) -> ListeningExport:
    """Write a filter-mode page: "does this clip sound <target>?" yes/no per clip (human success filter for CAS-H).

    ``clips``: one row per clip with ``utt_id, target, audio_path`` (plus any fields, kept in key.json only).
    ``n_per_emotion=None`` keeps every clip (no balancing). ``attention_checks`` clips are repeated under a second
    opaque id; inconsistent answers to a repeat fail the check.
    """
    from .progress import tqdm

    _require_columns(clips, ("utt_id", "target", "audio_path"), "clips")
    if attention_checks < 0:
        raise ListeningError(f"attention_checks must be >= 0, got {attention_checks}")
    rng = np.random.default_rng(seed)
    sel = clips.reset_index(drop=True)
    if n_per_emotion is not None:
        sel = _balanced(sel, n_per_emotion, rng, "clips")
    if sel.duplicated(["utt_id", "target"]).any():
        raise ListeningError("clips has duplicate (utt_id, target) rows; keep one clip per utterance and target")
    out_dir = _prepare_out(out_dir)
    used: set[str] = set()
    items, key_items, first_ids = [], {}, []
    extra = [c for c in sel.columns if c != "audio_path"]
    for row in tqdm(sel.to_dict("records"), desc="export filter clips", leave=False):
        iid, c = _opaque(rng, used, "q"), _opaque(rng, used, "c")
        lvl = _write_clip(row["audio_path"], out_dir / "page" / "audio" / f"{c}.wav", loudness_dbfs)
        items.append({"id": iid, "target": str(row["target"]), "clips": [c]})
        key_items[iid] = {"item_kind": "clip", "clip": c, "source": str(row["audio_path"]), "level_dbfs": lvl,
                          "condition": {k: _jsonable(row[k]) for k in extra}}
        first_ids.append(iid)
    for k in range(min(attention_checks, len(first_ids))):
        orig = first_ids[int(rng.integers(len(first_ids)))]
        iid, c = _opaque(rng, used, "q"), _opaque(rng, used, "c")
        src, cond = key_items[orig]["source"], key_items[orig]["condition"]
        _write_clip(src, out_dir / "page" / "audio" / f"{c}.wav", loudness_dbfs)
        items.append({"id": iid, "target": str(cond["target"]), "clips": [c]})
        key_items[iid] = {"item_kind": "check", "check": "repeat", "repeat_of": orig, "clip": c, "source": src,
                          "condition": {"target": cond["target"], "utt_id": cond["utt_id"]}}
    perm = rng.permutation(len(items))
    items = [items[i] for i in perm]
    test_id = _test_id("filter", seed, sorted((str(r["utt_id"]), str(r["target"]), str(r["audio_path"]))
                                              for r in sel.to_dict("records")))
    page_data = {"format": "esnlib-listening-test", "version": 1, "mode": "filter", "test_id": test_id,
                 "seed": int(seed), "title": title, "items": items}
    key = {"format": "esnlib-listening-key", "version": 1, "mode": "filter", "test_id": test_id, "seed": int(seed),
           "loudness_dbfs": float(loudness_dbfs), "items": key_items}
    return _write_page(out_dir, page_data, key)


# --------------------------------------------------------------------------------------------------------------
# import


def load_key(key_dir) -> dict:
    """Read ``key_dir/key.json`` (the folder an export was written to), with the page items it was made with."""
    key_dir = Path(key_dir)
    path = key_dir / "key.json" if key_dir.is_dir() else key_dir
    if not path.is_file():
        raise ListeningError(f"no key.json at {path}; pass the out_dir the test was exported to")
    try:
        key = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ListeningError(f"{path} is not valid JSON ({e}); re-export the test") from e
    if key.get("format") != "esnlib-listening-key":
        raise ListeningError(f"{path} is not an esnlib listening key (format={key.get('format')!r})")
    pairs_json = path.parent / "page" / "pairs.json"
    if not pairs_json.is_file():
        raise ListeningError(f"{pairs_json} is missing; the key folder must hold the page/ folder it was exported with")
    key["page"] = json.loads(pairs_json.read_text())
    return key


def _load_answer_file(path: Path) -> dict:
    if not path.is_file():
        raise ListeningError(f"answers file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".csv":
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as e:
            raise ListeningError(f"answers file {path} is not valid CSV ({e}); save it again from the page") from e
        need = {"format", "test_id", "mode", "page_seed", "rater_id", "position", "item", "clip_a", "choice"}
        if not rows or not need <= set(rows[0]):
            raise ListeningError(
                f"answers file {path} is not an esnlib listening CSV (needs columns {sorted(need)}); "
                f"save the answers again with the page's 'Save CSV' button"
            )
        meta = {k: rows[0][k] for k in ("format", "test_id", "mode", "page_seed", "rater_id")}
        for r in rows:
            if any(r[k] != meta[k] for k in meta):
                raise ListeningError(f"answers file {path} mixes several tests/raters in one CSV; split it per rater")
        try:
            answers = [{"position": int(r["position"]), "item": r["item"],
                        "clips": [r["clip_a"]] + ([r["clip_b"]] if r.get("clip_b") else []), "choice": r["choice"],
                        "t_shown": r.get("t_shown"), "t_answered": r.get("t_answered")} for r in rows]
        except (TypeError, ValueError) as e:
            raise ListeningError(f"answers file {path} has a malformed row ({e}); save it again from the page") from e
        try:
            meta["page_seed"] = int(meta["page_seed"])
        except ValueError:
            pass  # _checked_fields names it
        return _checked_fields(path, {**meta, "answers": answers})
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ListeningError(f"answers file {path} is not valid JSON ({e}); save it again from the page") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ListeningError(
            f"answers file {path} is not an esnlib listening answers file (format should be {FORMAT!r}); "
            f"pass the JSON or CSV the page's save buttons wrote"
        )
    for k in ("test_id", "mode", "page_seed", "rater_id", "answers"):
        if k not in data:
            raise ListeningError(f"answers file {path} lacks the field {k!r}; save it again from the page")
    return _checked_fields(path, data)


def _checked_fields(path: Path, data: dict) -> dict:
    """Type checks of an answers file's fields (JSON or CSV), each a ListeningError naming the file and the fix."""
    again = "save the answers again from the page (its Save buttons write this field)"
    seed = data["page_seed"]
    if isinstance(seed, bool) or not (isinstance(seed, int) or (isinstance(seed, float) and seed.is_integer())):
        raise ListeningError(f"answers file {path}: page_seed {seed!r} is not a whole number; {again}")
    data["page_seed"] = int(seed)
    rater = data["rater_id"]
    if not isinstance(rater, str):
        raise ListeningError(f"answers file {path}: rater_id is {rater!r}; it must be the rater's id as text; {again}")
    for k in ("test_id", "mode"):
        if not isinstance(data[k], str):
            raise ListeningError(f"answers file {path}: {k} is {data[k]!r}, not text; {again}")
    if not isinstance(data["answers"], list):
        raise ListeningError(f"answers file {path}: 'answers' must be a list of answer objects; {again}")
    for i, a in enumerate(data["answers"], start=1):
        if not isinstance(a, dict):
            raise ListeningError(f"answers file {path}: answer {i} is a {type(a).__name__} ({a!r}), not an object "
                                 f"with item, clips, choice and position; {again}")
        if not isinstance(a.get("item"), str) or not a["item"]:
            raise ListeningError(f"answers file {path}: answer {i} has no 'item' field (got {a.get('item')!r}); "
                                 f"every answer names the item it answers; {again}")
    return data


def _read(paths, key_dir, mode: str, check_order: bool) -> tuple[pd.DataFrame, dict]:
    key = load_key(key_dir)
    if key["mode"] != mode:
        raise ListeningError(f"key in {key_dir} is for a {key['mode']!r} test, not {mode!r}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ListeningError("no answers files given")
    page_items = {it["id"]: it for it in key["page"]["items"]}
    valid = AB_CHOICES if mode == "ab" else FILTER_CHOICES
    rows, seen_raters, simulated = [], {}, False
    for path in paths:
        d = _load_answer_file(path)
        simulated = simulated or bool(d.get("simulated", False))
        if d["mode"] != mode:
            raise ListeningError(f"answers file {path} is from a {d['mode']!r} page; this is a {mode!r} test")
        if d["test_id"] != key["test_id"]:
            raise ListeningError(
                f"answers file {path} belongs to test {d['test_id']!r}, but {key_dir} holds test {key['test_id']!r}; "
                f"pass the key folder of the export this page came from"
            )
        if int(d["page_seed"]) != int(key["seed"]):
            raise ListeningError(f"answers file {path} has page seed {d['page_seed']}, the key has {key['seed']}; "
                                 f"the file was not made by this export's page")
        rater = str(d["rater_id"]).strip()
        if not rater:
            raise ListeningError(f"answers file {path} has an empty rater_id")
        if rater in seen_raters:
            raise ListeningError(f"rater {rater!r} appears in both {seen_raters[rater]} and {path}; keep one file per rater")
        seen_raters[rater] = path
        expected = {o["item"]: (pos, o["clips"]) for pos, o in
                    enumerate(shown_order(key["seed"], rater, key["page"]["items"]))}
        unknown = [a.get("item") for a in d["answers"] if a.get("item") not in page_items]
        if unknown:
            raise ListeningError(f"answers file {path} holds {len(unknown)} unknown item id(s) {unknown[:5]}; "
                                 f"it belongs to a different export")
        got = set()
        for a in d["answers"]:
            iid = a["item"]
            if iid in got:
                raise ListeningError(f"answers file {path} answers item {iid!r} twice")
            got.add(iid)
            if a.get("choice") not in valid:
                raise ListeningError(f"answers file {path}, item {iid!r}: choice {a.get('choice')!r} is not one of {valid}")
            clips = list(a.get("clips") or [])
            if sorted(clips) != sorted(page_items[iid]["clips"]):
                raise ListeningError(f"answers file {path}, item {iid!r}: clips {clips} are not this item's clips")
            if not isinstance(a.get("position"), int):
                raise ListeningError(f"answers file {path}, item {iid!r}: position {a.get('position')!r} is not an int")
            if check_order and (expected[iid][1] != clips or expected[iid][0] != a["position"]):
                raise ListeningError(
                    f"answers file {path}, item {iid!r}: shown position/sides differ from what the page shows rater "
                    f"{rater!r} with seed {key['seed']}; the file was edited or made elsewhere "
                    f"(pass check_order=False to skip this check)"
                )
            k = key["items"][iid]
            row = {"rater_id": rater, "file": str(path), "test_id": key["test_id"], "item": iid, "item_kind": k["item_kind"],
                   "target": page_items[iid]["target"], "utt_id": k["condition"].get("utt_id"),
                   "position": int(a["position"]),
                   "choice": a["choice"], "t_shown": a.get("t_shown"), "t_answered": a.get("t_answered")}
            if mode == "ab":
                row["clip_a"], row["clip_b"] = clips
                if k["item_kind"] == "pair":
                    row["intervened_side"] = "A" if clips[0] == k["intervened"] else "B"
                    row["outcome"] = ("tie" if a["choice"] == "tie"
                                      else "win" if a["choice"] == row["intervened_side"] else "loss")
                else:
                    row["intervened_side"] = None
                    row["outcome"] = "pass" if a["choice"] == k["expected"] else "fail"
            else:
                row["clip"] = clips[0]
            for c, v in k["condition"].items():  # condition fields become columns; clashes get a "cond_" prefix
                if c not in row:
                    row[c] = v
                elif row[c] != v:
                    row[f"cond_{c}"] = v
            rows.append(row)
        missing = len(page_items) - len(got)
        if missing:
            warnings.warn(f"answers file {path} (rater {rater!r}) is incomplete: {missing} of {len(page_items)} "
                          f"items unanswered", stacklevel=3)
    df = pd.DataFrame(rows)
    df.attrs["simulated"] = simulated  # answers written by simulate_answers, not by people
    return df, key


def read_answers(paths, key_dir, check_order: bool = True) -> pd.DataFrame:
    """One row per rater x A/B item, with ``outcome`` win/tie/loss from the intervened system's point of view.

    ``paths``: answers files (JSON or CSV, as saved by the page); ``key_dir``: the export's out_dir (holds key.json).
    Attention-check rows have ``kind == "check"`` and outcome pass/fail; ``rater_flagged`` marks raters who failed
    any check. Files from another test, seed or export, or with unknown items/choices raise :class:`ListeningError`.
    """
    df, _ = _read(paths, key_dir, "ab", check_order)
    if df.empty:
        raise ListeningError(f"answers files {paths} hold no answers")
    failed = df[(df["item_kind"] == "check") & (df["outcome"] == "fail")]["rater_id"].unique()
    df["rater_flagged"] = df["rater_id"].isin(failed)
    return df


def attention_report(df: pd.DataFrame) -> pd.DataFrame:
    """Per rater: answers given, attention checks answered and failed, and whether the rater is flagged."""
    chk = df[df["item_kind"] == "check"]
    out = pd.DataFrame({"n_answers": df[df["item_kind"] != "check"].groupby("rater_id").size()})
    fail_col = chk["outcome"].eq("fail") if "outcome" in chk else pd.Series(dtype=bool)
    out["n_checks"] = chk.groupby("rater_id").size()
    out["n_failed"] = fail_col.groupby(chk["rater_id"]).sum() if len(chk) else 0
    out = out.fillna(0).astype(int)
    out["flagged"] = out["n_failed"] > 0
    return out


def winrate(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0, unit: str = "item",
            drop_flagged: bool = False) -> pd.DataFrame:
    """Win/tie/loss rates per target emotion (and ``"all"``) with percentile bootstrap 95% CIs.

    ``unit`` is what the bootstrap resamples: ``"item"`` (pairs, each with all its ratings; generalizes to new
    utterances), ``"rater"`` (raters with all their answers) or ``"answer"``. Attention checks are excluded.
    """
    if unit not in ("item", "rater", "answer"):
        raise ValueError(f"unit must be 'item', 'rater' or 'answer', got {unit!r}")
    d = df[df["item_kind"] == "pair"]
    if drop_flagged and "rater_flagged" in d:
        d = d[~d["rater_flagged"]]
    if d.empty:
        raise ListeningError("no A/B answers to score (after removing attention checks/flagged raters)")
    rng = np.random.default_rng(seed)
    cats = ("win", "tie", "loss")
    groups = [(str(e), d[d["target"] == e]) for e in sorted(d["target"].unique())] + [("all", d)]
    rows = []
    for name, g in groups:
        onehot = np.stack([(g["outcome"] == c).to_numpy(float) for c in cats], axis=1)
        col = {"item": "item", "rater": "rater_id", "answer": None}[unit]
        codes = np.arange(len(g)) if col is None else pd.factorize(g[col])[0]
        n_units = codes.max() + 1
        sums = np.zeros((n_units, 3))
        np.add.at(sums, codes, onehot)
        counts = np.bincount(codes, minlength=n_units).astype(float)
        draws = rng.integers(0, n_units, size=(n_boot, n_units))
        boot = sums[draws].sum(1) / counts[draws].sum(1)[:, None]
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        rate = onehot.mean(0)
        row = {"target": name, "n": len(g), "n_raters": g["rater_id"].nunique(), "n_items": g["item"].nunique()}
        for i, c in enumerate(cats):
            row[c], row[f"{c}_lo"], row[f"{c}_hi"] = rate[i], lo[i], hi[i]
        rows.append(row)
    return pd.DataFrame(rows)


def rater_agreement(df: pd.DataFrame, column: str | None = None) -> dict:
    """Fleiss' kappa over raters (items answered by every rater) and pairwise percent agreement.

    ``column`` is the rated category (default: ``outcome`` for A/B, ``choice`` for filter answers). Returns a dict
    with ``fleiss_kappa``, ``n_items``, ``n_raters``, ``pairwise`` (rater x rater agreement DataFrame) and
    ``mean_pairwise``. Attention checks are excluded.
    """
    column = column or ("outcome" if "outcome" in df else "choice")
    d = df[df["item_kind"] != "check"]
    tab = d.pivot_table(index="item", columns="rater_id", values=column, aggfunc="first")
    raters = list(tab.columns)
    if len(raters) < 2:
        raise ListeningError(f"rater agreement needs at least 2 raters, got {len(raters)}")
    full = tab.dropna()
    kappa = float("nan")
    if len(full):
        cats = sorted(pd.unique(full.to_numpy().ravel()))
        counts = np.stack([(full.to_numpy() == c).sum(1) for c in cats], axis=1).astype(float)
        n = len(raters)
        p_j = counts.sum(0) / counts.sum()
        p_i = ((counts * (counts - 1)).sum(1)) / (n * (n - 1))
        p_bar, p_e = p_i.mean(), float((p_j**2).sum())
        kappa = float((p_bar - p_e) / (1 - p_e)) if p_e < 1 else float("nan")  # one category only: undefined
    pw = pd.DataFrame(np.nan, index=raters, columns=raters)
    for i, a in enumerate(raters):
        for b in raters[i:]:
            m = tab[a].notna() & tab[b].notna()
            pw.loc[a, b] = pw.loc[b, a] = float((tab[a][m] == tab[b][m]).mean()) if m.any() else np.nan
    off = pw.to_numpy()[~np.eye(len(raters), dtype=bool)]
    return {"fleiss_kappa": kappa, "n_items": len(full), "n_raters": len(raters), "pairwise": pw,
            "mean_pairwise": float(np.nanmean(off))}


def read_filter_answers(paths, key_dir, check_order: bool = True, min_raters: int = 1) -> pd.DataFrame:
    """Per clip majority vote of a filter-mode test: ``utt_id, target, n_yes, n_raters, human_success`` (+ key fields).

    ``human_success`` is a strict majority of yes answers; clips with fewer than ``min_raters`` answers are dropped
    (with a warning). Raters who answered a repeated clip inconsistently are flagged in ``df.attrs["flagged"]``
    but still counted; ``df.attrs["simulated"]`` is True when any file came from :func:`simulate_answers`. This is
    the human success set for CAS-H (esnlib.experiments builds the masks; :func:`save_filter_file` writes it).
    """
    df, key = _read(paths, key_dir, "filter", check_order)
    if df.empty:
        raise ListeningError(f"answers files {paths} hold no answers")
    flagged = set()
    for iid, k in key["items"].items():
        if k["item_kind"] != "check":
            continue
        a = df[df["item"] == iid].set_index("rater_id")["choice"]
        b = df[df["item"] == k["repeat_of"]].set_index("rater_id")["choice"]
        both = a.index.intersection(b.index)
        flagged |= set(both[(a[both] != b[both]).to_numpy()])
    clips = df[df["item_kind"] == "clip"].copy()
    clips["yes"] = clips["choice"].eq("yes")
    agg = clips.groupby(["item"]).agg(n_yes=("yes", "sum"), n_raters=("rater_id", "nunique")).reset_index()
    meta = pd.DataFrame([{"item": i, "source": k["source"], **k["condition"]}
                         for i, k in key["items"].items() if k["item_kind"] == "clip"])
    out = meta.merge(agg, on="item", how="left").fillna({"n_yes": 0, "n_raters": 0})
    out[["n_yes", "n_raters"]] = out[["n_yes", "n_raters"]].astype(int)
    few = out["n_raters"] < min_raters
    if few.any():
        warnings.warn(f"{int(few.sum())} clip(s) have fewer than {min_raters} answers and are dropped", stacklevel=2)
    out = out[~few].copy()
    out["human_success"] = out["n_yes"] * 2 > out["n_raters"]
    front = ["utt_id", "target", "n_yes", "n_raters", "human_success"]
    out = out[front + [c for c in out.columns if c not in front]].reset_index(drop=True)
    out.attrs["flagged"] = sorted(flagged)
    out.attrs["simulated"] = df.attrs.get("simulated", False)
    return out


#: the columns of a human filter file (CAS-H): one row per rated clip
FILTER_FILE_COLUMNS = ("utt_id", "target", "human_success")


def save_filter_file(success: pd.DataFrame, path) -> Path:
    """Write the human success set of :func:`read_filter_answers` as a CSV filter file (``utt_id, target,
    human_success`` plus n_yes, n_raters when present): what notebooks 02 and 06 take as ``human_filter`` (CAS-H).
    A frame marked SIMULATED (``attrs["simulated"]``) gets ``simulated = True`` in every row."""
    _require_columns(success, FILTER_FILE_COLUMNS, "the human success set")
    cols = list(FILTER_FILE_COLUMNS) + [c for c in ("n_yes", "n_raters") if c in success.columns]
    out = success[cols].copy()
    out["simulated"] = bool(success.attrs.get("simulated", False))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    return path


def read_filter_file(path) -> pd.DataFrame:
    """Read a human filter file (:func:`save_filter_file`): ``utt_id, target, human_success`` (bool), one row per
    (utt_id, target). A ListeningError names the file and the fix when it is missing or malformed."""
    path = Path(path)
    fix = ("write it with esnlib.listening.save_filter_file(read_filter_answers(answer files, key_dir), path) "
           "after a filter-mode listening test (docs/listening_test.md)")
    if not path.is_file():
        raise ListeningError(f"human filter file {path} does not exist; {fix}")
    try:
        df = pd.read_csv(path, dtype={"utt_id": str, "target": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ListeningError(f"human filter file {path} is not a CSV file ({exc}); {fix}") from None
    lacking = [c for c in FILTER_FILE_COLUMNS if c not in df.columns]
    if lacking:
        raise ListeningError(f"human filter file {path} lacks column(s) {lacking} (has {list(df.columns)}); {fix}")
    hs = df["human_success"].map(lambda v: {"true": True, "false": False, "1": True, "0": False}.get(
        str(v).strip().lower()))
    if hs.isna().any():
        bad = df.loc[hs.isna(), "human_success"].head(3).tolist()
        raise ListeningError(f"human filter file {path}: human_success must be True/False, got {bad}; {fix}")
    df["human_success"] = hs.astype(bool)
    if df.duplicated(["utt_id", "target"]).any():
        raise ListeningError(f"human filter file {path} rates some (utt_id, target) twice; keep one row each ({fix})")
    return df


# --------------------------------------------------------------------------------------------------------------
# SIMULATED raters (demos and tests only) and the Figure 8 plot


def simulate_answers(key_dir, rater_id: str, out_path, p=(0.6, 0.1, 0.3), seed: int = 0,
                     attention: float = 1.0, n_items: int | None = None) -> Path:
    """SIMULATED rater, for demos and tests only: writes an answers JSON as the page would for ``rater_id``.

    A/B mode: each pair is won/tied/lost by the intervened clip with probabilities ``p``; filter mode: ``p[0]`` is
    P(yes). Attention checks are passed with probability ``attention``. ``n_items`` stops early (partial session).
    These are not human judgments; label anything drawn from them SIMULATED.
    """
    key = load_key(key_dir)
    rng = np.random.default_rng([seed, _fnv1a(rater_id)])
    answers, first = [], {}
    order = shown_order(key["seed"], rater_id, key["page"]["items"])
    for pos, o in enumerate(order[: n_items if n_items is not None else len(order)]):
        k = key["items"][o["item"]]
        if key["mode"] == "ab":
            if k["item_kind"] == "check":
                choice = "tie" if rng.random() < attention else str(rng.choice(["A", "B"]))
            else:
                out = rng.choice(["win", "tie", "loss"], p=list(p))
                side = "A" if o["clips"][0] == k["intervened"] else "B"
                other = "B" if side == "A" else "A"
                choice = {"win": side, "tie": "tie", "loss": other}[out]
        else:
            root = k["repeat_of"] if k["item_kind"] == "check" else o["item"]  # the repeat may come first
            if root in first:
                prev = first[root]
                choice = prev if rng.random() < attention else ("no" if prev == "yes" else "yes")
            else:
                choice = first[root] = "yes" if rng.random() < p[0] else "no"
        answers.append({"position": pos, "item": o["item"], "clips": o["clips"], "choice": choice,
                        "t_shown": None, "t_answered": None, "simulated": True})
    data = {"format": FORMAT, "version": 1, "test_id": key["test_id"], "mode": key["mode"],
            "page_seed": key["seed"], "rater_id": rater_id, "simulated": True, "answers": answers}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(data, indent=1))
    return out_path


def plot_winrate(wr: pd.DataFrame, title: str | None = None):
    """Figure 8: ``esnlib.plots.winrate_bars`` (stacked win/tie/loss per emotion and pooled over all, each with its
    n of judgments) with the bootstrap 95% CIs of :func:`winrate` drawn as whiskers at the win/tie and tie/loss
    boundaries of each bar."""
    from .plots import winrate_bars

    fig = winrate_bars(wr, emotion_col="target", title=title)
    ax = fig.axes[0]
    # a bar's label is its target ("all" for the pooled row) followed by " (pooled)" / " (n=...)"
    ypos = {t.get_text().split(" (")[0]: y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}
    for r in wr.itertuples():
        y = ypos[r.target]
        tot = r.win + r.tie + r.loss
        w, l0 = 100 * r.win / tot, 100 * (1 - r.loss / tot)
        ax.errorbar([w], [y - 0.18], xerr=[[100 * (r.win - r.win_lo)], [100 * (r.win_hi - r.win)]], fmt="none",
                    ecolor="black", capsize=3, lw=1)
        ax.errorbar([l0], [y + 0.18], xerr=[[100 * (r.loss_hi - r.loss)], [100 * (r.loss - r.loss_lo)]], fmt="none",
                    ecolor="black", capsize=3, lw=1)
    return fig
