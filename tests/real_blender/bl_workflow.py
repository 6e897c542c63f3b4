"""Step "workflow" (``blender -b --python``): the artist's workflow, headless, through the extension's operators.

A new scene; a synthesized song (stdlib ``wave``) as a sound strip; Bake Audio; a prompt; rotation R1 at latent
layer 0 driven by RMS; Render Bent Frames with tiny-random at 64×64, 3 steps; Export Bent Video; then ffprobe
must find an H.264 and an AAC stream in the MP4. The scene is saved as ``OUT/workflow/real.blend`` (with its
frames under ``OUT/workflow/bend/``), which the windowed step opens.

Every warning raised from the extension's own files is recorded; a DeprecationWarning there is a FAIL naming its
file, line and source (Blender 5.2 marks strip properties for removal in 6.0), other warnings are NOTEs.
"""

import json
import math
import shutil
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bpy
from real_common import MODULE, OUT, Checks, ExtensionWarnings, extension, extension_folder

FOLDER = OUT / "workflow"
FPS = 8
FRAMES = 8
SIZE = 64
STEPS = 3
RATE = 22050
R1_HIGH = 2 * math.pi


def write_song(path: Path, seconds: float) -> None:
    """A beat that gets louder: a 110 Hz note with a sharp attack every quarter second, its amplitude rising, so
    the RMS (and the rotation it drives) changes from frame to frame."""
    n = round(seconds * RATE)
    frames = bytearray()
    beat = RATE // 4
    for i in range(n):
        t_beat = (i % beat) / RATE
        level = 0.15 + 0.75 * i / n
        sample = level * math.exp(-t_beat / 0.06) * math.sin(2 * math.pi * 110.0 * i / RATE)
        frames += struct.pack("<h", round(max(-1.0, min(1.0, sample)) * 32767))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(frames))


class OperatorFailed(Exception):
    pass


def call(operator, **properties) -> None:
    name = operator.idname_py()
    try:
        result = operator(**properties)
    except RuntimeError as exc:  # the operator's ERROR report
        raise OperatorFailed(f"bpy.ops.{name}() failed: {' '.join(str(exc).split())}") from exc
    if result != {"FINISHED"}:
        raise OperatorFailed(f"bpy.ops.{name}() returned {result}")


def ffprobe_streams(video: Path) -> list[str]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name", "-of", "json", str(video)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise OperatorFailed(f"ffprobe could not read {video}: {done.stderr.strip()}")
    return [f"{s['codec_type']}:{s['codec_name']}" for s in json.loads(done.stdout)["streams"]]


def workflow(checks: Checks) -> str:
    ext = extension()
    compat = ext.blender.compat

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.name = "real"
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.frame_start, scene.frame_end = 1, FRAMES
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.render.resolution_percentage = 100
    scene.bend.model_source = "tiny-random"
    scene.bend.steps = STEPS
    scene.bend.batch_size = 4

    song = FOLDER / "song.wav"
    write_song(song, FRAMES / FPS)
    compat.strips(scene).new_sound("song", str(song), 1, 1)
    blend = FOLDER / "real.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))  # frames go to //bend/real/, beside it

    call(bpy.ops.bend.bake_audio)
    rms = compat.find_fcurve(scene, ext.blender.audio_features.path("rms"))
    if not checks.check(
        rms is not None and len(rms.keyframe_points) == FRAMES, "bake_audio wrote no RMS curve with a key per frame"
    ):
        return ""

    call(bpy.ops.bend.prompt_add)
    scene.bend.prompts[scene.bend.prompt_index].text = "a floating orb"
    call(bpy.ops.bend.bend_add, op="rotate_r1")
    bend = ext.blender.bend_stack.active_bend(scene)
    bend.place, bend.latent_layer = "LATENT", 0
    call(bpy.ops.bend.drive_from_feature, feature="rms", low=0.0, high=R1_HIGH)

    started = time.monotonic()
    call(bpy.ops.bend.render)
    render_seconds = time.monotonic() - started
    folder = ext.blender.scene_job.output_folder(scene)
    pngs = sorted(folder.glob("frame_*.png"))
    checks.check(len(pngs) == FRAMES, f"render made {len(pngs)} frames in {folder}, expected {FRAMES}")
    job = json.loads((folder / "job.json").read_text())
    angles = [record["bends"][bend.name] for record in job["frames"]]
    # The driver must reach the job: RMS rises through the song, so must the angle, within 0..2π.
    checks.check(
        len(set(angles)) > 1 and all(0.0 <= a <= R1_HIGH + 1e-6 for a in angles),
        f"the driven angle in job.json is not following RMS: {angles}",
    )
    strip = compat.strips(scene).get(scene.name)
    checks.check(
        strip is not None and strip.type == "IMAGE" and len(strip.elements) == FRAMES,
        f"no image strip {scene.name!r} with {FRAMES} images in the Sequencer",
    )

    video = FOLDER / "real.mp4"
    call(bpy.ops.bend.export_video, filepath=str(video))
    streams = ffprobe_streams(video)
    checks.check(
        "video:h264" in streams and "audio:aac" in streams, f"{video.name} has streams {streams}, not h264 + aac"
    )
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    return (
        f"{FRAMES} frames at {SIZE}x{SIZE}, {STEPS} steps rendered in {render_seconds:.1f} s; "
        f"R1 angle {min(angles):.2f}..{max(angles):.2f} from RMS; {video.name}: {' + '.join(streams)}"
    )


def main() -> None:
    checks = Checks()
    if not checks.check(extension() is not None, f"{MODULE} is not loaded: the enable step must pass first"):
        return
    shutil.rmtree(FOLDER, ignore_errors=True)
    FOLDER.mkdir(parents=True)
    with ExtensionWarnings(extension_folder()) as seen:
        try:
            summary = workflow(checks)
        except OperatorFailed as exc:
            checks.fail(str(exc))
            summary = ""
    for warning in seen.of(DeprecationWarning):
        checks.fail(f"DeprecationWarning from the extension: {warning}")
    for category in (ResourceWarning, UserWarning, FutureWarning, RuntimeWarning):
        for warning in seen.of(category):
            checks.note(f"{category.__name__} from the extension: {warning}")
    checks.finish(summary)


main()
