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

from .errors import EngineError, RenderCancelled

if TYPE_CHECKING:
    from .events import EventStream

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STOPPED = 130
MAX_FPS = 1000.0
MAX_WINDOW_MS = 10_000.0
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

    from .postprocess import NORMALIZATIONS

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
    return parser


def _run_features(args: argparse.Namespace, out: TextIO) -> int:
    from .audio_io import read_wav
    from .errors import AudioError
    from .features import FEATURE_NAMES, FeatureSettings, compute_features
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
    )
    values = compute_features(samples, rate, args.fps, settings=settings)
    values = postprocess(values, args.fps, normalization=args.normalize, attack_s=args.attack, release_s=args.release)
    if args.format == "json":
        json.dump({name: [float(v) for v in values[name]] for name in FEATURE_NAMES}, out)
        out.write("\n")
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["frame", "time", *FEATURE_NAMES])
        for i in range(len(values[FEATURE_NAMES[0]])):
            writer.writerow([i, f"{i / args.fps:.6f}", *(f"{float(values[n][i]):.9g}" for n in FEATURE_NAMES)])
    return 0


def _stop_on_signals() -> threading.Event:
    """SIGINT and SIGTERM set the returned event; renders check it between denoising steps."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    return stop


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
    server.serve(sys.stdin)
    return 0


def _quiet_libraries() -> None:
    """The CLI owns its process: keep library chatter (progress bars, advice) out of the user's one-line errors."""
    for variable, value in (
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("DIFFUSERS_VERBOSITY", "error"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
    ):
        os.environ.setdefault(variable, value)
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_libraries()
    # Keep stdout for our own output: libraries that print (progress bars, warnings) go to stderr.
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        args = _build_parser().parse_args(argv)
        run = {"render": _run_render, "sweep": _run_sweep, "serve": _run_serve}.get(args.command, _run_features)
        return run(args, out)
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
