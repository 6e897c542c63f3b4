"""Harmonic/percussive separation by median filtering (Fitzgerald 2010), and pitch-class profiles (chroma).

Both act on band powers from :func:`.spectrogram.band_spectrogram` with 12 bands per octave, i.e. a semitone
spectrogram: band ``b`` has key ``band_key[b]`` = MIDI note number - 69.

Separation: a sustained note is a horizontal line in the spectrogram (steady in time, narrow in frequency) and
a hit is a vertical one (brief, broadband). A running median along time keeps the lines and removes the hits,
``H``; one along frequency does the opposite, ``P``. Soft (Wiener, power 2) masks ``H**2 / (H**2 + P**2)`` and
``P**2 / (H**2 + P**2)`` then split each band's power into two parts that sum to it exactly (half each where
both medians are 0). Fitzgerald filters a linear-frequency STFT; on semitone bands a note's partials are still
narrow lines, and the filters are about ten times cheaper.

Chroma: the power of each pitch class, ``C = 0, C# = 1, ..., B = 11`` (pitch class = MIDI number mod 12), summed
over the bands whose centre lies in ``[CHROMA_MIN_HZ, CHROMA_MAX_HZ]``, where pitch is resolved and most of a
note's energy sits.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "CHROMA_MAX_HZ",
    "CHROMA_MIN_HZ",
    "PITCH_CLASSES",
    "chroma",
    "dominant_pitch_class",
    "harmonic_mask",
    "hpss",
    "normalize_chroma",
    "running_median",
]

PITCH_CLASSES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
CHROMA_MIN_HZ: float = 100.0
CHROMA_MAX_HZ: float = 5000.0
SILENT_POWER: float = 1e-12
"""Pitch-class power (mean square, -120 dB below a full-scale sine's 0.5) below which a frame has no pitch."""


def running_median(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Median over ``size`` (odd) consecutive values along ``axis``, centred, the edges padded with their
    nearest value (so a steady line stays steady up to the edge). Same shape and dtype as ``a``.

    Up to 31 values it runs a sorting network (Batcher's odd-even merge sort, pruned to the comparators that
    reach the median) as whole-array minimum/maximum operations, three times faster than ``np.partition`` over
    sliding windows; the two give identical results.
    """
    if size <= 1 or a.shape[axis] == 0:
        return a.copy()
    half = size // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (half, half)
    padded = np.pad(a, pad, mode="edge")
    if size > 31:
        windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=axis)
        return np.partition(windows, half, axis=-1)[..., half]
    width, low, target, comparators = _median_network(size)
    length = a.shape[axis]
    # Wires below `low` hold -inf and those past the window +inf, so the network's middle wire is the median.
    wires: list[np.ndarray | float] = [-np.inf] * low
    for k in range(size):
        index = [slice(None)] * a.ndim
        index[axis] = slice(k, k + length)
        wires.append(padded[tuple(index)])
    wires += [np.inf] * (width - len(wires))
    for x, y in comparators:
        wx, wy = wires[x], wires[y]
        x_fixed, y_fixed = isinstance(wx, float), isinstance(wy, float)
        if x_fixed or y_fixed:
            # Against an infinity a comparator only moves the wires: min(-inf, v) = -inf, max(+inf, v) = +inf.
            if (x_fixed and wx == np.inf) or (y_fixed and wy == -np.inf):
                wires[x], wires[y] = wy, wx
            continue
        wires[x], wires[y] = np.minimum(wx, wy), np.maximum(wx, wy)
    return np.array(wires[target], dtype=a.dtype)


@functools.cache
def _median_network(size: int) -> tuple[int, int, int, tuple[tuple[int, int], ...]]:
    """Batcher's odd-even merge sort on the next power of two wires, pruned to what reaches the median wire."""
    width = 1 << (size - 1).bit_length()
    comparators = []
    p = 1
    while p < width:
        k = p
        while k >= 1:
            for j in range(k % p, width - k, 2 * k):
                for i in range(min(k, width - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    low = (width - size) // 2
    target = low + size // 2
    needed, kept = {target}, []
    for x, y in reversed(comparators):
        if x in needed or y in needed:
            needed |= {x, y}
            kept.append((x, y))
    return width, low, target, tuple(reversed(kept))


def harmonic_mask(power: np.ndarray, time_kernel: int, band_kernel: int) -> np.ndarray:
    """The soft harmonic mask ``H**2 / (H**2 + P**2)`` of band powers ``(n_frames, n_bands)``, float32 in
    [0, 1] (see the module docstring); ``time_kernel`` and ``band_kernel`` are the median lengths (odd) in
    frames and bands. The percussive mask is one minus it."""
    p = np.asarray(power, dtype=np.float32)
    harmonic = running_median(p, time_kernel, axis=0)
    percussive = running_median(p, band_kernel, axis=1)
    harmonic *= harmonic
    percussive *= percussive
    total = harmonic + percussive
    return np.divide(harmonic, total, out=np.full_like(total, 0.5), where=total > 0)


def hpss(power: np.ndarray, time_kernel: int, band_kernel: int) -> tuple[np.ndarray, np.ndarray]:
    """Split band powers ``(n_frames, n_bands)`` into harmonic and percussive parts (see the module docstring).

    Returns two float32 arrays shaped like ``power`` that sum to it.
    """
    p = np.asarray(power, dtype=np.float32)
    part = harmonic_mask(p, time_kernel, band_kernel) * p
    return part, p - part


def chroma(power: np.ndarray, band_key: np.ndarray, band_hz: np.ndarray) -> np.ndarray:
    """Pitch-class power ``(n_frames, 12)`` of semitone band powers ``(n_frames, n_bands)``, float64."""
    classes = (np.asarray(band_key) + 69) % 12
    inside = (band_hz >= CHROMA_MIN_HZ) & (band_hz <= CHROMA_MAX_HZ)
    onehot = np.zeros((classes.size, 12))
    onehot[np.flatnonzero(inside), classes[inside]] = 1.0
    return np.asarray(power, dtype=np.float64) @ onehot


def normalize_chroma(profile: np.ndarray) -> np.ndarray:
    """Each row divided by its maximum, so the strongest pitch class reads 1; rows below SILENT_POWER are 0."""
    peak = profile.max(axis=1, keepdims=True, initial=0.0)
    return np.divide(profile, peak, out=np.zeros_like(profile), where=peak > SILENT_POWER)


def dominant_pitch_class(profile: np.ndarray) -> np.ndarray:
    """The strongest pitch class of each row (0 = C ... 11 = B) as float64; a row without pitch (all zero)
    holds the previous row's class (0 before the first pitched row), so rests do not flash back to C."""
    pitched = profile.max(axis=1, initial=0.0) > 0
    best = np.argmax(profile, axis=1).astype(np.float64)
    last = np.maximum.accumulate(np.where(pitched, np.arange(len(best)), -1))
    return np.where(last >= 0, best[np.maximum(last, 0)], 0.0)
