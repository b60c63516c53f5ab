"""UTMOS (UTMOS22 strong, Saeki et al. 2022) as the naturalness judge of the EVC paper (§4), 1-5 MOS scale.

Two ways to load it, both lazy and both offline-capable once the weights are on disk:

* ``backend="speechmos"`` (default): the SpeechMOS ``utmos22_strong`` predictor through ``torch.hub``. Offline, point
  ``repo_or_dir`` at a local clone of the SpeechMOS repository (``source="local"``) and keep the checkpoint in the
  torch hub cache (``TORCH_HOME``); online, ``repo_or_dir="tarepan/SpeechMOS:v1.2.0"`` downloads both.
* ``backend="utmos"``: the unofficial ``utmos`` PyPI package (``utmos.Score().calculate_wav``), which downloads its
  own checkpoint on first use.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .base import NaturalnessJudge


class UtmosJudge(NaturalnessJudge):
    """UTMOS22 strong MOS per clip (clips resampled to 16 kHz, scored in batches of equal-length padding-free runs)."""

    name = "utmos"

    def __init__(self, backend: str = "speechmos", *, repo_or_dir: str = "tarepan/SpeechMOS:v1.2.0",
                 device: str | None = None):
        from ..models._hf import require, resolve_device

        self.backend = backend
        self.device = resolve_device(device)
        if backend == "speechmos":
            import torch

            local = os.path.isdir(repo_or_dir)
            try:
                self.model = torch.hub.load(repo_or_dir, "utmos22_strong", source="local" if local else "github",
                                            trust_repo=True).to(self.device).eval()
            except Exception as e:
                raise RuntimeError(
                    f"could not load UTMOS22 strong from {repo_or_dir!r} ({e}). Offline: clone the SpeechMOS "
                    "repository to a folder, pass repo_or_dir=<folder>, and put its checkpoint in the torch hub cache "
                    "(TORCH_HOME); or use backend='utmos' (pip install utmos).") from e
        elif backend == "utmos":
            self.model = require("utmos", "the UTMOS judge (backend='utmos')").Score()
        else:
            raise ValueError(f"unknown UTMOS backend {backend!r}; use 'speechmos' or 'utmos'")

    def score(self, audios: Sequence[np.ndarray], sample_rate: int = 16000) -> list[float]:
        from ..audio import resample

        clips = [resample(np.asarray(a, dtype=np.float32), sample_rate, 16000) for a in audios]
        if self.backend == "utmos":
            return [float(self.model.calculate_wav(c, 16000)) for c in clips]
        import torch

        out = []
        with torch.inference_mode():
            # One clip per call: UTMOS has no padding mask, so zero-padding a batch would change the scores.
            for c in clips:
                s = self.model(torch.from_numpy(c)[None].to(self.device), 16000)
                out.append(float(s.reshape(-1)[0]))
        return out

    def describe(self) -> dict:
        return {"naturalness": self.name, "backend": self.backend}
