"""Tests for the musical features: engine.rhythm, engine.structure, engine.harmonic, engine.embedding,
engine.music, and the authors' smoothing in engine.postprocess.

Every signal is synthesised, so where the beats, the downbeats, the sections, the clicks and the notes are is
known exactly. 22.05 kHz keeps the songs cheap: the analysis hop is then 256 samples, 11.6 ms.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile
from scipy.signal import medfilt

from engine.catalog import FEATURE_NAMES, FEATURES, MUSIC_FEATURE_NAMES, SPECTRAL_FEATURE_NAMES
from engine.embedding import pca_embedding
from engine.errors import AudioError
from engine.features import FeatureSettings, analyze, compute_features
from engine.harmonic import hpss, running_median
from engine.postprocess import median_filter, median_kernel, noise_gate, postprocess, smooth
from engine.rhythm import beat_curves, estimate_tempo, tempo_from_beats
from engine.spectrogram import band_spectrogram, to_frames
from engine.structure import checkerboard_novelty, section_boundaries, self_similarity, standardize

SR = 22050
FPS = 30.0
ROOT = Path(__file__).resolve().parents[1]


def _decay(seconds: float, rate: float) -> np.ndarray:
    return np.exp(-np.arange(round(seconds * SR)) / (rate * SR))


def _place(song: np.ndarray, sound: np.ndarray, at_s: float) -> None:
    at = round(at_s * SR)
    end = min(song.size, at + sound.size)
    if at < end:
        song[at:end] += sound[: end - at]


def click_track(
    bpm: float, seconds: float = 12.0, offset_s: float = 0.3, accent_every: int = 0, accent_phase: int = 0
) -> tuple:
    """Noise clicks on every beat, and a kick under beats ``accent_phase``, ``accent_phase + accent_every`` ...
    (none if ``accent_every`` is 0); returns (song, beat times)."""
    rng = np.random.default_rng(7)
    song = np.zeros(round(seconds * SR))
    click = 0.5 * rng.standard_normal(round(0.01 * SR)) * _decay(0.01, 0.002)
    t = np.arange(round(0.15 * SR)) / SR
    kick = 0.9 * np.sin(2 * np.pi * (50 + 80 * np.exp(-t * 30)) * t) * np.exp(-t * 18)
    beats = np.arange(offset_s, seconds - 0.1, 60.0 / bpm)
    for i, b in enumerate(beats):
        _place(song, click, b)
        if accent_every and i % accent_every == accent_phase:
            _place(song, kick, b)
    return song, beats


def drum_loop(bpm: float, seconds: float = 12.0, offset_s: float = 0.2, hats_per_beat: int = 2) -> tuple:
    """Kick on beats 1 and 3, snare on 2 and 4, a closed hi-hat ``hats_per_beat`` times a beat (2: eighth notes,
    4: sixteenths); returns (song, beat times)."""
    rng = np.random.default_rng(11)
    song = np.zeros(round(seconds * SR))
    t = np.arange(round(0.2 * SR)) / SR
    kick = 0.8 * np.sin(2 * np.pi * (45 + 90 * np.exp(-t * 35)) * t) * np.exp(-t * 15)
    snare = (0.35 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 190 * t)) * np.exp(-t * 25)
    hat = 0.12 * rng.standard_normal(round(0.03 * SR)) * _decay(0.03, 0.006)
    hat = np.diff(hat, prepend=0.0)  # a crude high-pass: hats are bright
    beat_s = 60.0 / bpm
    beats = np.arange(offset_s, seconds - 0.2, beat_s)
    for i, b in enumerate(beats):
        _place(song, kick if i % 2 == 0 else snare, b)
        for k in range(hats_per_beat):
            _place(song, hat, b + k * beat_s / hats_per_beat)
    return song, beats


def chord(freqs: tuple[float, ...], seconds: float, amplitude: float = 0.1, harmonics: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return sum(amplitude / h * np.sin(2 * np.pi * f * h * t + h) for f in freqs for h in range(1, harmonics + 1))  # type: ignore[return-value]


def nearest_error(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each time, the distance to the nearest target, in seconds."""
    return np.min(np.abs(times[:, None] - targets[None, :]), axis=1)


def assert_beats_match(found: np.ndarray, truth: np.ndarray) -> None:
    assert found.size >= truth.size - 2, (found, truth)  # at most the first and the last beat trimmed
    assert np.max(nearest_error(found, truth)) < 0.020, found  # every beat found is within 20 ms of a real one
    inner = truth[1:-1]
    assert np.max(nearest_error(inner, found)) < 0.020  # and every inner real beat is found


# --- the analysis grid ----------------------------------------------------------------------------------------


def test_band_powers_sum_to_the_mean_square_and_keep_semitones_apart() -> None:
    t = np.arange(SR) / SR
    spec = band_spectrogram(np.sin(2 * np.pi * 440.0 * t), SR, 256, 512 * 4)
    total = spec.power.sum(axis=1)
    np.testing.assert_allclose(total[4:-10], 0.5, rtol=1e-4)  # Parseval: a full-scale sine's mean square
    assert spec.power.shape[0] == -(-(SR + 1024) // 256) + 1 and total[-1] == 0.0  # the grid ends on silence
    peak = spec.band_key[np.argmax(spec.power[20])]
    assert peak == 0  # A440 is MIDI 69, key 0
    assert np.all(np.diff(spec.band_key) > 0) and spec.band_bins.sum() == 512 * 4 // 2 + 1


def test_to_frames_is_the_mean_or_max_over_each_window() -> None:
    rng = np.random.default_rng(9)
    values = rng.random((50, 3))
    hop = 10
    for starts, length in [(np.arange(-30, 520, 17), 40), (np.arange(0, 500, 7), 3), (np.array([600, 900]), 25)]:
        for how in ("mean", "max"):
            got = to_frames(values, hop, starts, length, how)
            for i, start in enumerate(starts):
                inside = [j for j in range(50) if start <= j * hop < start + length]
                if not inside:  # too short to hold a centre: the nearest analysis frame
                    inside = [int(np.clip(np.floor((start + (length - 1) / 2) / hop + 0.5), 0, 49))]
                expected = values[inside].mean(axis=0) if how == "mean" else values[inside].max(axis=0)
                np.testing.assert_allclose(got[i], expected, rtol=1e-12, err_msg=f"{how} {start} {length}")


@pytest.mark.parametrize("size", [3, 5, 9, 13, 17, 31, 33])
def test_running_median_is_the_median_of_each_edge_padded_window(size: int) -> None:
    rng = np.random.default_rng(size)
    values = rng.integers(0, 6, (23, 40)).astype(np.float32)  # many ties
    for axis in (0, 1):
        padded = np.pad(values, [(size // 2, size // 2) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=axis)
        got = running_median(values, size, axis)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.median(windows, axis=-1))


def test_hpss_parts_sum_to_the_power() -> None:
    power = np.random.default_rng(10).random((40, 30)).astype(np.float32)
    harmonic, percussive = hpss(power, 9, 13)
    np.testing.assert_allclose(harmonic + percussive, power, rtol=1e-6)
    assert np.all(harmonic >= 0) and np.all(percussive >= 0)


# --- tempo and beats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bpm", [72.0, 97.0, 120.0, 143.0, 165.0])
def test_click_track_tempo_and_beats(bpm: float) -> None:
    song, beats = click_track(bpm)
    result = analyze(song, SR, FPS)
    assert result.tempo_bpm == pytest.approx(bpm, abs=1.0)
    assert_beats_match(result.beat_times_s, beats)


@pytest.mark.parametrize(("bpm", "hats_per_beat"), [(88.0, 2), (128.0, 2), (90.0, 4)])
def test_drum_loop_tempo_and_beats(bpm: float, hats_per_beat: int) -> None:
    # Sixteenth-note hats at 90 BPM repeat every 0.5 s too: summed over bands they would read as 120 BPM.
    song, beats = drum_loop(bpm, hats_per_beat=hats_per_beat)
    result = analyze(song, SR, FPS)
    assert result.tempo_bpm == pytest.approx(bpm, abs=1.0)
    assert_beats_match(result.beat_times_s, beats)


def test_tempo_override_is_reported_and_tracked() -> None:
    song, beats = click_track(120.0)
    result = analyze(song, SR, FPS, settings=FeatureSettings(tempo_bpm=120.0))
    assert result.tempo_bpm == 120.0
    assert_beats_match(result.beat_times_s, beats)
    # A wrong override half the true tempo: the tracker then keeps every other click, still on the clicks.
    half = analyze(song, SR, FPS, settings=FeatureSettings(tempo_bpm=60.0))
    assert half.tempo_bpm == 60.0
    assert np.max(nearest_error(half.beat_times_s, beats)) < 0.020
    assert np.median(np.diff(half.beat_times_s)) == pytest.approx(1.0, abs=0.02)


def test_estimate_tempo_of_an_impulse_train_and_of_silence() -> None:
    frame_rate = 100.0
    onset = np.zeros(3000)
    onset[::50] = 1.0  # every 0.5 s: 120 BPM
    assert estimate_tempo(onset, frame_rate) == pytest.approx(120.0, abs=0.5)
    assert estimate_tempo(np.zeros(3000), frame_rate) == 0.0
    assert estimate_tempo(np.zeros(3), frame_rate) == 0.0


def test_tempo_from_beats_is_the_least_squares_period() -> None:
    rng = np.random.default_rng(0)
    beats = 0.1 + np.arange(40) * 0.5 + rng.uniform(-0.006, 0.006, 40)  # jitter of an analysis hop
    assert tempo_from_beats(beats) == pytest.approx(120.0, abs=0.2)
    assert tempo_from_beats(np.array([1.0])) == 0.0


# --- downbeats and the per-frame curves ---------------------------------------------------------------------


@pytest.mark.parametrize("meter", [4, 3])
def test_downbeats_fall_on_the_accented_beats(meter: int) -> None:
    bpm = 110.0
    song, beats = click_track(bpm, accent_every=meter, accent_phase=1)  # the first click is not a downbeat
    kicks = beats[1::meter]
    result = analyze(song, SR, FPS, settings=FeatureSettings(beats_per_bar=meter))
    assert result.downbeat_times_s.size >= kicks.size - 1
    assert np.max(nearest_error(result.downbeat_times_s, kicks)) < 0.020
    # bar_phase rises from 0 at each downbeat to 1 at the next: compare with the truth, on the circle.
    bar_s = meter * 60.0 / bpm
    times = np.arange(result.features["bar_phase"].size) / FPS
    expected = np.mod(times - kicks[0], bar_s) / bar_s
    error = np.abs(result.features["bar_phase"] - expected)
    assert np.max(np.minimum(error, 1.0 - error)[times < beats[-1]]) < 0.020 / bar_s


def test_beat_curves_pulse_phase_and_bar_on_a_known_grid() -> None:
    fps, period = 30.0, 0.5
    beats = np.arange(1.0, 9.0, period)  # beat frames 30, 45, 60 ...
    curves = beat_curves(300, fps, beats, period, first_downbeat=1, beats_per_bar=4, decay_s=0.1)
    pulse, phase, bar = curves["beat_pulse"], curves["beat_phase"], curves["bar_phase"]
    assert np.all(pulse[:30] == 0.0)  # before the first beat
    assert np.all(pulse[30:256:15] == 1.0)  # 1 on every beat frame
    np.testing.assert_allclose(pulse[31:45], np.exp(-np.arange(1, 15) / (0.1 * fps)))
    np.testing.assert_allclose(phase[30:45], np.arange(15) / 15, atol=1e-12)  # linear across the beat
    np.testing.assert_allclose(phase[15], 0.0, atol=1e-12)  # extrapolated before the first beat at the tempo
    np.testing.assert_allclose(phase[285], 0.0, atol=1e-12)  # and after the last
    # The second beat (frame 45) is the first downbeat: a bar is 4 beats = 60 frames.
    np.testing.assert_allclose(bar[45:105], np.arange(60) / 60, atol=1e-12)
    only_beats = beat_curves(300, fps, beats, period, 0, 4, decay_s=0.0)["beat_pulse"]
    assert set(np.flatnonzero(only_beats)) == set(range(30, 256, 15))
    assert all(np.all(v == 0) for v in beat_curves(10, fps, np.zeros(0), 0.0, 0, 4, 0.1).values())


# --- sections ---------------------------------------------------------------------------------------------


def test_sections_of_an_a_b_a_song() -> None:
    part = 16.0
    a = chord((261.63, 329.63, 392.0), part, harmonics=3)
    _a_beat, _ = click_track(120.0, seconds=part, offset_s=0.0)
    a = a + 0.5 * _a_beat
    rng = np.random.default_rng(5)
    b = chord((293.66, 369.99, 440.0, 554.37), part, amplitude=0.08, harmonics=6)
    b = b + 0.03 * np.diff(rng.standard_normal(b.size), prepend=0.0)  # a brighter, hissier texture
    song = np.concatenate([a, b, a])
    result = analyze(song, SR, 24.0)
    np.testing.assert_allclose(result.section_times_s, [part, 2 * part], atol=1.0)
    section = result.features["section"]
    assert section[8 * 24] == 0 and section[24 * 24] == 1 and section[40 * 24] == 2
    frames = result.frames(result.section_times_s, 24.0)
    assert np.all(np.abs(frames - np.array([part, 2 * part]) * 24) <= 24)
    # The feature steps on exactly the frames the section markers go on, also where a section time lies in the
    # first half of a frame (at 25 fps the first is at frame 395.3: marker and step both on 395).
    for fps in (24.0, 25.0, 23.976):
        at = analyze(song, SR, fps)
        steps = np.flatnonzero(np.diff(at.features["section"])) + 1
        np.testing.assert_array_equal(steps, at.frames(at.section_times_s, fps))


def test_novelty_peaks_at_the_change_of_a_block_matrix() -> None:
    rng = np.random.default_rng(1)
    offset = np.array([1.0, 0, 0, 1, 0, 0])
    features = np.vstack([rng.normal(0, 0.1, (40, 6)) + offset, rng.normal(0, 0.1, (30, 6))])
    novelty = checkerboard_novelty(standardize(features, floor=0.5), 8)
    assert int(np.argmax(novelty)) == 40
    np.testing.assert_array_equal(section_boundaries(novelty, 8), [40])
    # Without the floor the noise of the steady columns is blown up to unit variance; the change still wins.
    assert int(np.argmax(checkerboard_novelty(standardize(features), 8))) == 40
    steady = checkerboard_novelty(standardize(rng.normal(0, 1, (120, 25))), 16)
    assert section_boundaries(steady, 16).size == 0  # noise without structure has no sections
    np.testing.assert_allclose(checkerboard_novelty(standardize(np.ones((50, 4))), 8), 0.0, atol=1e-12)


@pytest.mark.parametrize("i", [3, 5, 6, 30, 54, 57])
def test_novelty_is_foote_kernel_on_the_whole_matrix(i: int) -> None:
    # The banded, batched computation equals the checkerboard kernel (diagonal left out) laid on the full matrix,
    # cut to the blocks that exist near the ends.
    z = standardize(np.random.default_rng(8).normal(0, 1, (60, 5)))
    full = self_similarity(z)
    L = 6
    taper = np.exp(-0.5 * ((np.arange(L) + 0.5) / (L / 2)) ** 2)
    p0, f1 = max(0, i - L), min(60, i + L)
    weight = np.r_[taper[: i - p0][::-1], taper[: f1 - i]]
    sign = np.r_[-np.ones(i - p0), np.ones(f1 - i)]
    block = full[p0:f1, p0:f1]
    kernel = np.outer(weight, weight) * np.outer(sign, sign)
    np.fill_diagonal(kernel, 0.0)
    k = i - p0
    expected = (
        0.5
        * (
            (kernel * block)[:k, :k].sum() / kernel[:k, :k].sum()
            + (kernel * block)[k:, k:].sum() / kernel[k:, k:].sum()
        )
        - (np.abs(kernel) * block)[:k, k:].sum() / np.abs(kernel)[:k, k:].sum()
    )
    assert checkerboard_novelty(z, L)[i] == pytest.approx(expected, rel=1e-12)


# --- harmonic and percussive parts, pitch -------------------------------------------------------------------


def test_percussive_part_holds_the_clicks_and_harmonic_part_the_chord() -> None:
    clicks, beats = click_track(100.0, seconds=8.0, offset_s=0.5)
    pad = chord((220.0, 277.18, 329.63), 8.0, amplitude=0.1)
    pad_power = 3 * 0.1**2 / 2
    result = compute_features(clicks + pad, SR, FPS)
    harmonic, percussive = result["harmonic"], result["percussive"]
    click_frames = np.floor(beats * FPS).astype(int)
    near_click = np.zeros(harmonic.size, dtype=bool)
    for f in click_frames:
        near_click[max(0, f - 4) : f + 5] = True
    between = ~near_click
    between[:10] = between[-10:] = False  # away from the ends, where the filters see the edge
    # Between clicks: the chord is all harmonic, and almost none of it leaks into the percussive part. (Frame by
    # frame the chord's power itself wavers with the beating of its partials in a 23 ms window, so compare means.)
    assert np.mean(harmonic[between]) == pytest.approx(pad_power, rel=0.05)
    assert np.max(percussive[between] / harmonic[between]) < 0.05
    # On the clicks: the percussive part jumps far above its level between clicks; the harmonic one barely moves.
    # (Analysis frames are centred, so a click near the start of a video frame shares its energy with the one before.)
    inner = click_frames[1:-1]
    on_click = np.max([percussive[inner - 1], percussive[inner], percussive[inner + 1]], axis=0)
    assert np.min(on_click) > 10 * np.max(percussive[between])
    assert np.max(harmonic[near_click][10:-10]) < 2.0 * pad_power


@pytest.mark.parametrize(("freq_hz", "pitch_class", "name"), [(440.0, 9, "chroma_a"), (261.63, 0, "chroma_c")])
def test_chroma_of_a_pure_tone_peaks_at_its_pitch_class(freq_hz: float, pitch_class: int, name: str) -> None:
    t = np.arange(2 * SR) / SR
    result = compute_features(0.3 * np.sin(2 * np.pi * freq_hz * t), SR, FPS)
    chroma_names = [n for n in MUSIC_FEATURE_NAMES if n.startswith("chroma_")]
    assert chroma_names.index(name) == pitch_class
    middle = slice(5, 55)
    np.testing.assert_array_equal(result[name][middle], 1.0)
    others = np.stack([result[n][middle] for n in chroma_names if n != name])
    assert others.max() < 0.2
    np.testing.assert_array_equal(result["pitch_class"][middle], pitch_class)


# --- the embedding ------------------------------------------------------------------------------------------


def test_pca_embedding_matches_the_correlation_eigenvectors_with_fixed_signs() -> None:
    rng = np.random.default_rng(2)
    latent = rng.standard_normal((500, 3))
    data = latent @ rng.standard_normal((3, 7)) + 0.05 * rng.standard_normal((500, 7))
    data[:, 2] *= 1000.0  # units do not matter after standardising
    out = pca_embedding(data, 5)
    z = (data - data.mean(axis=0)) / data.std(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(z, rowvar=False, bias=True))
    order = np.argsort(eigenvalues)[::-1]
    for k in range(5):
        axis = eigenvectors[:, order[k]]
        axis = axis * np.sign(axis[np.argmax(np.abs(axis))])
        np.testing.assert_allclose(out[:, k], z @ axis, atol=1e-8)
        assert out[:, k].var() == pytest.approx(eigenvalues[order[k]], rel=1e-9)
    np.testing.assert_allclose(pca_embedding(-data, 5), -out, atol=1e-8)  # the sign follows the data
    assert np.all(pca_embedding(np.ones((10, 4)), 3) == 0.0)


def test_song_embedding_is_deterministic_and_decorrelated() -> None:
    song, _ = drum_loop(120.0, seconds=6.0)
    song = song + chord((220.0, 330.0), 6.0) * np.linspace(0, 1, song.size)
    first = compute_features(song, SR, FPS)
    second = compute_features(song.copy(), SR, FPS)
    embed = np.stack([first[f"embed_{k}"] for k in range(8)])
    np.testing.assert_array_equal(embed, np.stack([second[f"embed_{k}"] for k in range(8)]))
    correlation = np.corrcoef(embed)
    np.testing.assert_allclose(correlation, np.eye(8), atol=1e-8)
    variances = embed.var(axis=1)
    assert np.all(np.diff(variances) <= 1e-9)


# --- the whole bake ------------------------------------------------------------------------------------------


def test_every_feature_is_described_once_and_baked() -> None:
    assert tuple(FEATURES) == FEATURE_NAMES == SPECTRAL_FEATURE_NAMES + MUSIC_FEATURE_NAMES
    for spec in FEATURES.values():
        assert spec.label and spec.description and spec.units
    song, _ = click_track(120.0, seconds=3.0)
    result = compute_features(song, SR, FPS)
    assert tuple(result) == FEATURE_NAMES
    assert all(np.isfinite(v).all() and v.shape == (90,) for v in result.values())


def test_silence_gives_zero_musical_features() -> None:
    result = analyze(np.zeros(SR * 3), SR, FPS)
    assert result.tempo_bpm == 0.0 and result.beat_times_s.size == 0 and result.section_times_s.size == 0
    for name in MUSIC_FEATURE_NAMES:
        assert np.all(result.features[name] == 0.0), name


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (FeatureSettings(tempo_bpm=5.0), "tempo_bpm"),
        (FeatureSettings(tempo_bpm=math.nan), "tempo_bpm"),
        (FeatureSettings(beats_per_bar=0), "beats_per_bar"),
        (FeatureSettings(beats_per_bar=2.5), "beats_per_bar"),  # type: ignore[arg-type]
        (FeatureSettings(beat_decay_s=-0.1), "beat_decay_s"),
    ],
)
def test_bad_rhythm_settings_raise_naming_them(settings: FeatureSettings, named: str) -> None:
    with pytest.raises(AudioError, match=named):
        compute_features(np.zeros(1000), SR, FPS, settings=settings)


def test_cli_prints_the_new_features_and_the_events(tmp_path: Path) -> None:
    song, beats = click_track(120.0, seconds=6.0)
    wav = tmp_path / "clicks.wav"
    wavfile.write(wav, SR, song.astype(np.float32))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-m", "engine", "features", str(wav), "--fps", "30", "--tempo-bpm", "120", "--events"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["tempo_bpm"] == 120.0
    assert np.max(nearest_error(np.array(printed["beats_s"]), beats)) < 0.020
    assert set(printed) == {"tempo_bpm", "beats_s", "downbeats_s", "sections_s"}
    run = subprocess.run(
        [sys.executable, "-m", "engine", "features", str(wav), "--fps", "30"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    values = json.loads(run.stdout)
    assert tuple(values) == FEATURE_NAMES and max(values["beat_pulse"]) == 1.0


# --- the authors' smoothing ---------------------------------------------------------------------------------


def authors_noise_gate(values: np.ndarray, p: float) -> np.ndarray:
    """Transcribed from the authors' description: threshold p (max - min) + min, |v| below it becomes 0."""
    out = values.copy()
    threshold = p * (values.max() - values.min()) + values.min()
    out[np.abs(out) < threshold] = 0
    return out


def authors_envelope(values: np.ndarray, alpha: float) -> np.ndarray:
    """Instant attack (|cur| > |prev| takes cur), else (1 - alpha) cur + alpha prev."""
    out = np.empty_like(values)
    prev = values[0]
    for i, cur in enumerate(values):
        prev = cur if abs(cur) > abs(prev) else (1 - alpha) * cur + alpha * prev
        out[i] = prev
    return out


@pytest.mark.filterwarnings("ignore:kernel_size exceeds volume extent")  # scipy's note on the short curve
@pytest.mark.parametrize("kernel", [1, 3, 5, 9, 31])
def test_median_filter_is_scipy_medfilt(kernel: int) -> None:
    rng = np.random.default_rng(kernel)
    values = rng.standard_normal(200) + (rng.random(200) < 0.05) * 10
    np.testing.assert_array_equal(median_filter(values, kernel), medfilt(values, kernel))
    np.testing.assert_array_equal(median_filter(values[:4], kernel), medfilt(values[:4], kernel))


def test_median_filter_rejects_an_even_kernel_and_maps_seconds_to_odd_frames() -> None:
    with pytest.raises(AudioError, match="kernel"):
        median_filter(np.ones(5), 4)
    assert [median_kernel(s, 30.0) for s in (0.0, 0.05, 0.1, 0.2, 1.0)] == [1, 1, 3, 7, 31]


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_noise_gate_is_the_authors(p: float) -> None:
    rng = np.random.default_rng(3)
    for values in (rng.random(300), rng.standard_normal(300), np.full(5, 2.0)):
        np.testing.assert_array_equal(noise_gate(values, p), authors_noise_gate(values, p))
    with pytest.raises(AudioError, match="fraction"):
        noise_gate(np.ones(3), 1.5)


def test_release_only_envelope_is_the_authors_envelope_follower() -> None:
    values = np.random.default_rng(4).random(400)
    fps, release_s = 30.0, 0.25
    alpha = math.exp(-1 / (release_s * fps))
    np.testing.assert_allclose(smooth(values, fps, 0.0, release_s), authors_envelope(values, alpha), rtol=1e-12)


def test_postprocess_chains_median_envelope_then_gate() -> None:
    rng = np.random.default_rng(6)
    curve = rng.random(240)
    out = postprocess({"x": curve}, 30.0, normalization="minmax", release_s=0.2, median_s=0.2, gate=0.3)["x"]
    expected = authors_noise_gate(smooth(medfilt((curve - curve.min()) / np.ptp(curve), 7), 30.0, 0.0, 0.2), 0.3)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    with pytest.raises(AudioError, match="median_s"):
        postprocess({"x": curve}, 30.0, median_s=-1.0)
    with pytest.raises(AudioError, match="gate"):
        postprocess({"x": curve}, 30.0, gate=1.5)
