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
from .files import UnsafeFileError, open_regular
from .limits import MAX_AUDIO_BYTES, MAX_CHANNELS, MAX_SAMPLE_RATE

# RIFF header, format chunk and the first chunks after it: enough to find "fmt " in any WAV a tool writes.
_HEADER_BYTES = 4096

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


def _check_header(name: str, head: bytes) -> None:
    """The format chunk's channel count and rate, checked before scipy divides by them or sizes arrays with them."""
    if head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
        return  # not a WAV file: scipy says so in its own words
    endian = ">" if head[:4] == b"RIFX" else "<"
    at = 12
    while at + 8 <= len(head):
        chunk, size = head[at : at + 4], struct.unpack(endian + "I", head[at + 4 : at + 8])[0]
        if chunk == b"fmt " and at + 16 <= len(head):
            channels, rate = struct.unpack(endian + "HI", head[at + 10 : at + 16])
            if not 1 <= channels <= MAX_CHANNELS:
                raise AudioError(
                    f"Cannot read {name} as a WAV file: its header gives {channels} channels "
                    f"(the engine reads 1 to {MAX_CHANNELS}); re-export the audio"
                )
            if not 1 <= rate <= MAX_SAMPLE_RATE:
                raise AudioError(
                    f"Cannot read {name} as a WAV file: its header gives sample rate {rate} Hz "
                    f"(the engine reads 1 to {MAX_SAMPLE_RATE:,} Hz); re-export the audio"
                )
            return
        at += 8 + size + (size & 1)


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
        # A FIFO, device or socket is refused before scipy reads (a FIFO would block, /dev/zero never ends).
        fd = open_regular(name, os.O_RDONLY, "audio file")
        with os.fdopen(fd, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_AUDIO_BYTES:
                raise AudioError(
                    f"Audio file {name} is {size:,} bytes, more than the limit of {MAX_AUDIO_BYTES:,}; "
                    "use a shorter excerpt"
                )
            _check_header(name, file.read(_HEADER_BYTES))
            file.seek(0)
            sample_rate, data = wavfile.read(file, mmap=False)
    except AudioError:
        raise
    except UnsafeFileError as exc:
        raise AudioError(str(exc)) from None
    except FileNotFoundError:
        raise AudioError(f"Audio file not found: {name}") from None
    except IsADirectoryError:
        raise AudioError(f"Audio path is a folder, not a WAV file: {name}") from None
    except (OSError, ValueError, EOFError, struct.error, MemoryError, ZeroDivisionError) as exc:
        # wavfile reports a non-WAV or damaged file through several exception types; the user only needs
        # to know which file failed and scipy's reason, on one line.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise AudioError(f"Cannot read {name} as a WAV file: {reason}") from exc
    if not 0 < sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"Cannot read {name} as a WAV file: its header gives sample rate {sample_rate} Hz "
            f"(the engine reads 1 to {MAX_SAMPLE_RATE:,} Hz)"
        )
    if data.ndim == 1:
        data = data.reshape(-1, 1)
    return pcm_to_float(data, np.float32), int(sample_rate)
