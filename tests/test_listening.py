"""esnlib.listening: export structure and blinding, balance, key consistency, loudness, import round-trips, errors."""
import json
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from esnlib import TARGET_EMOTIONS
from esnlib.audio import rms_dbfs
from esnlib.listening import (
    ListeningError, attention_report, export_ab_test, export_filter_test, load_key, rater_agreement,
    read_answers, read_filter_answers, shown_order, simulate_answers, winrate,
)

SR = 16000


def _tone(path, freq, amp, dur=0.3, sr=SR):
    t = np.arange(int(dur * sr)) / sr
    sf.write(path, (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return str(path)


def make_pairs(tmp_path, n_per=4, emotions=TARGET_EMOTIONS):
    """Baseline and intervened clips are tones at very different levels, so normalization is visible."""
    wav = tmp_path / "wav"
    wav.mkdir(exist_ok=True)
    rows = []
    for e in emotions:
        for i in range(n_per):
            uid = f"spk1_{e}_{i:03d}"
            rows.append({
                "pair_id": f"{uid}-casx-0.5", "target": e, "utt_id": uid,
                "audio_a_path": _tone(wav / f"{uid}_baseline_unintervened.wav", 220 + 10 * i, 0.02),
                "audio_b_path": _tone(wav / f"{uid}_CAS_alpha1.0_steer.wav", 330 + 10 * i, 0.6),
                "selector": "CAS", "alpha": 1.0, "kind": "steer", "model": "qwen2.5-omni",
            })
    return pd.DataFrame(rows)


@pytest.fixture()
def ab(tmp_path):
    pairs = make_pairs(tmp_path, n_per=4)
    return pairs, export_ab_test(pairs, tmp_path / "test", n_per_emotion=3, seed=7, attention_checks=2)


def test_export_structure_and_balance(ab):
    pairs, ex = ab
    page = ex.page_dir
    for name in ("index.html", "app.js", "style.css", "data.js", "pairs.json"):
        assert (page / name).is_file(), name
    assert not (page / "key.json").exists() and (ex.key_dir / "key.json").is_file()
    data = json.loads((page / "pairs.json").read_text())
    assert data["mode"] == "ab" and data["seed"] == 7 and data["test_id"] == ex.test_id
    assert len(data["items"]) == 4 * 3 + 2 == ex.n_items
    key = load_key(ex.key_dir)
    kinds = pd.Series({i: k["item_kind"] for i, k in key["items"].items()})
    targets = pd.Series({it["id"]: it["target"] for it in data["items"]})
    assert targets[kinds[kinds == "pair"].index].value_counts().to_dict() == {e: 3 for e in TARGET_EMOTIONS}
    wavs = sorted(p.stem for p in (page / "audio").glob("*.wav"))
    assert len(wavs) == 2 * ex.n_items == len(set(wavs))
    assert sorted(c for it in data["items"] for c in it["clips"]) == wavs
    # the page (data.js) holds the same data as pairs.json
    js = (page / "data.js").read_text()
    assert json.loads(js[js.index("=") + 1:].rstrip().rstrip(";")) == data


def test_page_leaks_no_condition(ab):
    pairs, ex = ab
    data = "".join((ex.page_dir / n).read_text() for n in ("data.js", "pairs.json"))
    data += " ".join(p.name for p in (ex.page_dir / "audio").iterdir())
    for word in ("CAS", "steer", "alpha", "baseline", "intervened", "qwen", "spk1", "utt", "selector", "model",
                 "key", "check", "source", "wav/", "1.0", "0.5"):
        assert word.lower() not in data.lower(), word
    assets = "".join((ex.page_dir / n).read_text() for n in ("index.html", "app.js", "style.css"))
    for word in ("CAS", "steer", "qwen", "spk1", "key.json", "baseline", "intervened"):
        assert word not in assets, word
    for uid in pairs["utt_id"]:
        assert uid not in data + assets
    # wav files carry no metadata chunk beyond fmt/data
    raw = next((ex.page_dir / "audio").glob("*.wav")).read_bytes()
    assert b"LIST" not in raw and b"CAS" not in raw
    assert all(re.fullmatch(r"c[0-9a-f]{10}", p.stem) for p in (ex.page_dir / "audio").glob("*.wav"))


def test_key_consistency_and_hidden_sides(ab):
    pairs, ex = ab
    key = load_key(ex.key_dir)
    page_items = {it["id"]: it for it in key["page"]["items"]}
    first_is_baseline = []
    for iid, k in key["items"].items():
        clips = page_items[iid]["clips"]
        if k["item_kind"] == "pair":
            assert sorted(clips) == sorted([k["baseline"], k["intervened"]])
            row = pairs.set_index("pair_id").loc[k["condition"]["pair_id"]]
            assert k["source_baseline"] == row["audio_a_path"] and k["source_intervened"] == row["audio_b_path"]
            assert k["condition"]["selector"] == "CAS" and k["condition"]["target"] == page_items[iid]["target"]
            first_is_baseline.append(clips[0] == k["baseline"])
            a = sf.read(ex.page_dir / "audio" / f"{k['baseline']}.wav")[0]
            assert a.size == int(0.3 * SR)
        else:
            assert k["expected"] == "tie"
            a, b = (sf.read(ex.page_dir / "audio" / f"{c}.wav")[0] for c in clips)
            np.testing.assert_array_equal(a, b)  # same clip twice under two opaque ids
    assert 0 < sum(first_is_baseline) < len(first_is_baseline)  # data.js order does not reveal the baseline


def test_loudness_normalized(ab, tmp_path):
    _, ex = ab
    levels = [rms_dbfs(sf.read(p, dtype="float32")[0]) for p in (ex.page_dir / "audio").glob("*.wav")]
    assert np.allclose(levels, -23.0, atol=0.1)
    srcs = [rms_dbfs(sf.read(p, dtype="float32")[0]) for p in (tmp_path / "wav").glob("*.wav")]
    assert max(srcs) - min(srcs) > 20  # the sources really differed


def test_export_deterministic_and_refuses_existing(tmp_path):
    pairs = make_pairs(tmp_path, n_per=3)
    a = export_ab_test(pairs, tmp_path / "a", n_per_emotion=2, seed=3)
    b = export_ab_test(pairs, tmp_path / "b", n_per_emotion=2, seed=3)
    assert (a.page_dir / "data.js").read_text() == (b.page_dir / "data.js").read_text()
    with pytest.raises(ListeningError, match="already holds a listening test"):
        export_ab_test(pairs, tmp_path / "a", n_per_emotion=2, seed=3)


def test_export_bad_input(tmp_path):
    pairs = make_pairs(tmp_path, n_per=2)
    with pytest.raises(ListeningError, match="too few rows.*angry"):
        export_ab_test(pairs[pairs["target"] != "angry"].pipe(
            lambda d: pd.concat([d, pairs[pairs["target"] == "angry"].iloc[:1]])), tmp_path / "x", n_per_emotion=2)
    with pytest.raises(ListeningError, match="lacks column.*audio_b_path"):
        export_ab_test(pairs.drop(columns=["audio_b_path"]), tmp_path / "y")
    with pytest.raises(ListeningError, match="duplicate pair_id"):
        export_ab_test(pd.concat([pairs, pairs.iloc[:1]]), tmp_path / "z", n_per_emotion=1)
    broken = pairs.copy()
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wav")
    broken.loc[0, "audio_b_path"] = str(tmp_path / "bad.wav")
    with pytest.raises(ListeningError, match="bad.wav"):
        export_ab_test(broken, tmp_path / "w", n_per_emotion=2)


def _hand_written(ex, rater, choices):
    """An answers file written by hand in the page's format (position/sides from the seeded order)."""
    key = load_key(ex.key_dir)
    order = shown_order(key["seed"], rater, key["page"]["items"])
    answers = [{"position": i, "item": o["item"], "clips": o["clips"], "choice": choices(o, key["items"][o["item"]])}
               for i, o in enumerate(order)]
    return {"format": "esnlib-listening-answers", "version": 1, "test_id": key["test_id"], "mode": "ab",
            "page_seed": key["seed"], "rater_id": rater, "answers": answers}


def test_shown_order_is_a_seeded_permutation():
    items = [{"id": f"p{i}", "clips": [f"a{i}", f"b{i}"]} for i in range(20)]
    o1, o2, o3 = (shown_order(5, "R1", items), shown_order(5, "R1", items), shown_order(5, "R2", items))
    assert o1 == o2 and [o["item"] for o in o1] != [o["item"] for o in o3]
    assert sorted(o["item"] for o in o1) == sorted(i["id"] for i in items)
    assert 0 < sum(o["clips"][0].startswith("a") for o in o1) < 20


def test_import_roundtrip_hand_written(ab, tmp_path):
    _, ex = ab

    def prefer_intervened(o, k):  # always pick the intervened clip, "No difference" on checks
        if k["item_kind"] == "check":
            return "tie"
        return "A" if o["clips"][0] == k["intervened"] else "B"

    def prefer_baseline(o, k):
        if k["item_kind"] == "check":
            return "A"  # fails the attention check
        return "A" if o["clips"][0] == k["baseline"] else "B"

    f1, f2 = tmp_path / "r1.json", tmp_path / "r2.json"
    f1.write_text(json.dumps(_hand_written(ex, "R1", prefer_intervened)))
    f2.write_text(json.dumps(_hand_written(ex, "R2", prefer_baseline)))
    df = read_answers([f1, f2], ex.key_dir)
    assert len(df) == 2 * ex.n_items
    pairs = df[df["item_kind"] == "pair"]
    assert (pairs[pairs["rater_id"] == "R1"]["outcome"] == "win").all()
    assert (pairs[pairs["rater_id"] == "R2"]["outcome"] == "loss").all()
    assert set(pairs["selector"]) == {"CAS"} and set(pairs["kind"]) == {"steer"} and pairs["utt_id"].notna().all()
    rep = attention_report(df)
    assert rep.loc["R1", "n_failed"] == 0 and rep.loc["R2", "n_failed"] == 2 and rep.loc["R2", "flagged"]
    assert df.loc[df["rater_id"] == "R2", "rater_flagged"].all() and not df.loc[df["rater_id"] == "R1",
                                                                                  "rater_flagged"].any()
    wr = winrate(df, n_boot=200)
    assert list(wr["target"]) == [*sorted(TARGET_EMOTIONS), "all"]
    assert np.allclose(wr["win"], 0.5) and np.allclose(wr["loss"], 0.5) and np.allclose(wr["tie"], 0)
    assert (wr["win_lo"] <= wr["win"]).all() and (wr["win"] <= wr["win_hi"]).all()
    assert np.allclose(winrate(df, n_boot=50, drop_flagged=True)["win"], 1.0)
    ag = rater_agreement(df)
    assert ag["n_raters"] == 2 and ag["n_items"] == 12 and ag["mean_pairwise"] == 0.0 and ag["fleiss_kappa"] < 0


def test_csv_roundtrip_matches_json(ab, tmp_path):
    _, ex = ab
    d = _hand_written(ex, "R, 3", lambda o, k: "tie")
    (tmp_path / "r.json").write_text(json.dumps(d))
    lines = ["format,test_id,mode,page_seed,rater_id,position,item,clip_a,clip_b,choice,t_shown,t_answered"]
    for a in d["answers"]:
        lines.append(f'{d["format"]},{d["test_id"]},ab,{d["page_seed"]},"R, 3",{a["position"]},{a["item"]},'
                     f'{a["clips"][0]},{a["clips"][1]},{a["choice"]},,')
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    j, c = read_answers(tmp_path / "r.json", ex.key_dir), read_answers(tmp_path / "r.csv", ex.key_dir)
    cols = ["rater_id", "item", "position", "choice", "outcome", "target"]
    pd.testing.assert_frame_equal(j[cols], c[cols])
    assert (j["rater_id"] == "R, 3").all()
    text = (tmp_path / "r.csv").read_text()
    (tmp_path / "seed.csv").write_text(text.replace(f',{d["page_seed"]},"R, 3"', ',seven,"R, 3"'))
    with pytest.raises(ListeningError, match=r"seed\.csv: page_seed 'seven' is not a whole number; save"):
        read_answers(tmp_path / "seed.csv", ex.key_dir)
    (tmp_path / "item.csv").write_text(text.replace(f',{d["answers"][0]["item"]},', ',,', 1))
    with pytest.raises(ListeningError, match=r"item\.csv: answer 1 has no 'item' field"):
        read_answers(tmp_path / "item.csv", ex.key_dir)


def test_agreement_perfect_and_simulated(ab, tmp_path):
    _, ex = ab
    outcome = {}  # every rater gives the same (varied) outcome per pair -> kappa 1

    def same(o, k):
        if k["item_kind"] == "check":
            return "tie"
        want = outcome.setdefault(o["item"], ["win", "tie", "loss"][len(outcome) % 3])
        inter = "A" if o["clips"][0] == k["intervened"] else "B"
        return {"win": inter, "tie": "tie", "loss": "B" if inter == "A" else "A"}[want]

    files = []
    for r in ("R1", "R2", "R3"):
        files.append(tmp_path / f"{r}.json")
        files[-1].write_text(json.dumps(_hand_written(ex, r, same)))
    ag = rater_agreement(read_answers(files, ex.key_dir))
    assert ag["fleiss_kappa"] == pytest.approx(1.0) and ag["mean_pairwise"] == 1.0 and ag["n_items"] == 12
    sims = [simulate_answers(ex.key_dir, f"S{i}", tmp_path / f"s{i}.json", p=(0.6, 0.1, 0.3), seed=i)
            for i in range(3)]
    df = read_answers(sims, ex.key_dir)
    assert not df["rater_flagged"].any() and len(df) == 3 * ex.n_items
    assert -1 <= rater_agreement(df)["fleiss_kappa"] < 0.9


def _bad(ex, tmp_path, mutate, name="bad.json"):
    d = _hand_written(ex, "R1", lambda o, k: "tie")
    mutate(d)
    p = tmp_path / name
    p.write_text(json.dumps(d) if isinstance(d, dict) else d)
    return p


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(test_id="ab-0000000000"), "belongs to test 'ab-0000000000'"),
    (lambda d: d.update(page_seed=99), "page seed 99"),
    (lambda d: d.update(mode="filter"), "from a 'filter' page"),
    (lambda d: d.pop("rater_id"), "lacks the field 'rater_id'"),
    (lambda d: d.update(format="something-else"), "not an esnlib listening answers file"),
    (lambda d: d["answers"][0].update(item="pdeadbeef00"), "unknown item id.*pdeadbeef00"),
    (lambda d: d["answers"][0].update(choice="C"), "choice 'C' is not one of"),
    (lambda d: d["answers"][1].update(item=d["answers"][0]["item"], clips=d["answers"][0]["clips"]), "twice"),
    (lambda d: d["answers"][0].update(clips=d["answers"][1]["clips"]), "are not this item's clips"),
    (lambda d: d["answers"][0].update(clips=d["answers"][0]["clips"][::-1]), "shown position/sides differ"),
])
def test_malformed_answer_files(ab, tmp_path, mutate, match):
    _, ex = ab
    p = _bad(ex, tmp_path, mutate)
    with pytest.raises(ListeningError, match=match) as e:
        read_answers([p], ex.key_dir)
    assert str(p) in str(e.value) or "rater" in str(e.value)


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["answers"].__setitem__(0, "A"), r"answer 1 is a str \('A'\), not an object"),
    (lambda d: d["answers"].__setitem__(2, None), r"answer 3 is a NoneType \(None\), not an object"),
    (lambda d: d.update(page_seed="seven"), r"page_seed 'seven' is not a whole number"),
    (lambda d: d.update(page_seed=7.5), r"page_seed 7.5 is not a whole number"),
    (lambda d: d.update(page_seed=None), r"page_seed None is not a whole number"),
    (lambda d: d.update(rater_id=None), r"rater_id is None; it must be the rater's id as text"),
    (lambda d: d.update(rater_id=17), r"rater_id is 17; it must be the rater's id as text"),
    (lambda d: d["answers"][0].pop("item"), r"answer 1 has no 'item' field"),
    (lambda d: d["answers"][1].update(item=None), r"answer 2 has no 'item' field"),
    (lambda d: d.update(answers={"x": 1}), r"'answers' must be a list"),
])
def test_malformed_answer_values_are_named(ab, tmp_path, mutate, match):
    """Values of the wrong type are a ListeningError naming the file and the fix, never a raw AttributeError /
    ValueError or a misleading "the file was edited"."""
    _, ex = ab
    p = _bad(ex, tmp_path, mutate)
    with pytest.raises(ListeningError, match=match) as e:
        read_answers([p], ex.key_dir)
    assert str(p) in str(e.value) and "save" in str(e.value)


def test_unreadable_and_foreign_files(ab, tmp_path):
    _, ex = ab
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ListeningError, match=r"x\.json is not valid JSON"):
        read_answers(tmp_path / "x.json", ex.key_dir)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ListeningError, match=r"x\.csv is not an esnlib listening CSV"):
        read_answers(tmp_path / "x.csv", ex.key_dir)
    with pytest.raises(ListeningError, match="does not exist"):
        read_answers(tmp_path / "nope.json", ex.key_dir)
    with pytest.raises(ListeningError, match="no key.json"):
        read_answers(tmp_path / "x.json", tmp_path / "nowhere")
    ok = _bad(ex, tmp_path, lambda d: None, "ok.json")
    with pytest.raises(ListeningError, match="appears in both"):
        read_answers([ok, ok], ex.key_dir)
    partial = _bad(ex, tmp_path, lambda d: d.update(answers=d["answers"][:3]), "partial.json")
    with pytest.warns(UserWarning, match="incomplete"):
        assert len(read_answers(partial, ex.key_dir)) == 3


def test_filter_mode_majority_and_checks(tmp_path):
    wav = tmp_path / "wav"
    wav.mkdir()
    clips = pd.DataFrame([{"utt_id": f"u{e}{i}", "target": e, "audio_path": _tone(wav / f"{e}{i}.wav", 200 + i, 0.1)}
                          for e in TARGET_EMOTIONS for i in range(3)])
    ex = export_filter_test(clips, tmp_path / "f", seed=1, attention_checks=2)
    assert ex.mode == "filter" and ex.n_items == 14
    key = load_key(ex.key_dir)
    truth = {u: (i % 2 == 0) for i, u in enumerate(clips["utt_id"])}  # intended yes/no per clip

    def write(rater, flip_utt=None, break_check=False):
        order = shown_order(key["seed"], rater, key["page"]["items"])
        answers = []
        for pos, o in enumerate(order):
            k = key["items"][o["item"]]
            u = k["condition"]["utt_id"]
            yes = truth[u] != (u == flip_utt)
            if break_check and k["item_kind"] == "check":
                yes = not yes
            answers.append({"position": pos, "item": o["item"], "clips": o["clips"], "choice": "yes" if yes else "no"})
        p = tmp_path / f"{rater}.json"
        p.write_text(json.dumps({"format": "esnlib-listening-answers", "test_id": key["test_id"], "mode": "filter",
                                 "page_seed": key["seed"], "rater_id": rater, "answers": answers}))
        return p

    files = [write("A"), write("B", flip_utt="uangry0"), write("C", break_check=True)]
    out = read_filter_answers(files, ex.key_dir)
    assert list(out.columns[:5]) == ["utt_id", "target", "n_yes", "n_raters", "human_success"]
    assert len(out) == 12 and (out["n_raters"] == 3).all()
    assert dict(zip(out["utt_id"], out["human_success"])) == truth  # majority outvotes B's single flip
    assert out.attrs["flagged"] == ["C"]
    with pytest.raises(ListeningError, match="is for a 'filter' test"):
        read_answers(files, ex.key_dir)


def test_plot_winrate(ab, tmp_path):
    from esnlib.listening import plot_winrate

    _, ex = ab
    f = simulate_answers(ex.key_dir, "S", tmp_path / "s.json", p=(0.6, 0.1, 0.3))
    wr = winrate(read_answers(f, ex.key_dir), n_boot=100)
    fig = plot_winrate(wr, title="SIMULATED")
    ax = fig.axes[0]
    emos = [e for e in wr["target"] if e != "all"]
    # three stacked bar groups + a win and a loss whisker per emotion and for the pooled row
    assert len(ax.containers) == 3 + 2 * (len(emos) + 1)
    n = dict(zip(wr["target"], wr["n"]))
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{e} (n={n[e]})" for e in emos] + [
        f"all (pooled) (n={n['all']})"]
    # the pooled row's whiskers are its own CI (not an unweighted average of the emotions)
    all_ = wr.set_index("target").loc["all"]
    win_bar = ax.containers[-2].lines[2][0].get_segments()[0][:, 0]
    np.testing.assert_allclose(win_bar, [100 * all_.win_lo, 100 * all_.win_hi])
