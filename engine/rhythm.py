"""Tempo, beats and bars: an onset envelope, its autocorrelation, and beats by dynamic programming (Ellis 2007).

Units and conventions (the analysis grid is :mod:`.spectrogram`'s: frame ``j`` centred at ``j / frame_rate`` s):

- The onset envelope is the half-wave-rectified rise of log band amplitude, summed over bands:
  ``o[j] = sum_b max(0, log(1 + G A[j, b]) - log(1 + G A[j-1, b]))`` with ``A = sqrt(band power)`` (RMS units,
  a full-scale sine reads 0.71) and ``G = ONSET_GAMMA``, so content 60 dB below full scale sits at the knee of
  the log, as in :mod:`.features`' ``onset``. ``o[0] = 0``. Dimensionless.
- Tempo and beats are found on :func:`balanced_onset`: the envelopes of the low, mid and high bands (split at
  ``band_edges_hz``), each divided by its standard deviation, weighted by ``BEAT_BAND_WEIGHTS`` (2, 1, 0.5)
  and summed. Each part of the kit then counts by its role rather than by its loudness or by how many bands it
  covers: the beat lives in the kick and the snare, while the hats and cymbals subdivide it. Summed over bands
  instead, the hats' eighths and sixteenths outvote the beat, and 90 BPM with sixteenth-note hats reads as 120.
- Tempo in beats per minute (BPM). :func:`estimate_tempo` takes the lag that maximises the onset envelope's
  autocorrelation weighted by a log-normal prior around 120 BPM (one octave wide), refined to a fraction of a
  frame by a parabola through the peak; between 30 and 300 BPM. A click track is periodic at every multiple of
  its period, so the prior picks the multiple nearest 120 BPM: tempi from 30 up to about 170 BPM are read as
  played; faster ones may be read at half speed (set the tempo by hand then).
- Beats: Ellis's dynamic programme. Each frame's score is the onset envelope (divided by its standard deviation,
  smoothed by a Gaussian of width period/32); a beat at ``j`` follows one at ``j - d`` for ``d`` in
  ``[period/2, 2 period]`` at a cost ``TIGHTNESS * log(d / period)**2``. Weak beats at either end (score below
  half the beats' RMS score) are trimmed, as librosa does. Beat times are analysis-frame centres, in seconds
  (within half a hop, plus the onset's rise, of the hit). The tempo reported is 60 over the least-squares beat
  period (:func:`tempo_from_beats`), so it is exact to a fraction of a BPM although beats are frame-quantised.
- Downbeats: with ``beats_per_bar = M``, the downbeat is the beat phase (beat index mod M) whose beats carry the
  most accent energy on average, the accent being the low-band onset strength at each beat (the kick).
- The beat position at time ``t`` counts beats: ``k + (t - b_k) / (b_{k+1} - b_k)`` between beats ``b_k`` and
  ``b_{k+1}``, extended before the first beat and after the last at the tempo, so the phases keep running
  through an intro or an outro.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

__all__ = [
    "BEAT_BAND_WEIGHTS",
    "ONSET_GAMMA",
    "TIGHTNESS",
    "balanced_onset",
    "beat_curves",
    "beat_position",
    "downbeat_offset",
    "estimate_tempo",
    "onset_strength",
    "tempo_from_beats",
    "track_beats",
]

ONSET_GAMMA: float = 1000.0
"""Log-compression gain applied to band RMS amplitudes."""

TIGHTNESS: float = 100.0
"""How strongly the beat tracker holds to the tempo (librosa's default)."""

BEAT_BAND_WEIGHTS: tuple[float, float, float] = (2.0, 1.0, 0.5)
"""Weights of the low, mid and high bands' (standardised) onset envelopes in the one the beats are tracked on."""

MIN_BPM: float = 30.0
MAX_BPM: float = 300.0
PRIOR_BPM: float = 120.0


def onset_strength(power: np.ndarray, bands: np.ndarray | None = None) -> np.ndarray:
    """Onset envelope of band powers ``(n_frames, n_bands)``, over all bands or a boolean mask of them.

    Returns float64 ``(n_frames,)``, see the module docstring.
    """
    p = np.asarray(power, dtype=np.float32)
    if bands is not None:
        p = p[:, bands]
    if p.shape[0] == 0:
        return np.zeros(0)
    level = np.sqrt(p)
    level *= np.float32(ONSET_GAMMA)
    level += 1.0
    np.log(level, out=level)
    rise = np.diff(level, axis=0)
    np.maximum(rise, 0.0, out=rise)
    return np.r_[0.0, rise.sum(axis=1, dtype=np.float64)]


def balanced_onset(envelopes: list[np.ndarray], weights: tuple[float, ...] | None = None) -> np.ndarray:
    """The weighted sum of onset envelopes, each divided by its standard deviation (a flat one is left out).
    ``weights`` defaults to :data:`BEAT_BAND_WEIGHTS` for three envelopes (low, mid, high), else all 1."""
    if weights is None:
        weights = BEAT_BAND_WEIGHTS if len(envelopes) == len(BEAT_BAND_WEIGHTS) else (1.0,) * len(envelopes)
    total = np.zeros(len(envelopes[0]) if envelopes else 0)
    for envelope, weight in zip(envelopes, weights, strict=True):
        spread = float(np.std(envelope))
        if spread > 0:
            total += envelope * (weight / spread)
    return total


def estimate_tempo(onset: np.ndarray, frame_rate: float) -> float:
    """Tempo in BPM from the onset envelope's autocorrelation (see the module docstring); 0.0 when the envelope
    has no periodicity at all (silence, a single hit) or is shorter than two periods of the slowest tempo."""
    o = np.asarray(onset, dtype=np.float64)
    lag_lo = max(1, math.floor(60.0 * frame_rate / MAX_BPM))
    lag_hi = math.ceil(60.0 * frame_rate / MIN_BPM)
    if o.size < 2 * lag_lo + 2:
        return 0.0
    o = o - o.mean()
    spectrum = scipy.fft.rfft(o, n=2 * o.size)
    ac = scipy.fft.irfft(spectrum.real**2 + spectrum.imag**2)[: o.size]
    if not ac[0] > 0:
        return 0.0
    lag_hi = min(lag_hi, o.size - 2)
    lags = np.arange(lag_lo, lag_hi + 1)
    if lags.size < 3:
        return 0.0
    bpm = 60.0 * frame_rate / lags
    score = ac[lags] * np.exp(-0.5 * np.log2(bpm / PRIOR_BPM) ** 2)
    interior = np.flatnonzero((score[1:-1] > score[:-2]) & (score[1:-1] >= score[2:])) + 1
    if interior.size == 0 or score[interior].max() <= 0:
        return 0.0
    k = int(interior[np.argmax(score[interior])])
    left, mid, right = score[k - 1], score[k], score[k + 1]
    curvature = left - 2 * mid + right
    shift = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    return 60.0 * frame_rate / (lags[k] + shift)


def track_beats(onset: np.ndarray, frame_rate: float, bpm: float) -> np.ndarray:
    """Beat frames (int64, increasing) by dynamic programming at tempo ``bpm`` (see the module docstring)."""
    o = np.asarray(onset, dtype=np.float64)
    scale = o.std()
    if o.size == 0 or not scale > 0 or not bpm > 0:
        return np.zeros(0, dtype=np.int64)
    period = 60.0 * frame_rate / bpm
    taps = np.arange(-math.ceil(period), math.ceil(period) + 1)
    local = np.convolve(o / scale, np.exp(-0.5 * (taps * 32.0 / period) ** 2), mode="same")
    far, near = max(1, round(2 * period)), max(1, round(period / 2))
    offsets = np.arange(-far, -near + 1)
    cost = -TIGHTNESS * np.log(-offsets / period) ** 2
    n = o.size
    total = np.zeros(n)
    back = np.full(n, -1, dtype=np.int64)
    # Every predecessor of frames t .. t + near - 1 lies before t, so a block of `near` frames is one step.
    for t in range(0, n, near):
        rows = np.arange(t, min(n, t + near))
        cand = rows[:, None] + offsets
        score = np.where(cand >= 0, total[np.maximum(cand, 0)] + cost, -np.inf)
        best = np.argmax(score, axis=1)
        best_score = score[np.arange(rows.size), best]
        linked = np.isfinite(best_score)
        total[rows] = local[rows] + np.where(linked, best_score, 0.0)
        back[rows] = np.where(linked, cand[np.arange(rows.size), best], -1)
    # The last beat: the last local maximum of the cumulative score that reaches half their median.
    peaks = np.flatnonzero((total[1:-1] > total[:-2]) & (total[1:-1] >= total[2:])) + 1
    if peaks.size == 0:
        return np.zeros(0, dtype=np.int64)
    strong = peaks[total[peaks] >= 0.5 * np.median(total[peaks])]
    beats = [int(strong[-1])]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    found = np.array(beats[::-1], dtype=np.int64)
    level = 0.5 * math.sqrt(float(np.mean(local[found] ** 2)))
    kept = np.flatnonzero(local[found] >= level)
    return found[kept[0] : kept[-1] + 1] if kept.size else found[:0]


def tempo_from_beats(beat_times_s: np.ndarray) -> float:
    """Tempo in BPM of beats at these times: 60 over the least-squares beat period; 0.0 for fewer than 2."""
    b = np.asarray(beat_times_s, dtype=np.float64)
    if b.size < 2:
        return 0.0
    index = np.arange(b.size) - (b.size - 1) / 2
    period = float(np.dot(index, b - b.mean()) / np.dot(index, index))
    return 60.0 / period if period > 0 else 0.0


def downbeat_offset(accent: np.ndarray, beats_per_bar: int) -> int:
    """Index (0 .. beats_per_bar - 1) of the first downbeat: the beat phase with the highest mean accent."""
    a = np.asarray(accent, dtype=np.float64)
    if beats_per_bar <= 1 or a.size == 0:
        return 0
    phase = np.arange(a.size) % beats_per_bar
    sums = np.bincount(phase, weights=a, minlength=beats_per_bar)
    counts = np.bincount(phase, minlength=beats_per_bar)
    means = np.divide(sums, counts, out=np.zeros(beats_per_bar), where=counts > 0)
    return int(np.argmax(means))


def beat_position(times_s: np.ndarray, beat_times_s: np.ndarray, period_s: float) -> np.ndarray:
    """Beats counted at each time (see the module docstring): 0.0 at the first beat, 1.0 at the second, ...

    Needs at least one beat and ``period_s > 0``.
    """
    t = np.asarray(times_s, dtype=np.float64)
    b = np.asarray(beat_times_s, dtype=np.float64)
    k = np.clip(np.searchsorted(b, t, side="right") - 1, 0, max(0, b.size - 2))
    if b.size < 2:
        return (t - b[0]) / period_s
    span = b[k + 1] - b[k]
    pos = k + (t - b[k]) / span
    pos = np.where(t < b[0], (t - b[0]) / period_s, pos)
    return np.where(t > b[-1], b.size - 1 + (t - b[-1]) / period_s, pos)


def beat_curves(
    n_frames: int,
    fps: float,
    beat_times_s: np.ndarray,
    period_s: float,
    first_downbeat: int,
    beats_per_bar: int,
    decay_s: float,
) -> dict[str, np.ndarray]:
    """Per-frame ``beat_phase``, ``beat_pulse`` and ``bar_phase`` for frames shown at ``i / fps`` s.

    ``beat_phase`` (0 to 1) is the fraction of the current beat elapsed; ``bar_phase`` (0 to 1) the fraction of
    the current bar, 0 on each downbeat. ``beat_pulse`` is 1 on the frame nearest each beat (``floor(b fps +
    0.5)``), then ``exp(-(elapsed frames) / (decay_s fps))`` until the next beat, 0 before the first (with
    ``decay_s = 0``: 1 on beat frames only). All three are 0 without beats.
    """
    zeros = {name: np.zeros(n_frames) for name in ("beat_phase", "beat_pulse", "bar_phase")}
    b = np.asarray(beat_times_s, dtype=np.float64)
    if b.size == 0 or n_frames == 0 or not period_s > 0:
        return zeros
    frames = np.arange(n_frames, dtype=np.float64)
    pos = beat_position(frames / fps, b, period_s)
    bar = np.mod(pos - first_downbeat, beats_per_bar) / beats_per_bar
    beat_frames = np.floor(b * fps + 0.5)
    k = np.searchsorted(beat_frames, frames, side="right") - 1
    elapsed = frames - beat_frames[np.maximum(k, 0)]
    pulse = np.exp(-elapsed / (decay_s * fps)) if decay_s > 0 else (elapsed == 0).astype(np.float64)
    return {
        "beat_phase": pos - np.floor(pos),
        "beat_pulse": np.where(k >= 0, pulse, 0.0),
        "bar_phase": np.minimum(bar, np.nextafter(1.0, 0.0)),
    }
