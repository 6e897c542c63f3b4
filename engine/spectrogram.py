"""Short-time power spectra on a fixed analysis grid, grouped into log-spaced bands, and resampled to video frames.

The musical features (:mod:`.rhythm`, :mod:`.harmonic`, :mod:`.structure`, :mod:`.embedding`) need a time grid
of their own, finer than the video's for beats and coarser for pitch, so they share this module rather than the
per-video-frame spectra of :mod:`.features`. Conventions, like librosa's ``center=True``:

- Analysis frame ``j`` is *centred* on sample ``j * hop`` (time ``j * hop / sr`` s); the signal is zero-padded
  by ``n_fft / 2`` samples on the left, and on the right until the last frame lies wholly after the audio, so
  the grid always ends on silence. ``n_frames = ceil((n + n_fft / 2) / hop) + 1``.
- The taper is a periodic Hann window ``w`` of ``n_fft`` samples. Power is in the units of
  :mod:`.features`' ``band_*``: bin ``k`` holds ``c_k |X_k|**2 / (n_fft * sum(w**2))`` with ``c_k = 2`` except
  for DC and Nyquist, so a frame's bins sum to its window-weighted mean square (a full-scale sine: 0.5).
- The default hop is the power of two nearest ``sr * 11.6 ms`` (512 samples at 44.1 and 48 kHz, 256 at
  22.05 kHz): fine enough to place a beat within a few ms, and a power of two for the FFT.

Bands are contiguous runs of bins with the same rounded log-frequency, so band powers also sum to the frame's
mean square and grouping is one ``np.add.reduceat``. With 12 bands per octave referenced to A440, band keys are
MIDI note numbers: bins are assigned to the nearest semitone (several semitones have no bin at low frequencies,
where a bin is wider than a semitone; those bands are simply absent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

__all__ = ["BandSpectrogram", "analysis_hop", "band_spectrogram", "to_frames"]

HOP_SECONDS: float = 0.01161
"""Target analysis hop in seconds; the hop used is the power of two nearest ``sr * HOP_SECONDS`` samples."""

# Real values per FFT call: a cache-sized batch, as in features.py.
_FFT_VALUES = 1 << 18


def analysis_hop(sample_rate: int) -> int:
    """The default analysis hop in samples: the power of two nearest ``sample_rate * HOP_SECONDS``, at least 1."""
    return 1 << max(0, round(math.log2(max(1.0, sample_rate * HOP_SECONDS))))


@dataclass(frozen=True)
class BandSpectrogram:
    """Band powers on an analysis grid.

    Attributes
    ----------
    power : np.ndarray
        float32 ``(n_frames, n_bands)``, mean-square units (see the module docstring).
    hop : int
        Samples between frame centres; frame ``j`` is centred on sample ``j * hop``.
    sample_rate : int
        Hz.
    band_key : np.ndarray
        int64 ``(n_bands,)``: ``round(per_octave * log2(f / 440))`` of the band's bins (MIDI number - 69 when
        ``per_octave`` is 12). Increasing.
    band_hz : np.ndarray
        float64 ``(n_bands,)``: the mean frequency of the band's bins, in Hz.
    band_bins : np.ndarray
        int64 ``(n_bands,)``: how many FFT bins each band holds.
    n_fft : int
        FFT length in samples; bins are ``sample_rate / n_fft`` Hz apart.
    """

    power: np.ndarray
    hop: int
    sample_rate: int
    band_key: np.ndarray
    band_hz: np.ndarray
    band_bins: np.ndarray
    n_fft: int

    @property
    def frame_rate(self) -> float:
        """Analysis frames per second."""
        return self.sample_rate / self.hop

    @property
    def centres(self) -> np.ndarray:
        """Centre of each analysis frame, in samples (int64)."""
        return np.arange(self.power.shape[0], dtype=np.int64) * self.hop


def _band_starts(
    n_fft: int, sample_rate: int, per_octave: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    freqs = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
    keys = np.empty(freqs.size, dtype=np.int64)
    keys[1:] = np.round(per_octave * np.log2(freqs[1:] / 440.0))
    keys[0] = keys[1] if freqs.size > 1 else 0  # DC joins the lowest band: it has no pitch of its own
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    counts = np.diff(np.r_[starts, freqs.size])
    band_hz = np.add.reduceat(freqs, starts) / counts
    return starts, keys[starts], band_hz, counts


def band_spectrogram(mono: np.ndarray, sample_rate: int, hop: int, n_fft: int, per_octave: int = 12) -> BandSpectrogram:
    """Band powers of ``mono`` on a centred grid (see the module docstring).

    Parameters
    ----------
    mono : np.ndarray
        1-D float samples at full scale.
    sample_rate : int
        Hz.
    hop, n_fft : int
        Frame step and FFT length in samples; ``n_fft`` even, ``hop >= 1``.
    per_octave : int
        Bands per octave (12: semitones).
    """
    x = np.asarray(mono, dtype=np.float32)
    n = x.size
    half = n_fft // 2
    n_frames = -(-(n + half) // hop) + 1
    padded = np.zeros((n_frames - 1) * hop + n_fft, dtype=np.float32)
    padded[half : half + n] = x
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    starts, keys, band_hz, band_bins = _band_starts(n_fft, sample_rate, per_octave)
    # Every bin but DC and Nyquist counts twice (its mirror image): halve those two, then scale the (few) bands.
    scale = np.float32(2.0 / (n_fft * float(np.dot(window, window))))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    power = np.empty((n_frames, keys.size), dtype=np.float32)
    rows = max(1, _FFT_VALUES // n_fft)
    for r0 in range(0, n_frames, rows):
        r1 = min(n_frames, r0 + rows)
        spectrum = scipy.fft.rfft(frames[r0:r1] * window, axis=1)
        bins = spectrum.real**2
        bins += spectrum.imag**2
        bins[:, 0] *= 0.5
        bins[:, -1] *= 0.5
        power[r0:r1] = np.add.reduceat(bins, starts, axis=1)
    power *= scale
    return BandSpectrogram(power, hop, sample_rate, keys, band_hz, band_bins, n_fft)


def to_frames(values: np.ndarray, hop: int, starts: np.ndarray, length: int, how: str = "mean") -> np.ndarray:
    """Resample analysis-grid values to video frames.

    Video frame ``i`` takes the mean (``how="mean"``) or the maximum (``"max"``) of the analysis frames centred
    in its window ``[starts[i], starts[i] + length)`` samples (frame ``j`` is centred on ``j * hop``); a window
    too short to hold a centre takes the analysis frame nearest its middle. ``values`` is ``(n_analysis,)`` or
    ``(n_analysis, k)``; the result is float64 with ``len(starts)`` rows. Each window is reduced on its own
    (no running sums), so silence stays exactly 0 and non-negative values stay non-negative.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    s = np.asarray(starts, dtype=np.int64)
    if s.size == 0 or n == 0:
        return np.zeros((s.size, *v.shape[1:]))
    lo = np.clip(-(-s // hop), 0, n)
    hi = np.clip(-(-(s + length) // hop), 0, n)
    empty = hi <= lo
    nearest = np.clip(np.floor((s + (length - 1) / 2) / hop + 0.5).astype(np.int64), 0, n - 1)
    lo = np.where(empty, nearest, lo)
    hi = np.where(empty, nearest + 1, hi)
    # reduceat over the interleaved bounds (lo0, hi0, lo1, hi1 ...): its even entries reduce [lo_i, hi_i), which
    # is never empty; the odd ones are by-products. A row appended past the end makes hi = n a valid index.
    bounds = np.stack([lo, hi], axis=1).ravel()
    padded = np.concatenate([v, np.zeros((1, *v.shape[1:]))])
    if how == "max":
        return np.maximum.reduceat(padded, bounds, axis=0)[::2]
    count = hi - lo
    return np.add.reduceat(padded, bounds, axis=0)[::2] / (count if v.ndim == 1 else count[:, None])
