"""The engine's command line, run from the extension root as ``python -m engine``.

    python -m engine render JOB.json [--frames A-B]
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
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import NoReturn, TextIO

from .errors import EngineError, RenderCancelled

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STOPPED = 130
DEPENDENCIES = ("numpy", "scipy", "torch", "diffusers", "transformers", "tokenizers", "kornia", "PIL", "safetensors")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description="Diffusion Bender's engine (no Blender needed).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    render = commands.add_parser("render", help="render a job file (resumes where it left off)")
    render.add_argument("job", help="the job file (JSON)")
    render.add_argument("--frames", metavar="A-B", help="render only frames A to B (inclusive) of the job")

    from .postprocess import NORMALIZATIONS

    features = commands.add_parser("features", help="print per-frame audio features of a WAV file")
    features.add_argument("audio", help="a WAV file: any rate, mono or multichannel, int16/int32/float")
    features.add_argument("--fps", type=float, required=True, help="frames per second of the video")
    features.add_argument("--format", choices=("json", "csv"), default="json")
    features.add_argument("--window-ms", type=float, help="window length in ms (default: one frame, 1000/fps)")
    features.add_argument("--center", action="store_true", help="centre windows on frame times (default: start)")
    features.add_argument("--spectrum-window", choices=("hann", "rect"), default="hann",
                          help="rect reproduces the paper authors' code")
    features.add_argument("--normalize", choices=NORMALIZATIONS, default="none", help="default: raw values")
    features.add_argument("--attack", type=float, default=0.0, help="smoothing attack time in seconds")
    features.add_argument("--release", type=float, default=0.0, help="smoothing release time in seconds")
    return parser


def _run_features(args: argparse.Namespace, out: TextIO) -> int:
    from .audio_io import read_wav
    from .features import FEATURE_NAMES, FeatureSettings, compute_features
    from .postprocess import postprocess

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


def _run_render(args: argparse.Namespace, out: TextIO) -> int:
    from .events import EventStream
    from .job import load_job
    from .runner import Runner, parse_frame_range

    events = EventStream(out)
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    try:
        frame_range = parse_frame_range(args.frames) if args.frames else None
        job = load_job(args.job)
        Runner(job, events, should_stop=stop.is_set).run(frame_range)
    except RenderCancelled:
        events.emit("cancelled")
        return EXIT_STOPPED
    except EngineError as exc:
        events.emit("error", message=str(exc))
        raise
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
        run = _run_render if args.command == "render" else _run_features
        return run(args, out)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ImportError as exc:
        package = (exc.name or "").partition(".")[0]
        if package not in DEPENDENCIES:
            raise
        print(f"error: the engine's dependency {package} is missing; install the dependencies "
              "(python vendor_setup.py --venv .venv, or the extension's Install dependencies button)", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sys.stdout = out
