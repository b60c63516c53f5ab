import os
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from esnlib.store import ResultStore


def _rows(n, start=0):
    return pd.DataFrame({"utt_id": [f"u{i}" for i in range(start, start + n)], "pred": ["sad"] * n,
                         "wer": np.linspace(0, 0.3, n)})


def test_key_stability_and_normalization():
    k = ResultStore.key({"selector": "CAS", "alpha": 0.5, "r": 0.005, "c": 50})
    assert k == ResultStore.key({"c": 50, "r": 0.005, "alpha": 0.50, "selector": "CAS"})  # order, 0.5 == 0.50
    assert k == ResultStore.key({"selector": "CAS", "alpha": np.float64(0.5), "r": 0.005, "c": np.int64(50)})
    assert ResultStore.key({"a": 1}) == ResultStore.key({"a": 1.0})
    assert ResultStore.key({"a": 0.1 + 0.2}) == ResultStore.key({"a": 0.3})
    assert ResultStore.key({"a": np.float32(0.1)}) == ResultStore.key({"a": 0.1})
    assert k != ResultStore.key({"selector": "CAS", "alpha": 1.0, "r": 0.005, "c": 50})
    assert ResultStore.key({"a": True}) != ResultStore.key({"a": 1})
    # pinned value: a key must not change between versions, or stored sweeps would silently be recomputed
    assert ResultStore.key({"step": "baseline"}) == "55bf3f0c6a895a1e"
    assert k == "47b2b8ae94198449"
    with pytest.raises(ValueError, match="finite"):
        ResultStore.key({"a": float("nan")})
    with pytest.raises(TypeError, match="unsupported type"):
        ResultStore.key({"a": object()})


def test_write_read_filter(tmp_path):
    st = ResultStore(tmp_path)
    c1 = {"selector": "CAS", "alpha": 0.5, "model": {"name": "demo", "layers": 4}}
    c2 = {"selector": "MAD", "alpha": 1.0, "model": {"name": "demo", "layers": 4}}
    assert not st.has("evc", c1)
    st.write("evc", c1, _rows(3))
    st.write("evc", c2, _rows(2))
    assert st.has("evc", c1) and st.has("evc", {**c1, "alpha": 0.50})
    all_rows = st.read("evc")
    assert len(all_rows) == 5
    assert set(all_rows["selector"]) == {"CAS", "MAD"}  # condition fields become columns
    assert all_rows["model"].iloc[0] == '{"layers": 4, "name": "demo"}'
    cas = st.read("evc", selector="CAS")
    assert len(cas) == 3 and (cas["alpha"] == 0.5).all()
    assert len(st.read("evc", alpha=1)) == 2
    assert len(st.read("evc", selector={"CAS", "MAD"})) == 5
    assert sorted(c["selector"] for c in st.conditions("evc")) == ["CAS", "MAD"]
    with pytest.warns(UserWarning, match="no unit of table 'evc'.*LAP"):
        assert st.read("evc", selector="LAP").empty
    with pytest.warns(UserWarning, match="no unit"):
        assert st.read("nothing").empty
    with pytest.raises(ValueError, match="disagrees"):
        st.write("evc", c1, _rows(2).assign(selector="LAP"))
    with pytest.raises(ValueError, match="table name"):
        st.write("../x", c1, _rows(1))


def test_rewrite_replaces_no_duplicates_and_remove(tmp_path):
    st = ResultStore(tmp_path)
    c = {"step": "baseline", "split": "test"}
    st.write("t", c, _rows(4))
    st.write("t", c, _rows(4))  # re-running the same unit replaces it
    assert len(st.read("t")) == 4
    assert st.remove("t", c) and not st.has("t", c) and not st.remove("t", c)
    assert not any(tmp_path.joinpath("t").iterdir())


def test_resume_after_simulated_kill(tmp_path, monkeypatch):
    st = ResultStore(tmp_path)
    conds = [{"alpha": a} for a in (0.3, 0.5, 1.0, 2.0)]
    st.write("sweep", conds[0], _rows(3))

    # the process dies while the second unit's parquet is being published
    real_replace = os.replace

    def killed(src, dst):
        if str(dst).endswith(".parquet"):
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        st.write("sweep", conds[1], _rows(3))
    monkeypatch.setattr(os, "replace", real_replace)
    # a half-written temp file left by a hard kill must be ignored as well
    (tmp_path / "sweep" / f".{st.key(conds[2])}.parquet.123.abcd.tmp").write_bytes(b"PAR1garbage")

    assert not st.has("sweep", conds[1]) and not st.has("sweep", conds[2])
    assert len(st.read("sweep")) == 3 and len(st.conditions("sweep")) == 1

    done = 0
    for c in conds:  # resume
        if st.has("sweep", c):
            continue
        st.write("sweep", c, _rows(3))
        done += 1
    assert done == 3
    out = st.read("sweep")
    assert len(out) == 12 and not out.duplicated(["utt_id", "alpha"]).any()


def test_concurrent_writers_distinct_units(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    st = ResultStore(tmp_path)
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda i: st.write("par", {"i": i}, _rows(2, start=2 * i)), range(12)))
    out = st.read("par")
    assert len(out) == 24 and out["utt_id"].nunique() == 24


def test_audio(tmp_path):
    st = ResultStore(tmp_path)
    key = st.key({"alpha": 1.0})
    x = (0.1 * np.sin(np.linspace(0, 100, 16000))).astype(np.float32)
    p = st.write_audio(key, "spk/0011_000001|sad", x)
    assert p.parent == tmp_path / "audio" / key and p.suffix == ".wav" and "/" not in p.name[:-4]
    assert st.audio_path(key, "spk/0011_000001|sad") == p
    assert st.audio_path(key, "a_b") != st.audio_path(key, "a|b")  # sanitizing does not collide
    y, sr = sf.read(p, dtype="float32")
    assert sr == 16000 and np.allclose(y, x)
    p2 = st.write_audio(key, "s24", np.zeros(24000, np.float32), sample_rate=24000)
    assert sf.info(p2).samplerate == 16000 and sf.info(p2).frames == 16000
    with pytest.raises(ValueError, match="mono"):
        st.write_audio(key, "st", np.zeros((2, 10)))
    with pytest.raises(ValueError, match="not a store key"):
        st.audio_path("nope", "x")


# ------------------------------------------------------------------------------------- files in the right place
def test_audio_paths_open_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    st = ResultStore("data/results")  # relative, as the notebooks pass it
    key = st.key({"step": "x"})
    p = st.write_audio(key, "u1|sad", np.zeros(1600, np.float32))
    st.write("evc", {"step": "x"}, pd.DataFrame({"sample_id": ["u1|sad", "u2|sad"], "audio_path": [str(p), ""]}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for rows in (st.read("evc"), ResultStore(tmp_path / "data/results").read_unit("evc", {"step": "x"})):
        assert os.path.isabs(rows["audio_path"][0]) and sf.read(rows["audio_path"][0])[0].shape == (1600,)
        assert rows["audio_path"][1] == ""
    # a unit written by an older version holds a path relative to the repository root: read gives a usable one
    st.write("old", {"step": "x"}, pd.DataFrame({"audio_path": [f"data/results/audio/{key}/u1_sad-{p.stem[-8:]}.wav"]}))
    got = st.read("old")["audio_path"][0]
    assert got == str(p) and os.path.exists(got)


def test_stale_temporary_files_are_cleaned_live_ones_kept(tmp_path):
    import subprocess
    import sys
    import time

    from esnlib import fsutil

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    d = tmp_path / "evc"
    d.mkdir(parents=True)
    host = fsutil._HOST
    stale = [d / f".abcd.parquet.{host}.{dead}.0123abcd.tmp",
             tmp_path / "audio" / "k" / f".x.wav.{host}.{dead}.0123abcd.tmp", d / ".old.json.otherhost.1.deadbeef.tmp"]
    live = [d / f".efgh.parquet.{host}.{os.getpid()}.0123abcd.tmp", d / ".new.json.otherhost.1.deadbeef.tmp"]
    for f in stale + live:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"partial")
    old = time.time() - fsutil.MAX_TMP_AGE - 60
    os.utime(stale[2], (old, old))
    keep = d / ".hidden-but-not-ours.tmp"
    keep.write_bytes(b"x")
    ResultStore(tmp_path)
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in live) and keep.exists()
    # and an interrupted write's temporary file now carries host and pid, so the next store removes it
    assert fsutil._TMP_RE.match(fsutil.tmp_path_for(d / "x.parquet").name)


def test_writer_killed_mid_write_leaves_nothing_behind_for_long(tmp_path):
    """kill -9 between writing a unit's temporary file and publishing it: the next store on the folder removes it."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal, sys, pandas as pd\n"
        "from esnlib.store import ResultStore\n"
        "st = ResultStore(sys.argv[1])\n"
        "st.write('evc', {'step': 'a'}, pd.DataFrame({'x': [1]}))\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "st.write('evc', {'step': 'b'}, pd.DataFrame({'x': [2]}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    left = [p.name for p in (tmp_path / "evc").iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".")  # the sidecar's temporary file, never published
    st = ResultStore(tmp_path)
    assert not [p for p in (tmp_path / "evc").iterdir() if p.name.endswith(".tmp")]
    assert len(st.read("evc")) == 1 and not st.has("evc", {"step": "b"})


def test_generation_alias_copies_a_unit_under_another_condition(tmp_path):
    """Two conditions with the same samples: the second unit is a copy of the first (its rows, its own condition
    fields), found through the alias file <root>/_generations/<table>-<generation> that names the first unit's key."""
    st = ResultStore(tmp_path)
    a, b = {"selector": "random", "mask_emotion": "angry"}, {"selector": "random", "mask_emotion": "sad"}
    assert not st.copy_alias("evc", "00ff", b)  # no alias yet: nothing written
    st.write("evc", a, _rows(3))
    st.write_alias("evc", "00ff", a)
    alias = tmp_path / "_generations" / "evc-00ff"
    assert alias.read_text() == st.key(a)  # the on-disk format existing stores hold
    assert st.copy_alias("evc", "00ff", b)
    got = st.read_unit("evc", b)
    pd.testing.assert_frame_equal(got[["utt_id", "pred", "wer"]], _rows(3))
    assert (got["mask_emotion"] == "sad").all() and list(got.columns) == list(st.read_unit("evc", a).columns)
    # keep= picks the row columns; the alias is not a table
    c = {"selector": "random", "mask_emotion": "happy"}
    assert st.copy_alias("evc", "00ff", c, keep=lambda col: col in ("utt_id", "pred"))
    assert set(st.read_unit("evc", c).columns) == {"utt_id", "pred", "selector", "mask_emotion"}
    assert len(st.conditions("evc")) == 3
    # an alias whose unit was removed copies nothing; bad names are refused
    st.remove("evc", a)
    assert not st.copy_alias("evc", "00ff", {"selector": "random", "mask_emotion": "surprise"})
    with pytest.raises(ValueError, match="hex digits"):
        st.write_alias("evc", "../x", a)
    with pytest.raises(ValueError, match="table name"):
        st.write_alias("audio", "00ff", a)
