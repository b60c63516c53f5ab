"""scripts/gpu_check.py end to end on tiny models (the GPU check's logic, offline): every step runs and is checked,
the report and the audio files are written, and a broken adapter is reported as a failure."""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(ROOT / "scripts"))  # scripts/ is not a package
    try:
        return importlib.import_module("gpu_check")
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def _need(attr):
    import transformers

    if not hasattr(transformers, attr):
        pytest.skip(f"transformers {transformers.__version__} has no {attr}")


@pytest.mark.parametrize("model,needs", [("contract_models:tiny_kimi_adapter", "Qwen2PreTrainedModel"),
                                         ("contract_models:tiny_minicpm_adapter", "Qwen3ForCausalLM"),
                                         ("test_models_real:tiny_omni_adapter", "Qwen2_5OmniForConditionalGeneration")])
def test_gpu_check_runs_every_step(gpu_check, tmp_path, model, needs):
    _need(needs)
    out = tmp_path / "report"
    rc = gpu_check.main(["--model", model, "--out", str(out), "--n-evc", "2", "--n-ser", "2", "--device", "cpu"])
    report = json.loads((out / "report.json").read_text())
    assert rc == 0 and report["ok"], [s.get("error") or s.get("checks") for s in report["steps"] if not s["ok"]]
    steps = [s["step"] for s in report["steps"]]
    scopes = ("lm", "talker", "both")
    assert steps == (["load", "evc_baseline"] + [f"evc_capture_{s}" for s in scopes]
                     + [f"evc_{k}_{s}" for s in scopes for k in ("steer", "deactivate")]
                     + ["ser_baseline", "ser_capture_deactivate"])
    for s in report["steps"]:
        assert s["seconds"] >= 0 and s["peak_rss_gib"] > 0
    base = next(s for s in report["steps"] if s["step"] == "evc_baseline")
    assert all(Path(o["audio"]).is_file() and o["audio_seconds"] > 0 for o in base["outputs"])
    cap = next(s for s in report["steps"] if s["step"] == "evc_capture_talker")
    assert cap["checks"]["capture leaves outputs unchanged"] and min(cap["positions_per_sample"]) > 0
    md = (out / "report.md").read_text()
    assert "| evc_deactivate_both | yes |" in md and "transformers" in md


def broken_kimi_adapter():
    """A Kimi-Audio adapter that traces the wrong per-step module (the kind of defect the check must surface)."""
    import contract_models as cm

    ad = cm.tiny_kimi_adapter()
    ad._run = lambda chats, output_type, *, sites, capture, intervention: _run_wrong(ad, chats, output_type, sites,
                                                                                     capture, intervention)
    return ad


def _run_wrong(ad, chats, output_type, sites, capture, intervention):
    from esnlib.models._hf import run_generate

    return run_generate(ad.model, {"chats": chats, "output_type": output_type}, sites=sites, capture=capture,
                        intervention=intervention, fn=ad._call, step_modules={"lm": "model.layers",
                                                                              "talker": "model.layers"})


def test_gpu_check_reports_failures(gpu_check, tmp_path):
    out = tmp_path / "report"
    rc = gpu_check.main(["--model", "test_gpu_check:broken_kimi_adapter", "--out", str(out), "--n-evc", "1",
                         "--n-ser", "1", "--device", "cpu"])
    report = json.loads((out / "report.json").read_text())
    assert rc == 1 and not report["ok"]
    by = {s["step"]: s for s in report["steps"]}
    assert by["evc_baseline"]["ok"] and not by["evc_capture_lm"]["ok"] and "error" in by["evc_capture_lm"]
    assert "traceback" in (out / "report.md").read_text()


def test_gpu_check_wrong_environment_is_reported(gpu_check, tmp_path, monkeypatch):
    import transformers

    monkeypatch.setattr(transformers, "__version__", "5.23.0")
    rc = gpu_check.main(["--model", "kimi-audio-7b", "--out", str(tmp_path / "r"), "--device", "cpu"])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rc == 1 and "make env MODEL=kimi-audio" in report["steps"][0]["error"]
