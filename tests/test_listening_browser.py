"""The exported listening page in a real headless Chromium (file://), driven as a rater drives it.

Every answer is a real Playwright click (actionability checks: the element must be visible, enabled and stable) on a
control a rater can see; nothing is answered through ``page.evaluate``. In both modes the test checks which answer
buttons are visible, clicks every visible one at least once over the session, and imports the saved files: a visible
button whose answer does not import would lose a rater's session.
"""
import json
import shutil
from pathlib import Path

import pytest

from esnlib.listening import export_ab_test, export_filter_test, read_answers, read_filter_answers

from test_listening import make_pairs

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.chromium,
    pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
                       reason="Debian chromium is not installed (apt-get install -y chromium)"),
]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
        "--mute-audio"]
EXPECTED_CHOICES = {"ab": ["A", "tie", "B"], "filter": ["yes", "no"]}


def _visible(page, selector):
    """The elements matching ``selector`` that a rater can see, in page order."""
    loc = page.locator(selector)
    return [loc.nth(i) for i in range(loc.count()) if loc.nth(i).is_visible()]


def _answer_trial(page, mode, k):
    """One trial as a rater does it: play every visible clip, wait for the answer buttons, click the k-th visible
    answer (cycling). Returns (the choice the clicked button stands for, the clips shown)."""
    plays = _visible(page, "button.play")
    assert len(plays) == (2 if mode == "ab" else 1), [p.inner_text() for p in plays]
    for p in plays:
        p.click()  # actionability checks: visible, enabled, stable
    page.wait_for_function("[...document.querySelectorAll('.choices button')].some(b => b.offsetParent !== null "
                           "&& !b.disabled)", timeout=5000)
    buttons = _visible(page, ".choices button")
    labels = [b.get_attribute("data-choice") for b in buttons]
    assert labels == EXPECTED_CHOICES[mode], f"{mode} page shows answer buttons {labels}"
    assert all(b.is_enabled() for b in buttons)
    audios = _visible(page, "audio")
    shown = [Path(a.get_attribute("src")).stem for a in audios]
    target = buttons[k % len(buttons)]
    choice = target.get_attribute("data-choice")
    target.click()
    return choice, shown


def _launch(pw):
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    ctx = browser.new_context(accept_downloads=True)
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return browser, page, errors


def _save(page, tmp_path, stem):
    paths = []
    for button, ext in (("#save-json", "json"), ("#save-csv", "csv")):
        loc = page.locator(button)
        assert loc.is_visible() and loc.is_enabled()
        with page.expect_download() as dl:
            loc.click()
        paths.append(tmp_path / f"{stem}.{ext}")
        dl.value.save_as(paths[-1])
    return paths


def test_ab_page_as_a_rater_clicks_it(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    pairs = make_pairs(tmp_path, n_per=2)
    ex = export_ab_test(pairs, tmp_path / "test", n_per_emotion=2, seed=11, attention_checks=1)
    with sync_api.sync_playwright() as pw:
        browser, page, errors = _launch(pw)
        page.goto(ex.index_html.resolve().as_uri())
        assert page.locator("#instructions-ab").is_visible()
        assert not page.locator("#instructions-filter").is_visible()
        assert not _visible(page, ".choices button")  # no answer button before the session starts
        page.locator("#start").click()  # no rater id yet -> refused with a message
        assert "rater id" in page.inner_text("#resume-note")
        page.locator("#rater").fill("R-browser")
        page.locator("#start").click()
        assert page.locator("#trial").is_visible()
        # before both clips were played, the visible answer buttons are there but disabled
        assert [b.get_attribute("data-choice") for b in _visible(page, ".choices button")] == EXPECTED_CHOICES["ab"]
        assert all(b.is_disabled() for b in _visible(page, ".choices button"))

        # a clip really loads and plays: metadata arrives and currentTime advances
        page.locator("#play-a").click()
        page.wait_for_function("document.getElementById('audio-a').currentTime > 0.05", timeout=5000)
        dur = page.evaluate("document.getElementById('audio-a').duration")  # reading, not answering
        assert abs(dur - 0.3) < 0.02
        assert page.locator("#choose-a").is_disabled()

        shown, chosen = [], []
        n = ex.n_items
        for i in range(n):
            if i == 4:  # reload mid-way: answers survive in localStorage, the rater id is pre-filled
                page.reload()
                assert page.input_value("#rater") == "R-browser"
                assert "4 of" in page.inner_text("#resume-note")
                page.locator("#start").click()
            assert page.inner_text("#progress-text") == f"Trial {i + 1} of {n}"
            choice, clips = _answer_trial(page, "ab", i)
            chosen.append(choice)
            shown.append(clips)
        assert page.locator("#done").is_visible() and not _visible(page, ".choices button")
        jpath, cpath = _save(page, tmp_path, "answers")
        browser.close()
    assert not errors, errors
    assert set(chosen) == set(EXPECTED_CHOICES["ab"])  # every visible button was clicked at least once

    saved = json.loads(jpath.read_text())
    assert saved["rater_id"] == "R-browser" and saved["complete"] and saved["page_seed"] == 11
    assert [a["clips"] for a in saved["answers"]] == shown
    assert all(a["t_shown"] <= a["t_answered"] and a["plays"][0] >= 1 for a in saved["answers"])
    df = read_answers(jpath, ex.key_dir)  # also checks order/sides against the Python mirror of the PRNG
    assert len(df) == n and sorted(df["item"]) == sorted(it["id"] for it in
                                                          json.loads((ex.page_dir / "pairs.json").read_text())["items"])
    assert list(df.sort_values("position")["choice"]) == chosen
    assert [[r.clip_a, r.clip_b] for r in df.sort_values("position").itertuples()] == shown
    dfc = read_answers(cpath, ex.key_dir)
    assert list(dfc["outcome"]) == list(df["outcome"])


def test_filter_page_as_a_rater_clicks_it(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    pairs = make_pairs(tmp_path, n_per=1)
    clips = pairs.rename(columns={"audio_b_path": "audio_path"})[["utt_id", "target", "audio_path"]]
    ex = export_filter_test(clips, tmp_path / "ftest", seed=5, attention_checks=1)
    with sync_api.sync_playwright() as pw:
        browser, page, errors = _launch(pw)
        page.goto(ex.index_html.resolve().as_uri())
        assert page.locator("#instructions-filter").is_visible()
        assert not page.locator("#instructions-ab").is_visible()
        page.locator("#rater").fill("F-browser")
        page.locator("#start").click()
        assert not page.locator("#play-b").is_visible() and not page.locator("#audio-b").is_visible()
        assert [b.get_attribute("data-choice") for b in _visible(page, ".choices button")] == \
            EXPECTED_CHOICES["filter"]
        shown, chosen = [], []
        for i in range(ex.n_items):
            assert page.inner_text("#progress-text") == f"Trial {i + 1} of {ex.n_items}"
            choice, clips_shown = _answer_trial(page, "filter", i)
            chosen.append(choice)
            shown.append(clips_shown)
        assert page.locator("#done").is_visible()
        jpath, cpath = _save(page, tmp_path, "filter_answers")
        browser.close()
    assert not errors, errors
    assert set(chosen) == set(EXPECTED_CHOICES["filter"])
    saved = json.loads(jpath.read_text())
    assert [a["clips"] for a in saved["answers"]] == shown and [a["choice"] for a in saved["answers"]] == chosen
    for path in (jpath, cpath):
        res = read_filter_answers(path, ex.key_dir)
        assert len(res) == len(clips) and (res["n_raters"] == 1).all()
    # the per-clip yes votes are exactly the clicks on the (non-repeat) clips
    key = json.loads((ex.key_dir / "key.json").read_text())
    clicked = {a["item"]: a["choice"] for a in saved["answers"]}
    want = {key["items"][i]["condition"]["utt_id"]: int(c == "yes") for i, c in clicked.items()
            if key["items"][i]["item_kind"] == "clip"}
    assert dict(zip(res["utt_id"], res["n_yes"])) == want
