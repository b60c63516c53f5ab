"""Run the paper notebooks (notebooks/01-10) headless with papermill, in order.

Executed copies go to ``runs/<timestamp>/`` (the sources are never overwritten); figures go to ``figures_dir``
(default ``figures/``; in ``--smoke`` mode ``<run dir>/figures``). The ``-p`` values are checked (names against the
notebooks' parameters cells, values with esnlib.params.validate_params) before any kernel starts: exit code 2.
While a notebook runs, the terminal shows its cell k of n, the elapsed time and the running step's own progress
(esnlib.nbrun; ``--progress``). Prints a summary with times and, for a failed notebook, its exception, the cell line
that raised and where; exits 1 if any notebook fails.

    python scripts/run_notebooks.py                       # the full demo world (make paper)
    python scripts/run_notebooks.py --smoke               # tiny sizes, for tests
    python scripts/run_notebooks.py -p model qwen2.5-omni-7b -p corpus_root /data/ESD -p judges emotion2vec,qwen3-omni
    python scripts/run_notebooks.py --only 01 02          # a subset (by number or name)
"""
from __future__ import annotations

import argparse
import ast
import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# 00_explore is left out on purpose: it is interactive (widgets) and computes nothing until Show is pressed
# (docs/notebooks.md, "The explorer"); tests/test_explorer.py runs it headless.
SERIES = [f"{i:02d}" for i in range(1, 11)]


def parse_value(text: str):
    """A -p value: a Python literal when it parses as one (1, 0.5, True, None, "x"), else the raw string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The notebooks 01-10 in order (or those named in ``only`` by number or file stem)."""
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if p.name[:2] in SERIES)
    if not found:
        raise SystemExit(f"no notebooks found under {NOTEBOOKS}")
    if only:
        want = set(only)
        sel = [p for p in found if p.name[:2] in want or p.stem in want]
        unknown = want - {p.name[:2] for p in sel} - {p.stem for p in sel}
        if unknown:
            raise SystemExit(f"--only: unknown notebooks {sorted(unknown)}; available: {[p.stem for p in found]}")
        return sel
    return found


def notebook_parameters(params: dict, notebook: str) -> dict:
    """The parameters one notebook gets: ``params``, plus for notebook 10 (which has no ``results_dir``) an
    ``out_dir`` for its listening pages derived from ``results_dir`` (esnlib.experiments.run_dirs) when only that was
    given, so a run with its own results_dir (``--smoke`` included) does not write into data/listening."""
    if not notebook.startswith("10_") or "out_dir" in params or "results_dir" not in params:
        return params
    from esnlib.experiments import run_dirs

    return {**params, "out_dir": str(run_dirs(params["results_dir"])["listening"])}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="shrink every run (sets the notebooks' smoke parameter)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="a notebook parameter (repeatable), e.g. -p alpha 2.0")
    ap.add_argument("--only", nargs="+", help="run only these notebooks (numbers like 01 or stems)")
    ap.add_argument("--out", type=Path, default=None, help="folder for executed copies (default runs/<timestamp>)")
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default none)")
    ap.add_argument("--progress", choices=("auto", "line", "log", "off"), default="auto",
                    help="terminal progress: line (one status line rewritten in place), log (a line per cell and "
                         "finished step, the running step every --progress-every s), off; auto: line on a terminal, "
                         "else log")
    ap.add_argument("--progress-every", type=float, default=30.0, metavar="S",
                    help="log mode: print the running step every S seconds (default 30)")
    return ap


def check_parameters(given: dict, books: list[Path]) -> list[str]:
    """Problems with the ``-p`` values, found without starting a kernel: names that no selected notebook's parameters
    cell defines (papermill would only warn), and values esnlib.params.validate_params refuses."""
    import difflib

    import papermill as pm

    from esnlib.params import ParameterError, validate_params

    known: set[str] = set()
    for b in books:
        known |= set(pm.inspect_notebook(str(b)))
    problems = []
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            problems.append(f"  {name}: no selected notebook has this parameter"
                            + (f" (did you mean {close[0]!r}?)" if close else f"; known: {sorted(known)}"))
    try:
        validate_params(given)
    except ParameterError as e:
        problems += [ln for ln in str(e).splitlines() if ln.startswith("  ")]
    return problems


def run(books: list[Path], out: Path, params: dict, reporter, kernel: str = "python3", timeout: int | None = None,
        fail_fast: bool = False, cwd: Path = ROOT) -> list[tuple[str, str, float, list[str]]]:
    """Execute ``books`` in order into ``out``: one (name, "ok" or "FAILED", seconds, failure lines) per notebook."""
    from esnlib.nbrun import execute, failure_summary

    out.mkdir(parents=True, exist_ok=True)
    summary = []
    for i, src in enumerate(books, 1):
        t0 = time.perf_counter()
        status, err = "ok", []
        reporter.println(f"[{i}/{len(books)}] {src.stem}")
        try:
            execute(src, out / src.name, notebook_parameters(params, src.name), reporter, name=src.stem,
                    kernel_name=kernel, cwd=str(cwd), execution_timeout=timeout)
        except Exception as exc:  # papermill's PapermillExecutionError carries the kernel's exception
            status, err = "FAILED", failure_summary(exc, root=str(cwd))
        secs = time.perf_counter() - t0
        summary.append((src.stem, status, secs, err))
        reporter.println(f"{src.stem:28s} {status:6s} {secs:7.1f} s" + "".join(f"\n    {ln}" for ln in err))
        if status != "ok" and fail_fast:
            break
    return summary


def main(argv: list[str] | None = None) -> int:
    from esnlib.nbrun import Reporter

    args = build_parser().parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or ROOT / "runs" / (stamp + ("-smoke" if args.smoke else ""))).resolve()
    given = {k: parse_value(v) for k, v in args.parameter}
    params = dict(given)
    if args.smoke:
        params.setdefault("smoke", True)
        params.setdefault("corpus_root", str(ROOT / "data" / "smoke_corpus"))
        params.setdefault("results_dir", str(ROOT / "data" / "results_smoke"))
        params.setdefault("figures_dir", str(out / "figures"))
    # relative paths are taken from the repository root (the notebooks run with cwd = ROOT)
    books = notebooks(args.only)
    problems = check_parameters(given, books)
    if problems:
        print("bad parameters (nothing was run):\n" + "\n".join(problems), file=sys.stderr)
        return 2
    reporter = Reporter(mode=args.progress, every=args.progress_every)
    reporter.println(f"running {len(books)} notebooks -> {out}\nparameters: {params}")
    t_all = time.perf_counter()
    summary = run(books, out, params, reporter, kernel=args.kernel, timeout=args.timeout, fail_fast=args.fail_fast)
    total = time.perf_counter() - t_all
    print("\nsummary")
    for name, status, secs, err in summary:
        print(f"  {name:28s} {status:6s} {secs:7.1f} s" + (f"  {err[0]}" if err else ""))
    n_bad = sum(s != "ok" for _, s, _, _ in summary)
    print(f"  {'total':28s} {'ok' if not n_bad else f'{n_bad} failed':6s} {total:7.1f} s\nexecuted copies: {out}")
    if "figures_dir" in params:
        print(f"figures: {params['figures_dir']}")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
