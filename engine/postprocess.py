"""Shaping per-frame feature curves before they drive bends: normalisation, then attack/release smoothing.

The paper uses raw features scaled by hand-tuned constants; the authors' later code adds a min-max over the
whole song and an instant-attack, exponential-release envelope. Both are here, in seconds and frames rather
than samples, so a curve looks the same at any fps.

Conventions: one value per video frame, float64 in and out; non-finite values are treated as 0 (features from
:mod:`.features` are always finite, so this only guards hand-made curves).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .catalog import NORMALIZATIONS
from .errors import AudioError

__all__ = ["NORMALIZATIONS", "normalize", "postprocess", "smooth"]


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


def postprocess(
    features: Mapping[str, np.ndarray],
    fps: float,
    normalization: str = "none",
    attack_s: float = 0.0,
    release_s: float = 0.0,
    low_percentile: float = 5.0,
    high_percentile: float = 95.0,
) -> dict[str, np.ndarray]:
    """Normalise, then smooth, every curve of a feature dict (as returned by ``compute_features``).

    Smoothing after normalising keeps the envelope inside [0, 1] when a normalisation is used.

    Returns
    -------
    dict of str to np.ndarray
        New float64 arrays with the same keys in the same order; the input is not modified.

    Raises
    ------
    AudioError
        As :func:`normalize` and :func:`smooth`.
    """
    if normalization not in NORMALIZATIONS:
        raise AudioError(f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}")
    return {
        name: smooth(normalize(values, normalization, low_percentile, high_percentile), fps, attack_s, release_s)
        for name, values in features.items()
    }
