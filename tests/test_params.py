"""esnlib.params.validate_params: every notebook parameter, each bad value named with what it got and what is
allowed; the notebooks' own defaults pass; no notebook parameter goes unchecked."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from esnlib.params import RULES, ParameterError, validate_params

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("[01][0-9]_*.ipynb")
                   if any("parameters" in c["metadata"].get("tags", []) for c in json.loads(p.read_text())["cells"]))
PAPER = [p for p in NOTEBOOKS if "01" <= p.name[:2] <= "09"]  # notebooks 01-09: esnlib.notebook.setup


def _defaults(path: Path) -> dict:
    """The values of a notebook's parameters cell."""
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    env: dict = {}
    exec("".join(cell["source"]), {}, env)
    return env


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_parameter_has_a_rule_and_its_default_passes(path):
    params = _defaults(path)
    assert params, path
    assert sorted(set(params) - set(RULES)) == [], f"{path.name}: parameters without a check in esnlib.params.RULES"
    validate_params(params)


def test_the_setup_cells_validate_before_loading():
    """01-09: the set-up cell is one esnlib.notebook.setup call on globals(), which validates before it loads
    (tests/test_notebook_setup.py); 10: validate_params first."""
    assert len(PAPER) == 9
    for path in PAPER:
        nb = json.loads(path.read_text())
        setup = "".join(nb["cells"][2]["source"])
        assert f'nb = setup("{path.stem}", task=' in setup and 'params=globals())' in setup, path.name
        assert "load_world" not in setup and "validate_params" not in setup, path.name
    nb = json.loads((ROOT / "notebooks" / "10_listening_test.ipynb").read_text())
    setup = "".join(nb["cells"][2]["source"])
    assert setup.index("validate_params(globals())") < setup.index("if smoke:")


GOOD = dict(model="demo", corpus_root="data/demo_corpus", corpus=None, corpus_n_utts=None, judges="prosody,spectral",
            naturalness="dnsmos", selector="CAS", r=None, c=50, max_wer=0.15, alpha=None, kind="steer", n_id=None,
            n_eval=None, n_cross=None, n_sweep=None, device="cpu", seed=0, smoke=False, batch_size=None,
            results_dir="data/results", stats_dir=None, figures_dir="figures", executor="local", ray_address=None,
            num_workers=None, rowwise=True, transfer_corpus=None, transfer_corpus_root=None, human_filter=None,
            pairs_path=None, answers_glob=None, filter_answers_glob=None, filter_clips_path=None, out_dir="data/listening", n_per_emotion=25,
            attention_checks=2, n_simulated_raters=20)

# (parameter, bad value, a fragment of "allowed" or of the reason) — one or more per parameter
BAD = [
    ("model", "qwen-foo", "unknown model 'qwen-foo'"),
    ("model", "", "a model registry name"),
    ("model", "no_such_pkg.mod:make", "module 'no_such_pkg.mod' is not importable"),
    ("corpus", "ESD", "one of ['demo', 'esd'"),
    ("transfer_corpus", "librispeech", "one of ['demo', 'esd'"),
    ("corpus_root", "", "a corpus folder path"),
    ("transfer_corpus_root", 3, "a corpus folder path"),
    ("corpus_n_utts", 0, "a whole number >= 1"),
    ("judges", "", "no judge named"),
    ("judges", "prosody,emo2vec", "unknown judge 'emo2vec'"),
    ("judges", "prosody,dnsmos", "['dnsmos'] score naturalness, not emotion"),
    ("judges", "prosody,prosody", "listed twice"),
    ("judges", 7, "emotion judges, comma-separated"),
    ("naturalness", "prosody", "'prosody' is an emotion judge"),
    ("naturalness", "mos", "unknown judge 'mos'"),
    ("selector", "CSA", "one of ['LAP', 'LAPE', 'MAD', 'CAS', 'random'] or ATTR (any case)"),
    ("r", 0.0, "a number in (0, 1)"),
    ("r", 1.5, "a number in (0, 1)"),
    ("r", "0.005", "a number in (0, 1)"),
    ("c", 0, "a whole number >= 1, or None"),
    ("c", 12.5, "a whole number >= 1, or None"),
    ("max_wer", -0.1, "a number >= 0"),
    ("max_wer", float("nan"), "a number >= 0"),
    ("alpha", -1.0, "kind='steer' takes alpha >= 0"),
    ("alpha", float("inf"), "a finite number"),
    ("alpha", "1", "a finite number"),
    ("attr_alpha", 0.0, "a finite number > 0"),
    ("attr_alpha", "0.25", "a finite number > 0"),
    ("kind", "steerr", "one of ['steer', 'add', 'clamp', 'deactivate']"),
    ("n_id", 0, "a whole number >= 1"),
    ("n_eval", -5, "a whole number >= 1"),
    ("n_cross", 2.0, "a whole number >= 1"),
    ("n_sweep", True, "a whole number >= 1"),
    ("device", "gpu", "a torch device"),
    ("device", "cuda:99", "CUDA device"),
    ("seed", -1, "a whole number >= 0"),
    ("smoke", "False", "True or False (a bool, not a string)"),
    ("batch_size", 0, "a whole number >= 1"),
    ("results_dir", "README.md", "README.md exists and is a file"),
    ("stats_dir", "", "a folder path"),
    ("figures_dir", None, "a folder path"),
    ("executor", "slurm", "one of ['local', 'ray']"),
    ("ray_address", 5, "a Ray address"),
    ("num_workers", 0, "a whole number >= 1"),
    ("rowwise", 1, "True or False"),
    ("human_filter", "no_such_answers.csv", "no file at no_such_answers.csv"),
    ("pairs_path", "no_such_pairs.parquet", "no file at no_such_pairs.parquet"),
    ("answers_glob", "", "a glob of answer files"),
    ("filter_answers_glob", 1, "a glob of answer files"),
    ("filter_clips_path", "no_such_clips.csv", "no file at no_such_clips.csv"),
    ("out_dir", "", "a folder path"),
    ("n_per_emotion", 0, "a whole number >= 1"),
    ("attention_checks", -1, "a whole number >= 0"),
    ("n_simulated_raters", 0, "a whole number >= 1"),
]


def test_every_rule_is_tried_with_a_bad_value():
    assert {name for name, _, _ in BAD} == set(RULES)


def test_good_values_pass():
    validate_params(GOOD)


@pytest.mark.parametrize("name,value,fragment", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_bad_parameter_is_named_with_what_it_got_and_what_is_allowed(monkeypatch, name, value, fragment):
    monkeypatch.chdir(ROOT)  # relative paths (README.md) from the repository root, as the notebooks run
    with pytest.raises(ParameterError) as ei:
        validate_params({**GOOD, name: value})
    msg = str(ei.value)
    bad_lines = [ln for ln in msg.splitlines() if ln.startswith("  ")]
    assert len(bad_lines) == 1, msg  # only this parameter is flagged
    assert bad_lines[0].startswith(f"  {name}: got {value!r}"), msg
    assert "allowed: " in bad_lines[0] and fragment in bad_lines[0], msg


def test_all_bad_parameters_are_listed_at_once():
    with pytest.raises(ParameterError) as ei:
        validate_params({**GOOD, "selector": "x", "kind": "y", "seed": -1})
    msg = str(ei.value)
    assert msg.startswith("3 bad notebook parameter(s)")
    assert all(f"  {n}: got" in msg for n in ("selector", "kind", "seed"))


def test_negative_alpha_is_fine_for_deactivate_and_unknown_names_are_ignored():
    validate_params({**GOOD, "kind": "deactivate", "alpha": -1.0, "np": object(), "NB": "01_baseline"})
