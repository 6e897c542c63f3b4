"""Small builders shared by the Blender tests: a synthesized song, and a saved scene with it as a sound strip."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_song(path: Path, seconds: float = 1.0, rate: int = 22050, beats_per_second: float = 4.0) -> Path:
    """A bass line with sharp plucked notes on every beat, as 16-bit WAV."""
    from scipy.io import wavfile

    t = np.arange(int(seconds * rate)) / rate
    song = 0.25 * np.sin(2 * np.pi * 110 * t)
    pluck = int(0.09 * rate)
    envelope = np.exp(-np.arange(pluck) / (0.02 * rate))
    for k in range(int(seconds * beats_per_second)):
        start = int(k * rate / beats_per_second)
        end = min(start + pluck, len(t))
        song[start:end] += 0.6 * np.sin(2 * np.pi * 880 * t[: end - start]) * envelope[: end - start]
    wavfile.write(path, rate, (np.clip(song, -1, 1) * 32767).astype(np.int16))
    return path
