"""The features that look across frames, as a musician hears the song: beats and bars, sections, harmonic and
percussive parts, pitch, and an embedding. :func:`analyze_music` computes them all from one mono signal.

It runs two analysis grids (:mod:`.spectrogram`): a fine one (hop ~11.6 ms, Hann window twice the hop) for
onsets, beats and energies, and a coarse one (hop four times, window eight times as long: ~93 ms at 44.1 kHz)
that resolves semitones for the harmonic/percussive split, chroma, sections and the embedding. Values reach
video frame ``i`` as :func:`.spectrogram.to_frames` describes: the maximum (onsets) or the mean (the rest) over
the analysis frames centred in the frame's window, the same window as the spectral features. The beat curves
are evaluated at the frame's time, ``i / fps`` s. Frames whose window starts at or after the end of the audio
are 0 in every feature, as the spectral features are.

The features (float64, one value per frame, always finite):

``onset_low``, ``onset_mid``, ``onset_high``
    Onset strength (:func:`.rhythm.onset_strength`) of the semitone bands below ``e0``, between ``e0`` and
    ``e1``, and above ``e1`` Hz (``band_edges_hz``, as for ``band_*``): the summed rise of ``log(1 + 1000 A)``
    with ``A`` a band's RMS amplitude. Dimensionless; 0 on steady sound, peaks on the frame a hit begins.
``harmonic``, ``percussive``
    Mean power of the sustained and of the percussive part (:mod:`.harmonic`), in the units of ``band_*``
    (mean square; a full-scale sine gives 0.5). They sum to the frame's window-weighted mean square.
``beat_phase``, ``beat_pulse``, ``bar_phase``
    See :func:`.rhythm.beat_curves`: the fraction of the current beat (0 to 1), 1 on each beat frame decaying
    as ``exp(-t / beat_decay_s)``, and the fraction of the current bar (0 on the downbeat). All 0 without beats.
``section``
    The index of the section the frame is in (0, 1, 2 ...; :mod:`.structure`), changing on the frame nearest each
    section time, the frame that section's marker goes on (:meth:`MusicAnalysis.frames`).
``chroma_c`` ... ``chroma_b``
    The power of each pitch class in the harmonic part (:func:`.harmonic.chroma`), divided by the frame's
    strongest, so the strongest reads 1; all 0 on a frame without pitched sound.
``pitch_class``
    The strongest pitch class, 0 (C) to 11 (B); a frame without pitched sound holds the previous frame's value.
``embed_0`` ... ``embed_7``
    :func:`.embedding.pca_embedding` of each frame's descriptors: 13 cepstral coefficients and 12 chroma values
    (means over the frame's window), ``log(x + 1e-10)`` of ``rms``, ``flux``, ``onset``, ``band_*``,
    ``harmonic`` and ``percussive``, ``centroid`` and ``spread``, ``asinh(skewness)`` and ``log(1 + kurtosis)``.
    Standard deviations of the standardised descriptors; ``embed_0`` moves most.

The events (tempo, beat, downbeat and section times) come back in a :class:`MusicAnalysis`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .catalog import EMBEDDING_COMPONENTS, MAX_TEMPO_BPM, MIN_TEMPO_BPM, MUSIC_FEATURE_NAMES
from .embedding import cepstrum, pca_embedding
from .errors import AudioError
from .harmonic import chroma, dominant_pitch_class, harmonic_mask, normalize_chroma
from .rhythm import (
    balanced_onset,
    beat_curves,
    downbeat_offset,
    estimate_tempo,
    onset_strength,
    tempo_from_beats,
    track_beats,
)
from .spectrogram import BandSpectrogram, analysis_hop, band_spectrogram, to_frames
from .structure import checkerboard_novelty, section_boundaries, standardize

__all__ = ["MusicAnalysis", "analyze_music", "check_music_settings"]

HPSS_TIME_S: float = 0.4
"""Length of the harmonic (along-time) median filter, in seconds."""
HPSS_BANDS: int = 13
"""Length of the percussive (along-frequency) median filter, in semitone bands: an octave."""
SECTION_BLOCK_S: float = 0.5
"""Length of the blocks compared by the self-similarity matrix, in seconds."""
SECTION_KERNEL_S: float = 8.0
"""Half-width of the checkerboard kernel in seconds: the shortest section found, and the context each side."""
CEPSTRAL_COEFFICIENTS: int = 13
CEPSTRUM_STEADY: float = 1.0
"""Floor on a cepstral coefficient's spread for sections. A change of ``g`` nepers in every band's power moves
``c_0`` by ``g * sqrt(bands)``: with the ~110 semitone bands at 44.1 kHz, 1 is a change of about 0.4 dB."""
CHROMA_STEADY: float = 0.05
"""Floor on a chroma value's spread for sections: a twentieth of the strongest pitch class."""
# Descriptors that grow with loudness enter the embedding as logs, so a few loud frames cannot dominate it.
_LOG_FLOOR = 1e-10
_ENERGY_DESCRIPTORS = ("rms", "flux", "onset", "band_low", "band_mid", "band_high")


@dataclass(frozen=True)
class MusicAnalysis:
    """Per-frame features and song-level events.

    Attributes
    ----------
    features : dict of str to np.ndarray
        One float64 array per frame, for each name in :data:`.catalog.MUSIC_FEATURE_NAMES` (or, from
        :func:`.features.analyze`, every feature).
    tempo_bpm : float
        The tempo in beats per minute: the override if one was given, else 60 over the least-squares period of
        the tracked beats. 0.0 when no beat was found.
    beat_times_s, downbeat_times_s, section_times_s : np.ndarray
        float64 times in seconds from the first sample: every beat, the first beat of every bar, and where each
        section after the first begins.
    """

    features: dict[str, np.ndarray]
    tempo_bpm: float
    beat_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    downbeat_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    section_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @staticmethod
    def frames(times_s: np.ndarray, fps: float) -> np.ndarray:
        """Video frame (int64) nearest each time: ``floor(t * fps + 0.5)``, for markers."""
        return np.floor(np.asarray(times_s, dtype=np.float64) * fps + 0.5).astype(np.int64)


def check_music_settings(tempo_bpm: float | None, beats_per_bar: int, beat_decay_s: float) -> None:
    """Raise AudioError naming the setting if a rhythm setting is out of range."""

    def real(value: object) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)

    if tempo_bpm is not None and not (real(tempo_bpm) and MIN_TEMPO_BPM <= tempo_bpm <= MAX_TEMPO_BPM):
        raise AudioError(
            f"tempo_bpm must be {MIN_TEMPO_BPM:g} to {MAX_TEMPO_BPM:g} beats per minute, or unset to detect it; "
            f"got {tempo_bpm!r}"
        )
    if not (isinstance(beats_per_bar, numbers.Integral) and not isinstance(beats_per_bar, bool)) or not (
        1 <= beats_per_bar <= 64
    ):
        raise AudioError(f"beats_per_bar must be a whole number from 1 to 64, got {beats_per_bar!r}")
    if not (real(beat_decay_s) and beat_decay_s >= 0):
        raise AudioError(f"beat_decay_s must be a time in seconds >= 0, got {beat_decay_s!r}")


def _odd(x: float) -> int:
    return 2 * max(0, round((x - 1) / 2)) + 1


def _harmonic_share(harmonic: np.ndarray, source: BandSpectrogram, target: BandSpectrogram) -> np.ndarray:
    """The harmonic fraction ``(source frames, target bands)`` of each target band's power, estimated from the
    source bands that its FFT bins see: a band of ``m`` bins spans ``(m - 1) / 2`` bins either side of its
    centre, and beyond that a source band ``d`` bins away counts with the Hann main lobe's power response
    ``(sinc(d) / (1 - d**2))**2``, 0 from 2 bins on. 0.5 where no source power is seen."""
    bin_hz = target.sample_rate / target.n_fft
    distance = np.abs(source.band_hz[None, :] - target.band_hz[:, None]) / bin_hz
    d = np.maximum(distance - (target.band_bins[:, None] - 1) / 2, 0.0)
    lobe = np.sinc(d) / np.where(np.abs(1.0 - d * d) < 1e-9, 1.0, 1.0 - d * d)
    lobe = np.where(np.abs(d - 1.0) < 1e-9, 0.5, lobe)
    weights = np.where(d < 2.0, lobe * lobe, 0.0).T.astype(np.float32)  # (source bands, target bands)
    shared = harmonic @ weights
    total = source.power @ weights
    return np.divide(shared, total, out=np.full_like(total, 0.5), where=total > 0)


def analyze_music(
    mono: np.ndarray,
    sample_rate: int,
    fps: float,
    starts: np.ndarray,
    length: int,
    spectral: Mapping[str, np.ndarray],
    band_edges_hz: tuple[float, float] = (250.0, 4000.0),
    tempo_bpm: float | None = None,
    beats_per_bar: int = 4,
    beat_decay_s: float = 0.1,
) -> MusicAnalysis:
    """Compute every feature in :data:`.catalog.MUSIC_FEATURE_NAMES` and the song's events.

    Parameters
    ----------
    mono : np.ndarray
        1-D samples at full scale, frame 0 shown at the first one.
    sample_rate : int
        Hz.
    fps : float
        Video frames per second.
    starts, length
        Each video frame's analysis window, ``[starts[i], starts[i] + length)`` samples (see
        :func:`.features.frame_starts`); ``len(starts)`` is the number of frames.
    spectral : mapping of str to np.ndarray
        The spectral features of the same frames (``rms`` ... ``band_high``), for the embedding.
    band_edges_hz : (float, float)
        The low/mid and mid/high split of ``onset_low``, ``onset_mid`` and ``onset_high``, as for ``band_*``.
    tempo_bpm : float or None
        The tempo to track beats at; None detects it.
    beats_per_bar : int
        The meter: beats per bar (4 for 4/4, 3 for 3/4).
    beat_decay_s : float
        Time constant of ``beat_pulse``'s decay, in seconds.
    """
    check_music_settings(tempo_bpm, beats_per_bar, beat_decay_s)
    n_frames = len(starts)
    out = {name: np.zeros(n_frames) for name in MUSIC_FEATURE_NAMES}
    x = np.asarray(mono, dtype=np.float32)
    live = int(np.searchsorted(starts, x.size, side="left")) if x.size else 0
    if live == 0:
        return MusicAnalysis(out, float(tempo_bpm or 0.0))
    starts = np.asarray(starts[:live], dtype=np.int64)

    def put(name: str, values: np.ndarray) -> None:
        out[name][:live] = values

    hop = analysis_hop(sample_rate)
    fine = band_spectrogram(x, sample_rate, hop, 2 * hop)
    edge_low, edge_high = band_edges_hz
    low_bands = fine.band_hz < edge_low
    high_bands = fine.band_hz >= edge_high
    onset_low = onset_strength(fine.power, low_bands)
    onset_mid = onset_strength(fine.power, ~low_bands & ~high_bands)
    onset_high = onset_strength(fine.power, high_bands)
    put("onset_low", to_frames(onset_low, hop, starts, length, "max"))
    put("onset_mid", to_frames(onset_mid, hop, starts, length, "max"))
    put("onset_high", to_frames(onset_high, hop, starts, length, "max"))

    # Beats and bars.
    onset = balanced_onset([onset_low, onset_mid, onset_high])
    bpm = float(tempo_bpm) if tempo_bpm is not None else estimate_tempo(onset, fine.frame_rate)
    beat_frames = track_beats(onset, fine.frame_rate, bpm)
    beat_times = beat_frames * (hop / sample_rate)
    if tempo_bpm is None:
        bpm = tempo_from_beats(beat_times) if beat_times.size >= 2 else (bpm if beat_times.size else 0.0)
    near = np.clip(beat_frames[:, None] + np.arange(-1, 2), 0, max(0, onset_low.size - 1))
    first_downbeat = downbeat_offset(onset_low[near].max(axis=1, initial=0.0), beats_per_bar)
    period_s = 60.0 / bpm if bpm > 0 else 0.0
    curves = beat_curves(live, fps, beat_times, period_s, first_downbeat, beats_per_bar, beat_decay_s)
    for name, values in curves.items():
        put(name, values)

    # Harmonic and percussive parts, pitch. The masks need the coarse grid's semitones; energies on it would
    # depend on where a hit falls between two coarse frames (their windows catch a quarter to all of it), so
    # the split is carried to the fine grid: each fine band takes the harmonic share of the coarse bands its bins
    # see (energy-weighted) in the nearest coarse frame.
    coarse_hop = 4 * hop
    coarse = band_spectrogram(x, sample_rate, coarse_hop, 8 * hop)
    mask = harmonic_mask(coarse.power, _odd(HPSS_TIME_S * coarse.frame_rate), HPSS_BANDS)
    share = _harmonic_share(mask * coarse.power, coarse, fine)
    nearest_frame = np.minimum((np.arange(fine.power.shape[0]) + 2) // 4, mask.shape[0] - 1)
    fine_harmonic = np.empty(fine.power.shape[0])
    for r0 in range(0, fine.power.shape[0], 1 << 15):  # the gathered shares are as big as the fine grid: chunk
        rows = slice(r0, r0 + (1 << 15))
        fine_harmonic[rows] = np.einsum("ij,ij->i", share[nearest_frame[rows]], fine.power[rows], dtype=np.float64)
    fine_total = fine.power.sum(axis=1, dtype=np.float64)
    put("harmonic", to_frames(fine_harmonic, hop, starts, length))
    put("percussive", to_frames(np.maximum(fine_total - fine_harmonic, 0.0), hop, starts, length))
    profile = chroma(mask * coarse.power, coarse.band_key, coarse.band_hz)
    frame_chroma = normalize_chroma(to_frames(profile, coarse_hop, starts, length))
    for k, name in enumerate(n for n in MUSIC_FEATURE_NAMES if n.startswith("chroma_")):
        put(name, frame_chroma[:, k])
    put("pitch_class", dominant_pitch_class(frame_chroma))

    # Sections, on blocks of the coarse grid that lie within the audio.
    timbre = cepstrum(coarse.power, CEPSTRAL_COEFFICIENTS)
    block = max(1, round(SECTION_BLOCK_S * coarse.frame_rate))
    n_blocks = -(-(x.size // coarse_hop + 1) // block)
    described = np.hstack([timbre, normalize_chroma(profile)])[: n_blocks * block]
    floor = np.r_[np.full(timbre.shape[1], CEPSTRUM_STEADY), np.full(12, CHROMA_STEADY)]
    counts = np.bincount(np.arange(len(described)) // block, minlength=n_blocks)
    blocks = np.add.reduceat(described, np.arange(0, len(described), block), axis=0) / counts[:, None]
    half_width = max(1, round(SECTION_KERNEL_S / (block / coarse.frame_rate)))
    novelty = checkerboard_novelty(standardize(blocks, floor), half_width)
    cuts = section_boundaries(novelty, half_width)
    cuts = cuts[cuts > 0]
    section_times = np.maximum(0.0, (cuts * block - 0.5) * (coarse_hop / sample_rate))
    # Counted at the frames Add Music Markers puts its markers on (the nearest), so a section's marker and the
    # frame where this feature steps agree; compared in seconds, half the boundaries stepped a frame late.
    section_frames = MusicAnalysis.frames(section_times, fps)
    put("section", np.searchsorted(section_frames, np.arange(live), side="right").astype(np.float64))

    # The embedding.
    columns = [to_frames(timbre, coarse_hop, starts, length), frame_chroma]
    columns += [np.log(spectral[name][:live, None] + _LOG_FLOOR) for name in _ENERGY_DESCRIPTORS]
    # Skewness and kurtosis run from about 0 (noise) to thousands (a pure tone): compressed, like the energies.
    columns += [spectral["centroid"][:live, None], spectral["spread"][:live, None]]
    columns += [np.arcsinh(spectral["skewness"][:live, None]), np.log1p(spectral["kurtosis"][:live, None])]
    columns += [np.log(out[name][:live, None] + _LOG_FLOOR) for name in ("harmonic", "percussive")]
    embedded = pca_embedding(np.hstack(columns), EMBEDDING_COMPONENTS)
    for k in range(EMBEDDING_COMPONENTS):
        put(f"embed_{k}", embedded[:, k])

    downbeats = beat_times[first_downbeat::beats_per_bar] if beat_times.size else beat_times
    return MusicAnalysis(out, bpm, beat_times, downbeats, section_times)
