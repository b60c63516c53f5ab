"""scripts/run_notebooks.py on tiny throwaway notebooks: progress on the terminal (cell k of n, the running step's own
bar), clean executed notebooks (one progress line per cell, no stderr), the real exception in the summary, and bad
-p values refused before any kernel starts."""
from __future__ import annotations

import io
import json
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from test_notebooks import _runner  # scripts/run_notebooks.py as a module

pytest.importorskip("papermill")

BARS = """\
import time
from esnlib.progress import tqdm

for i in tqdm(range(n), desc="outer", mininterval=0.05):
    for j in tqdm(range(2), desc="inner", leave=False, mininterval=0.05):
        time.sleep(0.15)
"""
FAILS = """\
import json

def parse(text):
    return json.loads(text)

y = parse("{not json")
print("never")
"""


def _book(path, code_cells):
    params = new_code_cell("n = 2")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# throwaway"), params] + [new_code_cell(c) for c in code_cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Two notebooks in one run, progress in log mode into a buffer: a_progress (nested bars), b_fails."""
    from esnlib.nbrun import Reporter

    tmp = tmp_path_factory.mktemp("runner")
    books = [_book(tmp / "a_progress.ipynb", [BARS, "print('after')"]), _book(tmp / "b_fails.ipynb", [FAILS])]
    buf = io.StringIO()
    summary = _runner().run(books, tmp / "out", {"n": 8}, Reporter(buf, mode="log", every=0.2), cwd=tmp)
    return summary, buf.getvalue(), tmp / "out"


def test_terminal_shows_cell_k_of_n_and_the_running_steps_progress(ran):
    summary, text, _ = ran
    # code cells: parameters, papermill's injected parameters, the bars, the print
    assert re.search(r"a_progress  cell 3/4  \d+:\d\d  import time", text), text
    running = [ln for ln in text.splitlines() if "cell 3/4" in ln and "outer:" in ln]
    fractions = {int(m.group(1)) for ln in running for m in [re.search(r"\| (\d)/8 \[", ln)] if m}
    assert 0 in fractions, text  # the step is announced when it starts
    assert fractions & set(range(1, 8)), text  # and its own progress shows while it runs
    assert re.search(r"a_progress  done: outer: 100%\|█+\| 8/8 \[", text), text
    assert "a_progress  cell 4/4" in text


def test_executed_notebook_keeps_one_progress_line_and_no_stderr(ran):
    _, _, out = ran
    raw = (out / "a_progress.ipynb").read_text()
    assert "IProgress" not in raw
    nb = json.loads(raw)
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o.get("name") == "stderr"]
    bars = nb["cells"][3]["outputs"]
    assert len(bars) == 1 and bars[0]["output_type"] == "display_data"
    text = "".join(bars[0]["data"]["text/plain"])
    assert text.startswith("outer: 100%") and "8/8" in text and "inner" not in text, text
    assert len(json.dumps(bars)) < 1000


def test_summary_names_the_exception_and_the_cell_line_that_raised(ran):
    summary, text, _ = ran
    assert [(name, status) for name, status, _, _ in summary] == [("a_progress", "ok"), ("b_fails", "FAILED")]
    err = summary[1][3]
    assert err[0].startswith("JSONDecodeError: Expecting property name enclosed in double quotes"), err
    assert re.fullmatch(r'at cell In \[\d+\], line 6: y = parse\("\{not json"\)', err[1]), err
    assert re.fullmatch(r"raised in [\w.]+ \(.*json[/\\]decoder\.py:\d+\)", err[2]), err
    assert not any("return json.loads" in ln for ln in err)  # no unrelated source line
    assert "b_fails" in text and err[0] in text


def test_summary_of_other_failures_is_type_and_message():
    from esnlib.nbrun import failure_summary

    assert failure_summary(TimeoutError("cell timed out after 5 s")) == ["TimeoutError: cell timed out after 5 s"]


def test_bad_parameters_are_refused_before_any_kernel_starts(tmp_path, capsys):
    out = tmp_path / "run"
    rc = _runner().main(["--only", "02", "--out", str(out), "-p", "selector", "CSA", "-p", "alpha", "-1",
                         "-p", "selecter", "LAP"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "selector: got 'CSA' (str); allowed: one of ['LAP', 'LAPE', 'MAD', 'CAS', 'random']" in err
    assert "alpha: got -1 (int)" in err
    assert "selecter: no selected notebook has this parameter (did you mean 'selector'?)" in err
    assert not out.exists()


def test_tqdm_outside_a_kernel_is_plain_tqdm():
    from tqdm.std import tqdm as std

    from esnlib.progress import KernelBar, in_kernel, tqdm

    assert not in_kernel()
    bar = tqdm(range(3), file=io.StringIO())
    assert type(bar) is std and not isinstance(bar, KernelBar)
    bar.close()


def test_reporter_line_mode_rewrites_one_status_line():
    from esnlib.nbrun import Reporter

    buf = io.StringIO()
    rep = Reporter(buf, mode="line")
    rep.notebook_start("nb", 5)
    rep.cell_start(2, "x = 1")
    rep.progress("d1", {"active": "EVC:  40%|████      | 2/5", "done": [], "step": 1})
    rep.progress("d1", {"active": "", "done": ["EVC: 100%|██████████| 5/5"], "step": 1})
    rep.notebook_end()
    text = buf.getvalue()
    assert "\r\x1b[Knb  cell 2/5  0:00  EVC:  40%|████      | 2/5" in text
    assert "nb  done: EVC: 100%|██████████| 5/5\n" in text
    assert text.endswith("\r\x1b[K")  # the status line is cleared when the notebook ends
