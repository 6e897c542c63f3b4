"""Time the feature bake: the spectral features (the previous set) beside every feature (with the musical ones),
and the vectorised spectral extractor against the per-frame reference loop, side by side in one run.

Run from the repository root: ``OMP_NUM_THREADS=1 python bench/bench_features.py``. The signal is a
deterministic 3-minute stereo 44.1 kHz mix (a chord, a kick drum every half second, hi-hat noise bursts and a
noise floor), so runs are comparable. Prints the times (best of 3, wall clock and CPU), the speed-up over the
loop, checks the two agree, and times the whole ``python -m engine features`` process.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from reference_features import compute_features_loop  # noqa: E402

from engine.features import (  # noqa: E402
    FEATURE_NAMES,
    SPECTRAL_FEATURE_NAMES,
    compute_features,
    compute_spectral_features,
    frame_count,
)
from engine.postprocess import postprocess  # noqa: E402

SAMPLE_RATE = 44100
SECONDS = 180
FPS = 30.0


def synthesise(seconds: int = SECONDS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A deterministic stereo test song, float32 of shape (n, 2), peaking below full scale."""
    rng = np.random.default_rng(2024)
    n = seconds * sr
    t = np.arange(n) / sr
    left = sum(0.12 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63))
    right = sum(0.12 * np.sin(2 * np.pi * f * t + 0.3) for f in (164.81, 246.94, 329.63))
    beat = np.arange(0, n, sr // 2)
    kick_t = np.arange(int(0.15 * sr)) / sr
    kick = 0.6 * np.sin(2 * np.pi * (50.0 + 100.0 * np.exp(-kick_t * 30)) * kick_t) * np.exp(-kick_t * 20)
    hat = 0.15 * rng.standard_normal(int(0.03 * sr)) * np.exp(-np.arange(int(0.03 * sr)) / (0.005 * sr))
    drums = np.zeros(n)
    for i, at in enumerate(beat):
        drums[at : at + len(kick)] += kick[: n - at]
        hat_at = at + sr // 4
        if i % 2 and hat_at < n:
            drums[hat_at : hat_at + len(hat)] += hat[: n - hat_at]
    floor = 1e-3 * rng.standard_normal((n, 2))
    return (np.stack([left + drums, right + drums], axis=1) + floor).astype(np.float32)


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    wall, _, result = best_of_with_cpu(repeats, fn)
    return wall, result


def best_of_with_cpu(repeats: int, fn: Callable[[], object]) -> tuple[float, float, object]:
    """Best wall-clock and best CPU (process) time of ``repeats`` calls, and the last result."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    return best, best_cpu, result


def main() -> None:
    audio = synthesise()
    n_frames = frame_count(len(audio), SAMPLE_RATE, FPS)
    vectorised_s, spectral_cpu_s, fast = best_of_with_cpu(3, lambda: compute_spectral_features(audio, SAMPLE_RATE, FPS))
    all_s, all_cpu_s, _ = best_of_with_cpu(3, lambda: compute_features(audio, SAMPLE_RATE, FPS))
    bake_s, bake_cpu_s, _ = best_of_with_cpu(
        3, lambda: postprocess(compute_features(audio, SAMPLE_RATE, FPS), FPS, "minmax", 0.0, 0.2, median_s=0.1)
    )
    print(
        f"bake {SECONDS // 60} min stereo {SAMPLE_RATE / 1000:g} kHz @ {FPS:g} fps, best of 3, wall (CPU): "
        f"previous {len(SPECTRAL_FEATURE_NAMES)} spectral features {vectorised_s:.3f} s ({spectral_cpu_s:.3f} s); "
        f"all {len(FEATURE_NAMES)} features {all_s:.3f} s ({all_cpu_s:.3f} s); "
        f"all + minmax, median and release {bake_s:.3f} s ({bake_cpu_s:.3f} s)"
    )
    loop_s, slow = best_of(1, lambda: compute_features_loop(audio, SAMPLE_RATE, FPS))
    worst = max(
        float(np.max(np.abs(fast[k] - slow[k])) / max(float(np.max(np.abs(slow[k]))), 1e-300))  # type: ignore[index]
        for k in SPECTRAL_FEATURE_NAMES
    )
    print(
        f"spectral features {SECONDS // 60} min stereo {SAMPLE_RATE / 1000:g} kHz @ {FPS:g} fps ({n_frames} frames): "
        f"vectorised {vectorised_s:.3f} s, per-frame loop {loop_s:.2f} s, speed-up {loop_s / vectorised_s:.0f}x "
        f"(max deviation {worst:.1e} of each feature's range)"
    )
    cli_s = time_cli(audio)
    print(
        f"python -m engine features on that song as a 16-bit WAV, whole process (start-up, read, analyse, print "
        f"JSON): {cli_s:.2f} s, best of 3"
    )


def time_cli(audio: np.ndarray) -> float:
    """The user-facing figure: the whole ``python -m engine features`` process on a WAV file."""
    import subprocess
    import tempfile

    from scipy.io import wavfile

    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "song.wav"
        wavfile.write(wav, SAMPLE_RATE, (np.clip(audio, -1, 1) * 32767).astype(np.int16))
        command = [sys.executable, "-m", "engine", "features", str(wav), "--fps", str(FPS)]

        def run() -> None:
            subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)

        return best_of(3, run)[0]


if __name__ == "__main__":
    main()
