"""Speech for the demo world: espeak-ng with SSML prosody, emotion prosody profiles, prosody <-> speech tokens.

The demo corpus (``esnlib.corpora.synthetic``) renders its utterances here, and the demo LALM's renderer turns its
speech tokens (quantized prosody) plus its decoded text into a waveform here, so both use one voice model.

Emotion profiles follow the direction of the acoustic correlates reported for acted emotional speech
(Banse & Scherer 1996, JPSP 70(3); Scherer 2003, Speech Communication 40; Juslin & Laukka 2003, Psych. Bull. 129(5)):
anger: higher and wider pitch, faster, much louder; happiness: higher pitch, widest range, slightly faster, louder;
sadness: lower pitch, narrow range, slow, soft; surprise: highest pitch, wide range, rising final contour.
Values are relative to each voice's neutral prosody; per-utterance jitter makes emotions overlap, as in acted speech.
"""
from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace

import numpy as np

SAMPLE_RATE = 16000
EMOTIONS = ("neutral", "angry", "happy", "sad", "surprise")


@dataclass(frozen=True)
class Prosody:
    """Prosody relative to a voice's neutral: pitch and volume in %, range and rate in % of neutral,
    final: extra pitch change (%) on the last word (positive = rising contour)."""

    pitch: float = 0.0
    range: float = 100.0
    rate: float = 100.0
    volume: float = 0.0
    final: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


#: mean profile per emotion and the per-utterance jitter (standard deviation) of each field
PROFILES: dict[str, Prosody] = {
    "neutral": Prosody(pitch=0, range=100, rate=100, volume=0, final=0),
    "angry": Prosody(pitch=12, range=135, rate=115, volume=45, final=-15),
    "happy": Prosody(pitch=25, range=175, rate=108, volume=20, final=10),
    "sad": Prosody(pitch=-18, range=50, rate=76, volume=-35, final=-10),
    "surprise": Prosody(pitch=40, range=170, rate=98, volume=10, final=45),
}
JITTER = Prosody(pitch=7, range=18, rate=6, volume=10, final=10)

#: the demo LALM's speech-token grid: one token per field, each field quantized to these bin centres
GRID: dict[str, np.ndarray] = {
    "pitch": np.arange(-40, 71, 10, dtype=float),  # 12 bins
    "range": np.arange(30, 231, 20, dtype=float),  # 11 bins
    "rate": np.arange(60, 141, 8, dtype=float),  # 11 bins
    "volume": np.arange(-60, 71, 13, dtype=float),  # 11 bins
    "final": np.arange(-40, 71, 10, dtype=float),  # 12 bins
}
FIELDS = tuple(GRID)


def sample_prosody(emotion: str, rng: np.random.Generator, intensity: float = 1.0) -> Prosody:
    """A prosody for one utterance: the emotion's profile scaled by ``intensity`` (0 = neutral, 1 = full), plus jitter."""
    if emotion not in PROFILES:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    base, prof = PROFILES["neutral"], PROFILES[emotion]
    vals = {}
    for f in FIELDS:
        b, p, j = getattr(base, f), getattr(prof, f), getattr(JITTER, f)
        vals[f] = b + intensity * (p - b) + rng.normal(0.0, j)
    vals["range"] = max(vals["range"], 20.0)
    vals["rate"] = max(vals["rate"], 50.0)
    return Prosody(**vals)


def prosody_to_tokens(p: Prosody) -> list[int]:
    """Quantize a prosody to one bin index per field (nearest bin centre)."""
    return [int(np.abs(GRID[f] - getattr(p, f)).argmin()) for f in FIELDS]


def tokens_to_prosody(tokens) -> Prosody:
    """Inverse of :func:`prosody_to_tokens` (bin centres). Out-of-range bins are clipped to the grid."""
    tokens = list(tokens)
    if len(tokens) != len(FIELDS):
        raise ValueError(f"expected {len(FIELDS)} speech tokens ({', '.join(FIELDS)}), got {len(tokens)}")
    return Prosody(**{f: float(GRID[f][int(np.clip(t, 0, len(GRID[f]) - 1))]) for f, t in zip(FIELDS, tokens)})


def _ssml(text: str, p: Prosody) -> str:
    words = text.split()
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    attrs = (
        f'pitch="{p.pitch:+.0f}%" range="{p.range:.0f}%" rate="{p.rate:.0f}%" volume="{p.volume:+.0f}%"'
    )
    if len(words) > 1 and abs(p.final) >= 1:
        head, last = " ".join(words[:-1]), words[-1]
        body = f'{esc(head)} <prosody pitch="{p.pitch + p.final:+.0f}%">{esc(last)}</prosody>'
    else:
        body = esc(text)
    return f"<speak><prosody {attrs}>{body}</prosody></speak>"


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize(text: str, voice: str = "en-us", prosody: Prosody | None = None) -> np.ndarray:
    """Render ``text`` with espeak-ng in ``voice`` (an espeak-ng voice, e.g. ``"en-us+f3"``) and ``prosody``.

    Returns float32 mono audio at 16 kHz in [-1, 1].
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed: run `sudo apt-get install espeak-ng` (or `make setup`)")
    if not text.strip():
        raise ValueError("cannot synthesize empty text")
    ssml = _ssml(text, prosody or PROFILES["neutral"])
    proc = subprocess.run(
        ["espeak-ng", "-v", voice, "-m", "--stdout", ssml], capture_output=True, check=False, timeout=60
    )
    if proc.returncode != 0 or len(proc.stdout) < 100:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    wav, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    g = np.gcd(SAMPLE_RATE, sr)
    wav = resample_poly(wav, SAMPLE_RATE // g, sr // g).astype(np.float32)
    return np.clip(wav, -1.0, 1.0)


def with_intensity(p: Prosody, intensity: float) -> Prosody:
    """Shrink a prosody toward neutral (intensity < 1) or exaggerate it (> 1)."""
    n = PROFILES["neutral"]
    return replace(p, **{f: getattr(n, f) + intensity * (getattr(p, f) - getattr(n, f)) for f in FIELDS})
