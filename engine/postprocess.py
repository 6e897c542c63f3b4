"""Shaping per-frame feature curves before they drive bends: normalisation, median filter, attack/release
smoothing and a noise gate, in that order.

The paper uses raw features scaled by hand-tuned constants; the authors' later code (JAES 2025) adds a min-max
over the whole song, a median filter, an instant-attack, exponential-release envelope and a noise gate, chained
median, then envelope, then gate. All are here, with times in seconds rather than frames or samples, so a curve
looks the same at any fps.

Conventions: one value per video frame, float64 in and out; non-finite values are treated as 0 (features from
:mod:`.features` are always finite, so this only guards hand-made curves).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .catalog import FEATURES, NORMALIZATIONS
from .errors import AudioError

__all__ = ["NORMALIZATIONS", "median_filter", "median_kernel", "noise_gate", "normalize", "postprocess", "smooth"]


def _curve(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise AudioError(f"a feature curve must be one-dimensional (one value per frame), got shape {x.shape}")
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return x


def normalize(
    values: np.ndarray, method: str = "none", low_percentile: float = 5.0, high_percentile: float = 95.0
) -> np.ndarray:
    """Rescale a feature curve over the whole song.

    Parameters
    ----------
    values : np.ndarray
        One value per frame.
    method : {"none", "minmax", "percentile"}
        "none": a float64 copy. "minmax": ``(v - min) / (max - min)``, into [0, 1]. "percentile": the same with
        ``lo, hi = np.percentile(v, [low_percentile, high_percentile])`` (linear interpolation), then clipped to
        [0, 1], so a few outliers cannot squash the rest of the curve.
    low_percentile, high_percentile : float
        Percentiles in [0, 100], low < high; used by "percentile" only.

    Returns
    -------
    np.ndarray
        float64, same length. A constant curve gives zeros. If ``lo == hi`` but the curve is not constant
        (mostly one value with rare excursions), values above ``hi`` give 1 and the rest 0: the limit of the
        clipped ramp as its width goes to zero.

    Raises
    ------
    AudioError
        For an unknown method (naming it) or percentiles out of order or outside [0, 100].
    """
    if method not in NORMALIZATIONS:
        raise AudioError(f"unknown normalization {method!r}; use one of {', '.join(NORMALIZATIONS)}")
    x = _curve(values)
    if method == "none" or x.size == 0:
        return x.copy()
    if method == "minmax":
        lo, hi = float(x.min()), float(x.max())
    else:
        if not (0.0 <= low_percentile < high_percentile <= 100.0):
            raise AudioError(
                "percentile normalization needs 0 <= low_percentile < high_percentile <= 100, "
                f"got {low_percentile!r} and {high_percentile!r}"
            )
        lo, hi = (float(p) for p in np.percentile(x, [low_percentile, high_percentile]))
    if hi <= lo:
        return (x > hi).astype(np.float64)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _pole(time_s: float, fps: float) -> float:
    # exp(-1/(tau*fps)) is the per-frame decay of a one-pole filter with time constant tau; tau = 0 is instant.
    return 0.0 if time_s == 0.0 else math.exp(-1.0 / (time_s * fps))


def smooth(values: np.ndarray, fps: float, attack_s: float = 0.0, release_s: float = 0.0) -> np.ndarray:
    """Attack/release envelope follower, one value per frame.

    ``y[0] = x[0]``; then ``y[t] = x[t] + c * (y[t-1] - x[t])`` with ``c = exp(-1 / (attack_s * fps))`` while
    the input is above the envelope (``x[t] > y[t-1]``, rising) and ``c = exp(-1 / (release_s * fps))``
    otherwise. A time of 0 means ``c = 0``: the envelope follows instantly. After a step the envelope covers
    ``1 - 1/e`` (63 %) of the distance in one time constant. ``attack_s=0, release_s>0`` is the authors'
    instant-attack, exponential-release envelope.

    Parameters
    ----------
    values : np.ndarray
        One value per frame.
    fps : float
        Frames per second, converting the times to frames.
    attack_s, release_s : float
        Time constants in seconds, >= 0.

    Returns
    -------
    np.ndarray
        float64, same length.

    Raises
    ------
    AudioError
        For a negative or non-finite time, or fps not positive and finite.
    """
    if not (math.isfinite(fps) and fps > 0):
        raise AudioError(f"fps must be a positive finite number, got {fps!r}")
    for name, time_s in (("attack_s", attack_s), ("release_s", release_s)):
        if not (math.isfinite(time_s) and time_s >= 0):
            raise AudioError(f"{name} must be a time in seconds >= 0, got {time_s!r}")
    x = _curve(values)
    up, down = _pole(float(attack_s), fps), _pole(float(release_s), fps)
    if x.size < 2 or (up == 0.0 and down == 0.0):
        return x.copy()
    # The coefficient depends on the output so far, which no vectorised filter expresses. A loop over Python
    # floats runs 10 000 frames in about 2 ms, far cheaper than numpy scalar indexing. (scipy.signal.lfilter
    # could take the up == down case, but importing scipy.signal costs about a second at every bake.)
    xs = x.tolist()
    out = [0.0] * len(xs)
    y = out[0] = xs[0]
    for i in range(1, len(xs)):
        v = xs[i]
        y = v + (up if v > y else down) * (y - v)
        out[i] = y
    return np.asarray(out, dtype=np.float64)


def median_filter(values: np.ndarray, kernel: int) -> np.ndarray:
    """Running median over ``kernel`` frames (odd, >= 1), centred, as the authors' ``scipy.signal.medfilt``.

    Like medfilt, the curve is padded with ``kernel // 2`` zeros at each end, so the first and last few values
    are medians that include zeros. ``kernel=1`` returns a copy. Removes spikes shorter than half the kernel
    while keeping steps sharp, unlike the envelope follower.

    Raises
    ------
    AudioError
        If kernel is not an odd whole number >= 1.
    """
    if isinstance(kernel, bool) or not isinstance(kernel, (int, np.integer)) or kernel < 1 or kernel % 2 == 0:
        raise AudioError(f"the median filter's kernel must be an odd whole number of frames >= 1, got {kernel!r}")
    x = _curve(values)
    if kernel == 1 or x.size == 0:
        return x.copy()
    half = int(kernel) // 2
    padded = np.concatenate([np.zeros(half), x, np.zeros(half)])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, int(kernel)), axis=1)


def median_kernel(median_s: float, fps: float) -> int:
    """The median filter's kernel for a window of ``median_s`` seconds: ``2 * floor(median_s * fps / 2) + 1``
    frames, the odd number in ``(median_s * fps - 1, median_s * fps + 1]`` (1, no filtering, below 2 frames)."""
    return 2 * math.floor(median_s * fps / 2) + 1


def noise_gate(values: np.ndarray, fraction: float) -> np.ndarray:
    """The authors' noise gate: values whose magnitude is below ``fraction * (max - min) + min`` become 0.

    ``fraction`` is in [0, 1]; 0 lets everything through, 1 keeps only the maximum (and values as loud in
    magnitude). The threshold is taken over the whole curve.

    Raises
    ------
    AudioError
        If fraction is outside [0, 1].
    """
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0):
        raise AudioError(f"the noise gate's fraction must be between 0 and 1, got {fraction!r}")
    x = _curve(values)
    if x.size == 0:
        return x.copy()
    lo, hi = float(x.min()), float(x.max())
    threshold = fraction * (hi - lo) + lo
    return np.where(np.abs(x) < threshold, 0.0, x)


def postprocess(
    features: Mapping[str, np.ndarray],
    fps: float,
    normalization: str = "none",
    attack_s: float = 0.0,
    release_s: float = 0.0,
    low_percentile: float = 5.0,
    high_percentile: float = 95.0,
    median_s: float = 0.0,
    gate: float = 0.0,
) -> dict[str, np.ndarray]:
    """Normalise, median-filter, smooth, then gate every curve of a feature dict (as returned by
    ``compute_features``): the authors' chain (median, envelope, gate) after the normalisation. Features whose
    catalog entry says ``normalize=False`` (beat and bar phase, beat pulse, section, pitch class) keep their scale.

    Smoothing after normalising keeps the envelope inside [0, 1] when a normalisation is used. ``median_s`` is
    the median filter's window in seconds (:func:`median_kernel`; 0: off) and ``gate`` the noise gate's
    fraction (:func:`noise_gate`; 0: off).

    Returns
    -------
    dict of str to np.ndarray
        New float64 arrays with the same keys in the same order; the input is not modified.

    Raises
    ------
    AudioError
        As :func:`normalize` and :func:`smooth`, and for a negative median_s or a gate outside [0, 1].
    """
    if normalization not in NORMALIZATIONS:
        raise AudioError(f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}")
    if not (isinstance(median_s, (int, float)) and math.isfinite(median_s) and median_s >= 0):
        raise AudioError(f"median_s must be a time in seconds >= 0, got {median_s!r}")
    if not (isinstance(gate, (int, float)) and 0.0 <= gate <= 1.0):
        raise AudioError(f"gate must be a fraction of each curve's range from 0 to 1, got {gate!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise AudioError(f"fps must be a positive finite number, got {fps!r}")
    kernel = median_kernel(float(median_s), fps)
    out = {}
    for name, values in features.items():
        # A phase, an index or a pitch class already means something on its own scale (catalog: normalize=False).
        spec = FEATURES.get(name)
        mode = normalization if spec is None or spec.normalize else "none"
        curve = normalize(values, mode, low_percentile, high_percentile)
        curve = smooth(median_filter(curve, kernel), fps, attack_s, release_s)
        out[name] = noise_gate(curve, gate) if gate else curve
    return out
