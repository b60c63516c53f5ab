"""DNSMOS (Reddy et al. 2022, P.835) as the demo world's naturalness judge, via the ONNX models bundled in `speechmos`.

The paper uses UTMOS; DNSMOS is the offline stand-in. We report the P.835 **OVRL** score (overall quality, 1-5) of
the non-personalized model. Clips are resampled to 16 kHz and clipped to [-1, 1].

Two ways to score, both on the P.835 model's fixed 9.01 s input:

* ``score`` (the default, ``mode="fast"``): the clip repeated to 9.01 s, **one** window per clip, clips batched
  through the P.835 model only (no P.808). This is what the notebooks use on every evaluated sample.
* ``score_all`` / ``mode="reference"``: speechmos' reference procedure — the clip doubled until >= 9.01 s, every
  9.01 s window at 1 s hops scored by P.835 *and* P.808 and averaged; a 3-5 s demo clip costs ~7 windows.

The windows of a repeated short clip hold the same speech, so the one-window score follows the reference closely;
``bench/bench_naturalness.py`` measures both side by side (per-clip cost and agreement).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..audio import SAMPLE_RATE, resample, to_16k_clip
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


class DNSMOSJudge(NaturalnessJudge):
    """DNSMOS P.835 OVRL per clip (``score``), or all of OVRL/SIG/BAK/P808 (``score_all``)."""

    name = "dnsmos_ovrl"

    def __init__(self, threads: int = 2, progress: bool = False, mode: str = "fast", batch_size: int = 16):
        if mode not in ("fast", "reference"):
            raise ValueError(f"unknown DNSMOS mode {mode!r}; use 'fast' (one batched P.835 window per clip) or "
                             "'reference' (speechmos' windows, P.835 + P.808)")
        self.mode, self.batch_size = mode, int(batch_size)
        try:
            import onnxruntime as ort
            import speechmos.dnsmos as sd
        except ImportError as e:
            raise ImportError("DNSMOSJudge needs `speechmos` and `onnxruntime`: pip install speechmos onnxruntime") from e
        base = os.path.join(os.path.dirname(os.path.abspath(sd.__file__)), "dnsmos_models")
        self._dnsmos = sd.DNSMOS.__new__(sd.DNSMOS)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._dnsmos.primary_model_path = os.path.join(base, "sig_bak_ovr.onnx")
        self._dnsmos.onnx_sess = ort.InferenceSession(self._dnsmos.primary_model_path, opts,
                                                      providers=["CPUExecutionProvider"])
        self._dnsmos.p808_onnx_sess = ort.InferenceSession(os.path.join(base, "model_v8.onnx"), opts,
                                                           providers=["CPUExecutionProvider"])
        self.progress = progress

    def score_all(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[dict]:
        """``{"ovrl", "sig", "bak", "p808"}`` per clip."""
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
        return self.score_fast(audios, sample_rate)

    def score_fast(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[float]:
        """OVRL from one 9.01 s window per clip (the clip repeated), clips batched through P.835 only."""
        import speechmos.dnsmos as sd

        n = int(sd.INPUT_LENGTH * SAMPLE_RATE)
        wins = []
        for i, a in enumerate(audios):
            a = _clip16k(a, i, sample_rate)
            wins.append(np.resize(a, n) if len(a) < n else a[:n])
        out: list[float] = []
        for k in tqdm(range(0, len(wins), self.batch_size), desc="DNSMOS", disable=not self.progress):
            raw = self._dnsmos.onnx_sess.run(None, {"input_1": np.stack(wins[k: k + self.batch_size])})[0]
            for sig, bak, ovr in raw:
                out.append(float(self._dnsmos.get_polyfit_val(sig, bak, ovr, False)[2]))
        return out

    def describe(self) -> dict:
        return {"naturalness": self.name, "model": "DNSMOS P.835 (speechmos), OVRL",
                "mode": "one batched P.835 window per clip" if self.mode == "fast" else "reference windows"}
