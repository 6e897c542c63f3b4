"""Per-frame audio features: one value per video frame, from the audio that plays while that frame is shown.

This follows Dzwonczyk et al. (DAFx 2024) and their code (see ``notes/reference-implementation.md``); where
the two differ, or where this module departs from both, :class:`FeatureSettings` makes the choice explicit:

- Frame ``i`` of a video at ``fps`` frames per second is shown at ``t_i = i / fps`` seconds from the first
  sample. Its analysis window has ``L`` samples and, with ``align="start"`` (the paper), covers samples
  ``[round(t_i * sr), round(t_i * sr) + L)``; with ``align="center"`` it is centred on ``t_i * sr``, i.e. starts
  at ``round(t_i * sr - L / 2)``. ``round`` is round-half-up, ``floor(x + 0.5)``. Samples outside the audio
  count as zeros, so the last, partial frame is analysed as-is and frames after the end are silence.
- ``L = round(window_ms / 1000 * sr)``; by default ``L = round(sr / fps)``, the frame's own duration (2205
  samples, 50 ms, at 44.1 kHz and 20 fps), so windows tile the audio without overlap as in the authors' code.
- The spectrum is ``a = |rfft(w * x, n=N)|`` with ``N`` the next power of two ``>= L`` (zero-padding, as the
  authors do) and ``w`` a periodic ("DFT-even") Hann window, ``w[n] = 0.5 - 0.5 cos(2 pi n / L)``, identical to
  ``scipy.signal.get_window("hann", L, fftbins=True)`` and to librosa's default. ``spectrum_window="rect"``
  (``w = 1``) reproduces the authors' code, whose leakage lifts a 1 kHz tone's centroid to about 1.3 kHz.
  Bin ``k`` has frequency ``f_k = k * sr / N`` Hz, ``k = 0 .. N/2``.

The spectral features, :data:`SPECTRAL_FEATURE_NAMES` (all float64, one value per frame, never NaN or inf):

``rms``
    ``sqrt(mean(x**2))`` over the frame's ``L`` *unwindowed* samples, at full scale (a sine of amplitude A
    gives ``A / sqrt(2)``).
``centroid``, ``spread``, ``skewness``, ``kurtosis``
    Moments of frequency weighted by magnitude ``a``: ``mu = sum(a f) / sum(a)`` (Hz),
    ``sigma = sqrt(sum(a (f - mu)**2) / sum(a))`` (Hz), ``sum(a (f - mu)**3) / (sigma**3 sum(a))`` and
    ``sum(a (f - mu)**4) / (sigma**4 sum(a))`` (both dimensionless; kurtosis is not "excess" kurtosis). All
    four are 0 on a silent frame. Skewness and kurtosis are 0 where sigma is 0, which here means
    ``sigma < SPREAD_FLOOR * sr / 2``: only a one-bin spectrum gets that narrow, and there the ratios would
    be rounding noise.
``flux``
    ``sum_k |a_t[k] - a_{t-1}[k]|`` on raw magnitudes (the authors' definition; it scales with loudness and
    with the window length), 0 on the first frame.
``onset``
    Onset strength, the half-wave-rectified spectral flux of log-compressed magnitudes:
    ``sum_k max(0, log(1 + g a_t[k]) - log(1 + g a_{t-1}[k]))`` with ``g = ONSET_GAMMA / sum(w)``. Dividing by
    the window sum makes ``g a`` independent of the window length and type: a full-scale sinusoid's peak bin
    gets ``g a ~= ONSET_GAMMA / 2`` = 500, and content 60 dB below full scale sits at the knee of the log.
    0 on the first frame. It peaks on the frames where a note or a click begins.
``band_low``, ``band_mid``, ``band_high``
    Power in ``[0, e0)``, ``[e0, e1)`` and ``[e1, sr/2]`` Hz, with ``(e0, e1) = band_edges_hz``:
    ``sum_k c_k a[k]**2 / (N * sum(w**2))``, where ``c_k = 2`` except ``c_k = 1`` for the DC and Nyquist bins
    (which have no mirror image). By Parseval the three bands sum to ``sum((w x)**2) / sum(w**2)``, the
    window-weighted mean square of the frame: exactly ``rms**2`` for ``"rect"``, and for a full-scale sine
    ``0.5`` with either window, whatever ``L`` and ``N`` are.

Input conditioning, applied per channel before mixing to mono by averaging the channels: integer samples are
scaled to full scale (:func:`.audio_io.pcm_to_float`), non-finite samples (NaN, +-inf) are replaced by 0, and
samples are clipped to ``+-SAMPLE_CLIP``. The clip is 120 dB above full scale, far beyond any real audio; it
keeps every sum of powers finite in the float32 magnitude spectra used for speed. At the other end, those
spectra underflow below about 1e-38, so a frame some 700 dB below full scale reads as silence.

The implementation is vectorised: frames are gathered with one fancy index into a sliding-window view of the
zero-padded mono signal, transformed by batched FFTs, and reduced with whole-array operations, a block of
frames at a time (blocks only bound memory and keep temporaries in cache; there is no per-frame Python code).
``tests/reference_features.py`` holds a per-frame loop transcription used as an oracle; the two agree to
float32 precision.

:func:`compute_features` adds the musical features of :mod:`.music` (onsets per band, harmonic and percussive
energy, beat and bar phase, sections, chroma, an embedding); :func:`analyze` also returns the tempo and the beat,
downbeat and section times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft

from .audio_io import pcm_to_float
from .catalog import FEATURE_NAMES, SPECTRAL_FEATURE_NAMES
from .errors import AudioError
from .music import MusicAnalysis, analyze_music, check_music_settings

__all__ = [
    "FEATURE_NAMES",
    "ONSET_GAMMA",
    "SAMPLE_CLIP",
    "SPECTRAL_FEATURE_NAMES",
    "SPREAD_FLOOR",
    "FeatureSettings",
    "MusicAnalysis",
    "analyze",
    "compute_features",
    "compute_spectral_features",
    "frame_count",
    "frame_starts",
    "window_length",
]


ONSET_GAMMA: float = 1000.0
"""Log-compression gain of the onset feature, applied to magnitudes divided by the window sum."""

SAMPLE_CLIP: float = 1e6
"""Samples are clipped to +-SAMPLE_CLIP (full scale is 1) before analysis."""

SPREAD_FLOOR: float = 1e-6
"""A spread below SPREAD_FLOOR * sr / 2 counts as zero for skewness and kurtosis."""

# Spectrum values per block of frames. About 4 MB of float32: big enough that per-block overhead vanishes,
# small enough that the block's temporaries stay in cache and a long song at a high fps never needs gigabytes.
_BLOCK_VALUES = 1 << 20
# Real samples per FFT call. The complex spectra are consumed (turned into float32 magnitudes) right away, so
# a cache-sized batch avoids writing and re-reading a block-sized complex array through main memory.
_FFT_VALUES = 1 << 18

_ALIGNS = ("start", "center")
_WINDOWS = ("hann", "rect")


@dataclass(frozen=True)
class FeatureSettings:
    """How frames are cut and analysed. The defaults follow the paper, except the Hann window.

    Attributes
    ----------
    window_ms : float or None
        Analysis window length in milliseconds. None: the frame's own duration, ``1000 / fps`` ms (50 ms at
        20 fps); the window then has ``round(sr / fps)`` samples, computed without the detour through ms.
    align : {"start", "center"}
        "start": the window begins at the frame's time (the paper); "center": it is centred on it.
    spectrum_window : {"hann", "rect"}
        Taper applied before the FFT; "rect" (none) reproduces the authors' code.
    band_edges_hz : tuple of float
        ``(e0, e1)`` with ``0 < e0 < e1 <= sr / 2``: band_low is ``[0, e0)``, band_mid ``[e0, e1)``,
        band_high ``[e1, sr/2]``; likewise for onset_low, onset_mid and onset_high.
    tempo_bpm : float or None
        The song's tempo in beats per minute, 10 to 1000, when the artist knows it; None detects it.
    beats_per_bar : int
        The meter, for bar_phase and downbeats: 4 for 4/4, 3 for 3/4.
    beat_decay_s : float
        Time constant of beat_pulse's exponential decay after each beat, in seconds (0: only the beat frame).
    """

    window_ms: float | None = None
    align: Literal["start", "center"] = "start"
    spectrum_window: Literal["hann", "rect"] = "hann"
    band_edges_hz: tuple[float, float] = (250.0, 4000.0)
    tempo_bpm: float | None = None
    beats_per_bar: int = 4
    beat_decay_s: float = 0.1


def _check_rate_and_fps(sample_rate: int, fps: float) -> tuple[int, float]:
    try:
        sr = int(sample_rate)
        bad_sr = sr != sample_rate or sr <= 0
    except (TypeError, ValueError, OverflowError):
        bad_sr = True
    if bad_sr:
        raise AudioError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    try:
        fps_f = float(fps)
    except (TypeError, ValueError):
        fps_f = math.nan
    if not (math.isfinite(fps_f) and fps_f > 0):
        raise AudioError(f"fps must be a positive finite number, got {fps!r}")
    return sr, fps_f


def _whole(value: object, name: str) -> int:
    try:
        whole = int(value)  # type: ignore[call-overload]
        ok = not isinstance(value, bool) and whole == value and whole >= 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise AudioError(f"{name} must be a whole number >= 0, got {value!r}")
    return whole


def frame_count(n_samples: int, sample_rate: int, fps: float) -> int:
    """Number of video frames needed to show ``n_samples`` of audio: ``ceil(n_samples / sample_rate * fps)``.

    Frame ``i`` starts at ``i / fps`` s, so this counts the frames that start before the audio ends. A ratio
    within 1e-9 of a whole number counts as whole, so that float rounding in ``fps`` (29.97...) never adds an
    empty frame. 0 for no samples.

    Raises
    ------
    AudioError
        If n_samples is negative, sample_rate is not a positive integer, or fps is not positive and finite.
    """
    sr, fps_f = _check_rate_and_fps(sample_rate, fps)
    n = _whole(n_samples, "n_samples")
    if n == 0:
        return 0
    q = n * fps_f / sr
    nearest = round(q)
    if abs(q - nearest) <= 1e-9 * max(1.0, q):
        return int(nearest)
    return math.ceil(q)


def window_length(settings: FeatureSettings, sample_rate: int, fps: float) -> int:
    """Analysis window length ``L`` in samples for these settings (see :class:`FeatureSettings`).

    Raises
    ------
    AudioError
        If window_ms is not a positive finite number or the window would be shorter than one sample.
    """
    sr, fps_f = _check_rate_and_fps(sample_rate, fps)
    if settings.window_ms is None:
        length = math.floor(sr / fps_f + 0.5)
        if length < 1:
            raise AudioError(
                f"window_ms is unset, so the window is one frame long, and at fps={fps_f:g} with sample rate "
                f"{sr} Hz that is less than one sample; lower fps or set window_ms"
            )
        return length
    try:
        ms = float(settings.window_ms)
    except (TypeError, ValueError):
        ms = math.nan
    if not (math.isfinite(ms) and ms > 0):
        raise AudioError(f"window_ms must be a positive number of milliseconds, got {settings.window_ms!r}")
    length = math.floor(ms / 1000.0 * sr + 0.5)
    if length < 1:
        raise AudioError(f"window_ms={ms:g} is less than one sample at {sr} Hz; use at least {1000.0 / sr:.3g} ms")
    return length


def frame_starts(n_frames: int, sample_rate: int, fps: float, length: int, align: str = "start") -> np.ndarray:
    """First sample of each frame's window (int64, may be negative or past the end of the audio).

    ``floor(i * sr / fps + 0.5)`` for align "start", ``floor(i * sr / fps - length / 2 + 0.5)`` for "center".
    """
    t = np.arange(n_frames, dtype=np.float64) * float(sample_rate) / float(fps)
    if align == "center":
        t -= length / 2
    return np.floor(t + 0.5).astype(np.int64)


def _check_settings(settings: FeatureSettings, sr: int) -> tuple[float, float]:
    if settings.align not in _ALIGNS:
        raise AudioError(f"align must be one of {_ALIGNS}, got {settings.align!r}")
    if settings.spectrum_window not in _WINDOWS:
        raise AudioError(f"spectrum_window must be one of {_WINDOWS}, got {settings.spectrum_window!r}")
    try:
        e0, e1 = (float(e) for e in settings.band_edges_hz)
    except (TypeError, ValueError):
        raise AudioError(f"band_edges_hz must be two frequencies in Hz, got {settings.band_edges_hz!r}") from None
    nyquist = sr / 2
    if not (0 < e0 < e1 <= nyquist):  # also false for NaN
        raise AudioError(
            f"band_edges_hz must satisfy 0 < low edge < high edge <= {nyquist:g} Hz (half the sample rate), "
            f"got {settings.band_edges_hz!r}"
        )
    return e0, e1


def _as_channels(samples: np.ndarray) -> np.ndarray:
    """Samples as a float (n, channels) array at full scale, non-finite replaced by 0 and clipped."""
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise AudioError(f"samples must have shape (n,) or (n, channels), got shape {x.shape}")
    if x.shape[1] == 0 and x.shape[0] > 0:
        raise AudioError("samples have no channels (shape (n, 0))")
    if x.dtype.kind != "f":
        # Integer PCM is finite and within full scale by construction; float32 holds 24 bits of it exactly.
        return pcm_to_float(x, np.float32)
    if x.dtype.itemsize < 4:
        x = x.astype(np.float32)
    if x.size and not (x.min() >= -SAMPLE_CLIP and x.max() <= SAMPLE_CLIP):  # false for NaN, too
        # The rare path pays for a copy; ordinary audio skips it after two cheap reductions.
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), -SAMPLE_CLIP, SAMPLE_CLIP)
    return x


def _hann(length: int) -> np.ndarray:
    if length == 1:
        return np.ones(1)  # scipy.signal.get_window's convention: a 1-point window passes the sample
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def analyze(
    samples: np.ndarray,
    sample_rate: int,
    fps: float,
    n_frames: int | None = None,
    settings: FeatureSettings = FeatureSettings(),
) -> MusicAnalysis:
    """Every feature in :data:`FEATURE_NAMES` for each video frame, and the song's tempo, beats, downbeats and
    sections (see :mod:`.music`). Parameters and errors as :func:`compute_features`, which returns
    ``analyze(...).features``; this also raises AudioError naming tempo_bpm, beats_per_bar or beat_decay_s."""
    check_music_settings(settings.tempo_bpm, settings.beats_per_bar, settings.beat_decay_s)
    spectral, mono = _spectral_features(samples, sample_rate, fps, n_frames, settings)
    sr, fps_f = int(sample_rate), float(fps)
    n_frames = len(spectral["rms"])
    length = window_length(settings, sr, fps_f)
    starts = frame_starts(n_frames, sr, fps_f, length, settings.align)
    music = analyze_music(
        mono,
        sr,
        fps_f,
        starts,
        length,
        spectral,
        _check_settings(settings, sr),
        settings.tempo_bpm,
        settings.beats_per_bar,
        settings.beat_decay_s,
    )
    merged = {**spectral, **music.features}
    return MusicAnalysis(
        {name: merged[name] for name in FEATURE_NAMES},
        music.tempo_bpm,
        music.beat_times_s,
        music.downbeat_times_s,
        music.section_times_s,
    )


def compute_features(
    samples: np.ndarray,
    sample_rate: int,
    fps: float,
    n_frames: int | None = None,
    settings: FeatureSettings = FeatureSettings(),
) -> dict[str, np.ndarray]:
    """Compute every feature in :data:`FEATURE_NAMES` for each video frame: the spectral features below and
    the musical ones of :mod:`.music` (``analyze(...).features``); parameters, returns and errors as
    :func:`compute_spectral_features`, plus AudioError naming tempo_bpm, beats_per_bar or beat_decay_s."""
    return analyze(samples, sample_rate, fps, n_frames, settings).features


def compute_spectral_features(
    samples: np.ndarray,
    sample_rate: int,
    fps: float,
    n_frames: int | None = None,
    settings: FeatureSettings = FeatureSettings(),
) -> dict[str, np.ndarray]:
    """Compute every feature in :data:`SPECTRAL_FEATURE_NAMES` (this module's docstring) for each video frame.

    Parameters
    ----------
    samples : np.ndarray
        Audio of shape ``(n,)`` or ``(n, channels)``, any float, integer or bool dtype (integers are scaled
        to full scale, see :func:`.audio_io.pcm_to_float`). Channels are averaged to mono. Frame 0 is shown
        at the first sample.
    sample_rate : int
        Samples per second, in Hz.
    fps : float
        Video frames per second.
    n_frames : int or None
        Frames to compute. None: :func:`frame_count` ``(n, sample_rate, fps)``, which includes the last,
        partial frame. More frames than that are silence; fewer truncate.
    settings : FeatureSettings
        Window length, alignment, spectral window and band edges.

    Returns
    -------
    dict of str to np.ndarray
        One float64 array of length ``n_frames`` per name in :data:`SPECTRAL_FEATURE_NAMES`, in that order, in the
        units given in the module docstring. Always finite. Empty audio gives zeros.

    Raises
    ------
    AudioError
        For a non-positive or non-finite fps, a non-positive sample_rate, a negative n_frames, a window of
        less than one sample (naming window_ms), band edges out of order or above half the sample rate
        (naming band_edges_hz), or samples that are not a 1-D/2-D real array.
    """
    return _spectral_features(samples, sample_rate, fps, n_frames, settings)[0]


def _spectral_features(
    samples: np.ndarray, sample_rate: int, fps: float, n_frames: int | None, settings: FeatureSettings
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:func:`compute_spectral_features`, and the mono mix it analysed (float64, the whole audio)."""
    sr, fps_f = _check_rate_and_fps(sample_rate, fps)
    length = window_length(settings, sr, fps_f)
    edge_low, edge_high = _check_settings(settings, sr)
    channels = _as_channels(samples)
    n = channels.shape[0]
    n_frames = frame_count(n, sr, fps_f) if n_frames is None else _whole(n_frames, "n_frames")
    out = {name: np.zeros(n_frames) for name in SPECTRAL_FEATURE_NAMES}
    if n_frames == 0 or n == 0:
        return out, np.zeros(0)

    starts = frame_starts(n_frames, sr, fps_f, length, settings.align)
    # Every frame from the first one that starts at or after the end is silence with all-zero features; only
    # that first one is analysed, because its flux and onset measure the step from the last sound to silence.
    n_live = min(n_frames, int(np.searchsorted(starts, n, side="left")) + 1)
    starts = starts[:n_live]
    pad_left = max(0, -int(starts[0]))
    pad_right = max(0, int(starts[-1]) + length - n)

    # Mixing straight into a zero-padded buffer gives the zeros outside the audio for free, and np.add with
    # out= makes no temporary of the whole song. dtype=float64 keeps float32 channels from being summed (and
    # rounded) in float32: that rounding noise, ~150 dB down, is what kurtosis of a clean tone would measure.
    mono = np.empty(pad_left + n + pad_right)
    mono[:pad_left] = 0.0
    mono[pad_left + n :] = 0.0
    body = mono[pad_left : pad_left + n]
    n_channels = channels.shape[1]
    if n_channels == 1:
        body[:] = channels[:, 0]
    else:
        np.add(channels[:, 0], channels[:, 1], out=body, dtype=np.float64)
        for c in range(2, n_channels):
            np.add(body, channels[:, c], out=body, dtype=np.float64)
        body *= 1.0 / n_channels

    n_fft = 1 << (length - 1).bit_length()
    n_bins = n_fft // 2 + 1
    window = _hann(length) if settings.spectrum_window == "hann" else None
    window_sum = float(window.sum()) if window is not None else float(length)
    window_energy = float(np.dot(window, window)) if window is not None else float(length)
    gamma = np.float32(ONSET_GAMMA / window_sum)
    band_scale = 1.0 / (n_fft * window_energy)
    freqs_hz = np.arange(n_bins) * (sr / n_fft)
    # Moments are taken of frequency as a fraction of Nyquist, so float32 powers of it stay in [0, 1].
    nyquist = sr / 2
    rel_freqs = (freqs_hz / nyquist).astype(np.float32)
    parseval = np.full(n_bins, 2.0)
    parseval[0] = 1.0
    if n_fft % 2 == 0:
        parseval[-1] = 1.0
    band_of_bin = np.searchsorted([edge_low, edge_high], freqs_hz, side="right")
    band_weights = np.zeros((n_bins, 3), dtype=np.float32)
    band_weights[np.arange(n_bins), band_of_bin] = parseval

    frames_view = np.lib.stride_tricks.sliding_window_view(mono, length)
    res = {name: out[name][:n_live] for name in SPECTRAL_FEATURE_NAMES}
    block = min(n_live, max(1, _BLOCK_VALUES // n_bins))
    # Work buffers are reused across blocks: fresh multi-megabyte arrays would cost page faults every block.
    mag_buffer = np.empty((block + 1, n_bins), dtype=np.float32)
    dev_buffer = np.empty((block, n_bins), dtype=np.float32)
    weighted_buffer = np.empty((block, n_bins), dtype=np.float32)
    fft_rows = max(1, _FFT_VALUES // n_fft)
    prev_mag: np.ndarray | None = None
    for b0 in range(0, n_live, block):
        b1 = min(n_live, b0 + block)
        m = b1 - b0
        mag, dev, weighted = mag_buffer[: m + 1], dev_buffer[:m], weighted_buffer[:m]
        frames = frames_view[starts[b0:b1] + pad_left]  # a (m, length) copy, so tapering in place is safe
        res["rms"][b0:b1] = np.sqrt(np.einsum("ij,ij->i", frames, frames) / length)
        # The FFT stays float64: a float32 FFT's rounding noise sits ~140 dB below each frame's peak, where a
        # clean tone's Hann sidelobes are, and the (f - mu)**4 weight of kurtosis amplifies exactly those far-off
        # bins (a 4 % error on a pure tone). Storing the magnitudes as float32 afterwards is harmless: that
        # rounding is relative to each bin, not to the peak. Everything after the FFT then moves half the bytes.
        if window is not None:
            frames *= window
        # Row 0 holds the previous block's last frame, so differences across the block boundary come out of
        # the same vectorised expression; on the very first frame it is that frame itself, giving 0.
        for f0 in range(0, m, fft_rows):
            f1 = min(m, f0 + fft_rows)
            spectrum = scipy.fft.rfft(frames[f0:f1], n=n_fft, axis=1)
            np.abs(spectrum, out=mag[1 + f0 : 1 + f1], casting="same_kind")
        del frames, spectrum
        mag[0] = mag[1] if prev_mag is None else prev_mag
        cur = mag[1:]

        # The centroid feeds every other moment, so its sums accumulate in float64 (a float32 matmul drifts
        # by ~1e-5 over a thousand equal bins); the central moments can then be float32.
        total = cur.sum(axis=1, dtype=np.float64)
        np.multiply(cur, rel_freqs, out=dev)
        sound = total > 0
        safe_total = np.where(sound, total, 1.0)
        mean_rel = dev.sum(axis=1, dtype=np.float64) / safe_total
        np.subtract(rel_freqs[None, :], mean_rel.astype(np.float32)[:, None], out=dev)
        np.multiply(cur, dev, out=weighted)
        # float32 accumulation is enough here: |f - mu| <= 1 in Nyquist units, so no term exceeds its bin's a.
        m2 = np.einsum("ij,ij->i", weighted, dev)
        weighted *= dev
        m3 = np.einsum("ij,ij->i", weighted, dev)
        weighted *= dev
        m4 = np.einsum("ij,ij->i", weighted, dev)
        m2, m3, m4 = (v.astype(np.float64) for v in (m2, m3, m4))
        spread_rel = np.sqrt(np.maximum(m2 / safe_total, 0.0))
        shaped = sound & (spread_rel >= SPREAD_FLOOR)
        safe_spread = np.where(shaped, spread_rel, 1.0)
        res["centroid"][b0:b1] = np.where(sound, mean_rel * nyquist, 0.0)
        res["spread"][b0:b1] = np.where(sound, spread_rel * nyquist, 0.0)
        res["skewness"][b0:b1] = np.where(shaped, m3 / safe_total / safe_spread**3, 0.0)
        res["kurtosis"][b0:b1] = np.where(shaped, m4 / safe_total / safe_spread**4, 0.0)

        np.subtract(mag[1:], mag[:-1], out=dev)
        np.abs(dev, out=dev)
        res["flux"][b0:b1] = dev.sum(axis=1, dtype=np.float64)

        np.multiply(cur, cur, out=dev)
        bands = (dev @ band_weights).astype(np.float64) * band_scale
        res["band_low"][b0:b1] = bands[:, 0]
        res["band_mid"][b0:b1] = bands[:, 1]
        res["band_high"][b0:b1] = bands[:, 2]

        prev_mag = mag[-1].copy()
        # log(1 + x) instead of log1p: float32 log is vectorised and several times faster, and the two only
        # differ where g*a << 1, far below anything that registers as an onset.
        logmag = mag
        logmag *= gamma
        logmag += 1.0
        np.log(logmag, out=logmag)
        np.subtract(logmag[1:], logmag[:-1], out=dev)
        np.maximum(dev, 0.0, out=dev)
        res["onset"][b0:b1] = dev.sum(axis=1, dtype=np.float64)
    return out, body
