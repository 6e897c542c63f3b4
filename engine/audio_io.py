"""Reading audio into plain float arrays.

Conventions (shared with :mod:`.features`):

- Samples are laid out as ``(n_samples, n_channels)``, one row per sample instant (the WAV and ``aud``
  interleaving order, not librosa's ``(channels, n)``).
- "Full scale" is ``[-1, 1)``: integer PCM is divided by ``2**(bits - 1)`` (unsigned PCM is first centred on
  its mid value), so int16 ``-32768`` becomes ``-1.0``. Float data is passed through unchanged, values
  beyond full scale included.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from scipy.io import wavfile

from .errors import AudioError

__all__ = ["pcm_to_float", "read_wav"]


def pcm_to_float(data: np.ndarray, dtype: type[np.floating] = np.float32) -> np.ndarray:
    """Convert PCM samples of any integer, boolean or float dtype to floats at full scale ``[-1, 1)``.

    Parameters
    ----------
    data : np.ndarray
        Samples of any shape. Signed integers are divided by ``2**(bits - 1)``; unsigned integers (uint8
        WAV data, for example) are centred on ``2**(bits - 1)`` first; booleans become 0.0 and 1.0; floats are
        only cast.
    dtype : numpy float type
        The floating dtype of the result.

    Returns
    -------
    np.ndarray
        An array of ``dtype`` with the shape of ``data``; ``data`` itself when it already has that dtype.

    Raises
    ------
    AudioError
        For complex, string or object data.
    """
    data = np.asarray(data)
    kind = data.dtype.kind
    if kind == "f":
        return data.astype(dtype, copy=False)
    if kind == "b":
        return data.astype(dtype)
    if kind in "iu":
        half = 2.0 ** (8 * data.dtype.itemsize - 1)
        # Powers of two scale exactly, so this matches the integer grid bit for bit where dtype can hold it.
        out = data.astype(dtype)
        if kind == "u":
            out -= dtype(half)
        out *= dtype(1.0 / half)
        return out
    raise AudioError(f"Audio samples must be real numbers, got dtype {data.dtype}")


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a WAV file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read. Any PCM depth that ``scipy.io.wavfile`` supports is accepted: 8-bit unsigned,
        16-, 24- (delivered as left-justified int32), 32- and 64-bit signed integers, 32- and 64-bit float.

    Returns
    -------
    samples : np.ndarray
        float32 array of shape ``(n_samples, n_channels)`` at full scale ``[-1, 1)`` (see
        :func:`pcm_to_float`); mono files have one column. Float files are not clipped.
    sample_rate : int
        Samples per second per channel, in Hz.

    Raises
    ------
    AudioError
        If the file is missing, is not a WAV file, uses an unsupported encoding (mu-law, A-law, ...), or
        cannot be read. The one-line message names the path.
    """
    name = os.fspath(path)
    try:
        sample_rate, data = wavfile.read(name, mmap=False)
    except FileNotFoundError:
        raise AudioError(f"Audio file not found: {name}") from None
    except IsADirectoryError:
        raise AudioError(f"Audio path is a folder, not a WAV file: {name}") from None
    except (OSError, ValueError, EOFError, struct.error, MemoryError) as exc:
        # wavfile reports a non-WAV or damaged file through several exception types; the user only needs
        # to know which file failed and scipy's reason, on one line.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise AudioError(f"Cannot read {name} as a WAV file: {reason}") from exc
    if sample_rate <= 0:
        raise AudioError(f"Cannot read {name} as a WAV file: its header gives sample rate {sample_rate}")
    if data.ndim == 1:
        data = data.reshape(-1, 1)
    return pcm_to_float(data, np.float32), int(sample_rate)
