"""A Flamenco farm task run headless the way a Worker runs it, and what the Worker reads from its output.

The commands come from the job type itself (``flamenco/diffusion_bender.js``, compiled under Node by the mock of
Flamenco Manager in ``tests/flamenco/``). Each runs in a child process of this Python with the ``bpy`` module, as
``blender -b FILE --python-exit-code 1 --python-expr EXPR -- ARGS`` would: the extension enabled, the .blend file
opened, ``sys.argv`` set to the Blender command line, the expression run, its exit status kept. The child's stdout
and stderr together are read line by line with the Worker's own patterns.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import blender_env
import pytest
from PIL import Image

ROOT = blender_env.ROOT
NODE = shutil.which("node")
TIMEOUT = 600

# Flamenco Worker, internal/worker/command_blender.go (package-level regexps used by processLineBlender), matched
# per line with FindStringSubmatch, which searches (re.search). "Saved:" sends the file as the job's latest image;
# a frame rendered or skipped is one step of the task.
FILE_SAVED = re.compile(r"(?:^|(?:render\s+\|\s+))Saved: '(.*)'")
FRAME_RENDERED = re.compile(r"(?:^|(?:render\s+\|\s+))Time: ([0-9:.]+)")
FRAME_SKIPPED = re.compile(r"(?:^|(?:render\s+\|\s+))[sS]kipping existing frame")

needs_audio = pytest.mark.skipif(
    not blender_env.extension().blender.compat.has_audio(), reason="the PyPI bpy 4.2 module is built without Audaspace"
)

# Compiles the job with the mock of Flamenco Manager and prints each task's command line as a Linux Worker runs it.
COMPILE_JOB = textwrap.dedent(
    """
    const [mock, settings] = [process.argv[1], JSON.parse(process.argv[2])];
    const { blenderCommandLine, expandCommandForWorker, loadJobType } = await import(mock);
    const job = loadJobType().compile(settings);
    const tasks = job.tasks.map((task) => {
        const parameters = expandCommandForWorker(task.commands[0].parameters, "linux");
        return { name: task.name, steps: task.stepsTotal, blendfile: parameters.blendfile,
                 argv: blenderCommandLine(parameters) };
    });
    console.log(JSON.stringify(tasks));
    """
)

# Saves the test's scene: 64×64, frames 1-4, tiny-random set in the scene (the Worker's preferences are empty).
MAKE_SCENE = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from devtools.extension_session import start
    start()
    import bpy
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    scene.render.fps = 12
    scene.frame_start, scene.frame_end = 1, 4
    scene.bend.model_source = "tiny-random"
    scene.bend.steps = 2
    bpy.ops.bend.prompt_add()
    scene.bend.prompts[0].text = "a floating orb"
    bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2])
    sys.stdout.flush()
    os._exit(0)
    """
)

# What Blender does with the command line: open the file, then run the expression with sys.argv as given;
# --python-exit-code 1 makes an uncaught exception exit 1, and a SystemExit keeps its code. The Worker's Blender has
# the suite's Engine Python preference (empty where this Python has the engine's packages).
RUN_TASK = textwrap.dedent(
    """
    import json, os, sys, traceback
    root, engine_python, blendfile, argv = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    sys.path.insert(0, root)
    from devtools.extension_session import MODULE, start
    start()
    import bpy
    bpy.context.preferences.addons[MODULE].preferences.engine_python = engine_python
    bpy.ops.wm.open_mainfile(filepath=blendfile)
    sys.argv = argv
    code = 0
    try:
        exec(compile(argv[argv.index("--python-expr") + 1], "<python-expr>", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
    """
)


def _child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def _run_task(task: dict) -> tuple[int, list[str]]:
    """Run one task's command; returns its exit status and its output lines (stdout and stderr together)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_TASK,
            str(ROOT),
            blender_env.ENGINE_PYTHON,
            task["blendfile"],
            json.dumps(task["argv"]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
        env=_child_env(),
    )
    return done.returncode, done.stdout.splitlines()


def _steps(lines: list[str]) -> int:
    """The steps the Worker counts: one per line that says a frame was rendered or skipped."""
    return sum(1 for line in lines if FRAME_RENDERED.search(line) or FRAME_SKIPPED.search(line))


def _saved(lines: list[str]) -> list[str]:
    return [match.group(1) for line in lines if (match := FILE_SAVED.search(line))]


@pytest.fixture(scope="module")
def farm(tmp_path_factory) -> dict:
    """A saved scene and the job type's tasks for frames 1-2 and 4 in one chunk, with the video path as given."""
    if NODE is None:
        pytest.skip("Node.js is not installed: the job type's commands come from flamenco/diffusion_bender.js")
    folder = tmp_path_factory.mktemp("farm") / 'my project\'s "song"'
    folder.mkdir()
    blendfile = folder / "song.blend"
    made = subprocess.run(
        [sys.executable, "-c", MAKE_SCENE, str(ROOT), str(blendfile)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_child_env(),
    )
    assert made.returncode == 0 and blendfile.is_file(), made.stdout[-2000:] + made.stderr[-2000:]
    video = folder / "out dir" / 'it\'s "cut".mp4'
    settings = {
        "frames": "1-2,4",
        "chunk_size": 3,
        "mode": "txt2img",
        "blendfile": str(blendfile),
        "video_path": str(video),
    }
    mock = (ROOT / "tests" / "flamenco" / "flamenco_mock.mjs").as_uri()
    compiled = subprocess.run(
        [NODE, "--input-type=module", "-e", COMPILE_JOB, mock, json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    render, assemble = json.loads(compiled.stdout)
    assert render["name"] == "render-1,2,4" and assemble["name"] == "assemble-video"
    return {"render": render, "assemble": assemble, "frames": blendfile.parent / "bend" / "Scene", "video": video}


def test_a_chunk_prints_one_step_and_one_thumbnail_per_frame_rendered(farm):
    code, lines = _run_task(farm["render"])
    assert code == 0, "\n".join(lines[-40:])
    assert _steps(lines) == farm["render"]["steps"] == 3, "\n".join(lines)
    saved = _saved(lines)
    assert [Path(p).name for p in saved] == ["frame_00001.png", "frame_00002.png", "frame_00004.png"]
    for path in saved:
        # The Worker opens the file to send it as a JPEG thumbnail: an absolute path to an image it can read.
        assert Path(path).is_absolute() and Path(path).parent == farm["frames"].resolve()
        with Image.open(path) as image:
            assert image.size == (64, 64)
    assert not any(FRAME_SKIPPED.search(line) for line in lines)


def test_a_chunk_run_again_prints_one_step_per_frame_skipped(farm):
    if not (farm["frames"] / "frame_00004.png").is_file():
        pytest.skip("the chunk's first run did not render (see the test before)")
    code, lines = _run_task(farm["render"])
    assert code == 0, "\n".join(lines[-40:])
    assert sum(1 for line in lines if FRAME_SKIPPED.search(line)) == farm["render"]["steps"] == 3, "\n".join(lines)
    assert _steps(lines) == 3 and _saved(lines) == []


@needs_audio
def test_the_assemble_task_counts_every_frame_and_exports_to_the_path_given_as_an_argument(farm):
    if not (farm["frames"] / "frame_00004.png").is_file():
        pytest.skip("the chunk did not render (see the tests before)")
    code, lines = _run_task(farm["assemble"])
    assert code == 0, "\n".join(lines[-40:])
    skipped = sum(1 for line in lines if FRAME_SKIPPED.search(line))
    assert skipped == farm["assemble"]["steps"] == 3, "\n".join(lines)
    assert farm["video"].is_file() and farm["video"].stat().st_size > 0, "\n".join(lines[-40:])
