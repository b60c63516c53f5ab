"""Judges: held-out SER models and naturalness estimators on one interface."""
from .base import EmotionJudge, NaturalnessJudge

__all__ = ["EmotionJudge", "NaturalnessJudge"]
