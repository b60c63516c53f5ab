"""Atomic writes, their temporary files, and a file lock: what the stores share so that nothing is half written,
lost to a concurrent writer, or left behind.

Every atomic write goes through a hidden temporary file in the target's folder, named
``.<name>.<host>.<pid>.<random>.tmp`` and published with ``os.replace``. A writer killed before the replace leaves
that file behind; :func:`clean_stale_tmp` removes the ones whose writer is gone (same host, process no longer
running) or that are older than ``max_age`` seconds (writers on other hosts), and never a live writer's file.
"""
from __future__ import annotations

import os
import re
import socket
import time
import uuid
from pathlib import Path

__all__ = ["tmp_path_for", "atomic_write_bytes", "clean_stale_tmp", "FileLock"]

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TMP_RE = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
#: a temporary file this old is stale whoever wrote it (atomic writes take seconds)
MAX_TMP_AGE = 6 * 3600.0


def tmp_path_for(path: str | os.PathLike) -> Path:
    """The hidden temporary sibling an atomic write of ``path`` goes through (unique per host, process and call)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling (fsync, then ``os.replace``): readers see the old
    file or the new one, never a part. The temporary file is removed if the write fails."""
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_tmp(folder: str | os.PathLike, recursive: bool = True, max_age: float = MAX_TMP_AGE) -> list[Path]:
    """Remove the temporary files of interrupted atomic writes under ``folder``; returns what was removed.

    A file counts when its name has the :func:`tmp_path_for` form and its writer is certainly gone: written on this
    host by a process that no longer runs, or (any host) last modified more than ``max_age`` seconds ago.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    stack = [folder]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if recursive:
                    stack.append(Path(e.path))
                continue
            m = _TMP_RE.match(e.name)
            if not m:
                continue
            try:
                old = now - e.stat(follow_symlinks=False).st_mtime > max_age
            except OSError:
                continue
            if old or (m.group("host") == _HOST and not _alive(int(m.group("pid")))):
                try:
                    os.unlink(e.path)
                    removed.append(Path(e.path))
                except FileNotFoundError:
                    pass
    return removed


class FileLock:
    """An exclusive advisory lock on ``path`` (created if missing) for a ``with`` block: ``fcntl.flock``, so it
    serializes processes on one machine (and threads holding separate FileLock objects). Re-entrant within one
    object. Where ``fcntl`` is missing (Windows) it is a no-op: share such stores with one writer only."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd = None
        self._depth = 0

    def __enter__(self) -> "FileLock":
        if self._depth == 0:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX
                fcntl = None
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
