"""Headless notebook runs that talk: papermill with progress on the terminal and a failure summary that names the
real error. Used by ``scripts/run_notebooks.py`` (``make paper``); needs the ``notebooks`` extra (papermill).

How the progress gets out: a papermill engine (:func:`progress_engine`, registered as ``"esnlib"``) wraps nbclient's
message loop. nbclient's ``on_cell_start`` hook gives "cell k of n"; the kernel's ``display_data`` /
``update_display_data`` messages that carry :data:`esnlib.progress.METADATA_KEY` give the running step's own bars
(esnlib.progress renders every tqdm bar of a cell into one such display line). A :class:`Reporter` prints them:

- ``line`` (a terminal): one status line rewritten in place (notebook, cell k/n, elapsed, the running step), plus a
  permanent line per finished step and per notebook;
- ``log`` (a pipe or a file, e.g. ``make paper > log``): a line per cell start and per finished step, and the
  running step's progress every ``every`` seconds;
- ``off``: nothing while a notebook runs.
"""
from __future__ import annotations

import re
import sys
import threading
import time
from typing import TextIO

from .progress import METADATA_KEY

__all__ = ["Reporter", "progress_engine", "execute", "failure_summary", "strip_ansi"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CELL_FRAME = re.compile(r"^(?:Cell In\s*\[(\d*)\],\s*line (\d+)|Input In \[(\d*)\].*line:? (\d+))")
_FILE_FRAME = re.compile(r"^File (.+?):(\d+),? in (\S+?)(?:\(|$)")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _clock(secs: float) -> str:
    secs = int(secs)
    h, m, s = secs // 3600, secs // 60 % 60, secs % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def failure_summary(exc: BaseException, max_message_lines: int = 12, root: str | None = None) -> list[str]:
    """What went wrong, in a few lines: ``Type: message`` (the notebook's own exception, not papermill's wrapper),
    the failing cell and the source line of that cell that raised, and the file:line where the error was raised
    when that was inside a function. Works on papermill's PapermillExecutionError (which carries the kernel's
    traceback) and on any other exception (a dead kernel, a timeout, a missing file). Paths under ``root`` are
    shown relative to it."""
    ename = getattr(exc, "ename", None)
    if ename is None:
        msg = str(exc).strip().splitlines() or [""]
        return [f"{type(exc).__name__}: {msg[0]}"] + msg[1:max_message_lines]
    evalue = str(getattr(exc, "evalue", "")).strip().splitlines() or [""]
    lines = [f"{ename}: {evalue[0]}"] + evalue[1:max_message_lines]
    if len(evalue) > max_message_lines:
        lines.append(f"... ({len(evalue) - max_message_lines} more lines in the executed notebook)")
    tb = [ln.strip() for part in (getattr(exc, "traceback", None) or []) for ln in strip_ansi(part).splitlines()]
    cell_line, raised = None, None
    for ln in tb:
        m = _CELL_FRAME.match(ln)
        if m and cell_line is None:
            cell_line = int(m.group(2) or m.group(4))
        f = _FILE_FRAME.match(ln)
        if f:
            raised = (f.group(1), int(f.group(2)), f.group(3))
        elif m:
            raised = None  # the deepest frame is in the cell itself (or a function defined there)
    source = (getattr(exc, "source", "") or "").splitlines()
    where = f"cell In [{getattr(exc, 'exec_count', '?')}]"
    if cell_line is not None and 0 < cell_line <= len(source):
        lines.append(f"at {where}, line {cell_line}: {source[cell_line - 1].strip()}")
    else:
        lines.append(f"at {where}")
    if raised is not None:
        path, lineno, func = raised
        if root and path.startswith(str(root).rstrip("/") + "/"):
            path = path[len(str(root).rstrip("/")) + 1:]
        lines.append(f"raised in {func} ({path}:{lineno})")
    return lines


class Reporter:
    """Prints a run's progress to ``stream``: ``mode`` is "line", "log", "off" or "auto" (line on a terminal, else
    log); in log mode the running step is printed every ``every`` seconds."""

    def __init__(self, stream: TextIO | None = None, mode: str = "auto", every: float = 30.0):
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "line" if getattr(self.stream, "isatty", lambda: False)() else "log"
        if mode not in ("line", "log", "off"):
            raise ValueError(f"progress mode {mode!r}: use 'auto', 'line', 'log' or 'off'")
        self.mode, self.every = mode, float(every)
        self.lock = threading.RLock()
        self.name, self.k, self.n, self.t0, self.t_cell, self.active = "", 0, 0, 0.0, 0.0, ""
        self._done_seen: dict[str, int] = {}
        self._step: tuple = ("", None)
        self._last_log, self._last_logged = 0.0, (0, "")
        self._status_len = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------------------------- output helpers
    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def println(self, text: str) -> None:
        """A permanent line (in line mode, printed above the status line)."""
        with self.lock:
            if self.mode == "line" and self._status_len:
                self._write("\r\x1b[K")
                self._status_len = 0
            self._write(text + "\n")
            if self.mode == "line" and self.name:
                self._status()

    def status(self) -> str:
        now = time.monotonic()
        if not self.k:
            return f"{self.name}  starting the kernel  {_clock(now - self.t0)}"
        head = f"{self.name}  cell {self.k}/{self.n}  {_clock(now - self.t0)}"
        return head + (f"  {self.active}" if self.active else f"  (cell running {_clock(now - self.t_cell)})")

    def _status(self) -> None:
        text = self.status()
        self._write("\r\x1b[K" + text)
        self._status_len = len(text)

    # ----------------------------------------------------------------------------------------------------- events
    def notebook_start(self, name: str, n_cells: int = 0) -> None:
        """``n_cells``: code cells (the engine sets it once papermill has injected the parameters)."""
        with self.lock:
            self.name, self.k, self.n, self.active = name, 0, n_cells, ""
            self.t0 = self.t_cell = self._last_log = time.monotonic()
            self._done_seen = {}
        if self.mode != "off":
            self._stop.clear()
            self._thread = threading.Thread(target=self._tick, name="nbrun-progress", daemon=True)
            self._thread.start()

    def cell_start(self, k: int, first_line: str) -> None:
        with self.lock:
            self.k, self.active, self.t_cell = k, "", time.monotonic()
            if self.mode == "log":
                self.println(f"  {self.name}  cell {k}/{self.n}  {_clock(time.monotonic() - self.t0)}  "
                             f"{first_line[:80]}")
                self._last_log, self._last_logged = time.monotonic(), (k, "")
            elif self.mode == "line":
                self._status()

    def progress(self, display_id: str, state: dict) -> None:
        """A progress display of the kernel: print finished steps once, remember the running one."""
        with self.lock:
            done = list(state.get("done") or [])
            seen = self._done_seen.get(display_id, 0)
            fresh = [d for d in done[seen:] if not d.endswith("earlier steps)")]
            self._done_seen[display_id] = len(done)
            step = (display_id, state.get("step"))
            started = bool(state.get("active")) and step != self._step
            self.active, self._step = state.get("active") or "", step
            if self.mode == "off":
                return
            for d in fresh:
                self.println(f"  {self.name}  done: {d}")
            if self.mode == "line":
                self._status()
            elif started:
                self._log_status()

    def _log_status(self) -> None:
        self._last_log, self._last_logged = time.monotonic(), (self.k, self.active)
        self.println("  " + self.status())

    def _tick(self) -> None:
        """Line mode: refresh the status line every second. Log mode: print the running step every ``every`` s
        when it moved, and every 4 x ``every`` s when it did not (so a long silent step still shows it is alive)."""
        while not self._stop.wait(min(1.0, self.every / 2)):
            with self.lock:
                if self.mode == "line":
                    self._status()
                elif self.mode == "log":
                    waited = time.monotonic() - self._last_log
                    moved = (self.k, self.active) != self._last_logged
                    if waited >= (self.every if moved else 4 * self.every):
                        self._log_status()

    def notebook_end(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self.lock:
            if self.mode == "line" and self._status_len:
                self._write("\r\x1b[K")
                self._status_len = 0
            self.name = ""


def _engine_client():
    """The nbclient client of :class:`ProgressEngine` (built lazily: papermill is an optional dependency)."""
    from papermill.clientwrap import PapermillNotebookClient

    class ProgressClient(PapermillNotebookClient):
        def __init__(self, nb_man, reporter: Reporter, **kw):
            self.reporter = reporter
            code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
            self._code_pos = {i: k + 1 for k, i in enumerate(code)}
            reporter.n = len(code)
            super().__init__(nb_man, on_cell_start=self._cell_start, **kw)

        def _cell_start(self, cell, cell_index):
            if cell.cell_type == "code" and cell_index in self._code_pos:
                first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                self.reporter.cell_start(self._code_pos[cell_index], first.strip())

        def process_message(self, msg, cell, cell_index):
            content = msg.get("content") or {}
            if msg.get("msg_type") in ("display_data", "update_display_data"):
                state = (content.get("metadata") or {}).get(METADATA_KEY)
                if state is not None:
                    did = (content.get("transient") or {}).get("display_id") or ""
                    self.reporter.progress(did, state)
            return super().process_message(msg, cell, cell_index)

    return ProgressClient


def progress_engine():
    """The papermill engine class (built on first use: papermill is an optional dependency)."""
    from papermill.engines import NBClientEngine, logger

    class ProgressEngine(NBClientEngine):
        """papermill's nbclient engine, reporting cells and the kernel's progress displays to a Reporter."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, reporter: Reporter | None = None, log_output=False,
                                     stdout_file=None, stderr_file=None, start_timeout=60, execution_timeout=None,
                                     **kwargs):
            kwargs = {k: v for k, v in kwargs.items() if k not in ("input_path", "timeout", "startup_timeout")}
            client = _engine_client()(nb_man, reporter or Reporter(mode="off"), timeout=execution_timeout,
                                      startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                                      log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file,
                                      **kwargs)
            return client.execute()

    return ProgressEngine


_registered = False


def execute(src, dst, parameters: dict, reporter: Reporter, name: str | None = None, **papermill_kwargs) -> None:
    """Run notebook ``src`` into ``dst`` with papermill, reporting to ``reporter``; raises what papermill raises."""
    global _registered
    import papermill as pm
    from papermill.engines import papermill_engines

    if not _registered:
        papermill_engines.register("esnlib", progress_engine())
        _registered = True
    reporter.notebook_start(name or str(src))
    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters, engine_name="esnlib", reporter=reporter,
                            progress_bar=False, log_output=False, **papermill_kwargs)
    finally:
        reporter.notebook_end()
