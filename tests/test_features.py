"""Tests for engine.audio_io, engine.features and engine.postprocess.

Signals are synthesised so that the expected value of each feature is known in closed form: at 44.1 kHz and
20 fps a frame is 2205 samples, which holds a whole number of periods of 100 Hz, 1 kHz and 8 kHz tones, so
every frame of a steady tone is identical.
"""

from __future__ import annotations

import math
import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.io import wavfile

import engine.features as features_module
from engine.audio_io import pcm_to_float, read_wav
from engine.catalog import FEATURES
from engine.errors import AudioError
from engine.features import FEATURE_NAMES, FeatureSettings, compute_features, frame_count
from engine.postprocess import NORMALIZATIONS, normalize, postprocess, smooth
from tests.reference_features import compute_features_loop

SR = 44100
FPS = 20.0
HOP = 2205  # samples per frame at SR and FPS
RECT = FeatureSettings(spectrum_window="rect")


def tone(freq_hz: float, seconds: float = 2.0, amplitude: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


def assert_valid(result: dict[str, np.ndarray], n_frames: int) -> None:
    assert tuple(result) == FEATURE_NAMES
    for name, values in result.items():
        assert values.dtype == np.float64, name
        assert values.shape == (n_frames,), name
        assert np.isfinite(values).all(), name


# --- features of known signals ------------------------------------------------------------------------------


@pytest.mark.parametrize("amplitude", [0.01, 0.25, 0.5, 1.0])
def test_rms_of_a_sine_is_amplitude_over_root_two(amplitude: float) -> None:
    rms = compute_features(tone(1000.0, amplitude=amplitude), SR, FPS)["rms"]
    assert len(rms) == 40
    np.testing.assert_allclose(rms, amplitude / math.sqrt(2), rtol=1e-9)


def test_centroid_of_a_tone_sits_at_its_frequency_with_hann() -> None:
    centroid = compute_features(tone(1000.0), SR, FPS)["centroid"]
    np.testing.assert_allclose(centroid, 1000.0, rtol=0.02)


def test_rectangular_window_lifts_the_centroid_as_in_the_authors_code() -> None:
    hann = np.median(compute_features(tone(1000.0), SR, FPS)["centroid"])
    rect = np.median(compute_features(tone(1000.0), SR, FPS, settings=RECT)["centroid"])
    assert rect > hann + 200.0  # leakage of the untapered window: about 1.3 kHz
    assert 1200.0 < rect < 1400.0


def test_white_noise_centroid_is_near_a_quarter_of_the_sample_rate() -> None:
    noise = np.random.default_rng(0).standard_normal(SR * 2)
    result = compute_features(noise, SR, FPS)
    np.testing.assert_allclose(np.median(result["centroid"]), SR / 4, rtol=0.03)
    # A flat spectrum is symmetric about sr/4 and has a spread of sr/sqrt(48) (uniform on [0, sr/2]).
    np.testing.assert_allclose(np.median(result["spread"]), SR / math.sqrt(48), rtol=0.05)
    assert abs(np.median(result["skewness"])) < 0.05


def test_steady_tone_has_no_flux_after_it_starts() -> None:
    audio = np.concatenate([np.zeros(10 * HOP), tone(1000.0, seconds=1.5)])  # starts exactly at frame 10
    result = compute_features(audio, SR, FPS)
    flux, onset = result["flux"], result["onset"]
    assert flux[0] == 0.0 and onset[0] == 0.0
    assert np.all(flux[:10] == 0.0)
    assert flux[10] > 100.0
    assert flux[11:].max() < 1e-6 * flux[10]
    assert int(np.argmax(onset)) == 10
    assert onset[11:].max() < 1e-6 * onset[10]


@pytest.mark.parametrize("align", ["start", "center"])
def test_click_track_gives_onsets_on_the_click_frames(align: str) -> None:
    rng = np.random.default_rng(1)
    audio = 1e-3 * rng.standard_normal(3 * SR)  # a noise floor, so that the log compression has work to do
    click_frames = [7, 19, 33, 48]
    for frame in click_frames:
        # The click sits in the middle of the frame's window (start-aligned) or right after the frame's
        # time (centred), so it falls in exactly one window either way.
        at = frame * HOP + (HOP // 2 if align == "start" else 100)
        audio[at : at + 32] += np.hanning(32) * rng.choice([-1.0, 1.0], 32)
    onset = compute_features(audio, SR, FPS, settings=FeatureSettings(align=align))["onset"]
    top = sorted(np.argsort(onset)[-len(click_frames) :].tolist())
    assert top == click_frames
    others = np.delete(onset, click_frames)
    assert onset[click_frames].min() > 10 * np.median(others)


@pytest.mark.parametrize(("freq_hz", "band"), [(100.0, "band_low"), (1000.0, "band_mid"), (8000.0, "band_high")])
@pytest.mark.parametrize("window", ["hann", "rect"])
def test_band_energies_put_a_tone_in_its_band(freq_hz: float, band: str, window: str) -> None:
    result = compute_features(tone(freq_hz), SR, FPS, settings=FeatureSettings(spectrum_window=window))
    total = result["band_low"] + result["band_mid"] + result["band_high"]
    # Parseval: the bands partition the frame's (window-weighted) mean square, 1/2 for a full-scale sine.
    np.testing.assert_allclose(total, 0.5, rtol=1e-5)
    assert np.all(result[band] > 0.99 * total)


def test_band_energies_sum_to_rms_squared_with_the_rectangular_window() -> None:
    audio = np.random.default_rng(2).standard_normal(SR) * 0.3
    result = compute_features(audio, SR, 24.0, settings=RECT)
    total = result["band_low"] + result["band_mid"] + result["band_high"]
    np.testing.assert_allclose(total, result["rms"] ** 2, rtol=1e-5)


def test_band_edges_move_the_split() -> None:
    result = compute_features(tone(1000.0), SR, FPS, settings=FeatureSettings(band_edges_hz=(2000.0, 6000.0)))
    assert np.all(result["band_low"] > 0.99 * 0.5)


# --- edge cases -------------------------------------------------------------------------------------------------


def test_silence_gives_exact_zeros() -> None:
    result = compute_features(np.zeros((SR, 2)), SR, FPS)
    assert_valid(result, 20)
    for values in result.values():
        assert np.all(values == 0.0)


def test_empty_audio_gives_zeros_of_the_requested_length() -> None:
    assert_valid(compute_features(np.zeros(0), SR, FPS), 0)
    result = compute_features(np.zeros((0, 2)), SR, FPS, n_frames=7)
    assert_valid(result, 7)
    assert all(np.all(v == 0.0) for v in result.values())


def test_a_single_sample() -> None:
    result = compute_features(np.array([0.5]), SR, FPS)
    assert_valid(result, 1)
    assert result["rms"][0] == pytest.approx(0.5 / math.sqrt(HOP))
    assert result["centroid"][0] == 0.0  # the periodic Hann window is 0 at the frame's first sample
    rect = compute_features(np.array([0.5]), SR, FPS, settings=RECT)
    assert_valid(rect, 1)
    assert rect["centroid"][0] == pytest.approx(SR / 4)  # an impulse has a flat spectrum


def test_non_finite_samples_are_treated_as_silence() -> None:
    audio = tone(440.0, seconds=1.0, amplitude=0.5)
    dirty = audio.copy()
    dirty[::97] = np.nan
    dirty[5::89] = np.inf
    dirty[7::113] = -np.inf
    result = compute_features(dirty, SR, FPS)
    assert_valid(result, 20)
    cleaned = np.where(np.isfinite(dirty), dirty, 0.0)
    expected = compute_features(cleaned, SR, FPS)
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(result[name], expected[name], rtol=1e-12, atol=0, err_msg=name)
    assert_valid(compute_features(np.full(1000, np.nan), SR, FPS), 1)
    assert_valid(compute_features(np.array([np.inf, -np.inf, 1e308, -1e308]), SR, FPS), 1)


def test_last_partial_frame_is_covered_and_zero_padded() -> None:
    audio = tone(1000.0, seconds=1.01, amplitude=0.8)  # 20 whole frames and 441 samples
    assert frame_count(len(audio), SR, FPS) == 21
    rms = compute_features(audio, SR, FPS)["rms"]
    assert len(rms) == 21
    np.testing.assert_allclose(rms[-1], 0.8 / math.sqrt(2) * math.sqrt(441 / HOP), rtol=1e-2)


def test_frames_after_the_end_are_silence() -> None:
    audio = tone(1000.0, seconds=1.0)
    result = compute_features(audio, SR, FPS, n_frames=30)
    assert_valid(result, 30)
    assert result["flux"][20] > 0.0  # the step from the tone to silence
    for values in result.values():
        assert np.all(values[21:] == 0.0)
    fewer = compute_features(audio, SR, FPS, n_frames=5)
    np.testing.assert_array_equal(fewer["rms"], result["rms"][:5])


def test_stereo_and_multichannel_are_averaged() -> None:
    rng = np.random.default_rng(3)
    left, right = rng.standard_normal(SR), tone(440.0, seconds=1.0)
    stereo = compute_features(np.stack([left, right], axis=1), SR, FPS)
    mono = compute_features((left + right) / 2, SR, FPS)
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(stereo[name], mono[name], rtol=1e-12, atol=1e-12, err_msg=name)
    opposite = compute_features(np.stack([right, -right, right, -right], axis=1), SR, FPS)
    assert np.all(opposite["rms"] == 0.0)


def test_int16_input_is_scaled_to_full_scale() -> None:
    pcm = np.round(tone(1000.0, seconds=1.0, amplitude=0.5) * 32767).astype(np.int16)
    as_int = compute_features(np.stack([pcm, pcm], axis=1), SR, FPS)
    as_float = compute_features(pcm / 32768.0, SR, FPS)
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(as_int[name], as_float[name], rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(as_int["rms"], 0.5 / math.sqrt(2), rtol=1e-4)


def test_frame_count() -> None:
    assert frame_count(SR * 180, SR, 30) == 5400
    assert frame_count(0, SR, 30) == 0
    assert frame_count(1, SR, 30) == 1
    assert frame_count(SR + 1, SR, 30) == 31
    assert frame_count(SR * 1001, SR, 30000 / 1001) == 30000  # NTSC rates must not gain an empty frame
    assert frame_count(SR, SR, 29.97) == 30


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"fps": 0.0}, "fps"),
        ({"fps": -24.0}, "fps"),
        ({"fps": math.nan}, "fps"),
        ({"fps": math.inf}, "fps"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": -44100}, "sample_rate"),
        ({"n_frames": -1}, "n_frames"),
        ({"settings": FeatureSettings(window_ms=0.001)}, "window_ms"),
        ({"settings": FeatureSettings(window_ms=-5.0)}, "window_ms"),
        ({"settings": FeatureSettings(band_edges_hz=(4000.0, 250.0))}, "band_edges_hz"),
        ({"settings": FeatureSettings(band_edges_hz=(250.0, 30000.0))}, "band_edges_hz"),
        ({"settings": FeatureSettings(band_edges_hz=(0.0, 250.0))}, "band_edges_hz"),
        ({"settings": FeatureSettings(align="end")}, "align"),  # type: ignore[arg-type]
        ({"settings": FeatureSettings(spectrum_window="kaiser")}, "spectrum_window"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_audio_error_naming_them(kwargs: dict, named: str) -> None:
    arguments = {"samples": np.zeros(1000), "sample_rate": SR, "fps": FPS, **kwargs}
    with pytest.raises(AudioError, match=named):
        compute_features(**arguments)


def test_bad_sample_arrays_raise_audio_error() -> None:
    with pytest.raises(AudioError):
        compute_features(np.zeros((10, 2, 2)), SR, FPS)
    with pytest.raises(AudioError):
        compute_features(np.zeros(10, dtype=complex), SR, FPS)


# --- the vectorised engine against the per-frame loop -----------------------------------------------------------


def _test_audio(sr: int, seconds: float) -> np.ndarray:
    """Stereo float32: noise, a tone only on the left, a gap of silence, and a burst."""
    rng = np.random.default_rng(4)
    n = round(seconds * sr)
    audio = 0.2 * rng.standard_normal((n, 2))
    audio[:, 0] += 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / sr)
    audio[n // 4 : n // 2, 1] = 0.0
    audio[n // 4 : n // 3, 0] = 0.0
    audio[2 * n // 3 : 2 * n // 3 + 200] += 0.8
    return audio.astype(np.float32)


def assert_matches_reference(result: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    # Magnitude spectra are float32 in the engine and float64 in the loop: compare to float32-ish precision,
    # relative to each value and to the feature's scale (skewness crosses zero, flux of a steady tone is ~0),
    # with an absolute floor for the dimensionless moments, whose float32 sums are noisy where they are ~0.
    # The oracle covers the spectral features; the musical ones have tests of their own (test_music.py).
    for name in reference:
        scale = float(np.max(np.abs(reference[name]), initial=0.0))
        floor = 1e-5 if name in ("skewness", "kurtosis") else 1e-9
        np.testing.assert_allclose(result[name], reference[name], rtol=1e-4, atol=1e-4 * scale + floor, err_msg=name)


@pytest.mark.parametrize("window", ["hann", "rect"])
@pytest.mark.parametrize("align", ["start", "center"])
@pytest.mark.parametrize("window_ms", [None, 23.0, 120.0])
def test_vectorised_matches_the_per_frame_loop(window: str, align: str, window_ms: float | None) -> None:
    sr, fps = 22050, 24.0  # 918.75 samples per frame: frame starts need rounding
    audio = _test_audio(sr, 1.5)
    options = FeatureSettings(window_ms=window_ms, align=align, spectrum_window=window)  # type: ignore[arg-type]
    n_frames = frame_count(len(audio), sr, fps) + 3  # and a few frames of silence after the end
    result = compute_features(audio, sr, fps, n_frames, options)
    assert_valid(result, n_frames)
    assert_matches_reference(result, compute_features_loop(audio, sr, fps, n_frames, options))


def test_block_boundaries_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = _test_audio(22050, 1.0)
    whole = compute_features(audio, 22050, 30.0)
    monkeypatch.setattr(features_module, "_BLOCK_VALUES", 3000)  # blocks of 5 frames
    blocked = compute_features(audio, 22050, 30.0)
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(blocked[name], whole[name], rtol=1e-6, atol=1e-9, err_msg=name)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    channels=st.integers(1, 6),
    n=st.integers(0, 4000),
    sample_rate=st.integers(8000, 192000),
    fps=st.floats(1.0, 120.0),
    window=st.sampled_from(["hann", "rect"]),
    align=st.sampled_from(["start", "center"]),
)
def test_any_input_gives_finite_features_of_the_right_length(
    data: st.DataObject, channels: int, n: int, sample_rate: int, fps: float, window: str, align: str
) -> None:
    dtype = data.draw(st.sampled_from([np.float64, np.float32, np.int16]))
    if dtype == np.int16:
        elements = st.integers(-32768, 32767)
    else:
        elements = st.floats(allow_nan=True, allow_infinity=True, width=np.dtype(dtype).itemsize * 8)
    samples = data.draw(hnp.arrays(dtype, (n, channels), elements=elements))
    n_frames = data.draw(st.none() | st.integers(0, 50))
    options = FeatureSettings(align=align, spectrum_window=window)  # type: ignore[arg-type]
    result = compute_features(samples, sample_rate, fps, n_frames, options)
    assert_valid(result, frame_count(n, sample_rate, fps) if n_frames is None else n_frames)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    channels=st.integers(1, 3),
    n=st.integers(1, 3000),
    sample_rate=st.sampled_from([8000, 22050, 44100, 48000]),
    fps=st.floats(5.0, 120.0),
    window=st.sampled_from(["hann", "rect"]),
    align=st.sampled_from(["start", "center"]),
    window_ms=st.none() | st.floats(1.0, 200.0),
)
def test_vectorised_matches_the_loop_on_arbitrary_audio(
    data: st.DataObject,
    channels: int,
    n: int,
    sample_rate: int,
    fps: float,
    window: str,
    align: str,
    window_ms: float | None,
) -> None:
    # Values below 1e-30 (-600 dB) are left out: the engine's float32 magnitudes underflow there, by design.
    elements = st.floats(-1.0, 1.0).map(lambda v: 0.0 if abs(v) < 1e-30 else v)
    samples = data.draw(hnp.arrays(np.float64, (n, channels), elements=elements))
    options = FeatureSettings(window_ms=window_ms, align=align, spectrum_window=window)  # type: ignore[arg-type]
    result = compute_features(samples, sample_rate, fps, None, options)
    assert_matches_reference(result, compute_features_loop(samples, sample_rate, fps, None, options))


# --- postprocessing -----------------------------------------------------------------------------------------


def test_minmax_maps_into_the_unit_interval() -> None:
    values = np.random.default_rng(5).normal(3.0, 2.0, 500)
    out = normalize(values, "minmax")
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, (values - values.min()) / np.ptp(values))


def test_percentile_normalisation_clips_outliers() -> None:
    values = np.concatenate([np.linspace(0.0, 1.0, 100), [1000.0]])
    out = normalize(values, "percentile", 5.0, 95.0)
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[50] == pytest.approx((values[50] - np.percentile(values, 5)) / np.ptp(np.percentile(values, [5, 95])))


@pytest.mark.parametrize("method", NORMALIZATIONS)
def test_constant_curves_normalise_to_zero(method: str) -> None:
    out = normalize(np.full(50, 3.5), method)
    expected = np.full(50, 3.5) if method == "none" else np.zeros(50)
    np.testing.assert_array_equal(out, expected)
    assert normalize(np.zeros(0), method).shape == (0,)


def test_unknown_normalisation_names_the_method() -> None:
    with pytest.raises(AudioError, match="loudest"):
        normalize(np.ones(3), "loudest")
    with pytest.raises(AudioError, match="loudest"):
        postprocess({"rms": np.ones(3)}, FPS, normalization="loudest")


def test_instant_attack_and_exponential_release() -> None:
    fps, release_s = 20.0, 0.5
    steps = np.array([0.0] * 5 + [1.0] * 10 + [0.0] * 20)
    out = smooth(steps, fps, attack_s=0.0, release_s=release_s)
    np.testing.assert_array_equal(out[:15], steps[:15])  # the rise is followed at once
    decay = math.exp(-1.0 / (release_s * fps))
    np.testing.assert_allclose(out[15:], decay ** np.arange(1, 21), rtol=1e-12)


def test_slow_attack_reaches_63_percent_after_one_time_constant() -> None:
    fps, attack_s = 30.0, 0.2
    out = smooth(np.r_[0.0, np.ones(40)], fps, attack_s=attack_s)
    np.testing.assert_allclose(out[1:], 1.0 - math.exp(-1.0 / (attack_s * fps)) ** np.arange(1, 41), rtol=1e-12)
    assert out[round(attack_s * fps)] == pytest.approx(1.0 - 1.0 / math.e)


def test_equal_attack_and_release_is_a_plain_one_pole_filter() -> None:
    values = np.random.default_rng(6).random(200)
    c = math.exp(-1.0 / (0.1 * 25.0))
    expected = [values[0]]
    for v in values[1:]:
        expected.append(c * expected[-1] + (1.0 - c) * v)
    np.testing.assert_allclose(smooth(values, 25.0, 0.1, 0.1), expected, rtol=1e-12)


def test_smoothing_is_fast_and_bounded() -> None:
    values = np.random.default_rng(7).random(10_000)
    started = time.perf_counter()
    out = smooth(values, 30.0, attack_s=0.05, release_s=0.4)
    assert time.perf_counter() - started < 0.1  # a few ms in practice; loose for slow CI machines
    assert values.min() <= out.min() and out.max() <= values.max()


@pytest.mark.parametrize(("attack_s", "release_s"), [(-0.1, 0.0), (0.0, -1.0), (math.nan, 0.0)])
def test_negative_times_raise(attack_s: float, release_s: float) -> None:
    with pytest.raises(AudioError, match="attack_s" if attack_s != 0.0 else "release_s"):
        smooth(np.ones(5), FPS, attack_s, release_s)


def test_postprocess_normalises_then_smooths_every_feature() -> None:
    feats = compute_features(_test_audio(22050, 1.0), 22050, 30.0)
    before = {k: v.copy() for k, v in feats.items()}
    out = postprocess(feats, 30.0, normalization="minmax", attack_s=0.0, release_s=0.2)
    assert tuple(out) == FEATURE_NAMES
    for name in FEATURE_NAMES:
        np.testing.assert_array_equal(feats[name], before[name])  # the input is untouched
        if FEATURES[name].normalize:
            assert out[name].min() >= 0.0 and out[name].max() <= 1.0
            np.testing.assert_allclose(out[name], smooth(normalize(feats[name], "minmax"), 30.0, 0.0, 0.2))
        else:  # a phase, an index or a pitch class keeps its own scale
            np.testing.assert_allclose(out[name], smooth(feats[name], 30.0, 0.0, 0.2))


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_postprocess_keeps_the_scale_of_phases_and_indices(method: str) -> None:
    """beat_phase, bar_phase, beat_pulse, section and pitch_class mean something raw: no normalisation touches them."""
    phase, pitch = np.linspace(0.0, 0.9, 50), np.arange(50.0) % 12
    out = postprocess({"beat_phase": phase, "pitch_class": pitch, "rms": 3 + phase}, 30.0, normalization=method)
    np.testing.assert_array_equal(out["beat_phase"], phase)
    np.testing.assert_array_equal(out["pitch_class"], pitch)
    assert out["rms"].max() == 1.0


# --- reading WAV files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "scale"), [(np.int16, 32768.0), (np.int32, 2.0**31), (np.float32, 1.0), (np.uint8, 128.0)]
)
@pytest.mark.parametrize("channels", [1, 2])
def test_read_wav_round_trips(tmp_path: Path, dtype: type, scale: float, channels: int) -> None:
    signal = tone(440.0, seconds=0.1, amplitude=0.5, sr=22050)
    signal = np.stack([signal, -signal], axis=1)[:, :channels]
    if dtype == np.uint8:
        data = np.round(signal * 127 + 128).astype(np.uint8)
        expected = (data.astype(np.float64) - 128) / scale
    elif np.dtype(dtype).kind == "i":
        data = np.round(signal * (scale - 1)).astype(dtype)
        expected = data / scale
    else:
        data = signal.astype(dtype)
        expected = data
    path = tmp_path / "sound.wav"
    wavfile.write(path, 22050, data if channels > 1 else data[:, 0])
    samples, sample_rate = read_wav(path)
    assert sample_rate == 22050
    assert samples.dtype == np.float32 and samples.shape == (len(signal), channels)
    np.testing.assert_allclose(samples, expected, rtol=1e-6, atol=1e-7)


def test_read_wav_24_bit(tmp_path: Path) -> None:
    values = np.array([0, 1, -1, 2**23 - 1, -(2**23), 4096], dtype=np.int64)
    frames = b"".join(int(v).to_bytes(3, "little", signed=True) for v in values)
    header = b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 48000, 48000 * 3, 3, 24)
    path = tmp_path / "24bit.wav"
    path.write_bytes(header + b"data" + struct.pack("<I", len(frames)) + frames)
    samples, sample_rate = read_wav(str(path))
    assert sample_rate == 48000 and samples.shape == (6, 1)
    np.testing.assert_allclose(samples[:, 0], values / 2.0**23, rtol=1e-6, atol=1e-9)


def test_read_wav_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match=re.escape(str(missing))):
        read_wav(missing)
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples")
    with pytest.raises(AudioError, match=re.escape(str(text))) as caught:
        read_wav(text)
    assert "\n" not in str(caught.value)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00")
    with pytest.raises(AudioError, match=re.escape(str(truncated))):
        read_wav(truncated)
    with pytest.raises(AudioError, match=re.escape(str(tmp_path))):
        read_wav(tmp_path)  # a folder


def test_pcm_to_float_scales_integer_types() -> None:
    np.testing.assert_array_equal(pcm_to_float(np.array([-32768, 0, 16384], np.int16)), [-1.0, 0.0, 0.5])
    np.testing.assert_array_equal(pcm_to_float(np.array([0, 128, 192], np.uint8)), [-1.0, 0.0, 0.5])
    assert pcm_to_float(np.array([0.25], np.float64), np.float64)[0] == 0.25
    with pytest.raises(AudioError):
        pcm_to_float(np.array(["a"]))
