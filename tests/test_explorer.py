"""esnlib.explorer headless: the settings checks, the computation (reads what is stored, generates what is not, agrees
with the library's own calls) and the widgets driven as a user drives them — a value is only ever set on a control
that is visible and enabled, buttons are clicked — on the tiny demo LALM (random weights, real DemoOmni classes)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import esnlib.experiments as X
from esnlib import TARGET_EMOTIONS
from esnlib.explorer import STEPS, Explorer, ExplorerUI, Settings, layer_figure
from test_experiments import shared_corpus

N_ID = 4
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(make_world, identify options): the tiny demo LALM on the tiny demo corpus, one world per test module; every
    identification conversion counts as a success (human filter), since a random-weight model rarely realizes a
    target."""
    from esnlib.testing import demo_setup

    tmp = tmp_path_factory.mktemp("explorer")
    # testing.demo_setup's tiny model: random weights drawn wide enough that text and prosody vary (clips get rendered)
    world = X.load_world(adapter=demo_setup(0, "tiny", threads=None), corpus_root=shared_corpus(tmp_path_factory),
                         judges="prosody", naturalness=None, results_dir=tmp / "results", shard_size=4,
                         progress=False)
    human = pd.DataFrame([{"utt_id": u.id, "target": t, "human_success": True}
                          for u in world.split("IDENTIFICATION", N_ID) for t in TARGET_EMOTIONS])

    def make_world(model):
        if model != "tiny":
            raise RuntimeError(f"this test has no model {model!r}")
        return world

    return make_world, {"human": human, "max_wer": 100.0}


def explorer(tiny) -> Explorer:
    make_world, opts = tiny
    return Explorer(make_world, smoke=True, n_id=N_ID, identify_options=opts)


# ------------------------------------------------------------------------------------------------------ settings
def test_settings_defaults_follow_the_notebooks():
    d = Settings().resolved()
    S = X.defaults()
    assert (d.r, d.alpha, d.n, d.n_cross, d.c) == (X.DEMO_RATE, X.DEMO_ALPHA, S["n_eval"], S["n_cross"], X.PAPER_CAP)
    assert Settings(model="qwen2.5-omni-7b").resolved().r == X.PAPER_RATE
    assert Settings(kind="add").resolved().alpha == X.KIND_ALPHAS["add"]
    assert Settings(kind="deactivate", alpha=3.0).resolved().alpha == 0.0  # one key for deactivation
    assert Settings(n=4).resolved(smoke=True).n_cross == X.defaults(True)["n_cross"]
    assert Settings(selector="cas").resolved().check().selector == "CAS"


@pytest.mark.parametrize("bad, words", [
    (dict(split="IDENTIFICATION"), "split"), (dict(selector="CASS"), "unknown method"),
    (dict(e_mask="neutral"), "e_mask"), (dict(r=1.5), "rate r"), (dict(c=0), "c (success-set cap)"),
    (dict(kind="boost"), "kind"), (dict(alpha=-1.0), "alpha must be >= 0"), (dict(n=0), "n (number"),
    (dict(n=4, n_cross=5), "n_cross (5) must not exceed n (4)"), (dict(model=" "), "model")])
def test_settings_check_names_the_problem(bad, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Settings(**bad).resolved().check()


def test_bad_settings_fail_before_the_world_is_built():
    def make_world(model):
        raise AssertionError("built a world for bad settings")

    with pytest.raises(ValueError, match="split"):
        Explorer(make_world).run(Settings(split="IDENTIFICATION"))


# --------------------------------------------------------------------------------------------------- computation
def test_generates_once_then_reads_and_agrees_with_the_library(tiny):
    ex = explorer(tiny)
    s = Settings(model="tiny", selector="CAS", e_mask="sad", r=0.05, c=3, kind="steer", alpha=2.0, n=3, n_cross=2)
    assert ex.missing(s) == ["identification", "baseline", "evaluation"]
    seen = []
    first = ex.run(s, on_step=lambda k, name: seen.append((k, name)))
    assert seen == [*enumerate(STEPS), (len(STEPS), "done")]
    # identification 4 sources x 4 targets, baseline 3 x 4, evaluation: 2 sources x 4 e_tgt + 1 more self pair
    assert first.missing == ["identification", "baseline", "evaluation"] and not first.cached
    assert first.generated == N_ID * 4 + 3 * 4 + (2 * 4 + 1)
    assert ex.missing(s) == []
    again = ex.run(s)
    assert again.cached and again.generated == 0
    pd.testing.assert_frame_equal(first.summary, again.summary)

    # the same numbers straight from the library
    w = ex.world("tiny")
    ms = X.identify(w, "CAS", rate=0.05, cap=3, n=N_ID, **tiny[1])
    base = X.baseline(w, X.TEST, n=3)
    rows = X.evaluate_settings(w, [(ms, "steer", 2.0)], X.TEST, 3, mask_emotions=["sad"], n_cross=2)[0]
    want = X.summarize(rows, base)
    for col in ("self", "self_lo", "self_hi", "cross", "cross_lo", "cross_hi", "n_pairs", "n_cross_pairs"):
        assert first.summary[col].tolist() == pytest.approx(want[col].tolist(), nan_ok=True), col
    d = first.delta_table()
    assert d["n self pairs"].tolist() == [3] and d["n cross pairs"].tolist() == [2 * 3]
    assert set(first.rows["mask_emotion"]) == {"sad"}
    np.testing.assert_array_equal(first.maskset.masks["sad"], ms.masks["sad"])


def test_attr_is_a_selector_of_the_explorer(tiny):
    """ATTR (esnlib.attribution) runs from the explorer like the paper's selectors; probing what is stored computes no
    gradient (its gradient passes count as generation), and a second run reads everything."""
    ex = explorer(tiny)
    s = Settings(model="tiny", selector="attr", e_mask="angry", r=0.05, c=3, kind="steer", alpha=0.05, n=2, n_cross=1)
    assert s.resolved().check().selector == "ATTR"
    assert "identification" in ex.missing(s)  # the probe refused the gradient pass instead of running it
    first = ex.run(s)
    assert not first.cached and first.generated >= 4 * 3  # 3 successes x 4 emotions of gradient passes at least
    assert first.maskset.selector == "ATTR" and first.maskset.scores is not None
    assert ex.missing(s) == [] and ex.run(s).generated == 0


def test_reads_units_the_notebooks_stored(tiny):
    """A condition the notebooks' calls already evaluated (all e_mask of a mask set at once) is read, not
    generated: the explorer's conditions have the same keys."""
    ex = explorer(tiny)
    w = ex.world("tiny")
    ms = X.identify(w, "LAP", rate=0.05, cap=3, n=N_ID, **tiny[1])
    X.baseline(w, X.TEST, n=2)
    X.evaluate_settings(w, [(ms, "add", 0.5)], X.TEST, 2, n_cross=1)
    s = Settings(model="tiny", selector="LAP", e_mask="happy", r=0.05, c=3, kind="add", alpha=0.5, n=2, n_cross=1)
    assert ex.missing(s) == []
    exp = ex.run(s)
    assert exp.cached and exp.generated == 0 and exp.summary["n_pairs"].tolist() == [2]


def test_layer_counts_match_the_masks(tiny):
    ex = explorer(tiny)
    s = Settings(model="tiny", selector="CAS", e_mask="angry", r=0.05, c=3, n=2, n_cross=1)
    ms = ex.mask(s.resolved(True).check())
    layers = ex.layer_counts(s, ms)
    assert list(layers.columns) == list(ms.masks)
    assert {e: int(layers[e].sum()) for e in ms.masks} == ms.sizes()
    assert len(layers) == len(ex.world("tiny").sites("lm"))
    fig = layer_figure(layers, "angry")
    assert fig.axes[0].get_title().startswith(f"{ms.sizes()['angry']} ESNs")
    with pytest.raises(ValueError, match="no column 'neutral'"):
        layer_figure(layers, "neutral")


def test_listen_stored_and_rerendered_clips(tiny):
    import soundfile as sf

    ex = explorer(tiny)
    s = Settings(model="tiny", selector="CAS", e_mask="happy", r=0.05, c=3, kind="steer", alpha=2.0, n=6,
                 n_cross=2)
    exp = ex.run(s)
    src = exp.sources()
    assert len(src) == 6 and src["stored_audio"].iloc[0]  # stored waveforms first
    stored = src[src["stored_audio"]]["utt_id"].iloc[0]
    w = ex.world("tiny")
    before = w.adapter.samples
    (p,) = ex.listen(exp, [stored])
    assert w.adapter.samples == before  # stored clips play without generating
    for clip, frame in ((p.baseline, exp.base), (p.intervened, exp.rows)):
        assert clip.origin == "stored"
        assert clip.labels == clip.stored_labels  # the same waveform, judged again, gets the stored label
        x, sr = sf.read(io.BytesIO(clip.wav))
        assert sr == 16000 and len(x) > 1600
        if clip.labels["prosody"] is not None:
            post = clip.posteriors["prosody"]
            assert max(post, key=post.get) == clip.labels["prosody"] and sum(post.values()) == pytest.approx(1, 1e-4)
    rerender = src[~src["stored_audio"]]["utt_id"].iloc[0]
    (q,) = ex.listen(exp, [rerender])
    assert {q.baseline.origin, q.intervened.origin} >= {"re-rendered"}
    assert w.adapter.samples - before <= 2
    assert ex.listen(exp, [rerender])[0] is q  # remembered: not generated twice
    with pytest.raises(ValueError, match="no e_tgt = angry pair"):
        ex.listen(exp, [src["utt_id"].iloc[-1]], "angry")  # beyond n_cross: self pairs only


# -------------------------------------------------------------------------------------------------------- widgets
def _shown(root, target) -> bool:
    """True if ``target`` is inside ``root`` and neither it nor any container above it is hidden."""
    def walk(w, path):
        if w is target:
            return path + [w]
        for ch in getattr(w, "children", ()):
            found = walk(ch, path + [w])
            if found:
                return found
        return None

    path = walk(root, [])
    return bool(path) and all(getattr(w.layout, "display", None) != "none" for w in path)


def _set(ui, widget, value):
    """Set a control as a user would: only one that is visible and enabled."""
    assert _shown(ui.widget, widget), f"{widget.description} is not visible"
    assert not widget.disabled, f"{widget.description} is disabled"
    widget.value = value


def _click(ui, button):
    assert _shown(ui.widget, button) and not button.disabled, f"cannot click {button.description}"
    button.click()


def test_widgets_as_a_user_drives_them(tiny):
    ex = explorer(tiny)
    ui = ExplorerUI(ex, Settings(model="tiny", r=0.05, c=3), models=["tiny", "qwen2.5-omni-7b"])
    c = ui.controls
    assert not _shown(ui.widget, ui.play_button) and not _shown(ui.widget, ui.sources)  # nothing to play yet
    _set(ui, c["kind"], "deactivate")
    assert c["alpha"].disabled and c["alpha"].value == 0.0
    with pytest.raises(AssertionError, match="disabled"):
        _set(ui, c["alpha"], 2.0)
    _set(ui, c["kind"], "steer")
    assert not c["alpha"].disabled
    _set(ui, c["alpha"], 2.0)
    _set(ui, c["e_mask"], "angry")
    _set(ui, c["selector"], "MAD")
    _set(ui, c["n"], 3)
    _set(ui, c["n_cross"], 2)
    _click(ui, ui.show_button)
    exp = ui.exploration
    assert ui.error is None, ui.error
    assert exp.settings == Settings(model="tiny", split=X.TEST, selector="MAD", e_mask="angry", r=0.05, c=3,
                                    alpha=2.0, kind="steer", n=3, n_cross=2)
    assert ui.progress.value == len(STEPS) and ui.progress.bar_style == "success"
    assert f"generated {exp.generated} samples" in ui.status.value and exp.generated > 0
    assert ui.layers_image.value[:8] == b"\x89PNG\r\n\x1a\n"
    row = exp.summary.iloc[0]
    assert f"{row.self:+.1f} [{row.self_lo:+.1f}, {row.self_hi:+.1f}]" in ui.delta.value
    assert "<td>3</td>" in ui.delta.value and "<td>6</td>" in ui.delta.value  # n self pairs, n cross pairs
    assert _shown(ui.widget, ui.sources) and len(ui.sources.options) == 3 and len(ui.sources.value) == 2

    _click(ui, ui.play_button)
    assert len(ui.pairs) == 2 and len(ui.pairs_box.children) == 2
    audios = [w for box in ui.pairs_box.children for side in box.children for w in side.children
              if type(w).__name__ == "Audio"]
    assert len(audios) == 4 and all(a.value[:4] == b"RIFF" for a in audios)
    _set(ui, ui.e_tgt, "sad")  # a cross e_tgt: only the first n_cross sources have it
    assert len(ui.sources.options) == 2
    _set(ui, ui.sources, (ui.sources.options[1][1],))
    _click(ui, ui.play_button)
    assert [p.e_tgt for p in ui.pairs] == ["sad"]

    _set(ui, c["split"], "TEST-SEEN")
    assert "Settings changed" in ui.status.value
    _set(ui, c["split"], X.TEST)
    _click(ui, ui.show_button)  # the same condition again: read, nothing generated
    assert ui.exploration.cached and "read from the store" in ui.status.value


def test_attr_from_the_widgets(tiny):
    """ATTR is an option of the visible selector dropdown; Show identifies with it, stores its attribution and shows
    the Δ table; Show again reads everything."""
    ex = explorer(tiny)
    ui = ExplorerUI(ex, Settings(model="tiny", r=0.05, c=3, n=2, n_cross=1), models=["tiny"])
    c = ui.controls
    assert "ATTR" in c["selector"].options
    _set(ui, c["selector"], "ATTR")
    _set(ui, c["alpha"], 0.05)
    _set(ui, c["e_mask"], "sad")
    _click(ui, ui.show_button)
    exp = ui.exploration
    assert ui.error is None, ui.error
    assert exp.settings.selector == "ATTR" and exp.maskset.selector == "ATTR" and exp.maskset.scores is not None
    assert ui.progress.bar_style == "success" and f"generated {exp.generated} samples" in ui.status.value
    w = ex.world("tiny")
    stored = w.store.read("attribution", task="evc-attribution")
    assert set(stored["emotion"]) >= set(exp.maskset.masks)  # one stored ranking per emotion, recorded
    row = exp.summary.iloc[0]
    assert f"{row.self:+.1f} [{row.self_lo:+.1f}, {row.self_hi:+.1f}]" in ui.delta.value
    _click(ui, ui.show_button)
    assert ui.exploration.cached and "read from the store" in ui.status.value


def test_widgets_show_errors_instead_of_raising(tiny):
    ui = ExplorerUI(explorer(tiny), Settings(model="tiny", r=0.05, c=3, n=2, n_cross=1),
                    models=["tiny", "qwen2.5-omni-7b"])
    _set(ui, ui.controls["model"], "qwen2.5-omni-7b")
    assert ui.controls["r"].value == X.PAPER_RATE  # the model's own default
    _click(ui, ui.show_button)
    assert isinstance(ui.error, RuntimeError) and "no model 'qwen2.5-omni-7b'" in ui.status.value
    assert ui.exploration is None and not ui.show_button.disabled and ui.progress.bar_style == "danger"
    _set(ui, ui.controls["model"], "tiny")
    _click(ui, ui.show_button)  # the paper's r = 0.5 % is too small for the tiny model's 128 LM neurons
    assert "smallest rate that selects one neuron" in ui.status.value and ui.exploration is None
    _set(ui, ui.controls["r"], 0.05)
    _set(ui, ui.controls["n"], 1)
    assert ui.controls["n_cross"].value == 1  # bounded by n
    _click(ui, ui.show_button)
    assert ui.error is None and ui.exploration.summary["n_pairs"].tolist() == [1]


def test_an_error_inside_the_run_reaches_the_status_in_a_kernel(tiny, monkeypatch):
    """In a kernel, ipywidgets' Output context manager prints an exception and swallows it; an error raised while the
    condition is generated (e.g. an e_mask with no success to select from) must still reach the status line."""
    import ipywidgets.widgets.widget_output as wo

    shown = []

    class Kernel:  # what Output.__enter__/__exit__ use of a running IPython kernel
        display_pub = None

        def showtraceback(self, exc_tuple=None, tb_offset=None):
            shown.append(exc_tuple[1])

    monkeypatch.setattr(wo, "get_ipython", lambda: Kernel())
    ex = explorer(tiny)

    def run(settings, on_step=None, missing=None):
        on_step(1, STEPS[1])
        raise ValueError("e_mask 'angry' has no CAS mask: pick one of ['happy']")

    monkeypatch.setattr(ex, "run", run)
    ui = ExplorerUI(ex, Settings(model="tiny", r=0.05, c=3, n=2, n_cross=1), models=["tiny"])
    _click(ui, ui.show_button)
    assert isinstance(ui.error, ValueError) and "has no CAS mask" in ui.status.value
    assert ui.progress.bar_style == "danger" and not ui.show_button.disabled and ui.exploration is None


# ------------------------------------------------------------------------------------------------------- notebook
NOTEBOOK = ROOT / "notebooks" / "00_explore"


def test_notebook_runs_headless_and_shows_the_widget(tmp_path):
    """Executed by papermill, the notebook builds the explorer (loading nothing yet) and displays it as a widget."""
    import papermill as pm

    out = tmp_path / "00_explore.ipynb"
    pm.execute_notebook(str(NOTEBOOK.with_suffix(".ipynb")), str(out), cwd=str(ROOT), progress_bar=False,
                        kernel_name="python3", parameters={"smoke": True, "results_dir": str(tmp_path / "results")})
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert not (tmp_path / "results").exists()  # nothing loaded or generated before Show
