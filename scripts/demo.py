"""The main job, end to end and headless: a synthesized song to a bent music video, through the extension's operators.

    .venv/bin/python scripts/demo.py [--model M] [--seconds S] [--fps F] [--out DIR]

(``make demo`` builds the venv first and runs this.) It loads this checkout as a real extension inside the bpy
module and does what an artist does in the Bend tab: a song on the timeline, Bake Audio, two prompts crossfaded at
markers, rotation R1 driven by RMS and an add on 5% of the latent driven by onsets, Render Bent Frames, Export Bent
Video, save. Then it draws a contact sheet of the frames and the curves that drove them.

The model is ``--model``, else the environment variable ``BEND_MODEL`` (a diffusers folder, a .safetensors file, or
a repo id in the local Hugging Face cache): 512×512 at the paper's 50 steps. Without one it renders with
``toy-shapes``, the small model the project trains itself (scripts/toy_model/), at 64×64 and 20 steps: an orb that
turns into a landscape, on a laptop CPU. ``--model tiny-random`` (random weights, noise-like frames) is quicker.

Any failing step ends the demo with one line saying what failed (exit code 1); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
for _folder in (ROOT, SCRIPTS):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import demo_pictures  # noqa: E402  (needs the path above)

TINY = "tiny-random"
TOY = "toy-shapes"  # the default: shipped in models/, pictures that mean something without a download
SCENE = "demo"
PROMPTS = ("a floating orb", "a gorgeous landscape")
# The markers the crossfade runs between, as shares of the song: the orb holds for the first 40 %, where the song
# recolours it (toy-shapes draws a half-faded orb as neither orb nor landscape), the landscape takes the last 30 %.
CROSSFADE = (0.4, 0.7)
RMS_HIGH = 2 * math.pi  # R1 turns through 0..2π with loudness
ONSET_HIGH = 2.0  # on a hit, 5% of the latent's elements move by up to 2 noise standard deviations
# Where the two bends act, as a share of the denoising steps: 10 of toy-shapes' 20, 25 of a real model's 50. At
# layer 0 they change only the starting noise, which stays noise of the same kind and gives another orb rather than a
# recoloured one; half way the picture has formed, and R1 turns its colours with the loudness.
BEND_DEPTH = 0.5
SAMPLE_RATE = 22050

NO_AUDIO = "This bpy module has no audio support (Blender 4.2's PyPI build); run the demo with bpy 4.5 or 5.0"
NO_MODEL = (
    "No model configured: rendering with toy-shapes, the project's own small model of shapes and landscapes "
    "(64×64). Point BEND_MODEL or --model at a Stable Diffusion model for real images."
)


class DemoError(Exception):
    """A step failed; the message is the one line the demo ends with."""


# ---------------------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class RenderSettings:
    model: str
    size: int
    steps: int
    batch_size: int

    @property
    def is_tiny(self) -> bool:
        return self.model == TINY

    @property
    def bend_layer(self) -> int:
        return round(BEND_DEPTH * self.steps)


def render_settings(model: str | None, size: int | None = None, steps: int | None = None) -> RenderSettings:
    """The paper's 512×512 at 50 steps for a real model; toy-shapes (the default) and tiny-random small and quick."""
    model = (model or "").strip() or TOY
    if model == TOY:
        return RenderSettings(TOY, size or 64, steps or 20, 4)
    if model == TINY:
        return RenderSettings(TINY, size or 64, steps or 8, 4)
    return RenderSettings(model, size or 512, steps or 50, 1)


def local_path_or_id(source: str) -> str:
    """An existing file or folder as an absolute path (the engine runs in another folder); anything else as is."""
    source = source.strip()
    path = Path(source).expanduser()
    return str(path.resolve()) if source and source != TINY and path.exists() else source


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help="a diffusers folder, a .safetensors file or a cached Hugging Face repo id "
        "(default: $BEND_MODEL, else toy-shapes)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the song (default 10)")
    parser.add_argument("--fps", type=int, default=20, help="frames per second (default 20, the paper's)")
    parser.add_argument("--out", default=str(ROOT / "demo"), help="output folder (default demo/)")
    parser.add_argument("--size", type=int, default=None, help="frame size in pixels (default 512; 64 for the toys)")
    parser.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default 50; 20 for toy-shapes, 8 for tiny-random)"
    )
    parser.add_argument(
        "--engine-python",
        default=os.environ.get("BEND_ENGINE_PYTHON", ""),
        help="the Python that runs the engine, as the Engine Python preference (default: $BEND_ENGINE_PYTHON, else "
        "this Python): for a bpy venv without torch",
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback when a step fails")
    args = parser.parse_args(argv)
    if not args.seconds > 0 or args.fps < 1:
        parser.error("--seconds must be above 0 and --fps at least 1")
    if round(args.seconds * args.fps) < 1:
        parser.error("--seconds × --fps must make at least one frame")
    if args.size is not None and (args.size < 8 or args.size % 8):
        parser.error("--size must be a multiple of 8")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------------------------
# The song


def _note(
    song: np.ndarray,
    start_s: float,
    freq: float,
    amp: float,
    attack_s: float,
    decay_s: float,
    length_s: float,
    harmonics: tuple[float, ...] = (1.0,),
    rate: int = SAMPLE_RATE,
) -> None:
    start = round(start_s * rate)
    n = min(round(length_s * rate), len(song) - start)
    if n <= 0:
        return
    t = np.arange(n) / rate
    envelope = np.exp(-t / decay_s) * np.clip(t / max(attack_s, 1 / rate), 0.0, 1.0)
    tone = sum(weight * np.sin(2 * np.pi * freq * (k + 1) * t) for k, weight in enumerate(harmonics))
    song[start : start + n] += amp * envelope * tone


def synthesize_song(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A deterministic 120 bpm clip: a bass note on every beat (A, F, C, G, a bar each), plucked pentatonic notes
    with sharp attacks on eighth notes, hi-hat ticks on the off-beats, quiet at first, a breakdown without melody
    at 55-70% of the length, then loud to the end. Float samples in -1..1."""
    n = max(round(seconds * rate), 1)
    song = np.zeros(n)
    rng = np.random.default_rng(46)
    beat = 0.5
    roots = (110.0, 87.31, 130.81, 98.0)
    scale = (440.0, 523.25, 587.33, 659.25, 783.99, 880.0, 1046.5)

    def dynamics(time_s: float) -> float:
        x = time_s / seconds
        return 0.35 + 0.65 * min(x / 0.45, 1.0)

    for k in range(math.ceil(seconds / beat)):
        start = k * beat
        level = 0.6 + 0.4 * dynamics(start)
        _note(song, start, roots[(k // 4) % len(roots)], 0.28 * level, 0.012, 0.4, beat, (1.0, 0.45, 0.2), rate)
    for k in range(math.ceil(seconds / (beat / 2))):
        start = k * beat / 2
        freq = scale[int(rng.integers(len(scale)))]
        rest = rng.random() < 0.3 and k % 4 != 0
        if rest or 0.55 <= start / seconds < 0.7:
            continue
        accent = 1.5 if k % 8 == 0 else 1.0
        _note(song, start, freq, 0.3 * accent * dynamics(start), 0.001, 0.11, beat / 2, (1.0, 0.3), rate)
    tick = round(0.03 * rate)
    for k in range(math.ceil(seconds / beat)):
        start = round((k + 0.5) * beat * rate)
        m = min(tick, n - start)
        if m > 0:
            noise = np.diff(rng.standard_normal(m + 1))  # high-passed white noise
            song[start : start + m] += 0.06 * dynamics(k * beat) * noise * np.exp(-np.arange(m) / (0.008 * rate))
    fade = min(round(0.05 * rate), n)
    song[n - fade :] *= np.linspace(1.0, 0.0, fade)
    return song * (0.89 / max(float(np.abs(song).max()), 1e-9))


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """16-bit mono PCM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return path


# ---------------------------------------------------------------------------------------------------------------
# Running operators and steps


def operator_message(exc: BaseException) -> str:
    """The report an operator raised with, on one line ("Error: ...\\n" → "...")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(re.sub(r"^(Error|Warning|Info):\s*", "", line) for line in lines)
    return text or type(exc).__name__


def call(operator, **properties) -> None:
    """Run one of the extension's operators; a refusal becomes a DemoError with its report."""
    name = operator.idname_py()
    try:
        result = operator(**properties)
    except RuntimeError as exc:
        raise DemoError(f"bpy.ops.{name}() failed: {operator_message(exc)}") from exc
    if "FINISHED" not in result:
        raise DemoError(f"bpy.ops.{name}() did not finish ({', '.join(sorted(result))})")


class Steps:
    """Numbered step lines with their timings."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.number = 0
        self.current = "starting"
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, title: str):
        self.number += 1
        self.current = title[0].lower() + title[1:]
        print(f"[{self.number}/{self.total}] {title}...", flush=True)
        started = time.perf_counter()
        yield
        print(f"      done in {time.perf_counter() - started:.1f} s", flush=True)


FRAME_LINE = re.compile(r"Bend: frame (\d+) done \((\d+)/(\d+), ([\d.]+) s\)")


class RenderLog(io.TextIOBase):
    """Stands in for stdout while bend.render runs: passes its progress through, but only every ``every``-th
    frame line, and keeps every line for the summary."""

    def __init__(self, stream, every: int) -> None:
        self.stream = stream
        self.every = max(every, 1)
        self.lines: list[str] = []
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.lines.append(line)
            match = FRAME_LINE.search(line)
            if match is None or int(match[2]) in (1, int(match[3])) or int(match[2]) % self.every == 0:
                self.stream.write("      " + line + "\n")
        self.stream.flush()
        return len(text)

    def loaded_line(self) -> str | None:
        return next((line.removeprefix("Bend: ") for line in self.lines if "loaded on" in line), None)


@contextlib.contextmanager
def quiet_fds(log: Path):
    """Send what Blender's C code prints (per-frame "Append frame" and "Time:" lines) to ``log``, not the console."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as target:
        os.dup2(target.fileno(), 1)
        os.dup2(target.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# ---------------------------------------------------------------------------------------------------------------
# The demo


@dataclass
class Result:
    frames: int
    render_seconds: float
    manifest_seconds: list[float]
    loaded: str | None


def clean_outputs(out: Path) -> None:
    """Remove what an earlier demo left in ``out`` (only the demo's own files), so this run renders from scratch."""
    shutil.rmtree(out / "bend" / SCENE, ignore_errors=True)
    for name in ("demo.blend", "demo.blend1", "demo.mp4", "song.wav", "contact_sheet.png", "curves.png", "blender.log"):
        (out / name).unlink(missing_ok=True)


def run(args: argparse.Namespace, steps: Steps) -> None:
    out = Path(args.out).resolve()
    configured = local_path_or_id(args.model or os.environ.get("BEND_MODEL", ""))
    settings = render_settings(configured, args.size, args.steps)
    n_frames = round(args.seconds * args.fps)

    with steps("Loading the extension into bpy"):
        from devtools.extension_session import start

        extension = start()
        import bpy

        if not extension.blender.compat.has_audio():
            raise DemoError(NO_AUDIO)
        compat = extension.blender.compat
        if args.engine_python:
            bpy.context.preferences.addons[extension.__name__].preferences.engine_python = args.engine_python
        print(f"      Blender {bpy.app.version_string}, extension {extension.__name__}", flush=True)
    if not configured.strip():
        print(NO_MODEL, flush=True)

    with steps(f"Synthesizing a {args.seconds:g} s song"):
        out.mkdir(parents=True, exist_ok=True)
        clean_outputs(out)
        song = write_wav(out / "song.wav", synthesize_song(args.seconds))
        print(f"      {song}", flush=True)

    with steps(f"Building {SCENE}.blend: the song as a sound strip, {args.fps} fps, frames 1-{n_frames}"):
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.context.preferences.filepaths.save_version = 0  # no demo.blend1 next to demo.blend
        scene = bpy.context.scene
        scene.name = SCENE
        scene.render.fps, scene.render.fps_base = args.fps, 1.0
        scene.frame_start, scene.frame_end = 1, n_frames
        scene.render.resolution_x = scene.render.resolution_y = settings.size
        scene.render.resolution_percentage = 100
        scene.bend.model_source = settings.model  # kept in the file: reopening it renders with the same model
        scene.bend.steps = settings.steps
        scene.bend.batch_size = settings.batch_size
        compat.strips(scene).new_sound("song", str(song), 1, 1)
        # The operators work on the scene the Sequencer shows (Blender 5: the workspace's, which a user's startup
        # file may have set), and Blender 5 opens the file with it in the Sequencer.
        compat.show_in_sequencer(scene, replace=True)
        blend = out / "demo.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))  # frames go to //bend/demo/, next to it

    with steps("Baking the audio features (bend.bake_audio)"):
        call(bpy.ops.bend.bake_audio)

    with steps(f"Crossfading {PROMPTS[0]!r} into {PROMPTS[1]!r} at two markers (bend.crossfade_at_markers)"):
        for text in PROMPTS:
            call(bpy.ops.bend.prompt_add)
            scene.bend.prompts[scene.bend.prompt_index].text = text
        for name, share in zip(("orb", "landscape"), CROSSFADE, strict=True):
            scene.timeline_markers.new(name, frame=scene.frame_start + round(share * (n_frames - 1)))
        call(bpy.ops.bend.crossfade_at_markers)

    layer = settings.bend_layer
    with steps(f"Adding the bends at layer {layer}: R1 driven by RMS, add on 5% of the latent driven by onsets"):
        call(bpy.ops.bend.bend_add, op="rotate_r1")
        rotation = scene.bend.bends["R1"]
        rotation.place, rotation.latent_layer = "LATENT", layer
        call(bpy.ops.bend.drive_from_feature, feature="rms", low=0.0, high=RMS_HIGH)
        call(bpy.ops.bend.bend_add, op="add")
        sparkle = scene.bend.bends["Add"]
        sparkle.place, sparkle.latent_layer = "LATENT", layer
        sparkle.selection, sparkle.fraction = "random", 0.05
        call(bpy.ops.bend.drive_from_feature, feature="onset", low=0.0, high=ONSET_HIGH)
        print(f"      {rotation.name}: r = 0 + 2π × rms    {sparkle.name}: r = 0 + {ONSET_HIGH:g} × onset", flush=True)

    label = f"{settings.model} at {settings.size}×{settings.size}, {settings.steps} steps, batch {settings.batch_size}"
    with steps(f"Rendering {n_frames} frames with {label} (bend.render)"):
        log = RenderLog(sys.stdout, every=max(n_frames // 10, 1))
        started = time.perf_counter()
        with contextlib.redirect_stdout(log):
            call(bpy.ops.bend.render)
        render_seconds = time.perf_counter() - started
        folder = extension.blender.scene_job.output_folder(scene)
        manifest = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line]
        result = Result(n_frames, render_seconds, [float(r["seconds"]) for r in manifest], log.loaded_line())

    video = out / "demo.mp4"
    with steps(f"Exporting {video.name} with the song (bend.export_video)"), quiet_fds(out / "blender.log"):
        call(bpy.ops.bend.export_video, filepath=str(video))

    with steps(f"Saving {blend.name}"):
        bpy.ops.file.make_paths_relative()  # the song and the frames: the folder can move
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))

    with steps("Drawing contact_sheet.png and curves.png"):
        sheet, curves = make_pictures(bpy, extension, scene, settings, folder, out)

    print_summary(settings, result, out, blend, video, sheet, curves, steps, tuple(bpy.app.version[:2]))


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def make_pictures(bpy, extension, scene, settings: RenderSettings, folder: Path, out: Path) -> tuple[Path, Path]:
    compat = extension.blender.compat
    fps = scene.render.fps / scene.render.fps_base
    first, last = scene.frame_start, scene.frame_end
    strip = compat.strips(scene)[scene.name]
    directory = Path(bpy.path.abspath(strip.directory))
    files = {round(strip.frame_start) + i: directory / e.filename for i, e in enumerate(strip.elements)}
    every = demo_pictures.every_for(last - first + 1)
    shown = [(f, files[f]) for f in demo_pictures.sheet_frames(first, last, every)]
    step_text = "every frame" if every == 1 else f"every {ordinal(every)} frame"
    title = (
        f"{settings.model}, {settings.size}x{settings.size}, {settings.steps} steps: {step_text} of "
        f"{last - first + 1}, \u201c{PROMPTS[0]}\u201d to \u201c{PROMPTS[1]}\u201d"
    )
    sheet = demo_pictures.contact_sheet(shown, fps, out / "contact_sheet.png", title, first_frame=first)

    job = json.loads((folder / "job.json").read_text())
    frames = [record["frame"] for record in job["frames"]]
    times = [(f - first) / fps for f in frames]

    def baked(name: str) -> list[float]:
        fcurve = compat.find_fcurve(scene, extension.blender.audio_features.path(name))
        return [fcurve.evaluate(f) for f in frames]

    def bend(name: str) -> list[float]:
        return [record["bends"][name] for record in job["frames"]]

    rotation, sparkle = (b["name"] for b in job["bends"])
    layer = job["bends"][0]["latent_layer"]
    panels = [
        demo_pictures.Panel(
            'Baked audio features (scene["bend_rms"], ["bend_onset"], min-max normalised)',
            [demo_pictures.Series("RMS", baked("rms")), demo_pictures.Series("onset", baked("onset"))],
            y_range=(0.0, 1.05),
            y_label="feature",
        ),
        demo_pictures.Panel(
            f"{rotation}: rotation angle at latent layer {layer} = 2 pi * RMS (driver)",
            [demo_pictures.Series(f"{rotation} angle", bend(rotation))],
            y_range=(0.0, 2 * math.pi * 1.05),
            y_label="radians",
        ),
        demo_pictures.Panel(
            f"{sparkle}: added to 5% of the latent = {ONSET_HIGH:g} * onset (driver)",
            [demo_pictures.Series(f"{sparkle} amount", bend(sparkle))],
            y_range=(0.0, ONSET_HIGH * 1.05),
            y_label="amount",
        ),
        demo_pictures.Panel(
            "Prompt weights (crossfade keyed at the two markers)",
            [
                demo_pictures.Series(text, [r["prompt_weights"][k] for r in job["frames"]])
                for k, text in enumerate(job["prompts"])
            ],
            y_range=(0.0, 1.05),
            y_label="weight",
        ),
    ]
    curves = demo_pictures.plot_curves(
        times, panels, out / "curves.png", "What drove the video: the song's features and the bend parameters per frame"
    )
    return sheet, curves


def _probe_video(video: Path) -> str:
    try:
        import av
    except ImportError:
        return f"{video.stat().st_size / 1e6:.1f} MB"
    with av.open(str(video)) as container:
        parts = [f"{s.codec_context.name}" for s in container.streams if s.type in ("video", "audio")]
        seconds = float(container.duration) / 1e6 if container.duration else 0.0
    return f"{' + '.join(parts)}, {seconds:.2f} s, {video.stat().st_size / 1e6:.1f} MB"


def print_summary(
    settings: RenderSettings,
    result: Result,
    out: Path,
    blend: Path,
    video: Path,
    sheet: Path,
    curves: Path,
    steps: Steps,
    blender: tuple[int, int],
) -> None:
    per_frame = sum(result.manifest_seconds) / len(result.manifest_seconds) if result.manifest_seconds else math.nan
    wall = result.render_seconds / max(result.frames, 1)
    total = time.perf_counter() - steps.started

    def show(path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    model = settings.model + (" (a tiny random model: noise-like frames)" if settings.is_tiny else "")
    print()
    print("Diffusion Bender demo: done")
    print(f"  model        {model}")
    if result.loaded:
        print(f"               {result.loaded}")
    print(
        f"  frames       {result.frames} at {settings.size}×{settings.size}, {settings.steps} steps, "
        f"batch size {settings.batch_size}"
    )
    print(
        f"  per frame    {per_frame:.2f} s in the engine (manifest.jsonl), {wall:.2f} s wall clock "
        f"(render step {result.render_seconds:.1f} s, model loading included)"
    )
    print(f"  video        {show(video)} ({_probe_video(video)})")
    print(f"  blend        {show(blend)} (open it in Blender: the Sequencer holds the song and the frames,")
    print("               the Graph Editor the baked features, the Drivers editor the two drivers)")
    if blender >= (5, 0):
        print("               Blender 4.5 and 5.0 open it; 4.2 cannot read files saved by 5.0 (run the demo")
        print("               with .venv-bpy45/bin/python for a file that 4.2 opens too)")
    print(f"  log          {show(out / 'blender.log')} (what Blender printed while exporting)")
    print(f"  pictures     {show(sheet)}, {show(curves)}")
    print(f"  frames, job  {show(out / 'bend' / SCENE)}")
    print(f"  total        {total:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    steps = Steps(total=10)
    try:
        run(args, steps)
        code = 0
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("demo: stopped", file=sys.stderr)
        code = 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(
            f"demo: failed while {steps.current}: {type(exc).__name__}: {exc} (--debug shows the traceback)",
            file=sys.stderr,
        )
        code = 1
    return code


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown: the PyPI bpy 4.2 module segfaults there once the extension has registered
    # properties with Python callbacks (see tests/blender/conftest.py), and nothing is left to clean up.
    os._exit(status)
