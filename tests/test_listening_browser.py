"""The exported listening page in a real headless Chromium (file://): play, answer, reload mid-way, save, import."""
import json
import shutil
from pathlib import Path

import pytest

from esnlib.listening import export_ab_test, read_answers

from test_listening import make_pairs

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
                       reason="Debian chromium is not installed (apt-get install -y chromium)"),
]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
        "--mute-audio"]


def test_page_end_to_end(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    pairs = make_pairs(tmp_path, n_per=2)
    ex = export_ab_test(pairs, tmp_path / "test", n_per_emotion=2, seed=11, attention_checks=1)
    url = ex.index_html.resolve().as_uri()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = browser.new_context(accept_downloads=True)
        page = ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        assert page.locator("#instructions-ab").is_visible()
        page.click("#start")  # no rater id yet -> refused with a message
        assert "rater id" in page.inner_text("#resume-note")
        page.fill("#rater", "R-browser")
        page.click("#start")
        assert page.locator("#trial").is_visible()
        assert page.locator("#choose-a").is_disabled()  # buttons wait until both clips were played

        # a clip really loads and plays: metadata arrives and currentTime advances
        page.click("#play-a")
        page.wait_for_function("document.getElementById('audio-a').currentTime > 0.05", timeout=5000)
        dur = page.evaluate("document.getElementById('audio-a').duration")
        assert abs(dur - 0.3) < 0.02
        assert page.locator("#choose-a").is_disabled()

        shown, choices = [], ["A", "tie", "B"]
        n = ex.n_items
        for i in range(n):
            if i == 4:  # reload mid-way: answers survive in localStorage, the rater id is pre-filled
                page.reload()
                assert page.input_value("#rater") == "R-browser"
                assert "4 of" in page.inner_text("#resume-note")
                page.click("#start")
            assert page.inner_text("#progress-text") == f"Trial {i + 1} of {n}"
            page.click("#play-a")
            page.click("#play-b")
            page.wait_for_function("!document.getElementById('choose-tie').disabled", timeout=5000)
            srcs = page.evaluate("[0,1].map(i => document.getElementById(['audio-a','audio-b'][i]).src)")
            shown.append([Path(s).stem for s in srcs])
            c = choices[i % 3]
            page.click({"A": "#choose-a", "tie": "#choose-tie", "B": "#choose-b"}[c])
        assert page.locator("#done").is_visible()

        with page.expect_download() as dl:
            page.click("#save-json")
        jpath = tmp_path / "answers.json"
        dl.value.save_as(jpath)
        with page.expect_download() as dl:
            page.click("#save-csv")
        cpath = tmp_path / "answers.csv"
        dl.value.save_as(cpath)
        browser.close()
    assert not errors, errors

    saved = json.loads(jpath.read_text())
    assert saved["rater_id"] == "R-browser" and saved["complete"] and saved["page_seed"] == 11
    assert [a["clips"] for a in saved["answers"]] == shown
    assert all(a["t_shown"] <= a["t_answered"] and a["plays"][0] >= 1 for a in saved["answers"])
    df = read_answers(jpath, ex.key_dir)  # also checks order/sides against the Python mirror of the PRNG
    assert len(df) == n and sorted(df["item"]) == sorted(it["id"] for it in
                                                          json.loads((ex.page_dir / "pairs.json").read_text())["items"])
    assert list(df.sort_values("position")["choice"]) == [choices[i % 3] for i in range(n)]
    assert [[r.clip_a, r.clip_b] for r in df.sort_values("position").itertuples()] == shown
    dfc = read_answers(cpath, ex.key_dir)
    assert list(dfc["outcome"]) == list(df["outcome"])
