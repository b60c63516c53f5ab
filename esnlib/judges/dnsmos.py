"""DNSMOS (Reddy et al. 2021/2022) as the demo world's naturalness judge, via the ONNX models bundled in `speechmos`.

The paper uses UTMOS; DNSMOS is the offline stand-in. Clips are resampled to 16 kHz and clipped to [-1, 1]. Two
heads, two judges:

* ``dnsmos-p808`` (:class:`DNSMOSP808Judge`, the notebooks' default): the **P.808** MOS (overall quality on the
  ITU-T P.808 ACR scale, 1-5 -- a listening-test MOS like UTMOS's target), one 9.01 s window per clip (the clip
  repeated), speechmos' log-mel features computed for a batch of clips at once. ~0.015 s of CPU a clip, so every
  evaluated sample is scored.
* ``dnsmos`` (:class:`DNSMOSJudge`): the **P.835 OVRL** score of the non-personalized model. ``mode="fast"``: one
  batched 9.01 s window per clip through the P.835 model only (~0.15 s a clip); ``mode="reference"`` /
  ``score_all``: speechmos' reference procedure -- the clip doubled until >= 9.01 s, every 9.01 s window at 1 s hops
  scored by P.835 *and* P.808 and averaged (a 3-5 s demo clip costs ~7 windows).

The two heads react to different things on demo speech (``scripts/prototypes/probe_naturalness_p808.py``; numbers
in docs/demo_world.md): both fall with added noise and with prosody at the renderer's upper limits; P.808 also falls
with hard clipping and a 2 kHz low-pass (OVRL hardly), OVRL also with slow, flat, quiet prosody (P.808 does not).
``bench/bench_naturalness.py`` measures the modes' per-clip cost side by side.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..audio import SAMPLE_RATE, mel_power, resample, to_16k_clip
from ..progress import tqdm
from .base import NaturalnessJudge


def _clip16k(a, i: int, sample_rate: int) -> np.ndarray:
    """Clip ``i`` checked (finite mono, >= 0.1 s, not silent), resampled to 16 kHz and clipped to [-1, 1]."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim != 1 or a.size < sample_rate // 10 or not np.isfinite(a).all():
        raise ValueError(f"clip {i} must be finite mono audio of at least 0.1 s, got shape {a.shape}")
    a = to_16k_clip(resample(a, sample_rate, SAMPLE_RATE))
    if not np.any(a):
        raise ValueError(f"clip {i} is silent; DNSMOS needs speech")
    return a


MODES = ("fast", "p808", "reference")
#: what one 9.01 s window of each mode runs
_MODE_TEXT = {"fast": "one batched P.835 window per clip", "p808": "one batched P.808 window per clip",
              "reference": "reference windows"}


class DNSMOSJudge(NaturalnessJudge):
    """DNSMOS P.835 OVRL per clip (``score``; with ``mode="p808"`` the P.808 MOS instead), or all of
    OVRL/SIG/BAK/P808 by speechmos' reference procedure (``score_all``)."""

    name = "dnsmos_ovrl"

    def __init__(self, threads: int = 2, progress: bool = False, mode: str = "fast", batch_size: int = 16):
        if mode not in MODES:
            raise ValueError(f"unknown DNSMOS mode {mode!r}; use 'fast' (one batched P.835 window per clip), "
                             "'p808' (one batched P.808 window per clip) or 'reference' (speechmos' windows, "
                             "P.835 + P.808)")
        self.mode, self.batch_size = mode, int(batch_size)
        if mode == "p808":
            self.name = DNSMOSP808Judge.name
        try:
            import onnxruntime as ort
            import speechmos.dnsmos as sd
        except ImportError as e:
            raise ImportError("DNSMOSJudge needs `speechmos` and `onnxruntime`: pip install speechmos onnxruntime") from e
        base = os.path.join(os.path.dirname(os.path.abspath(sd.__file__)), "dnsmos_models")
        self._dnsmos = sd.DNSMOS.__new__(sd.DNSMOS)
        self._opts = ort.SessionOptions()
        self._opts.intra_op_num_threads = threads
        self._opts.inter_op_num_threads = 1
        self._dnsmos.primary_model_path = os.path.join(base, "sig_bak_ovr.onnx")
        self._paths = {"onnx_sess": self._dnsmos.primary_model_path,
                       "p808_onnx_sess": os.path.join(base, "model_v8.onnx")}
        self._dnsmos.onnx_sess = self._dnsmos.p808_onnx_sess = None
        # the heads this mode runs, loaded now; the other one only if score_all needs it
        self._heads(*{"fast": ("onnx_sess",), "p808": ("p808_onnx_sess",)}.get(mode, tuple(self._paths)))
        self.progress = progress

    def _heads(self, *names: str):
        """Load the ONNX sessions ``names`` ("onnx_sess": P.835, "p808_onnx_sess": P.808) that are not loaded yet."""
        import onnxruntime as ort

        for n in names:
            if getattr(self._dnsmos, n) is None:
                setattr(self._dnsmos, n, ort.InferenceSession(self._paths[n], self._opts,
                                                              providers=["CPUExecutionProvider"]))
        return self._dnsmos

    def score_all(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[dict]:
        """``{"ovrl", "sig", "bak", "p808"}`` per clip."""
        self._heads(*self._paths)
        out = []
        for i, a in enumerate(tqdm(audios, desc="DNSMOS", disable=not self.progress)):
            a = _clip16k(a, i, sample_rate)
            r = self._dnsmos(a, SAMPLE_RATE, False)
            out.append({"ovrl": float(r["ovrl_mos"]), "sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]),
                        "p808": float(r["p808_mos"])})
        return out

    def score(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[float]:
        if self.mode == "reference":
            return [r["ovrl"] for r in self.score_all(audios, sample_rate)]
        if self.mode == "p808":
            return self.score_p808(audios, sample_rate)
        return self.score_fast(audios, sample_rate)

    def _windows(self, audios, sample_rate) -> list[np.ndarray]:
        import speechmos.dnsmos as sd

        n = int(sd.INPUT_LENGTH * SAMPLE_RATE)
        wins = []
        for i, a in enumerate(audios):
            a = _clip16k(a, i, sample_rate)
            wins.append(np.resize(a, n) if len(a) < n else a[:n])
        return wins

    def score_p808(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[float]:
        """P.808 MOS from one 9.01 s window per clip (the clip repeated): speechmos' log-mel features of the window,
        computed for a batch of clips at once, through the P.808 network."""
        import librosa

        out: list[float] = []
        wins = self._windows(audios, sample_rate)
        for k in tqdm(range(0, len(wins), self.batch_size), desc="DNSMOS P.808", disable=not self.progress):
            y = np.stack([w[:-160] for w in wins[k: k + self.batch_size]])
            mel = mel_power(y, sr=SAMPLE_RATE, n_fft=321, hop_length=160, n_mels=120)
            feats = np.stack([((librosa.power_to_db(m, ref=np.max) + 40) / 40).T for m in mel]).astype(np.float32)
            out.extend(float(x) for x in self._dnsmos.p808_onnx_sess.run(None, {"input_1": feats})[0][:, 0])
        return out

    def score_fast(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[float]:
        """OVRL from one 9.01 s window per clip (the clip repeated), clips batched through P.835 only."""
        wins = self._windows(audios, sample_rate)
        out: list[float] = []
        for k in tqdm(range(0, len(wins), self.batch_size), desc="DNSMOS", disable=not self.progress):
            raw = self._dnsmos.onnx_sess.run(None, {"input_1": np.stack(wins[k: k + self.batch_size])})[0]
            for sig, bak, ovr in raw:
                out.append(float(self._dnsmos.get_polyfit_val(sig, bak, ovr, False)[2]))
        return out

    def describe(self) -> dict:
        model = "DNSMOS P.808 (speechmos, model_v8)" if self.mode == "p808" else "DNSMOS P.835 (speechmos), OVRL"
        return {"naturalness": self.name, "model": model, "mode": _MODE_TEXT[self.mode]}


class DNSMOSP808Judge(DNSMOSJudge):
    """DNSMOS P.808 MOS per clip: one batched 9.01 s window (the notebooks' default naturalness judge)."""

    name = "dnsmos_p808"

    def __init__(self, threads: int = 2, progress: bool = False, batch_size: int = 16):
        super().__init__(threads=threads, progress=progress, mode="p808", batch_size=batch_size)
