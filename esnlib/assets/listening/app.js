// esnlib listening test page: plain JS, no network, opens from file://. Data comes from data.js (window.ESN_TEST).
// Trial order and A/B sides are shuffled per rater by a PRNG seeded with "<page seed>|<rater id>"; keep order()
// identical to esnlib.listening.shown_order (Python checks answer files against it).
(function () {
  "use strict";
  var T = window.ESN_TEST;
  var $ = function (id) { return document.getElementById(id); };
  var PREFIX = "esnlib-listening:";

  function fatal(msg) { var e = $("fatal"); e.textContent = msg; e.hidden = false; $("intro").hidden = true; }
  if (!T || !T.items || !T.test_id) { fatal("This page has no test data (data.js is missing or broken). Re-export the test."); return; }

  function fnv1a(str) {
    var bytes = new TextEncoder().encode(str), h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) { h ^= bytes[i]; h = Math.imul(h, 0x01000193) >>> 0; }
    return h >>> 0;
  }
  function mulberry32(a) {
    return function () {
      a |= 0; a = (a + 0x6D2B79F5) | 0;
      var t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function order(seed, rater, items) {
    var rnd = mulberry32(fnv1a(String(seed) + "|" + rater)), idx = [], i, j, tmp;
    for (i = 0; i < items.length; i++) idx.push(i);
    for (i = idx.length - 1; i > 0; i--) { j = Math.floor(rnd() * (i + 1)); tmp = idx[i]; idx[i] = idx[j]; idx[j] = tmp; }
    return idx.map(function (k) {
      var clips = items[k].clips.slice();
      if (clips.length === 2 && rnd() < 0.5) clips.reverse();
      return { item: items[k].id, target: items[k].target, clips: clips };
    });
  }

  var mode = T.mode, nClips = mode === "ab" ? 2 : 1;
  var state = null, seq = null, shownAt = null, plays = [0, 0];
  var audios = [$("audio-a"), $("audio-b")];

  function storeKey(r) { return PREFIX + T.test_id + ":" + r; }
  function load(r) { try { return JSON.parse(localStorage.getItem(storeKey(r))); } catch (e) { return null; } }
  function persist() {
    localStorage.setItem(storeKey(state.rater_id), JSON.stringify(state));
    localStorage.setItem(PREFIX + T.test_id + ":last", state.rater_id);
  }

  document.title = T.title || document.title;
  $("title").textContent = T.title || "Listening test";
  $(mode === "ab" ? "instructions-ab" : "instructions-filter").hidden = false;
  $(mode === "ab" ? "choices-ab" : "choices-filter").hidden = false;
  // the other mode's answer buttons leave the page: a rater can never record an answer this test cannot import
  $(mode === "ab" ? "choices-filter" : "choices-ab").remove();
  var VALID = mode === "ab" ? ["A", "B", "tie"] : ["yes", "no"];
  if (mode !== "ab") { $("clip-box-b").hidden = true; $("play-a").textContent = "\u25B6 Play"; }

  function describeSaved(r) {
    var s = r && load(r);
    $("resume-note").textContent = s ? "Saved progress for rater " + r + ": " + s.answers.length + " of " +
      T.items.length + " answered. Press Continue." : "";
    $("start").textContent = s ? "Continue" : "Start";
  }
  var last = localStorage.getItem(PREFIX + T.test_id + ":last");
  if (last) { $("rater").value = last; }
  describeSaved(last);
  $("rater").addEventListener("input", function () { describeSaved($("rater").value.trim()); });

  $("start").addEventListener("click", function () {
    var r = $("rater").value.trim();
    if (!r) { $("resume-note").textContent = "Please enter your rater id first."; return; }
    state = load(r) || { rater_id: r, started: new Date().toISOString(), answers: [] };
    seq = order(T.seed, r, T.items);
    persist();
    $("intro").hidden = true;
    $("save-bar").hidden = false;
    $("who").textContent = "Rater: " + r;
    next();
  });

  function setChoicesEnabled(on) {
    var bs = document.querySelectorAll(".choices button");
    for (var i = 0; i < bs.length; i++) bs[i].disabled = !on;
    $("listen-note").hidden = on;
  }
  function maybeEnable() {
    var ok = true;
    for (var i = 0; i < nClips; i++) ok = ok && (plays[i] > 0 || audios[i].error);
    setChoicesEnabled(ok);
  }

  function next() {
    var pos = state.answers.length;
    $("progress").max = seq.length; $("progress").value = pos;
    $("progress-text").textContent = pos < seq.length ? "Trial " + (pos + 1) + " of " + seq.length : "Finished";
    if (pos >= seq.length) { $("trial").hidden = true; $("done").hidden = false; return; }
    var cur = seq[pos];
    $("prompt").textContent = mode === "ab" ? "Which clip better matches \u201C" + cur.target + "\u201D?"
                                            : "Does this clip sound \u201C" + cur.target + "\u201D?";
    plays = [0, 0];
    for (var i = 0; i < nClips; i++) { audios[i].src = "audio/" + cur.clips[i] + ".wav"; audios[i].load(); }
    shownAt = new Date().toISOString();
    setChoicesEnabled(false);
    $("trial").hidden = false;
  }

  [0, 1].forEach(function (i) {
    audios[i].addEventListener("play", function () { plays[i] += 1; maybeEnable(); });
    audios[i].addEventListener("error", maybeEnable);
    $(i === 0 ? "play-a" : "play-b").addEventListener("click", function () {
      audios[1 - i].pause();
      audios[i].currentTime = 0;
      var p = audios[i].play();
      if (p && p.catch) p.catch(function () { /* shown by the audio element itself */ });
    });
  });

  function answer(choice) {
    if (VALID.indexOf(choice) < 0) return;  // not an answer of this mode (kept out of the page above)
    var cur = seq[state.answers.length];
    audios.forEach(function (a) { a.pause(); });
    state.answers.push({ position: state.answers.length, item: cur.item, clips: cur.clips.slice(0, nClips),
      choice: choice, t_shown: shownAt, t_answered: new Date().toISOString(), plays: plays.slice(0, nClips) });
    persist();
    next();
  }
  var bs = document.querySelectorAll(".choices button");
  for (var i = 0; i < bs.length; i++) {
    bs[i].addEventListener("click", function (ev) { answer(ev.currentTarget.getAttribute("data-choice")); });
  }

  function payload() {
    return { format: "esnlib-listening-answers", version: 1, test_id: T.test_id, mode: mode, page_seed: T.seed,
      rater_id: state.rater_id, started: state.started, saved: new Date().toISOString(), n_items: T.items.length,
      complete: state.answers.length === T.items.length, user_agent: navigator.userAgent, answers: state.answers };
  }
  function csvField(v) {
    var s = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function toCsv(p) {
    var cols = ["format", "test_id", "mode", "page_seed", "rater_id", "position", "item", "clip_a", "clip_b",
      "choice", "t_shown", "t_answered", "plays_a", "plays_b"];
    var lines = [cols.join(",")];
    p.answers.forEach(function (a) {
      var row = [p.format, p.test_id, p.mode, p.page_seed, p.rater_id, a.position, a.item, a.clips[0],
        a.clips[1] || "", a.choice, a.t_shown, a.t_answered, a.plays[0], a.plays.length > 1 ? a.plays[1] : ""];
      lines.push(row.map(csvField).join(","));
    });
    return lines.join("\n") + "\n";
  }
  function download(text, name, type) {
    var url = URL.createObjectURL(new Blob([text], { type: type }));
    var a = document.createElement("a");
    a.href = url; a.download = name; document.body.appendChild(a); a.click();
    setTimeout(function () { URL.revokeObjectURL(url); a.remove(); }, 1000);
  }
  function fileBase() { return "answers_" + T.test_id + "_" + state.rater_id.replace(/[^A-Za-z0-9_.-]/g, "_"); }
  $("save-json").addEventListener("click", function () {
    download(JSON.stringify(payload(), null, 1), fileBase() + ".json", "application/json");
  });
  $("save-csv").addEventListener("click", function () { download(toCsv(payload()), fileBase() + ".csv", "text/csv"); });
})();
