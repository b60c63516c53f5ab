"""The one model interface: every LALM (the demo model and the real ones) is driven through a ModelAdapter.

Notebooks and ``esnlib.experiments`` only see this interface. An adapter builds the paper's fixed SER and EVC prompts,
runs ``generate`` through the esnlib core (``esnlib.capture`` / ``esnlib.generate``, nnsight underneath) with optional
capture and intervention, and returns decoded text, a 16 kHz waveform and a parsed label per sample.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..constants import EMOTIONS
from ..corpora.base import Utterance


@dataclass
class Generation:
    """What one generated sample gives back.

    text: decoded text (EVC: the converted sentence; SER: the raw answer); audio: float32 mono 16 kHz or None (SER,
    text-only models); label: parsed emotion label (SER) or None; stats_row: the row of this sample in the
    CaptureStats returned alongside (capture=True), else None.
    """

    text: str
    audio: np.ndarray | None = None
    label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ModelAdapter(ABC):
    """Drive one LALM for the papers' two tasks.

    Subclasses set ``name`` and ``labels`` (the emotions its SER prompt offers) and implement the abstract methods.
    ``intervention`` is an ``esnlib.Intervention`` (flat indices over ``self.sites(scope)``) or None.
    ``capture=True`` returns ``(generations, stats)`` with ``stats`` an ``esnlib.CaptureStats`` whose rows follow the
    input order; otherwise only the generations.
    """

    name: str = "model"
    labels: tuple[str, ...] = EMOTIONS
    has_talker: bool = False
    sample_rate: int = 16000

    @abstractmethod
    def sites(self, scope: str = "lm") -> list:
        """The gated-MLP activation sites (``esnlib.find_sites`` on the underlying module)."""

    @abstractmethod
    def evc(
        self,
        utts: Sequence[Utterance],
        targets: Sequence[str],
        *,
        capture: bool = False,
        intervention=None,
        scope: str = "lm",
        batch_size: int = 8,
    ):
        """Emotional voice conversion: source audio of each utterance + instruction naming its target emotion."""

    @abstractmethod
    def ser(
        self,
        utts: Sequence[Utterance],
        *,
        capture: bool = False,
        intervention=None,
        scope: str = "lm",
        batch_size: int = 8,
    ):
        """Speech emotion recognition: audio in, one label out (``Generation.label``, None if unparseable)."""

    def describe(self) -> dict:
        """A small dict that identifies the model in result keys (name, revision, dtype, ...)."""
        return {"model": self.name}

    def stat_positions(self, task: str) -> str:
        """What ``task``'s activation statistics count (``esnlib.capture.STAT_POSITIONS``): "all", the paper's whole
        generation (prompt included), for every real model; the demo LALM's EVC counts its answer only."""
        return "all"
