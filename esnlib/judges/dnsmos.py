"""DNSMOS (Reddy et al. 2022, P.835) as the demo world's naturalness judge, via the ONNX models bundled in `speechmos`.

The paper uses UTMOS; DNSMOS is the offline stand-in. We report the P.835 **OVRL** score (overall quality, 1-5) of
the non-personalized model. Clips are resampled to 16 kHz and clipped to [-1, 1]. DNSMOS doubles a short clip until
it is at least 9.01 s long and averages 9.01 s windows at 1 s hops, so a 3 s clip (doubled to 12 s) costs 3 windows
and a 4.5 s clip (18 s) costs 9; on the demo's 2-5 s clips that is about 7 windows, 1.5-2.5 s of CPU per clip.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from ..audio import SAMPLE_RATE, resample, to_16k_clip
from .base import NaturalnessJudge


class DNSMOSJudge(NaturalnessJudge):
    """DNSMOS P.835 OVRL per clip (``score``), or all of OVRL/SIG/BAK/P808 (``score_all``)."""

    name = "dnsmos_ovrl"

    def __init__(self, threads: int = 1, progress: bool = False):
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
            a = np.asarray(a, dtype=np.float32)
            if a.ndim != 1 or a.size < sample_rate // 10 or not np.isfinite(a).all():
                raise ValueError(f"clip {i} must be finite mono audio of at least 0.1 s, got shape {a.shape}")
            a = to_16k_clip(resample(a, sample_rate, SAMPLE_RATE))
            if not np.any(a):
                raise ValueError(f"clip {i} is silent; DNSMOS needs speech")
            r = self._dnsmos(a, SAMPLE_RATE, False)
            out.append({"ovrl": float(r["ovrl_mos"]), "sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]),
                        "p808": float(r["p808_mos"])})
        return out

    def score(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[float]:
        return [r["ovrl"] for r in self.score_all(audios, sample_rate)]

    def describe(self) -> dict:
        return {"naturalness": self.name, "model": "DNSMOS P.835 (speechmos), OVRL"}
