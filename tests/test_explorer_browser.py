"""notebooks/00_explore in a real JupyterLab, driven in headless Chromium as a user drives it: open the notebook,
Run All, type r, press Show (the condition is not in the fresh store, so it is generated with the progress bar),
read the Δ table and the layer plot (if the tiny model left e_mask without a mask, the error on the page names the
e_masks that have one: pick the first and Show again), press Play and check the four clips load in the browser's
audio elements.

Every action is a Playwright click or fill (the element must be visible, enabled and stable); page.evaluate only
reads. The model is testing.demo_setup's tiny random demo LALM ("esnlib.testing:demo_setup", a model name load_world
takes), so the run is short; the corpus is the tiny demo corpus of the other pipeline tests.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_experiments import shared_corpus
from test_listening_browser import ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.chromium,
    pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
                       reason="Debian chromium is not installed (apt-get install -y chromium)"),
]
RUN_S = 900  # generous: the identification + evaluation of the tiny model on 2 shared cores
LOAD_S = 600  # JupyterLab's page and kernel start on a loaded machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path, tmp_path_factory):
    """A JupyterLab server on a folder holding the parameterized notebook; yields (base url, results dir)."""
    import nbformat

    folder = tmp_path / "lab"
    folder.mkdir()
    results = tmp_path / "results"
    params = {"model": "esnlib.testing:demo_setup", "corpus_root": str(shared_corpus(tmp_path_factory)),
              "judges": "prosody", "naturalness": None, "results_dir": str(results), "smoke": True, "max_wer": 100.0}
    nb = nbformat.read(ROOT / "notebooks" / "00_explore.ipynb", as_version=4)
    k = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(k + 1, nbformat.v4.new_code_cell("\n".join(f"{n} = {v!r}" for n, v in params.items()),
                                                     metadata={"tags": ["injected-parameters"]}))
    nbformat.write(nb, folder / "00_explore.ipynb")
    port = _free_port()
    env = {**os.environ, **{k: str(tmp_path / k.lower()) for k in (
        "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR")}}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={folder}",
         "--LabApp.news_url=None", "--ServerApp.port_retries=0", "--allow-root"],
        cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(2 * LOAD_S):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            raise RuntimeError(f"jupyter lab did not answer within {LOAD_S} s")
        yield url, results, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_explorer_in_jupyterlab(lab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    url, results, tmp = lab
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(f"{url}/lab/tree/00_explore.ipynb", timeout=LOAD_S * 1000)
            page.locator(".jp-NotebookPanel").first.wait_for(timeout=LOAD_S * 1000)
            select = page.locator(".jp-Dialog button", has_text=re.compile(r"^Select$"))
            try:  # JupyterLab may ask which kernel to start, as it asks a user: take the proposed one
                select.wait_for(timeout=20_000)
                select.click()
            except sync_api.TimeoutError:
                pass
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
                state="attached", timeout=LOAD_S * 1000)  # the kernel is up
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click()

            show = page.locator("button.widget-button", has_text="Show")
            show.wait_for(timeout=LOAD_S * 1000)
            assert not page.locator("audio").count()  # nothing to play before a run
            r = page.locator(".widget-text").filter(
                has=page.locator("label.widget-label", has_text=re.compile(r"^r$"))).locator("input")
            assert r.count() == 1
            r.fill("0.05")
            r.press("Enter")
            show.click()
            progress = page.locator(".widget-hprogress")  # ipywidgets 8's horizontal IntProgress
            assert progress.count() == 1 and progress.is_visible()
            table = page.locator("table.esn-delta")
            error = page.locator(".widget-html-content span[style*='color:#b00']")
            table.or_(error).first.wait_for(timeout=RUN_S * 1000)  # a failed run says so on the page, never hangs
            e_mask = "angry"
            if error.count():
                # the tiny random model may give e_mask no identification success: the status names the e_masks
                # that have a mask; pick the first, as a user would, and Show again (identification is reused)
                text = error.inner_text()
                found = re.search(r"has no \w+ mask.*pick one of \[([^\]]*)\]", text)
                assert found, text
                e_mask = found.group(1).split(",")[0].strip(" '")
                page.locator(".widget-dropdown").filter(
                    has=page.locator("label.widget-label", has_text=re.compile(r"^e_mask$"))).locator(
                    "select").select_option(e_mask)
                show.click()
                error.wait_for(state="detached", timeout=LOAD_S * 1000)  # the old error gives way to the new run
                table.or_(error).first.wait_for(timeout=RUN_S * 1000)
                assert not error.count(), error.inner_text()
            assert progress.locator(".widget-label").inner_text() == "done"  # the bar ran through every step
            status = page.locator(".widget-html-content").filter(has_text="generated").first
            assert "samples" in status.inner_text(), status.inner_text()
            delta = page.locator("table.esn-delta").inner_text()
            assert "self Δ (pp)" in delta and "prosody" in delta
            page.wait_for_function("[...document.querySelectorAll('img.widget-image')].some(i => i.naturalWidth > 0)",
                                   timeout=30_000)
            page.locator("button.widget-button", has_text="Play").click()
            page.wait_for_function("document.querySelectorAll('audio').length === 4", timeout=RUN_S * 1000)
            page.wait_for_function("[...document.querySelectorAll('audio')].every(a => a.readyState >= 1 "
                                   "&& a.duration > 0.1)", timeout=30_000)  # the wav bytes decode in the browser
            labels = page.locator(".widget-html-content", has_text=f"e_tgt = {e_mask}").all_inner_texts()
            assert len(labels) == 4 and all("prosody" in t and f"P({e_mask})" in t for t in labels), labels
            assert not page.get_by_text("Traceback").count()
        finally:
            page.screenshot(path=str(tmp / "explorer.png"), full_page=True)  # kept in the test's tmp folder
            browser.close()
    assert not errors, errors
    assert any((results / "evc").glob("*.parquet"))  # the generated condition is in the store
