"""Audio I/O for the whole library: every clip inside esnlib is float32 mono at 16 kHz.

Reading goes through :func:`load_wav`, which turns unreadable, empty or corrupt files into a
:class:`~esnlib.corpora.base.CorpusError` naming the file, so a broken corpus file stops a run with a fix, not a
traceback from deep inside soundfile. Writing goes through :func:`save_wav`, which is atomic (temp file +
``os.replace``), so an interrupted corpus build or sweep never leaves a half-written wav behind.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .corpora.base import CorpusError
from .fsutil import tmp_path_for

SAMPLE_RATE = 16000


_BLAS = None


def blas_one_thread():
    """A context in which numpy's BLAS runs on one thread. Feature code (librosa's mel projection is a matrix
    product) runs inside it so that a clip gives the same bits whatever the process's thread settings: on some CPUs
    (AMD EPYC with OpenBLAS' Haswell kernels, 2026-12-01) one and two BLAS threads give different last bits, so a
    Ray worker (``OMP_NUM_THREADS=1``) computed other features, prosody and tables than the driver. ~20 us a call."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def mel_power(y: np.ndarray, **kw) -> np.ndarray:
    """librosa's mel power spectrogram of ``y`` (one clip or a batch, last axis time; ``kw`` as
    ``librosa.feature.melspectrogram``) computed with BLAS on one thread (:func:`blas_one_thread`). Every mel feature
    in esnlib goes through here, so a clip gives the same bits in every process."""
    import librosa

    with blas_one_thread():
        return librosa.feature.melspectrogram(y=y, **kw)


def resample(wav: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Polyphase resampling (scipy ``resample_poly``) from ``sr_from`` to ``sr_to``; float32 out."""
    if sr_from <= 0 or sr_to <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_from} -> {sr_to}")
    wav = np.asarray(wav, dtype=np.float32)
    if sr_from == sr_to:
        return wav
    from scipy.signal import resample_poly

    g = int(np.gcd(int(sr_from), int(sr_to)))
    return resample_poly(wav, int(sr_to) // g, int(sr_from) // g).astype(np.float32)


def load_wav(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono at ``sr`` (resampled when the file's rate differs).

    Raises CorpusError (naming the file) when it is missing, unreadable, corrupt or empty.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"audio file {path} does not exist; re-generate the corpus or fix the path")
    try:
        wav, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError with varying messages
        raise CorpusError(
            f"audio file {path} is unreadable or corrupt ({e}); re-generate it (the demo corpus builder re-renders "
            f"corrupt files on its next run) or remove it"
        ) from e
    if wav.shape[0] == 0:
        raise CorpusError(f"audio file {path} is empty (0 samples); re-generate it or remove it")
    wav = wav.mean(axis=1)
    if not np.isfinite(wav).all():
        raise CorpusError(f"audio file {path} holds NaN/inf samples; re-generate it or remove it")
    return resample(wav, int(file_sr), sr)


def verify_audio(path: str | os.PathLike, fix: str = "re-generate it or remove it", min_seconds: float = 0.0) -> None:
    """Check that an audio file's header reads, the file holds all the audio its header declares (WAV) and at least
    ``min_seconds`` of it (cheap: no decoding); CorpusError naming the file otherwise.

    ``fix`` is what the message tells the user to do (corpora differ: re-generate vs restore from the release).
    """
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:
        raise CorpusError(f"audio file {path} is unreadable or corrupt ({e}); {fix}") from e
    if info.frames == 0:
        raise CorpusError(f"audio file {path} is empty (0 samples); {fix}")
    declared, held = _wav_data_bytes(path)
    if declared is not None and held < declared:
        raise CorpusError(f"audio file {path} is truncated: its header declares {declared} bytes of audio, the file "
                          f"holds {held} (a copy or download cut short?); {fix}")
    if info.samplerate and info.frames / info.samplerate < min_seconds:
        raise CorpusError(f"audio file {path} is too short: {info.frames} samples "
                          f"({info.frames / info.samplerate:.3g} s), less than {min_seconds:g} s (truncated?); {fix}")


def _wav_data_bytes(path) -> tuple[int | None, int]:
    """(bytes the RIFF/WAVE ``data`` chunk header declares, bytes the file holds after it); (None, 0) when the file is
    not a plain WAV or the size is the streaming placeholder (0 or 0xFFFFFFFF)."""
    import struct

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None, 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                return (None, 0) if n in (0, 0xFFFFFFFF) else (n, size - pos - 8)
            pos += 8 + n + (n & 1)
    return None, 0


def to_16k_clip(wav: np.ndarray) -> np.ndarray:
    """float32 copy clipped to [-1, 1] (what DNSMOS and the wav writer expect)."""
    return np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)


def save_wav(path: str | os.PathLike, wav: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM mono atomically (temp file in the same folder, then ``os.replace``). Returns the path."""
    import soundfile as sf

    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"save_wav expects mono audio of shape (T,), got shape {wav.shape}")
    if wav.size == 0:
        raise ValueError(f"refusing to write an empty clip to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)  # hidden, named by host and process: fsutil.clean_stale_tmp removes it if we die
    try:
        sf.write(str(tmp), to_16k_clip(wav), sr, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def rms_dbfs(wav: np.ndarray) -> float:
    """Root-mean-square level in dBFS (full scale = 1.0); -inf for silence."""
    r = float(np.sqrt(np.mean(np.square(np.asarray(wav, dtype=np.float64))))) if len(wav) else 0.0
    return 20.0 * np.log10(r) if r > 0 else float("-inf")


def loudness_normalize(wav: np.ndarray, target_dbfs: float = -23.0) -> np.ndarray:
    """Scale to an RMS level of ``target_dbfs`` and clip to [-1, 1].

    A plain RMS gain (not ITU-R BS.1770 LUFS gating): enough to remove level differences between clips before a
    judge sees them. Silent clips are returned unchanged.
    """
    wav = np.asarray(wav, dtype=np.float32)
    level = rms_dbfs(wav)
    if not np.isfinite(level):
        return wav.copy()
    return to_16k_clip(wav * np.float32(10.0 ** ((target_dbfs - level) / 20.0)))
