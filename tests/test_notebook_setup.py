"""esnlib.notebook: the paper notebooks' set-up. The config resolves every default as the old set-up cell did (demo
and other models, full and smoke mode), load_world gets the same arguments (so result keys do not change), a bad
parameter is the validate_params ParameterError raised before load_world, and the helpers write the notebooks' files.
No model is loaded: load_world is replaced by a stand-in."""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import esnlib.experiments as X  # noqa: E402
from esnlib import notebook as N  # noqa: E402
from esnlib.params import ParameterError, validate_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted((ROOT / "notebooks").glob("0[1-9]_*.ipynb"))


def _parameters(path: Path) -> dict:
    """The values of a notebook's parameters cell."""
    cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    env: dict = {}
    exec("".join(cell["source"]), {}, env)
    return env


def _old_setup(p: dict, task: str) -> tuple[dict, dict]:
    """The resolution and the load_world call of the set-up cell notebooks 01-09 had before esnlib.notebook
    (copied from it): (resolved values, load_world keyword arguments)."""
    S = X.defaults(p["smoke"])
    demo = p["model"] in ("demo", "demo-lalm")
    resolved = dict(
        r=(X.DEMO_RATE if demo else X.PAPER_RATE) if p["r"] is None else p["r"],
        alpha=(X.DEMO_ALPHA if demo else X.PAPER_ALPHA) if p["alpha"] is None else p["alpha"],
        n_eval=S["n_eval"] if p["n_eval"] is None else p["n_eval"],
        n_cross=S["n_cross"] if p["n_cross"] is None else p["n_cross"],
        n_sweep=S["n_sweep"] if p["n_sweep"] is None else p["n_sweep"],
        n_id=S["n_id"] if p["n_id"] is None else p["n_id"], demo=demo, S=S)
    kw = dict(model=p["model"], corpus_root=p["corpus_root"], judges=p["judges"], naturalness=p["naturalness"],
              results_dir=p["results_dir"], stats_dir=p["stats_dir"], device=p["device"], seed=p["seed"],
              batch_size=p["batch_size"] or S["batch_size"], shard_size=S["shard_size"],
              naturalness_per_shard=S["naturalness_per_shard"], n_utts=p["corpus_n_utts"] or S["corpus_n_utts"],
              executor=p["executor"], ray_address=p["ray_address"], num_workers=p["num_workers"],
              rowwise=p["rowwise"], corpus=p["corpus"], task=task)
    return resolved, kw


BASE = _parameters(ROOT / "notebooks" / "02_selectors.ipynb")
VARIANTS = [dict(model=m, smoke=s, **given) for m, s, given in itertools.product(
    ("demo", "demo-lalm", "qwen2.5-omni-7b", "esnlib.testing:demo_setup"), (False, True),
    ({}, dict(r=0.002, alpha=0.5, n_eval=5, n_cross=2, n_sweep=3, n_id=7, batch_size=4, corpus_n_utts=9),
     dict(alpha=0.0, kind="deactivate", n_cross=1)))]


@pytest.mark.parametrize("given", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in sorted(v)))
def test_config_resolves_defaults_as_the_old_setup_cell(given):
    params = {**BASE, **given}
    cfg = N.NotebookConfig.from_params(params)
    resolved, kw = _old_setup(params, "evc")
    assert {k: getattr(cfg, k) for k in ("r", "alpha", "n_eval", "n_cross", "n_sweep", "n_id")} == \
        {k: resolved[k] for k in ("r", "alpha", "n_eval", "n_cross", "n_sweep", "n_id")}
    assert cfg.demo == resolved["demo"] and cfg.sizes == resolved["S"]
    assert cfg.world_kwargs("evc") == kw
    assert cfg.c == params["c"] and cfg.max_wer == params["max_wer"] and cfg.selector == params["selector"]
    assert N.NotebookConfig.from_params(vars(cfg)) == cfg  # resolving is idempotent


def test_config_defaults_are_the_parameters_cells():
    """Every paper notebook's parameters cell, taken as it is, gives the same config as the dataclass defaults."""
    assert len(PAPER) == 9
    for path in PAPER:
        params = _parameters(path)
        assert set(params) <= {f.name for f in N.dataclasses.fields(N.NotebookConfig)}, path.name
        assert N.NotebookConfig.from_params(params) == N.NotebookConfig(), path.name
    demo, paper = N.NotebookConfig(), N.NotebookConfig(model="qwen2.5-omni-7b")
    assert (demo.r, demo.alpha, paper.r, paper.alpha) == (X.DEMO_RATE, X.DEMO_ALPHA, X.PAPER_RATE, X.PAPER_ALPHA)
    smoke = N.NotebookConfig(smoke=True)
    assert (smoke.n_eval, smoke.n_cross, smoke.n_sweep, smoke.batch_size) == (2, 1, 1, 16)
    with pytest.raises(N.dataclasses.FrozenInstanceError):
        smoke.r = 0.5


class _FakeWorld(SimpleNamespace):
    def sites(self, scope):
        assert scope == "lm"
        return [SimpleNamespace(width=100), SimpleNamespace(width=50)]


@pytest.fixture
def fake_load(monkeypatch):
    calls = []

    def load_world(**kw):
        calls.append(kw)
        return _FakeWorld(judges={"prosody": object(), "spectral": object()}, corpus="demo_corpus",
                          corpus_kind="demo", utts=[0] * 70, adapter=SimpleNamespace(describe=lambda: {"model": "x"}))

    monkeypatch.setattr(X, "load_world", load_world)
    return calls


@pytest.mark.parametrize("task", ["evc", "ser"])
def test_setup_loads_the_world_with_the_old_arguments(fake_load, tmp_path, capsys, task):
    params = {**BASE, "smoke": True, "results_dir": str(tmp_path / "r"), "figures_dir": str(tmp_path / "f"),
              "np": np, "X": X, "__name__": "__main__"}  # a notebook's globals(): other names are ignored
    nb = N.setup("02_selectors", task=task, params=params)
    resolved, kw = _old_setup(params, task)
    assert fake_load == [kw]
    assert nb.name == "02_selectors" and nb.task == task and nb.cfg == N.NotebookConfig.from_params(params)
    assert nb.judges == ["prosody", "spectral"] and nb.n_lm == 150 and nb.world.corpus == "demo_corpus"
    r, n_lm = resolved["r"], 150  # the line the old set-up cell printed
    assert capsys.readouterr().out.strip() == (
        "model {'model': 'x'} | corpus demo_corpus (demo, 70 utterances) | judges ['prosody', 'spectral'] | "
        f"N(lm) = {n_lm} | r = {r:.4f} -> {int(np.floor(r * n_lm))} neurons per emotion | c = 50 | "
        f"alpha = {resolved['alpha']} | evaluation: 2 sources (cross cells 1), sweeps 1")


@pytest.mark.parametrize("bad", [dict(selector="CSA"), dict(alpha=-1.0, seed=-1), dict(smoke="False"),
                                 dict(r=1.5, kind="steerr")])
def test_bad_parameters_raise_validate_params_error_before_load_world(monkeypatch, bad):
    def load_world(**kw):
        raise AssertionError("load_world was called with bad parameters")

    monkeypatch.setattr(X, "load_world", load_world)
    params = {**BASE, **bad, "corpus_root": "/no/such/corpus"}
    with pytest.raises(ParameterError) as expected:
        validate_params(params)
    with pytest.raises(ParameterError) as ei:
        N.setup("02_selectors", task="evc", params=params)
    assert str(ei.value) == str(expected.value)
    assert all(f"  {name}: got" in str(ei.value) for name in bad)


def _rows(tmp_path: Path, n: int = 3, mask: bool = False) -> pd.DataFrame:
    import soundfile as sf

    rows = []
    for i in range(n):
        wav = tmp_path / f"{'m' if mask else 'b'}{i}.wav"
        sf.write(wav, np.zeros(160, dtype=np.float32), 16000)
        rows.append({"sample_id": f"s{i}", "utt_id": f"u{i}", "speaker": "0011", "split": "TEST-SEEN",
                     "target": "sad", "hyp": f"text {i}", "audio_path": str(wav), "pred_prosody": "sad",
                     "post_prosody": 0.7, "wer": 0.0, "naturalness": 3.0,
                     **({"selector": "CAS", "mask_emotion": "sad", "kind": "steer", "alpha": 1.0, "rate": 0.01,
                         "cap": 50} if mask else {})})
    return pd.DataFrame(rows)


def test_helpers_write_the_notebooks_files(fake_load, tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    figs = tmp_path / "figs"
    nb = N.setup("05_intervention", task="evc", params={**BASE, "figures_dir": str(figs)}, verbose=False)

    fig = plt.figure()
    plt.plot([0, 1])
    assert nb.save(fig, "tradeoff") is None
    assert sorted(p.name for p in figs.iterdir() if p.is_file()) == ["05_intervention_tradeoff.pdf",
                                                                     "05_intervention_tradeoff.png"]
    assert shown == [fig] and not plt.fignum_exists(fig.number)  # displayed, then closed

    df = pd.DataFrame({"e_tgt": ["sad"], "self": [1.25]})
    assert nb.table(df, "table4") is df
    assert nb.table(df, "kinds", latex=False) is df
    tables = figs / "tables"
    assert sorted(p.name for p in tables.iterdir()) == ["05_intervention_kinds.csv", "05_intervention_table4.csv",
                                                        "05_intervention_table4.tex"]
    ref = tmp_path / "ref"
    X.save_table(df, "05_intervention_table4", ref)
    for ext in ("csv", "tex"):
        assert (tables / f"05_intervention_table4.{ext}").read_text() == \
            (ref / "tables" / f"05_intervention_table4.{ext}").read_text()

    base, rows = _rows(tmp_path), _rows(tmp_path, mask=True)
    out = nb.rows_csv(base, rows)
    assert out == tables / "05_intervention_rows.csv"
    assert len(pd.read_csv(out)) == 6

    shown.clear()
    assert nb.listen(base, rows, k=2) is None
    kinds = [type(o).__name__ for o in shown]
    assert kinds == ["Markdown", "Audio", "Audio"] * 2
    assert shown[0].data == "**s0** (e_tgt = sad, e_mask = sad) — baseline: *text 0* / intervened: *text 0*"


def test_the_explorer_builds_the_notebooks_world(fake_load):
    """explorer.notebook_world (00_explore) loads the world with the notebooks' arguments: shared result keys."""
    from esnlib import explorer

    explorer.notebook_world("demo", corpus_root="c", smoke=True, seed=3, batch_size=None, corpus_n_utts=None)
    params = {**BASE, "corpus_root": "c", "smoke": True, "seed": 3}
    assert fake_load == [_old_setup(params, "evc")[1]]
