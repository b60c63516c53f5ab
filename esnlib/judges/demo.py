"""Two held-out SER judges for the demo world, of different kinds (as emotion2vec and Qwen3-Omni are in the paper).

* :class:`ProsodyJudge` - hand-crafted prosodic functionals (F0, energy, voicing, rate, spectral tilt) ->
  standardization -> multinomial logistic regression. Weights: a small JSON file (no pickle).
* :class:`SpectralJudge` - a small CNN on log-mel spectrograms with masked global pooling. Weights: a torch
  state_dict (< 1 MB).

Both are trained (``scripts/train_judges.py``) on speech no other part of the demo world uses: the ``JUDGE_VOICES``
and the ``"judge"`` sentence pool, rendered with the same emotion prosody model (``tts.sample_prosody``) at varied
intensity. They judge the audio only; label = the emotion asked for, whatever its intensity.
"""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import tts
from ..audio import SAMPLE_RATE, mel_power, resample
from ..progress import tqdm
from .base import EmotionJudge

LABELS = tts.EMOTIONS
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "judges"
PROSODY_WEIGHTS = ASSETS / "prosody_judge.json"
SPECTRAL_WEIGHTS = ASSETS / "spectral_judge.pt"
TRAIN_INTENSITY = (0.5, 1.2)


def _check_audios(audios, sample_rate: int) -> list[np.ndarray]:
    if isinstance(audios, np.ndarray) and audios.ndim == 1:
        raise TypeError("predict expects a list of clips; wrap a single clip as [clip]")
    out = []
    for i, a in enumerate(audios):
        a = np.asarray(a, dtype=np.float32)
        if a.ndim != 1 or a.size < sample_rate // 10:
            raise ValueError(f"clip {i} must be mono audio of at least 0.1 s, got shape {a.shape}")
        out.append(resample(a, sample_rate, SAMPLE_RATE))
    return out


# ------------------------------------------------------------------------------------------ judge training data


def _render_judge_clip(job):
    text, voice, emotion, seed, band = job
    rng = np.random.default_rng(seed)
    intensity = float(rng.uniform(*band)) if emotion != "neutral" else 0.0
    return tts.synthesize(text, voice=voice, prosody=tts.sample_prosody(emotion, rng, intensity=intensity))


def synthesize_judge_set(sentences: Sequence[str], voices: Sequence[str], seed: int = 0, workers: int = 2,
                         progress: bool = True, intensity: tuple[float, float] = TRAIN_INTENSITY
                         ) -> tuple[list[np.ndarray], list[str]]:
    """Every (sentence, voice, emotion) rendered once with its own prosody draw, emotional clips at an intensity
    drawn from U(``intensity``); returns (clips, labels)."""
    jobs, labels = [], []
    for si, s in enumerate(sentences):
        for vi, v in enumerate(voices):
            for ei, e in enumerate(LABELS):
                jobs.append((s, v, e, [seed, 7919, si, vi, ei], tuple(intensity)))
                labels.append(e)
    if workers <= 1:
        clips = [_render_judge_clip(j) for j in tqdm(jobs, desc="rendering judge clips", disable=not progress)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            clips = list(tqdm(ex.map(_render_judge_clip, jobs, chunksize=8), total=len(jobs),
                              desc="rendering judge clips", disable=not progress))
    return clips, labels


# ------------------------------------------------------------------------------------------------ ProsodyJudge

FEATURE_NAMES = (
    "f0_median_st", "f0_mad_st", "f0_range_st", "f0_final_slope_st", "f0_final_delta_st",
    "rms_mean_db", "rms_std_db", "rms_max_db", "voiced_ratio", "duration_s", "rate_peaks_per_s",
    "spectral_tilt", "centroid_mean_hz", "hf_ratio_db",
)
_HOP = 160
_FRAME = 1024


def prosody_features(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Prosodic functionals of one clip (see FEATURE_NAMES). F0 from librosa.yin, kept on voiced, energetic frames."""
    import librosa
    from scipy.ndimage import median_filter
    from scipy.signal import find_peaks

    wav = np.asarray(wav, dtype=np.float32)
    if sr != SAMPLE_RATE:
        wav = resample(wav, sr, SAMPLE_RATE)
    if len(wav) < _FRAME:
        wav = np.pad(wav, (0, _FRAME - len(wav)))
    rms = librosa.feature.rms(y=wav, frame_length=_FRAME, hop_length=_HOP, center=True)[0]
    rms_db = 20 * np.log10(rms + 1e-5)
    active = rms_db > rms_db.max() - 35.0
    f0 = librosa.yin(wav, fmin=60, fmax=600, sr=SAMPLE_RATE, frame_length=_FRAME, hop_length=_HOP, center=True)
    n = min(len(f0), len(rms_db))
    f0, rms_db, active = f0[:n], rms_db[:n], active[:n]
    # yin has no voicing decision and makes octave jumps: keep energetic frames whose F0 is off the search bounds
    # and close to its running median, and use robust statistics (median, MAD, 10-90 percentile range).
    st = 12 * np.log2(np.maximum(f0, 1.0) / 100.0)
    voiced = active & (f0 > 62) & (f0 < 590) & (np.abs(st - median_filter(st, 7)) < 1.5)
    vst = st[voiced]
    if vst.size < 8:
        vst = np.zeros(8)
    tail = vst[-max(5, int(0.25 * vst.size)):]
    slope = float(np.polyfit(np.arange(tail.size), tail, 1)[0]) * (SAMPLE_RATE / _HOP)  # semitones per second
    head_med = float(np.median(vst[: max(3, vst.size - tail.size)]))
    act_idx = np.flatnonzero(active)
    duration = (act_idx[-1] - act_idx[0] + 1) * _HOP / SAMPLE_RATE if act_idx.size else 0.0
    env = np.convolve(rms, np.ones(5) / 5, mode="same")
    peaks, _ = find_peaks(env, prominence=0.1 * float(env.max() + 1e-9), distance=6)
    spec = np.abs(librosa.stft(wav, n_fft=512, hop_length=_HOP)) ** 2
    spec = spec[:, : n][:, active] if active.any() else spec
    freqs = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=512)
    mean_spec = spec.mean(axis=1) + 1e-10
    band = (freqs > 100) & (freqs < 7000)
    tilt = float(np.polyfit(np.log2(freqs[band]), 10 * np.log10(mean_spec[band]), 1)[0])  # dB per octave
    centroid = float((freqs * mean_spec).sum() / mean_spec.sum())
    hf = 10 * np.log10(mean_spec[freqs >= 1000].sum() / mean_spec[(freqs < 1000) & (freqs > 60)].sum())
    a_db = rms_db[active] if active.any() else rms_db
    feats = [
        float(np.median(vst)), 1.4826 * float(np.median(np.abs(vst - np.median(vst)))),
        float(np.percentile(vst, 90) - np.percentile(vst, 10)),
        slope, float(np.median(tail) - head_med),
        float(a_db.mean()), float(a_db.std()), float(rms_db.max()), float(voiced.sum() / max(active.sum(), 1)),
        float(duration), float(len(peaks) / max(duration, 0.1)),
        tilt, centroid, float(hf),
    ]
    return np.asarray(feats, dtype=np.float64)


def _feature_matrix(clips: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
    return np.stack([prosody_features(c) for c in tqdm(clips, desc="prosody features", disable=not progress)])


class ProsodyJudge(EmotionJudge):
    """Prosodic functionals -> standardized -> multinomial logistic regression (weights as JSON)."""

    name = "prosody"

    def __init__(self, weights: str | Path | dict | None = None):
        if weights is None:
            weights = PROSODY_WEIGHTS
        if not isinstance(weights, dict):
            p = Path(weights)
            if not p.is_file():
                raise FileNotFoundError(f"ProsodyJudge weights {p} not found; train them with "
                                        f"`python scripts/train_judges.py`")
            weights = json.loads(p.read_text())
        if tuple(weights["features"]) != FEATURE_NAMES:
            raise ValueError("ProsodyJudge weights were trained on other features; re-run scripts/train_judges.py")
        self.labels = tuple(weights["labels"])
        self.mean = np.asarray(weights["mean"])
        self.scale = np.asarray(weights["scale"])
        self.coef = np.asarray(weights["coef"])
        self.intercept = np.asarray(weights["intercept"])
        self.meta = weights.get("meta", {})

    def predict_proba(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        X = (_feature_matrix(_check_audios(audios, sample_rate)) - self.mean) / self.scale
        z = X @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[str | None]:
        if len(audios) == 0:
            return []
        return [self.labels[i] for i in self.predict_proba(audios, sample_rate).argmax(axis=1)]

    def describe(self) -> dict:
        return {"judge": self.name, "kind": "prosodic functionals + logistic regression"}

    def to_dict(self) -> dict:
        return {"features": list(FEATURE_NAMES), "labels": list(self.labels), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
                "meta": self.meta}

    def save(self, path: str | Path = PROSODY_WEIGHTS) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def train_prosody_judge(clips: Sequence[np.ndarray], labels: Sequence[str], C: float = 1.0,
                        progress: bool = True) -> ProsodyJudge:
    """Fit the ProsodyJudge on 16 kHz clips and their emotion labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    bad = sorted(set(labels) - set(LABELS))
    if bad:
        raise ValueError(f"unknown labels {bad}; expected {LABELS}")
    X = _feature_matrix(clips, progress=progress)
    sc = StandardScaler().fit(X)
    y = np.array([LABELS.index(label) for label in labels])
    clf = LogisticRegression(C=C, max_iter=2000).fit(sc.transform(X), y)
    coef = np.zeros((len(LABELS), X.shape[1]))
    intercept = np.full(len(LABELS), -1e9)  # a label absent from training can never be predicted
    coef[clf.classes_] = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_, clf.coef_])
    intercept[clf.classes_] = clf.intercept_ if len(clf.classes_) > 2 else [-clf.intercept_[0], clf.intercept_[0]]
    return ProsodyJudge({"features": list(FEATURE_NAMES), "labels": list(LABELS), "mean": sc.mean_.tolist(),
                         "scale": sc.scale_.tolist(), "coef": coef.tolist(), "intercept": intercept.tolist(),
                         "meta": {"n_train": len(labels), "C": C}})


# ----------------------------------------------------------------------------------------------- SpectralJudge

N_MELS = 40
MEL_HOP = 320  # 20 ms


def log_mel(wav: np.ndarray) -> np.ndarray:
    """(N_MELS, frames) log-mel power in dB (absolute, so loudness stays a cue)."""
    m = mel_power(np.asarray(wav, dtype=np.float32), sr=SAMPLE_RATE, n_fft=1024, hop_length=MEL_HOP, n_mels=N_MELS,
                  fmin=50, fmax=8000)
    return (10 * np.log10(m + 1e-8)).astype(np.float32)


def _make_cnn():
    import torch
    from torch import nn

    class EmotionCNN(nn.Module):
        """Three conv blocks on (1, mels, frames), then masked mean+max pooling over time and a linear head."""

        def __init__(self, n_labels: int = len(LABELS)):
            super().__init__()
            self.register_buffer("feat_mean", torch.zeros(()))
            self.register_buffer("feat_std", torch.ones(()))

            def block(i, o):
                return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

            self.convs = nn.Sequential(block(1, 16), block(16, 32), block(32, 48))
            self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * 48 * (N_MELS // 8), len(LABELS)))

        def forward(self, x, lengths):  # x: (B, mels, T) dB, lengths: (B,) frames
            h = self.convs(((x - self.feat_mean) / self.feat_std).unsqueeze(1))  # (B, C, F', T')
            h = h.flatten(1, 2)  # (B, C*F', T')
            t = torch.arange(h.shape[-1], device=h.device)
            mask = (t[None, :] < (lengths[:, None] // 8).clamp(min=1)).unsqueeze(1)
            mean = (h * mask).sum(-1) / mask.sum(-1)
            mx = h.masked_fill(~mask, float("-inf")).amax(-1)
            return self.head(torch.cat([mean, mx], dim=1))

    return EmotionCNN()


def _batch(mels: list[np.ndarray]):
    import torch

    T = max(m.shape[1] for m in mels)
    T = max(8, int(np.ceil(T / 8) * 8))
    floor = min(float(m.min()) for m in mels)
    x = np.full((len(mels), N_MELS, T), floor, dtype=np.float32)
    for i, m in enumerate(mels):
        x[i, :, : m.shape[1]] = m
    return torch.from_numpy(x), torch.tensor([m.shape[1] for m in mels])


class SpectralJudge(EmotionJudge):
    """A small CNN on log-mel spectrograms (weights: a torch state_dict)."""

    name = "spectral"

    def __init__(self, weights: str | Path | dict | None = None, batch_size: int = 32):
        import torch

        self.model = _make_cnn()
        if weights is None:
            weights = SPECTRAL_WEIGHTS
        if not isinstance(weights, dict):
            p = Path(weights)
            if not p.is_file():
                raise FileNotFoundError(f"SpectralJudge weights {p} not found; train them with "
                                        f"`python scripts/train_judges.py`")
            weights = torch.load(p, map_location="cpu", weights_only=True)
        self.model.load_state_dict(weights)
        self.model.eval()
        self.batch_size = batch_size

    def predict_proba(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        import torch

        clips = _check_audios(audios, sample_rate)
        out = []
        with torch.no_grad():
            for i in range(0, len(clips), self.batch_size):
                x, lens = _batch([log_mel(c) for c in clips[i: i + self.batch_size]])
                out.append(torch.softmax(self.model(x, lens), dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(LABELS)))

    def predict(self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[str | None]:
        if len(audios) == 0:
            return []
        return [self.labels[i] for i in self.predict_proba(audios, sample_rate).argmax(axis=1)]

    def describe(self) -> dict:
        return {"judge": self.name, "kind": "log-mel CNN"}

    def save(self, path: str | Path = SPECTRAL_WEIGHTS) -> Path:
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), path)
        return path


def train_spectral_judge(clips: Sequence[np.ndarray], labels: Sequence[str], epochs: int = 15, batch_size: int = 32,
                         lr: float = 3e-3, seed: int = 0, max_steps: int | None = None,
                         progress: bool = True) -> SpectralJudge:
    """Train the CNN with AdamW on 16 kHz clips; ``max_steps`` stops early (for quick tests)."""
    import torch
    from torch import nn

    bad = sorted(set(labels) - set(LABELS))
    if bad:
        raise ValueError(f"unknown labels {bad}; expected {LABELS}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mels = [log_mel(c) for c in tqdm(clips, desc="log-mel", disable=not progress)]
    y = torch.tensor([LABELS.index(label) for label in labels])
    model = _make_cnn()
    allv = np.concatenate([m.ravel() for m in mels])
    model.feat_mean.fill_(float(allv.mean()))
    model.feat_std.fill_(float(allv.std() + 1e-6))
    # Sort into length buckets so padding stays small; shuffle the buckets each epoch.
    order = np.argsort([m.shape[1] for m in mels])
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    total = epochs * len(batches) if max_steps is None else min(max_steps, epochs * len(batches))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1))
    loss_fn = nn.CrossEntropyLoss()
    step = 0
    model.train()
    with tqdm(total=total, desc="training spectral judge", disable=not progress) as bar:
        while step < total:
            for bi in rng.permutation(len(batches)):
                if step >= total:
                    break
                idx = batches[bi]
                x, lens = _batch([mels[i] for i in idx])
                loss = loss_fn(model(x, lens), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    return SpectralJudge(model.state_dict())
