"""An audio embedding: per-frame descriptors standardised and projected by PCA over the song.

The authors' follow-up (JAES 2025) reduces learned EnCodec embeddings with t-SNE to as many curves as an
operator has parameters. This gives the same kind of input with no downloaded model and no randomness: a few
decorrelated curves, ordered by how much of the song's variation they carry.

- :func:`cepstrum`: cepstral coefficients, ``c = DCT-II(log(P + CEPSTRUM_FLOOR))`` over log-spaced band powers
  ``P`` (orthonormal DCT; MFCC-like, with semitone instead of mel bands), the first ``n`` of them. ``c_0`` is
  loudness, ``c_1`` the spectral tilt, the rest finer detail of the spectral envelope.
- :func:`pca_embedding`: each descriptor (column) is standardised to zero mean and unit variance over the song
  (a constant column is left out), then projected on the principal axes. Component ``k`` is
  ``x_std @ v_k``, in units of standard deviations of the standardised descriptors; its variance over the song
  is the ``k``-th largest eigenvalue of their correlation matrix, so component 0 moves most. The sign of each
  axis is fixed so that its largest loading (by absolute value) is positive: the same song always gives the
  same curves. Components beyond the data's rank are 0.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["CEPSTRUM_FLOOR", "cepstrum", "pca_embedding"]

CEPSTRUM_FLOOR: float = 1e-10
"""Added to band powers (mean square) before the log: -100 dB, below anything audible."""


def cepstrum(power: np.ndarray, n_coefficients: int = 13) -> np.ndarray:
    """Cepstral coefficients ``(n_frames, min(n_coefficients, n_bands))`` of band powers, float64."""
    p = np.asarray(power, dtype=np.float64)
    if p.shape[1] == 0:
        return np.zeros((p.shape[0], 0))
    return scipy.fft.dct(np.log(p + CEPSTRUM_FLOOR), type=2, norm="ortho", axis=1)[:, :n_coefficients]


def pca_embedding(descriptors: np.ndarray, n_components: int) -> np.ndarray:
    """Project ``(n_frames, d)`` descriptors onto ``n_components`` principal axes (see the module docstring).

    Returns float64 ``(n_frames, n_components)``, zeros where there is no variation to project.
    """
    x = np.asarray(descriptors, dtype=np.float64)
    out = np.zeros((x.shape[0], n_components))
    if x.shape[0] < 2 or n_components == 0:
        return out
    x = x - x.mean(axis=0)
    std = x.std(axis=0)
    varies = std > 1e-9 * (1.0 + np.abs(x).max(axis=0))
    if not varies.any():
        return out
    x = x[:, varies] / std[varies]
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    k = min(n_components, int(np.count_nonzero(s > 1e-9 * s[0])))
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt[:k]), axis=1)])
    out[:, :k] = u[:, :k] * (s[:k] * signs)
    return out
