"""Progress bars that stay out of the way: ``from esnlib.progress import tqdm`` everywhere in esnlib.

In a terminal this is plain ``tqdm`` on stderr. Inside a Jupyter kernel (JupyterLab, papermill, the paper runner)
``tqdm.auto`` would print hundreds of stderr outputs into an executed notebook (or, without ipywidgets, an
"IProgress not found" warning before them). Here every bar of one cell (or one widget callback) renders into **one
display line**, updated in place (at most every ``mininterval`` s): the running step with its nested bars joined by
``›``, above it one final line per finished step. The saved notebook keeps only those final lines; no ipywidgets
are needed.

The display carries its state in the output's metadata under :data:`METADATA_KEY` (``{"active": line, "done":
[lines], "step": number of the running step}``): that is how ``scripts/run_notebooks.py`` shows the running step on
the terminal (esnlib.nbrun).
"""
from __future__ import annotations

import threading
import time
import uuid

from tqdm.std import tqdm as _std_tqdm

__all__ = ["tqdm", "in_kernel", "KernelBar", "METADATA_KEY"]

#: display metadata key that marks an esnlib progress line (read by esnlib.nbrun)
METADATA_KEY = "esnlib_progress"
MAX_DONE = 12  # finished-step lines kept per cell (older ones are counted, not listed)
MIN_RENDER_S = 0.5  # the shared line is re-sent at most this often (a bar opening or closing is always sent)


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill), False in a terminal, a script or pytest."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def tqdm(*args, **kwargs):
    """A tqdm bar: :class:`KernelBar` inside a Jupyter kernel, ``tqdm.std.tqdm`` elsewhere (same arguments)."""
    return (KernelBar if in_kernel() else _std_tqdm)(*args, **kwargs)


class _Sink:
    """Where tqdm's own printer writes: nowhere (the board renders instead); utf-8 so bars keep their blocks."""

    encoding = "utf-8"

    def write(self, s):
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False


class _Board:
    """The one display line of the running cell: its finished steps and the stack of bars now open."""

    def __init__(self):
        self.lock = threading.RLock()
        self.active: list[KernelBar] = []
        self.cell = None
        self.display_id = None
        self.done: list[str] = []
        self.n_dropped = 0
        self.n_steps = 0  # top-level bars opened in this cell: tells a reader that a new step began
        self.last = 0.0

    @staticmethod
    def _cell():
        """The request being run: a cell's execute_request, or a widget event's comm message (each gets its line)."""
        from IPython import get_ipython

        ip = get_ipython()
        try:
            return ip.kernel.get_parent()["header"]["msg_id"]
        except (AttributeError, KeyError, TypeError):
            return getattr(ip, "execution_count", None)

    def opened(self, bar: KernelBar) -> None:
        with self.lock:
            cell = self._cell()
            if cell != self.cell or self.display_id is None:  # a new cell gets its own line
                self.cell, self.display_id, self.done, self.n_dropped, self.n_steps = cell, None, [], 0, 0
                self.active = []
            bar._esn_top = not self.active
            self.n_steps += bar._esn_top
            self.active.append(bar)
            self.render(force=True)

    def closed(self, bar: KernelBar, final: str) -> None:
        with self.lock:
            if bar in self.active:
                self.active.remove(bar)
            if getattr(bar, "_esn_top", False):
                self.done.append(final)
                if len(self.done) > MAX_DONE:
                    self.done.pop(0)
                    self.n_dropped += 1
            self.render(force=True)

    def state(self) -> dict:
        active = " › ".join(str(b) for b in self.active)
        done = ([f"({self.n_dropped} earlier steps)"] if self.n_dropped else []) + list(self.done)
        return {"active": active, "done": done, "step": self.n_steps}

    def render(self, force: bool = False) -> None:
        from IPython.display import display, update_display

        with self.lock:
            now = time.monotonic()
            if not force and now - self.last < MIN_RENDER_S:
                return
            self.last = now
            st = self.state()
            text = "\n".join(st["done"] + ([st["active"]] if st["active"] else []))
            data, md = {"text/plain": text}, {METADATA_KEY: st}
            if self.display_id is None:
                self.display_id = f"esnlib-progress-{uuid.uuid4().hex}"
                display(data, raw=True, metadata=md, display_id=self.display_id)
            else:
                update_display(data, raw=True, metadata=md, display_id=self.display_id)


_BOARD = _Board()


class KernelBar(_std_tqdm):
    """tqdm inside a Jupyter kernel: renders into the cell's single progress line instead of stderr.

    Defaults differ from tqdm only in ``mininterval`` (1 s: one kernel message per second per bar at most). A bar
    opened while another is running is nested (shown after ``›`` and dropped when it closes); a top-level bar leaves
    its final line (n/total, elapsed, overall rate) in the cell whatever its ``leave``: that line is the step's
    record in the executed notebook.
    """

    monitor_interval = 0  # no tqdm monitor thread: renders happen on the kernel's own thread

    def __init__(self, *args, **kwargs):
        kwargs["file"] = _Sink()
        kwargs.setdefault("mininterval", 1.0)
        self._esn_open = False
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if self._esn_open is None:  # closing: the board has the final line
            return True
        if not self._esn_open:
            self._esn_open = True
            _BOARD.opened(self)
        else:
            _BOARD.render()
        return True

    def close(self):
        if self.disable:
            return super().close()
        self._ema_dt = lambda: None  # the final line shows the overall rate, as tqdm does for a kept bar
        final = str(self)
        was_open, self._esn_open = self._esn_open, None
        super().close()
        if was_open:
            _BOARD.closed(self, final)
