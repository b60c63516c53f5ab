"""emotion2vec+ large (funasr) as the acoustic SER judge of the EVC paper (§4).

The model predicts 9 classes with bilingual names ('生气/angry', ..., '<unk>'). Five map onto the esnlib labels;
'disgusted', 'fearful', 'other' and 'unknown' have no esnlib counterpart and give None, which the evaluation counts
as a mismatch with the target emotion (never remapped to the nearest label). A corpus with fear/disgust classes can
pass ``labels`` that include "fear"/"disgust" to keep them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..constants import EMOTIONS
from .base import EmotionJudge

# English part of the funasr label (after the '/') -> esnlib label.
E2V_TO_ESN = {
    "angry": "angry",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "surprised": "surprise",
    "fearful": "fear",
    "disgusted": "disgust",
    "other": None,
    "unknown": None,
    "<unk>": None,
}


def map_label(raw: str, labels: Sequence[str] = EMOTIONS) -> str | None:
    """'生气/angry' -> 'angry'; labels outside ``labels`` (fearful, disgusted, other, <unk>) -> None."""
    key = str(raw).strip().split("/")[-1].strip().lower()
    if key == "":
        key = "unknown"
    if key not in E2V_TO_ESN:
        raise ValueError(f"unexpected emotion2vec label {raw!r}; known: {sorted(E2V_TO_ESN)}")
    lab = E2V_TO_ESN[key]
    return lab if lab in labels else None


def top_label(result: dict, labels: Sequence[str] = EMOTIONS) -> str | None:
    """The mapped arg-max label of one funasr result dict ``{'labels': [...], 'scores': [...]}``."""
    if "labels" not in result or "scores" not in result:
        raise ValueError(f"emotion2vec result lacks 'labels'/'scores' (got keys {sorted(result)}); "
                         "call generate(..., granularity='utterance', extract_embedding=False)")
    scores = np.asarray(result["scores"], dtype=np.float64)
    if len(scores) != len(result["labels"]) or len(scores) == 0:
        raise ValueError(f"emotion2vec result has {len(result['labels'])} labels but {len(scores)} scores")
    return map_label(result["labels"][int(np.argmax(scores))], labels)


class Emotion2VecJudge(EmotionJudge):
    """emotion2vec+ large via ``funasr.AutoModel(model="iic/emotion2vec_plus_large")``; batched, 16 kHz input."""

    name = "emotion2vec"

    def __init__(self, model: str = "iic/emotion2vec_plus_large", *, hub: str = "hf", device: str | None = None,
                 labels: Sequence[str] = EMOTIONS, batch_size: int = 16):
        from ..models._hf import require, resolve_device

        funasr = require("funasr", "the emotion2vec judge", "funasr modelscope")
        self.labels = tuple(labels)
        self.batch_size = batch_size
        self.model_id = model
        self.model = funasr.AutoModel(model=model, hub=hub, device=resolve_device(device), disable_update=True)

    def predict(self, audios: Sequence[np.ndarray], sample_rate: int = 16000) -> list[str | None]:
        from ..audio import resample

        clips = [resample(np.asarray(a, dtype=np.float32), sample_rate, 16000) for a in audios]
        out: list[str | None] = []
        for start in range(0, len(clips), self.batch_size):
            chunk = clips[start:start + self.batch_size]
            res = self.model.generate(chunk, granularity="utterance", extract_embedding=False,
                                      batch_size=len(chunk), disable_pbar=True)
            if len(res) != len(chunk):
                raise RuntimeError(f"emotion2vec returned {len(res)} results for {len(chunk)} clips")
            out += [top_label(r, self.labels) for r in res]
        return out

    def describe(self) -> dict:
        return {"judge": self.name, "judge_model": self.model_id}
