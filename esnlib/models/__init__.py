"""Model adapters: the demo LALM and the papers' models, all on the ModelAdapter interface."""
from .base import Generation, ModelAdapter

__all__ = ["Generation", "ModelAdapter"]
