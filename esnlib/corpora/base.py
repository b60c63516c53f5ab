"""What every corpus loader returns: a list of :class:`Utterance` rows (one per audio file), validated on load."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd


@dataclass(frozen=True)
class Utterance:
    """One audio file of a corpus.

    ``index`` is the utterance index parallel across emotions (ESD: the 350 sentences of a speaker, 1-based), used by
    the Table 1 split; corpora without parallel sentences use a running index. ``emotion`` is in the corpus label set
    (lower case: neutral, angry, happy, sad, surprise, ...). ``split`` is the corpus's own split where it has one.
    """

    id: str
    corpus: str
    speaker: str
    emotion: str
    text: str
    path: str
    index: int
    split: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class CorpusError(ValueError):
    """A corpus folder is missing, malformed, or holds unreadable audio. The message names the path and the fix."""


def to_frame(utts: list[Utterance]) -> pd.DataFrame:
    return pd.DataFrame([u.as_dict() for u in utts])
