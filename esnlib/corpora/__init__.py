"""Corpus loaders (ESD, IEMOCAP, MELD, MSP-Podcast) and the synthetic demo corpus, all returning Utterance lists."""
from .base import CorpusError, Utterance, to_frame

__all__ = ["CorpusError", "Utterance", "to_frame"]
