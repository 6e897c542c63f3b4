"""Song sections: boundaries where the music changes, from novelty on a self-similarity matrix (Foote 2000).

The song is cut into blocks (about half a second each) and each block described by a feature vector (here
cepstral coefficients and chroma: timbre and harmony). Each feature is standardised over the song, divided by
``max(std, floor)`` rather than by its standard deviation alone, so a feature that barely moves (a steady loop)
stays near 0 instead of having its noise blown up to unit variance. The similarity of blocks ``i`` and ``j`` is
``S[i, j] = exp(-D2 / 2)`` with ``D2`` the mean squared difference of their standardised features: 1 for equal
blocks, ``exp(-1) = 0.37`` for two unrelated blocks of a song with no structure. Within a section blocks
resemble each other; across a boundary they do not, so ``S`` is made of bright squares along its diagonal.

Novelty at block ``i`` compares the ``L`` blocks before it ("past") with the ``L`` from it on ("future") with
Foote's checkerboard kernel, Gaussian-tapered (sigma ``L / 2`` blocks from the boundary):
``novelty[i] = (mean_w S[past, past] + mean_w S[future, future]) / 2 - mean_w S[past, future]``, weighted
means over pairs of distinct blocks (a block's similarity to itself says nothing about change), in similarity
units from -1 to 1: about 0 inside a steady section, larger at a change. Near the ends of the song the kernel is
cut to the blocks that exist; blocks with fewer than ``L / 2`` on either side get 0. A boundary is a block whose
novelty is the largest within ``L`` blocks either way and at least ``NOVELTY_THRESHOLD``; its time is the start
of that block, so sections are at least ``L`` blocks long.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NOVELTY_THRESHOLD",
    "checkerboard_novelty",
    "section_boundaries",
    "self_similarity",
    "similarity",
    "standardize",
]

NOVELTY_THRESHOLD: float = 0.15
"""Least novelty (cosine-similarity units) at a section boundary."""


def standardize(features: np.ndarray, floor: np.ndarray | float = 0.0) -> np.ndarray:
    """Features ``(n, d)`` less their mean over the song, divided by ``max(std, floor)`` per column (0 where that
    is 0), float64."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), floor)
    return np.divide(x, scale, out=np.zeros_like(x), where=scale > 0)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``exp(-D2 / 2)`` for every row of ``a`` against every row of ``b`` (standardised features), ``D2`` the
    mean squared difference over the columns; 1 where there are no columns."""
    if a.shape[1] == 0:
        return np.ones((a.shape[0], b.shape[0]))
    d2 = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
    return np.exp(-0.5 * np.maximum(d2, 0.0) / a.shape[1])


def self_similarity(features: np.ndarray, floor: np.ndarray | float = 0.0) -> np.ndarray:
    """The whole similarity matrix ``(n, n)`` of feature rows ``(n, d)`` (see the module docstring)."""
    z = standardize(features, floor)
    return similarity(z, z)


def checkerboard_novelty(standardized: np.ndarray, half_width: int) -> np.ndarray:
    """Foote novelty of each block (see the module docstring), float64 ``(n,)``, from standardised features
    ``(n, d)`` (:func:`standardize`). Only the similarities within ``L`` blocks of the diagonal are computed, so
    memory stays linear in the song's length."""
    z = np.asarray(standardized, dtype=np.float64)
    n = z.shape[0]
    out = np.zeros(n)
    L = int(half_width)
    if L < 1 or n < L:
        return out
    taper = np.exp(-0.5 * ((np.arange(L) + 0.5) / (L / 2)) ** 2)  # by distance from the boundary
    need = max(2, L // 2)
    # Blocks with L blocks on both sides, batched: the same kernel over the windows z[i - L : i + L].
    inside = np.arange(L, n - L + 1)
    for c0 in range(0, inside.size, 256):  # chunks bound the (chunk, 2L, 2L) similarities
        at = inside[c0 : c0 + 256]
        windows = z[at[:, None] + np.arange(-L, L)]
        out[at] = _novelty(windows, L, taper[::-1], taper)
    # Near the ends the kernel is cut to the blocks that exist.
    for i in [*range(need, min(L, n - need + 1)), *range(max(L, n - L + 1), n - need + 1)]:
        p0, f1 = max(0, i - L), min(n, i + L)
        out[i] = _novelty(z[None, p0:f1], i - p0, taper[: i - p0][::-1], taper[: f1 - i])[0]
    return out


def _novelty(windows: np.ndarray, split: int, past: np.ndarray, future: np.ndarray) -> np.ndarray:
    """Novelty at the boundary after ``split`` rows of each window ``(m, rows, d)``, with these tapers."""
    d = windows.shape[2]
    gram = windows @ windows.transpose(0, 2, 1)
    sq = np.einsum("mii->mi", gram)
    s = np.exp(-0.5 * np.maximum(sq[:, :, None] + sq[:, None, :] - 2.0 * gram, 0.0) / max(d, 1))

    def within(block: np.ndarray, w: np.ndarray) -> np.ndarray:
        # The weighted mean over distinct pairs: the full quadratic form less its diagonal.
        diagonal = np.einsum("mii->mi", block)
        return (np.einsum("mij,i,j->m", block, w, w) - diagonal @ (w * w)) / (w.sum() ** 2 - w @ w)

    across = np.einsum("mij,i,j->m", s[:, :split, split:], past, future) / (past.sum() * future.sum())
    return 0.5 * (within(s[:, :split, :split], past) + within(s[:, split:, split:], future)) - across


def section_boundaries(novelty: np.ndarray, half_width: int, threshold: float = NOVELTY_THRESHOLD) -> np.ndarray:
    """Blocks (int64, increasing) where a new section starts: novelty peaks (see the module docstring)."""
    v = np.asarray(novelty, dtype=np.float64)
    L = max(1, int(half_width))
    if v.size == 0:
        return np.zeros(0, dtype=np.int64)
    padded = np.pad(v, L, constant_values=-np.inf)
    window_max = np.lib.stride_tricks.sliding_window_view(padded, 2 * L + 1).max(axis=1)
    peaks = np.flatnonzero((v >= window_max) & (v >= threshold))
    # Equal neighbours (a plateau) would each be a maximum; keep the first of any run closer than L.
    kept: list[int] = []
    for p in peaks.tolist():
        if not kept or p - kept[-1] > L:
            kept.append(p)
    return np.asarray(kept, dtype=np.int64)
