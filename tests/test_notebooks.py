"""Every paper notebook runs headless in smoke mode (papermill, through scripts/run_notebooks.py) and draws its
figures; the sources are saved without outputs and start with a cell tagged "parameters"; every notebook is a
jupytext pair (notebooks/NN_name.py, percent format, and its .ipynb) whose cells agree."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("[01][0-9]_*.ipynb") if p.name[:2] != "00")

EXPECTED = {
    "01_baseline": ["emotion_match", "label_distribution"],
    "02_selectors": ["summary", "heatmaps"],
    "03_rate_sweep": ["heatmaps", "tradeoff"],
    "04_cap_sweep": ["heatmaps"],
    "05_intervention": ["kinds_heatmaps", "alpha_heatmaps", "tradeoff"],
    "06_localization": ["layer_counts", "talker_summary"],
    "07_generalization": ["seen_unseen", "transfer"],
    "08_recognition": ["effects", "label_free", "transfer"],
    "09_selector_validity": ["validity", "causal_effects", "attr_steering"],
    "10_listening_test": ["fig8_SIMULATED"],
}
TABLES = {"01_baseline": ["table2"], "02_selectors": ["table3"], "05_intervention": ["table4"],
          "06_localization": ["table5", "table6"], "07_generalization": ["fig10"]}


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["run_notebooks"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_sources_have_parameters_cell_and_no_outputs():
    assert [p.stem for p in NOTEBOOKS] == list(EXPECTED)
    for p in NOTEBOOKS:
        nb = json.loads(p.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", []), p.name
        src = "".join(code[0]["source"])
        keys = ("smoke", "figures_dir", "seed") if p.stem.startswith("10_") else (
            "model", "corpus_root", "judges", "smoke", "results_dir", "figures_dir", "seed", "device")
        for key in keys:
            assert f"{key} =" in src, (p.name, key)
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{p.name} has outputs"


@pytest.mark.parametrize("ipynb", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_papermill_sees_every_parameter(ipynb):
    """Every name the parameters cell assigns is one papermill's inspection finds, so `-p name value` is accepted
    (scripts/run_notebooks.py refuses names it does not know). Papermill skips a line it cannot parse with a
    warning, e.g. one whose comment holds `<=`."""
    import ast

    import nbformat
    import papermill as pm

    cell = next(c for c in nbformat.read(ipynb, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assigned = {t.id for node in ast.parse(cell.source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    unseen = assigned - set(pm.inspect_notebook(str(ipynb)))
    assert assigned and not unseen, sorted(unseen)


def _pair_problems(ipynb: Path) -> list[str]:
    """What differs between a notebook and its jupytext percent source: a missing .py, the pairing metadata, or the
    cells (type, source, tags); also a cell without an id or a repeated id (JupyterLab and diffs key cells by id)."""
    import jupytext
    import nbformat

    py = ipynb.with_suffix(".py")
    if not py.exists():
        return [f"{ipynb.name} has no jupytext source {py.name}: run `jupytext --set-formats ipynb,py:percent {ipynb}`"]
    nb = nbformat.read(ipynb, as_version=4)
    problems = []
    if nb.metadata.get("jupytext", {}).get("formats") != "ipynb,py:percent":
        problems.append(f"{ipynb.name}: metadata.jupytext.formats is not 'ipynb,py:percent' (the pair is not declared)")
    cells = lambda book: [(c.cell_type, c.source.strip(), c.metadata.get("tags", [])) for c in book.cells]  # noqa: E731
    src, ref = cells(jupytext.read(py)), cells(nb)
    if src != ref:
        k = next((i for i, (a, b) in enumerate(zip(src, ref)) if a != b), min(len(src), len(ref)))
        problems.append(f"{py.name} and {ipynb.name} are out of sync from cell {k} ({len(src)} vs {len(ref)} cells): "
                        f"run `jupytext --sync {py.relative_to(ROOT) if py.is_relative_to(ROOT) else py}`")
    ids = [c.get("id") for c in nb.cells]
    if None in ids or len(set(ids)) != len(ids):
        problems.append(f"{ipynb.name}: cell ids missing or repeated")
    return problems


ALL_NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("ipynb", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_its_jupytext_source_are_one_pair(ipynb):
    """Each pair agrees; the .ipynb is saved without outputs and its first code cell is papermill's parameters cell."""
    assert _pair_problems(ipynb) == []
    code = [c for c in json.loads(ipynb.read_text())["cells"] if c["cell_type"] == "code"]
    assert code[0]["metadata"].get("tags") == ["parameters"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)


def test_every_jupytext_source_has_its_notebook():
    assert {p.name[:2] for p in ALL_NOTEBOOKS} >= {f"{i:02d}" for i in range(11)}  # 00-10 at least
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.py")) == [p.stem for p in ALL_NOTEBOOKS]


def test_the_pair_check_sees_an_unsynced_edit(tmp_path):
    """Edit the .py (as in an editor) without syncing: the check names the pair and the command that fixes it."""
    import shutil

    for suffix in (".py", ".ipynb"):
        shutil.copy(NOTEBOOKS[2].with_suffix(suffix), tmp_path / NOTEBOOKS[2].with_suffix(suffix).name)
    copy = tmp_path / NOTEBOOKS[2].name
    assert _pair_problems(copy) == []
    py = copy.with_suffix(".py")
    py.write_text(py.read_text().replace("c = 50 ", "c = 60 ", 1))
    assert len(problems := _pair_problems(copy)) == 1 and "out of sync from cell 1" in problems[0]
    assert "jupytext --sync" in problems[0]
    py.unlink()
    assert "has no jupytext source" in _pair_problems(copy)[0]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run of all notebooks (shared results store, so later notebooks reuse earlier generations).

    The paper's success filter (judge says e_tgt, WER <= 0.15) is kept: with 24 identification sources per target
    the committed demo model must realize at least two target emotions for identification to run at all.
    """
    from esnlib.corpora.synthetic import build_demo_corpus
    from esnlib.experiments import defaults

    tmp = tmp_path_factory.mktemp("nb")
    # the same tiny corpus as tests/test_experiments.py (10 speakers x 5 emotions x 7 sentences): built once. A
    # corpus root outside the default data folder is never built implicitly, so the test asks for both demo corpora
    # (notebook 07 puts its second one, seed + 1, next to the first) explicitly.
    corpus = tmp_path_factory.getbasetemp() / "demo_corpus_small"
    for root, n, seed in ((corpus, 7, 0), (corpus.with_name(corpus.name + "_b"), defaults(True)["second_corpus_n_utts"],
                                           1)):
        if not (root / "demo_corpus.json").exists():
            build_demo_corpus(root, n_utts=n, seed=seed, workers=2, progress=False)
    rc = _runner().main(["--smoke", "--out", str(tmp / "run"), "-p", "corpus_root", str(corpus),
                         "-p", "corpus_n_utts", "7",
                         "-p", "results_dir", str(tmp / "results"), "-p", "figures_dir", str(tmp / "figures")])
    return rc, tmp


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("name", list(EXPECTED))
def test_notebook_runs_and_draws_its_figures(smoke_run, name):
    rc, tmp = smoke_run
    executed = tmp / "run" / f"{name}.ipynb"
    assert executed.exists(), f"{name} was not executed"
    nb = json.loads(executed.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    for fig in EXPECTED[name]:
        for ext in ("pdf", "png"):
            f = tmp / "figures" / f"{name}_{fig}.{ext}"
            assert f.exists() and f.stat().st_size > 1000, f"missing figure {f.name}"
    for t in TABLES.get(name, []):
        assert (tmp / "figures" / "tables" / f"{name}_{t}.csv").exists()
        assert (tmp / "figures" / "tables" / f"{name}_{t}.tex").exists()
    if name != "10_listening_test":  # the per-sample rows behind the tables, baseline and intervened
        import pandas as pd

        rows = pd.read_csv(tmp / "figures" / "tables" / f"{name}_rows.csv")
        assert (rows.selector == "none").any(), name
        assert (rows.selector != "none").any() != name.startswith("01"), name  # 01 is the baseline alone
        cols = {"emotion", "pred", "correct", "e_mask", "kind"} if name.startswith("08") else \
            {"e_tgt", "e_mask", "judge", "pred", "match", "wer", "kind", "alpha"}
        assert cols <= set(rows.columns), (name, sorted(cols - set(rows.columns)))
        if name.startswith("09"):  # ATTR steered and deactivated, next to its random and CAS controls
            assert {"ATTR", "random", "CAS"} <= set(rows.selector) and "deactivate" in set(rows.kind)


@pytest.mark.slow
@pytest.mark.notebooks
def test_runner_exit_code_and_sources_untouched(smoke_run):
    rc, tmp = smoke_run
    assert rc == 0
    for p in NOTEBOOKS:  # executed copies went to the run folder, never over the sources
        nb = json.loads(p.read_text())
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def test_runner_fails_on_a_broken_notebook(tmp_path, capsys):
    """Valid parameters, a corpus that is not there: the notebook fails in load_world; the summary says why."""
    rc = _runner().main(["--only", "01", "--out", str(tmp_path / "run"), "-p", "corpus_root",
                         str(tmp_path / "no_such_corpus"), "-p", "smoke", "True"])
    assert rc == 1
    out = capsys.readouterr().out
    assert "01_baseline                  FAILED" in out and "CorpusError: corpus root " in out
    assert 'nb = setup("01_baseline", task="evc", params=globals())' in out  # the set-up cell's line that raised
    assert "raised in " in out and " (esnlib/" in out  # where, relative to the repository


def test_a_bad_parameter_stops_the_notebook_before_load_world(tmp_path):
    """The set-up cell validates every parameter first: a bad selector is a ParameterError, not the CorpusError
    that load_world would raise for the missing corpus (and not an error after minutes of identification)."""
    from esnlib.nbrun import Reporter, execute

    with pytest.raises(Exception) as ei:
        execute(NOTEBOOKS[1], tmp_path / "02.ipynb", {"selector": "CSA", "smoke": True, "corpus_root": str(
            tmp_path / "no_such_corpus"), "results_dir": str(tmp_path / "r")}, Reporter(mode="off"), cwd=str(ROOT))
    assert ei.value.ename == "ParameterError"
    assert "selector: got 'CSA'" in ei.value.evalue
