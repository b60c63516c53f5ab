import numpy as np
import pytest
import soundfile as sf

from esnlib.audio import load_wav, loudness_normalize, resample, rms_dbfs, save_wav, to_16k_clip
from esnlib.corpora.base import CorpusError


def _tone(sr=16000, secs=0.5, f=220.0, amp=0.3):
    t = np.arange(int(sr * secs)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_save_load_roundtrip_and_atomic(tmp_path):
    w = _tone()
    p = save_wav(tmp_path / "a" / "x.wav", w)
    back = load_wav(p)
    assert back.dtype == np.float32 and back.shape == w.shape
    assert np.max(np.abs(back - w)) < 1e-3  # PCM-16 quantization
    assert [f.name for f in p.parent.iterdir()] == ["x.wav"]  # no temp file left behind


def test_load_resamples_and_downmixes(tmp_path):
    w = _tone(sr=22050, secs=1.0)
    sf.write(tmp_path / "s.wav", np.stack([w, w], axis=1), 22050)
    out = load_wav(tmp_path / "s.wav", sr=16000)
    assert out.ndim == 1 and abs(len(out) - 16000) <= 1
    # the tone keeps its frequency after resampling
    spec = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spec) * 16000 / len(out) - 220) < 3


def test_resample_identity_and_length():
    w = _tone()
    assert resample(w, 16000, 16000) is not None and np.array_equal(resample(w, 16000, 16000), w)
    assert len(resample(w, 16000, 8000)) == len(w) // 2
    with pytest.raises(ValueError, match="positive"):
        resample(w, 0, 16000)


@pytest.mark.parametrize("content", [b"", b"not a wav at all" * 10, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_corrupt_or_empty_file_names_file(tmp_path, content):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(CorpusError, match="bad.wav.*(re-generate|remove)"):
        load_wav(p)


def test_zero_sample_wav(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(CorpusError, match="empty"):
        load_wav(p)


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_wav(tmp_path / "nope.wav")


def test_loudness_normalize_and_clip():
    w = _tone(amp=0.01)
    n = loudness_normalize(w, -23)
    assert abs(rms_dbfs(n) - (-23)) < 0.05
    assert np.array_equal(loudness_normalize(np.zeros(100, np.float32)), np.zeros(100, np.float32))
    assert to_16k_clip(np.array([2.0, -3.0, 0.5])).tolist() == [1.0, -1.0, 0.5]
