"""Speech for the demo world: espeak-ng with SSML prosody plus two waveform cues, and the emotion prosody profiles.

The demo corpus (``esnlib.corpora.synthetic``) renders its utterances here, and the demo LALM's renderer turns the
talker's continuous prosody plus the decoded text into a waveform here, so both use one voice model.

Eight fields make the five emotions separable along several cue families, not one arousal axis
(levels relative to each voice's neutral):

* level and range of F0 (``pitch`` %, ``range`` % of neutral), speaking ``rate`` (% of neutral), loudness
  (``volume`` %): the classic arousal cues;
* contour shape: ``final`` (extra pitch change on the last word, % — rising vs falling terminal contour) and
  ``swing`` (alternating word-level pitch accents, % — a bouncy, undulating contour);
* timing: ``pause`` (ms of silence between words);
* voice quality / spectral balance: ``tilt`` (a first-order spectral tilt applied to the waveform, in dB per octave
  above 500 Hz; positive = more high-frequency energy, the tense, bright voice of anger; negative = the dark, lax
  voice of sadness).

Directions follow the acoustic correlates reported for acted emotional speech (Banse & Scherer 1996, JPSP 70(3);
Scherer 2003, Speech Communication 40; Juslin & Laukka 2003, Psych. Bull. 129(5), Table 7):
anger — raised F0, fast rate, high intensity, much high-frequency energy (flat tilt), falling/abrupt contours;
happiness — high F0, large F0 variability with many accents (``swing``), slightly fast, moderately loud, rising
contours; sadness — low F0, narrow range, slow rate, low intensity, little high-frequency energy (steep tilt), long
pauses, falling contours. Surprise is not covered by these meta-analyses; we give it the cue most descriptions of
surprised speech agree on — the highest F0 with a strongly rising terminal contour — at a moderate rate and level.
Per-utterance jitter makes emotions overlap, as in acted speech.
"""
from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace

import numpy as np

from .constants import EMOTIONS

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Prosody:
    """Prosody relative to a voice's neutral: pitch and volume in %, range and rate in % of neutral, final: extra pitch
    change (%) on the last word (positive = rising contour), swing: alternating word pitch accents (%), pause: silence
    between words (ms), tilt: spectral tilt (dB/octave above 500 Hz, positive = brighter)."""

    pitch: float = 0.0
    range: float = 100.0
    rate: float = 100.0
    volume: float = 0.0
    final: float = 0.0
    swing: float = 0.0
    pause: float = 0.0
    tilt: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


#: mean profile per emotion and the per-utterance jitter (standard deviation) of each field
PROFILES: dict[str, Prosody] = {
    "neutral": Prosody(),
    "angry": Prosody(pitch=8, range=130, rate=122, volume=50, final=-25, swing=0, pause=0, tilt=6),
    "happy": Prosody(pitch=22, range=170, rate=110, volume=15, final=10, swing=30, pause=0, tilt=1),
    "sad": Prosody(pitch=-18, range=50, rate=72, volume=-35, final=-15, swing=0, pause=160, tilt=-7),
    "surprise": Prosody(pitch=42, range=160, rate=92, volume=10, final=60, swing=0, pause=0, tilt=0),
}
JITTER = Prosody(pitch=5, range=12, rate=5, volume=7, final=8, swing=5, pause=20, tilt=1.0)
FIELDS = tuple(f for f in Prosody.__dataclass_fields__)
#: hard limits of each field (what espeak-ng and the filters accept sensibly); the renderer clips to them
LIMITS: dict[str, tuple[float, float]] = {
    "pitch": (-60, 90), "range": (10, 300), "rate": (45, 200), "volume": (-80, 100), "final": (-80, 120),
    "swing": (0, 80), "pause": (0, 600), "tilt": (-14, 14),
}


def clip_prosody(p: Prosody) -> Prosody:
    """``p`` with every field clipped to ``LIMITS``."""
    return Prosody(**{f: float(np.clip(getattr(p, f), *LIMITS[f])) for f in FIELDS})


def sample_prosody(emotion: str, rng: np.random.Generator, intensity: float = 1.0) -> Prosody:
    """A prosody for one utterance: the emotion's profile scaled by ``intensity`` (0 = neutral, 1 = full), plus jitter."""
    if emotion not in PROFILES:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    base, prof = PROFILES["neutral"], PROFILES[emotion]
    vals = {}
    for f in FIELDS:
        b, p, j = getattr(base, f), getattr(prof, f), getattr(JITTER, f)
        vals[f] = b + intensity * (p - b) + rng.normal(0.0, j)
    return clip_prosody(Prosody(**vals))


def to_vector(p: Prosody | dict) -> np.ndarray:
    """Prosody -> (len(FIELDS),) array of jitter-scaled offsets from neutral (the talker's regression target space)."""
    d = p.as_dict() if isinstance(p, Prosody) else p
    n = PROFILES["neutral"]
    return np.array([(float(d[f]) - getattr(n, f)) / getattr(JITTER, f) for f in FIELDS], dtype=np.float32)


def from_vector(v) -> Prosody:
    """Inverse of :func:`to_vector`, clipped to ``LIMITS``."""
    n = PROFILES["neutral"]
    v = np.asarray(v, dtype=float).reshape(-1)
    if len(v) != len(FIELDS):
        raise ValueError(f"expected {len(FIELDS)} prosody values ({', '.join(FIELDS)}), got {len(v)}")
    return clip_prosody(Prosody(**{f: getattr(n, f) + x * getattr(JITTER, f) for f, x in zip(FIELDS, v)}))


def _ssml(text: str, p: Prosody) -> str:
    words = text.split()
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    attrs = f'pitch="{p.pitch:+.0f}%" range="{p.range:.0f}%" rate="{p.rate:.0f}%" volume="{p.volume:+.0f}%"'
    gap = f' <break time="{p.pause:.0f}ms"/> ' if p.pause >= 10 else " "
    parts = []
    for i, w in enumerate(words):
        shift = p.swing * (1 if i % 2 == 0 else -1) * 0.5 if len(words) > 1 else 0.0
        if i == len(words) - 1 and len(words) > 1:
            shift += p.final
        parts.append(f'<prosody pitch="{shift:+.0f}%">{esc(w)}</prosody>' if abs(shift) >= 1 else esc(w))
    return f"<speak><prosody {attrs}>{gap.join(parts)}</prosody></speak>"


def apply_tilt(wav: np.ndarray, tilt: float) -> np.ndarray:
    """A first-order spectral tilt of ``tilt`` dB/octave above ~500 Hz, loudness (RMS) kept: a shelf made of the
    signal and its first difference (brighter) or a one-pole low-pass (darker)."""
    from scipy.signal import lfilter

    if abs(tilt) < 0.1:
        return wav
    rms = float(np.sqrt(np.mean(wav ** 2)) + 1e-9)
    if tilt > 0:
        k = 10 ** (tilt / 20) - 1
        y = lfilter([1 + k, -k], [1.0], wav)
    else:
        a = 1 - 10 ** (tilt / 12)  # tilt -> pole: -6 dB/oct -> a ~ 0.68
        y = lfilter([1 - a], [1, -a], wav)
    y = y * (rms / (float(np.sqrt(np.mean(y ** 2))) + 1e-9))
    return np.clip(y, -1.0, 1.0).astype(np.float32)


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
    prosody = clip_prosody(prosody or PROFILES["neutral"])
    ssml = _ssml(text, prosody)
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
    return apply_tilt(np.clip(wav, -1.0, 1.0), prosody.tilt)


def with_intensity(p: Prosody, intensity: float) -> Prosody:
    """Shrink a prosody toward neutral (intensity < 1) or exaggerate it (> 1)."""
    n = PROFILES["neutral"]
    return replace(p, **{f: getattr(n, f) + intensity * (getattr(p, f) - getattr(n, f)) for f in FIELDS})
