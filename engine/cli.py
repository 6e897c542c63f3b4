"""The engine's command line, run from the extension root as ``python -m engine``.

    python -m engine render JOB.json [--frames A-B]
    python -m engine sweep SWEEP.json [--sheet SHEET.png]
    python -m engine serve
    python -m engine features AUDIO.wav --fps F [--format json|csv] [--normalize minmax] ...

``render`` streams JSON-lines events on stdout (see ``events.py``); anything else a library prints goes to
stderr, so stdout stays machine-readable. SIGINT and SIGTERM stop the render between denoising steps, keeping
every finished frame. Bad input exits non-zero with a one-line error, never a traceback.

Exit codes: 0 done, 1 a user error (the message says what to change), 2 bad arguments, 130 stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from .errors import AudioError, EngineError, RenderCancelled
from .limits import MAX_FEATURE_SAMPLES, MAX_FPS, MAX_WINDOW_MS, MAX_WINDOW_SAMPLES
from .stopping import stop_on_signals

if TYPE_CHECKING:
    from .events import EventStream

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STOPPED = 130
DEPENDENCIES = ("numpy", "scipy", "torch", "diffusers", "transformers", "tokenizers", "kornia", "PIL", "safetensors")


# Every character str.splitlines() breaks at: a path or a job value may carry any of them.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _one_line(text: str) -> str:
    """Errors stay one line (callers show the last line of stderr), so escape line breaks that came from input."""
    return _LINE_BREAKS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description="Diffusion Bender's engine (no Blender needed).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    render = commands.add_parser("render", help="render a job file (resumes where it left off)")
    render.add_argument("job", help="the job file (JSON)")
    render.add_argument("--frames", metavar="A-B", help="render only frames A to B (inclusive) of the job")

    sweep = commands.add_parser("sweep", help="render a bend sweep file into a labelled contact sheet")
    sweep.add_argument("job", help='a job file with a "sweep" section (JSON)')
    sweep.add_argument("--sheet", metavar="PNG", help="where the contact sheet goes (default: beside the job file)")

    commands.add_parser("serve", help="render previews on request: JSON lines on stdin, events on stdout")

    from .catalog import NORMALIZATIONS  # not from postprocess: a render should not pay for importing numpy here

    features = commands.add_parser("features", help="print per-frame audio features of a WAV file")
    features.add_argument("audio", help="a WAV file: any rate, mono or multichannel, int16/int32/float")
    features.add_argument("--fps", type=float, required=True, help="frames per second of the video")
    features.add_argument("--format", choices=("json", "csv"), default="json")
    features.add_argument("--window-ms", type=float, help="window length in ms (default: one frame, 1000/fps)")
    features.add_argument("--center", action="store_true", help="centre windows on frame times (default: start)")
    features.add_argument(
        "--spectrum-window", choices=("hann", "rect"), default="hann", help="rect reproduces the paper authors' code"
    )
    features.add_argument("--normalize", choices=NORMALIZATIONS, default="none", help="default: raw values")
    features.add_argument("--attack", type=float, default=0.0, help="smoothing attack time in seconds")
    features.add_argument("--release", type=float, default=0.0, help="smoothing release time in seconds")
    features.add_argument("--median", type=float, default=0.0, help="median filter window in seconds (0: off)")
    features.add_argument("--gate", type=float, default=0.0, help="noise gate: fraction of the range, 0 to 1 (0: off)")
    features.add_argument("--tempo-bpm", type=float, help="track beats at this tempo (default: detect it)")
    features.add_argument("--beats-per-bar", type=int, default=4, help="the meter, for bar_phase (default: 4)")
    features.add_argument("--beat-decay", type=float, default=0.1, help="beat_pulse decay time in seconds")
    features.add_argument(
        "--events", action="store_true", help="print the tempo and the beat, downbeat and section times (JSON) instead"
    )
    return parser


def _run_features(args: argparse.Namespace, out: TextIO) -> int:
    from .audio_io import read_wav
    from .features import FEATURE_NAMES, FeatureSettings, analyze, window_length
    from .postprocess import postprocess

    # Outside these, the per-frame window needs more memory than any machine has (or the frame count explodes)
    if not 1.0 <= args.fps <= MAX_FPS:
        raise AudioError(f"--fps: expected 1 to {MAX_FPS:g} frames per second, got {args.fps!r}")
    if args.window_ms is not None and not 0.0 < args.window_ms <= MAX_WINDOW_MS:
        raise AudioError(f"--window-ms: expected more than 0 and at most {MAX_WINDOW_MS:g} ms, got {args.window_ms!r}")
    samples, rate = read_wav(args.audio)
    settings = FeatureSettings(
        window_ms=args.window_ms,
        align="center" if args.center else "start",
        spectrum_window=args.spectrum_window,
        tempo_bpm=args.tempo_bpm,
        beats_per_bar=args.beats_per_bar,
        beat_decay_s=args.beat_decay,
    )
    _check_feature_size(args, len(samples), rate, window_length(settings, rate, args.fps))
    analysis = analyze(samples, rate, args.fps, settings=settings)
    if args.events:
        times = {
            "beats_s": analysis.beat_times_s,
            "downbeats_s": analysis.downbeat_times_s,
            "sections_s": analysis.section_times_s,
        }
        json.dump({"tempo_bpm": analysis.tempo_bpm, **{k: [float(t) for t in v] for k, v in times.items()}}, out)
        out.write("\n")
        return 0
    values = postprocess(
        analysis.features,
        args.fps,
        normalization=args.normalize,
        attack_s=args.attack,
        release_s=args.release,
        median_s=args.median,
        gate=args.gate,
    )
    if args.format == "json":
        json.dump({name: [float(v) for v in values[name]] for name in FEATURE_NAMES}, out)
        out.write("\n")
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["frame", "time", *FEATURE_NAMES])
        for i in range(len(values[FEATURE_NAMES[0]])):
            writer.writerow([i, f"{i / args.fps:.6f}", *(f"{float(values[n][i]):.9g}" for n in FEATURE_NAMES)])
    return 0


def _check_feature_size(args: argparse.Namespace, samples: int, rate: int, window: int) -> None:
    """Sample rate × window and frames × window, refused before the features gather every window at once."""
    if window > MAX_WINDOW_SAMPLES:
        raise AudioError(
            f"--window-ms: a window of {window:,} samples at {rate:,} Hz is more than the limit of "
            f"{MAX_WINDOW_SAMPLES:,}; use a shorter --window-ms"
        )
    frames = int(samples / rate * args.fps) + 1
    if frames * window > MAX_FEATURE_SAMPLES:
        raise AudioError(
            f"--window-ms: {frames:,} frames × {window:,} samples per window is more than the limit of "
            f"{MAX_FEATURE_SAMPLES:,} samples; use a shorter --window-ms, a lower --fps or a shorter file"
        )


def _stop_on_signals() -> threading.Event:
    """SIGINT and SIGTERM set the returned event, which renders check between denoising steps, and end any
    blocking call at once (see ``stopping.py``)."""
    return stop_on_signals()


def _streamed(out: TextIO, work: Callable[[EventStream, Callable[[], bool]], object]) -> int:
    """Run ``work(events, should_stop)`` with events on ``out``: stopped → 130, an engine error → an error event."""
    from .events import EventStream

    events = EventStream(out)
    stop = _stop_on_signals()
    try:
        work(events, stop.is_set)
    except RenderCancelled:
        events.emit("cancelled")
        return EXIT_STOPPED
    except EngineError as exc:
        events.emit("error", message=str(exc))
        raise
    return 0


def _run_render(args: argparse.Namespace, out: TextIO) -> int:
    from .job import load_job
    from .runner import Runner, parse_frame_range

    def render(events: EventStream, should_stop: Callable[[], bool]) -> None:
        frame_range = parse_frame_range(args.frames) if args.frames else None
        Runner(load_job(args.job), events, should_stop=should_stop).run(frame_range)

    return _streamed(out, render)


def _run_sweep(args: argparse.Namespace, out: TextIO) -> int:
    from .sweep import default_sheet_path, load_sweep, run_sweep

    def sweep(events: EventStream, should_stop: Callable[[], bool]) -> None:
        job, spec = load_sweep(args.job)
        sheet = Path(args.sheet) if args.sheet else default_sheet_path(Path(args.job))
        run_sweep(job, spec, sheet.resolve(), events, should_stop=should_stop)

    return _streamed(out, sweep)


def _run_serve(args: argparse.Namespace, out: TextIO) -> int:
    from .events import EventStream
    from .preview import PreviewServer

    server = PreviewServer(EventStream(out))
    signal.signal(signal.SIGINT, lambda signum, frame: server.stop.set())  # stop the preview, keep serving
    from .preview import bounded_lines

    server.serve(bounded_lines(sys.stdin.buffer))
    return 0


_LEVELS = ("debug", "info", "warning", "error", "critical")
# The environment variables the engine reads (through its libraries), its default, and the values they accept.
LIBRARY_ENVIRONMENT = (
    ("TRANSFORMERS_VERBOSITY", "error", ("detail", *_LEVELS)),
    ("DIFFUSERS_VERBOSITY", "error", _LEVELS),
    ("HF_HUB_DISABLE_PROGRESS_BARS", "1", ("0", "1", "true", "false", "yes", "no", "on", "off")),
    ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1", ("0", "1", "true", "false", "yes", "no", "on", "off")),
)


def _quiet_libraries() -> None:
    """The CLI owns its process: keep library chatter (progress bars, advice) out of the user's one-line errors.

    A value the library would not accept (it prints a multi-line complaint on every start) is replaced too.
    """
    for variable, default, accepted in LIBRARY_ENVIRONMENT:
        if os.environ.get(variable) not in accepted:  # the libraries compare exactly
            os.environ[variable] = default
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_libraries()
    # Keep stdout for our own output: libraries that print (progress bars, warnings) go to stderr.
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        args = _build_parser().parse_args(argv)
        run = {"render": _run_render, "sweep": _run_sweep, "serve": _run_serve}.get(args.command, _run_features)
        if run is _run_features:
            _stop_on_signals()  # a stop ends the features command with its one line too, not a traceback
        return run(args, out)
    except RenderCancelled as exc:
        print(f"stopped: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_STOPPED
    except EngineError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except SystemExit as exc:  # argparse's way out (bad arguments, --help): a code for callers of main() too
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except MemoryError:
        print(
            "error: out of memory; free some memory, or render a smaller job or a shorter audio file", file=sys.stderr
        )
        return EXIT_ERROR
    except ImportError as exc:
        package = (exc.name or "").partition(".")[0]
        if package not in DEPENDENCIES:
            raise
        print(
            f"error: the engine's dependency {package} is missing; install the dependencies "
            "(python vendor_setup.py --venv .venv, or the extension's Install dependencies button)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    finally:
        sys.stdout = out
