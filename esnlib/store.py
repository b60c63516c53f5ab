"""ResultStore: tidy result tables, one row per generated sample and condition, written one unit at a time.

A unit is the result of one condition (a dict such as model, selector, r, c, alpha, kind, e_mask, split). It is
stored as ``<root>/<table>/<key>.parquet`` (key = stable hash of the condition) with a ``<key>.json`` sidecar.
Writes go to a temporary file and are published with ``os.replace``, so a unit is either fully present or
absent: a killed run leaves at most a hidden ``*.tmp`` file that ``read`` ignores and the next ``ResultStore`` on
that folder removes (:func:`esnlib.fsutil.clean_stale_tmp`), and a sweep resumes with ``has``.
Generated waveforms live under ``<root>/audio/<key>/<sample_id>.wav`` (16 kHz); ``root`` is made absolute, so the
``audio_path`` written into result rows opens from any working directory.

Generation aliases: conditions that differ only in how their mask was found (e.g. the random control's one mask under
every e_mask, or a cap c that does not bind) generate the same samples. ``<root>/_generations/<table>-<generation>``
holds the key of a unit that holds the samples of ``generation`` (a key the caller computes from what determines the
samples, esnlib.runs); :meth:`ResultStore.copy_alias` stores another condition's unit as a copy of it.

Several processes may share one store (two runs of a notebook, Ray workers on one file system): every unit and
waveform is one file published atomically, and two writers of the same unit write the same rows (the later replace
wins). See docs/core.md, "Sharing stores between processes".
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .fsutil import atomic_write_bytes as _atomic_write_bytes
from .fsutil import clean_stale_tmp

__all__ = ["ResultStore", "normalize_condition", "condition_key"]

_TABLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_META_KEY = b"esnlib.condition"
SAMPLE_RATE = 16000


def _norm_value(v: Any, where: str) -> Any:
    if isinstance(v, np.floating) and not isinstance(v, np.float64):
        v = float(str(v))  # shortest repr at its own precision: np.float32(0.1) -> 0.1
    elif isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"condition field {where!r} is {v}; use a finite number or None.")
        v = float(f"{v:.12g}")  # 0.1 + 0.2 and 0.3 agree
        return int(v) if v.is_integer() else v  # 1.0 and 1 agree
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_norm_value(x, where) for x in list(v)]
    if isinstance(v, Mapping):
        return {str(k): _norm_value(x, f"{where}.{k}") for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    raise TypeError(
        f"condition field {where!r} has unsupported type {type(v).__name__}; use str, int, float, bool, None, "
        "lists or dicts of those."
    )


def normalize_condition(condition: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical form of a condition: str keys sorted, numpy scalars unwrapped, floats rounded to 12 significant
    digits and integral floats made ints (so 0.5/0.50/np.float32(0.5) and 1/1.0 give the same key)."""
    if not isinstance(condition, Mapping):
        raise TypeError(f"a condition must be a dict of fields, got {type(condition).__name__}.")
    return {str(k): _norm_value(v, str(k)) for k, v in sorted(condition.items(), key=lambda kv: str(kv[0]))}


def condition_key(condition: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of the condition's canonical JSON."""
    text = json.dumps(normalize_condition(condition), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResultStore:
    """Tidy result tables under ``root``, keyed by their full condition; atomic, resumable units."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        clean_stale_tmp(self.root)  # left by writers killed mid-write; a live writer's files are kept

    # -- keys and paths ------------------------------------------------------------------------------------------
    @staticmethod
    def key(condition: Mapping[str, Any]) -> str:
        """Stable hash of the condition dict (see ``normalize_condition``)."""
        return condition_key(condition)

    def _dir(self, table: str) -> Path:
        if not isinstance(table, str) or not _TABLE_RE.match(table) or table == "audio":
            raise ValueError(
                f"table name {table!r} is invalid; use letters, digits, '_', '-', '.' (and not 'audio')."
            )
        return self.root / table

    def path(self, table: str, condition: Mapping[str, Any]) -> Path:
        """Where the unit of this condition lives."""
        return self._dir(table) / f"{self.key(condition)}.parquet"

    # -- units ---------------------------------------------------------------------------------------------------
    def has(self, table: str, condition: Mapping[str, Any]) -> bool:
        """True if the unit of this condition is fully written."""
        return self.path(table, condition).exists()

    def write(self, table: str, condition: Mapping[str, Any], df: pd.DataFrame) -> Path:
        """Write ``df`` as the unit of ``condition`` (replacing a previous one), atomically.

        The condition's fields are added as columns to every row (nested values as JSON text). A column of
        ``df`` that has the same name as a field must hold that field's value everywhere.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"write: expected a pandas DataFrame, got {type(df).__name__}.")
        cond = normalize_condition(condition)
        if not cond:
            raise ValueError("write: the condition is empty; name at least one field (e.g. {'step': 'baseline'}).")
        out = df.copy()
        for k, v in cond.items():
            col_val = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
            if k in out.columns:
                same = out[k].map(lambda x: _safe_norm(x) == _safe_norm(col_val))
                if not same.all():
                    raise ValueError(
                        f"write: column {k!r} of the frame disagrees with the condition value {v!r}; rename the "
                        "column or fix the condition."
                    )
            out[k] = pd.Series([col_val] * len(out), index=out.index, dtype=object if col_val is None else None)
        out = out.reset_index(drop=True)
        d = self._dir(table)
        d.mkdir(parents=True, exist_ok=True)
        key = self.key(cond)
        meta_text = json.dumps(cond, sort_keys=True, indent=1)
        tab = pa.Table.from_pandas(out, preserve_index=False)
        tab = tab.replace_schema_metadata({**(tab.schema.metadata or {}), _META_KEY: meta_text.encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(tab, sink)
        # Sidecar first: the parquet file is the unit's "present" marker and is published last.
        _atomic_write_bytes(d / f"{key}.json", meta_text.encode())
        target = d / f"{key}.parquet"
        _atomic_write_bytes(target, sink.getvalue().to_pybytes())
        return target

    def _condition_of(self, parquet: Path) -> dict:
        side = parquet.with_suffix(".json")
        try:
            return json.loads(side.read_text())
        except (OSError, ValueError):
            import pyarrow.parquet as pq

            meta = pq.read_schema(parquet).metadata or {}
            return json.loads(meta[_META_KEY].decode())

    def _units(self, table: str) -> list[Path]:
        d = self._dir(table)
        if not d.exists():
            return []
        return sorted(p for p in d.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))

    def conditions(self, table: str) -> list[dict]:
        """The conditions of all present units of ``table`` (sorted by key)."""
        return [self._condition_of(p) for p in self._units(table)]

    def read(self, table: str, **filters: Any) -> pd.DataFrame:
        """All rows of the units of ``table`` whose condition matches every filter.

        A filter value matches by equality after normalization; a set/frozenset matches any of its members.
        Units lacking a filtered field do not match. If nothing matches, an empty frame is returned with a
        warning that names the table and the filters.
        """
        norm = {}
        for k, v in filters.items():
            if isinstance(v, (set, frozenset)):
                norm[k] = ("in", [_norm_value(x, k) for x in v])
            else:
                norm[k] = ("eq", _norm_value(v, k))
        frames = []
        for p in self._units(table):
            cond = self._condition_of(p)
            if all(k in cond and (cond[k] == v if op == "eq" else cond[k] in v) for k, (op, v) in norm.items()):
                frames.append(self._rebased(pd.read_parquet(p)))
        if not frames:
            n = len(self._units(table))
            warnings.warn(
                f"ResultStore.read: no unit of table {table!r} under {self.root} matches {filters or '{}'} "
                f"({n} units in the table); check the filters with store.conditions({table!r}) or run the step.",
                stacklevel=2,
            )
            return pd.DataFrame()
        frames = [f for f in frames if len(f)] or frames[:1]
        return pd.concat(frames, ignore_index=True)

    def read_unit(self, table: str, condition: Mapping[str, Any]) -> pd.DataFrame:
        """The rows of one unit, found by its key (no scan of the other units' conditions)."""
        return self._rebased(pd.read_parquet(self.path(table, condition)))

    def _rebased(self, df: pd.DataFrame) -> pd.DataFrame:
        """``audio_path`` values that do not open from here (written relative to another working directory by an
        older esnlib, or a store that was moved) point into this store's ``audio/<key>/`` folder."""
        if "audio_path" not in df.columns or df.empty:
            return df

        def fix(v):
            if not isinstance(v, str) or not v:
                return v
            p = Path(v)
            if p.is_absolute() and p.exists():
                return v
            here = self.root / "audio" / p.parent.name / p.name
            return str(here) if p.parent.parent.name == "audio" and (here.exists() or not p.is_absolute()) else v

        df["audio_path"] = df["audio_path"].map(fix)
        return df

    def remove(self, table: str, condition: Mapping[str, Any]) -> bool:
        """Delete the unit of ``condition``; True if it existed."""
        p = self.path(table, condition)
        existed = p.exists()
        if existed:
            p.unlink()
        side = p.with_suffix(".json")
        if side.exists():
            side.unlink()
        return existed

    # -- generation aliases --------------------------------------------------------------------------------------
    def _alias(self, table: str, generation: str) -> Path:
        self._dir(table)  # checks the table name
        if not re.fullmatch(r"[0-9a-f]+", str(generation)):
            raise ValueError(f"generation key {generation!r} must be hex digits (a fingerprint of what determines "
                             "the samples)")
        return self.root / "_generations" / f"{table}-{generation}"

    def write_alias(self, table: str, generation: str, condition: Mapping[str, Any]) -> None:
        """Record that the unit of ``condition`` holds the samples of ``generation`` (atomically; the last writer
        wins, and every writer names a unit with the same samples)."""
        alias = self._alias(table, generation)
        alias.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_bytes(alias, self.key(condition).encode())

    def copy_alias(self, table: str, generation: str, condition: Mapping[str, Any],
                   keep: Callable[[str], bool] | None = None) -> bool:
        """Store the unit of ``condition`` as a copy of the unit that holds the samples of ``generation``: its
        columns for which ``keep(column)`` is true (default: every column that is not a field of the source's
        condition), under ``condition``'s own fields. False (nothing written) when no alias or no such unit
        exists."""
        alias = self._alias(table, generation)
        if not alias.exists():
            return False
        src = self._dir(table) / f"{alias.read_text().strip()}.parquet"
        if not src.exists():
            return False
        old = pd.read_parquet(src)
        if keep is None:
            fields = set(self._condition_of(src))
            keep = lambda c: c not in fields  # noqa: E731
        self.write(table, condition, old[[c for c in old.columns if keep(c)]])
        return True

    # -- audio ---------------------------------------------------------------------------------------------------
    def audio_path(self, key: str, sample_id: str) -> Path:
        """Path of the generated waveform of ``sample_id`` under the unit ``key`` (a ``key(condition)``)."""
        if not re.fullmatch(r"[0-9a-f]{16}", str(key)):
            raise ValueError(f"audio_path: {key!r} is not a store key; pass store.key(condition).")
        sid = str(sample_id)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sid)
        if safe != sid or safe.startswith("."):
            safe = f"{safe.lstrip('.')}-{hashlib.sha256(sid.encode()).hexdigest()[:8]}"
        return self.root / "audio" / key / f"{safe}.wav"

    def write_audio(self, key: str, sample_id: str, audio, sample_rate: int = SAMPLE_RATE) -> Path:
        """Write a mono waveform as 16 kHz float wav (resampled if needed), atomically; returns the path."""
        import io

        import soundfile as sf

        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"write_audio: expected a mono 1-D waveform, got shape {x.shape}.")
        if not np.isfinite(x).all():
            raise ValueError(f"write_audio: waveform of {sample_id!r} contains NaN/inf samples.")
        if sample_rate != SAMPLE_RATE:
            from scipy.signal import resample_poly

            g = math.gcd(int(sample_rate), SAMPLE_RATE)
            x = resample_poly(x, SAMPLE_RATE // g, int(sample_rate) // g).astype(np.float32)
        path = self.audio_path(key, sample_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        sf.write(buf, x, SAMPLE_RATE, format="WAV", subtype="FLOAT")
        _atomic_write_bytes(path, buf.getvalue())
        return path


def _safe_norm(x):
    try:
        return _norm_value(x, "")
    except (TypeError, ValueError):
        return x
