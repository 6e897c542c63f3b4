"""Oracle for ``engine.features``: the same features, one frame at a time, written to be read, not to be fast.

Everything is float64 and follows the definitions in the ``engine.features`` docstring line by line: cut the
frame (zeros outside the audio), one ``np.fft.rfft`` per frame, then each formula with ``np.sum``. The window
is ``scipy.signal.get_window`` rather than the engine's own formula, so that choice is checked too. The
vectorised engine must match this to float32 precision; ``bench/bench_features.py`` times it as the baseline.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import get_window

from engine.features import (
    ONSET_GAMMA,
    SAMPLE_CLIP,
    SPECTRAL_FEATURE_NAMES,
    SPREAD_FLOOR,
    FeatureSettings,
    frame_count,
    window_length,
)

DEFAULT_SETTINGS = FeatureSettings()


def _mono(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.dtype.kind in "iu":
        half = 2.0 ** (8 * x.dtype.itemsize - 1)
        offset = half if x.dtype.kind == "u" else 0.0
        x = (x.astype(np.float64) - offset) / half
    x = x.astype(np.float64)
    x[~np.isfinite(x)] = 0.0
    x = np.clip(x, -SAMPLE_CLIP, SAMPLE_CLIP)
    return x.mean(axis=1) if x.shape[0] else np.zeros(0)


def compute_features_loop(
    samples: np.ndarray,
    sample_rate: int,
    fps: float,
    n_frames: int | None = None,
    settings: FeatureSettings = DEFAULT_SETTINGS,
) -> dict[str, np.ndarray]:
    """Per-frame loop with the semantics of ``engine.features.compute_features`` (valid input only)."""
    mono = _mono(samples)
    n = len(mono)
    sr = int(sample_rate)
    if n_frames is None:
        n_frames = frame_count(n, sr, fps)
    length = window_length(settings, sr, fps)
    n_fft = 1
    while n_fft < length:
        n_fft *= 2
    window = get_window("hann", length, fftbins=True) if settings.spectrum_window == "hann" else np.ones(length)
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    one_sided = np.full(len(freqs), 2.0)
    one_sided[0] = 1.0
    if n_fft % 2 == 0:
        one_sided[-1] = 1.0
    gamma = ONSET_GAMMA / np.sum(window)
    e0, e1 = settings.band_edges_hz
    low, mid, high = freqs < e0, (freqs >= e0) & (freqs < e1), freqs >= e1

    out = {name: np.zeros(n_frames) for name in SPECTRAL_FEATURE_NAMES}
    previous = None
    for i in range(n_frames):
        t = i * sr / fps
        start = math.floor(t + 0.5) if settings.align == "start" else math.floor(t - length / 2 + 0.5)
        frame = np.zeros(length)  # samples outside the audio stay 0
        first, stop = max(start, 0), min(start + length, n)
        if first < stop:
            frame[first - start : stop - start] = mono[first:stop]

        out["rms"][i] = math.sqrt(np.mean(frame**2))
        a = np.abs(np.fft.rfft(frame * window, n=n_fft))
        total = np.sum(a)
        if total > 0:
            mu = np.sum(a * freqs) / total
            sigma = math.sqrt(np.sum(a * (freqs - mu) ** 2) / total)
            out["centroid"][i] = mu
            out["spread"][i] = sigma
            if sigma >= SPREAD_FLOOR * sr / 2:
                out["skewness"][i] = np.sum(a * (freqs - mu) ** 3) / (sigma**3 * total)
                out["kurtosis"][i] = np.sum(a * (freqs - mu) ** 4) / (sigma**4 * total)
        if previous is not None:
            out["flux"][i] = np.sum(np.abs(a - previous))
            out["onset"][i] = np.sum(np.maximum(0.0, np.log1p(gamma * a) - np.log1p(gamma * previous)))
        power = one_sided * a**2 / (n_fft * np.sum(window**2))
        out["band_low"][i] = np.sum(power[low])
        out["band_mid"][i] = np.sum(power[mid])
        out["band_high"][i] = np.sum(power[high])
        previous = a
    return out
