"""The one judge interface: SER judges (emotion label per clip) and naturalness judges (a MOS-like score per clip)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from ..constants import EMOTIONS


class EmotionJudge(ABC):
    """A held-out SER model used to decide whether a generation realizes its target emotion.

    ``predict`` takes 16 kHz float32 mono clips and returns one label per clip from ``self.labels`` (or None where the
    judge gives a label outside the corpus label set: a mismatch, never a silent remap).
    """

    name: str = "judge"
    labels: tuple[str, ...] = EMOTIONS

    @abstractmethod
    def predict(self, audios: Sequence[np.ndarray], sample_rate: int = 16000) -> list[str | None]: ...

    def describe(self) -> dict:
        return {"judge": self.name}


class NaturalnessJudge(ABC):
    """A non-intrusive quality estimator (UTMOS in the paper; DNSMOS in the demo world)."""

    name: str = "naturalness"

    @abstractmethod
    def score(self, audios: Sequence[np.ndarray], sample_rate: int = 16000) -> list[float]: ...
