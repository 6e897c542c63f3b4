"""Media files for the Blender tests, made on the spot: tones as WAV, or encoded with PyAV (MP3, FLAC, Ogg, MP4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (container, audio codec, channels, options): ffmpeg's own Vorbis encoder is experimental and stereo only.
ENCODINGS = {
    "mp3": ("mp3", "libmp3lame", 1, {}),
    "flac": ("flac", "flac", 1, {}),
    "ogg": ("ogg", "vorbis", 2, {"strict": "experimental"}),
    "mp4": ("mp4", "aac", 1, {}),
}


def tone(
    seconds: float, rate: int, freq: float, amplitude: float, start: float = 0.0, end: float | None = None
) -> np.ndarray:
    """A sine of ``amplitude`` that sounds from ``start`` to ``end`` seconds and is silent elsewhere."""
    t = np.arange(round(seconds * rate)) / rate
    on = (t >= start) & (t < (seconds if end is None else end))
    return (amplitude * np.sin(2 * np.pi * freq * t) * on).astype(np.float32)


def staircase(frames: int, rate: int, fps: int, freq: float, step: float) -> np.ndarray:
    """A sine whose amplitude is ``step * (k + 1)`` in the k-th frame: which frame plays where shows in its RMS.

    With a whole number of cycles per frame, frame k's RMS is exactly ``step * (k + 1) / sqrt(2)``.
    """
    per_frame = rate // fps
    t = np.arange(frames * per_frame) / rate
    amplitude = np.repeat(step * (np.arange(frames) + 1), per_frame)
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """32-bit float WAV."""
    from scipy.io import wavfile

    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, np.asarray(samples, dtype=np.float32))
    return path


def encode(path: Path, samples: np.ndarray, rate: int, kind: str, video_fps: int = 12) -> Path:
    """``samples`` (mono) encoded as ``kind`` (a key of ENCODINGS); an MP4 also gets a tiny H.264 video stream."""
    import av

    container_format, codec, channels, options = ENCODINGS[kind]
    layout = "stereo" if channels == 2 else "mono"
    path.parent.mkdir(parents=True, exist_ok=True)
    planes = np.repeat(np.asarray(samples, dtype=np.float32)[None, :], channels, axis=0)
    with av.open(str(path), "w", format=container_format) as out:
        audio = out.add_stream(codec, rate=rate, layout=layout, options=dict(options))
        video = None
        if kind == "mp4":
            video = out.add_stream("libx264", rate=video_fps)
            video.width = video.height = 16
            video.pix_fmt = "yuv420p"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        for packet in audio.encode(frame):
            out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
        if video is not None:
            for i in range(int(len(samples) / rate * video_fps)):
                picture = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 20 * i % 256, np.uint8), format="rgb24")
                picture.pts = i
                for packet in video.encode(picture):
                    out.mux(packet)
            for packet in video.encode():
                out.mux(packet)
    return path
