"""``bend.sweep`` ("Sweep Bend"): the active bend's parameter over a range (columns) × layers (rows), as a labelled
contact sheet beside the .blend. These are the grids of the paper's figures 1-3.

The scene's settings at the current frame (prompts, noise, the other bends) make one job; its ``sweep`` section
comes from Bend > Sweep. The engine renders it (the warm engine in the UI, ``python -m engine sweep`` with
``blender -b``) into ``sweeps/<bend>/`` in the output folder, so a stopped sweep resumes, and writes
``<file>_<bend>_sweep.png`` next to the .blend, which also opens as an image named after it.
"""

import math
from pathlib import Path

import bpy

from ..blender import bend_stack, compat, preferences
from ..blender.engine_process import EXIT_STOPPED, EngineProcess
from ..blender.engine_python import check_dependencies, engine_python
from ..blender.engine_run import EngineRun, EngineSession
from ..blender.scene_job import SceneJobError, build_job, output_folder, write_job
from ..blender.warm_engine import Ticket, start_command
from ..engine.catalog import OPERATORS, UNET_TARGET

SWEEP_FILE = "sweep.json"


def sweep_layers(text: str) -> list[int | str]:
    """``"0, 10, mid_block"`` → ``[0, 10, "mid_block"]``; errors name the setting."""
    layers: list[int | str] = []
    for token in (t.strip() for t in text.replace(";", ",").split(",")):
        if not token:
            continue
        if token.isdigit():
            layers.append(int(token))
        elif UNET_TARGET.match(token):
            layers.append(token)
        else:
            raise SceneJobError(
                f"Bend > Sweep > Layers: {token!r} is neither a latent layer (a step number) nor a "
                "U-Net target (conv_in, down_blocks.N, mid_block, up_blocks.N, conv_out)"
            )
    if not layers:
        raise SceneJobError("Bend > Sweep > Layers is empty: list the layers to sweep, e.g. 0, 10, 20")
    return layers


def sweep_section(bend, settings) -> dict[str, object]:
    section: dict[str, object] = {"bend": bend.name, "layers": sweep_layers(settings.layers)}
    if OPERATORS[bend.op].takes_param:
        section["values"] = {
            "start": settings.value_start,
            "stop": settings.value_end,
            "count": settings.columns,
            "endpoint": settings.include_end,
        }
    return section


def sheet_path(scene: bpy.types.Scene, bend_name: str) -> Path:
    if not bpy.data.filepath:
        raise SceneJobError("Save the .blend file first: the sweep's contact sheet goes next to it")
    blend = Path(bpy.data.filepath)
    return blend.with_name(f"{blend.stem}_{bpy.path.clean_name(bend_name)}_sweep.png")


class SweepSession(EngineSession):
    """Progress over every tile of the sweep, and the sheet it ends with."""

    def __init__(self, process: EngineProcess | Ticket, sheet: Path) -> None:
        super().__init__(process)
        self.sheet = sheet
        self.tiles = 0
        self.done = 0

    def progress(self, kind: str, event: dict) -> str | None:
        if kind == "sweep":
            self.tiles = event["tiles"]
            return f"Bend: sweeping {event['columns']} values × {event['rows']} layers"
        if kind == "start":
            self.done += event["skipped"]
        elif kind == "frame":
            self.done += 1
            self.fraction = self.done / max(self.tiles, 1)
            return f"Bend: sweep tile {self.done}/{self.tiles}"
        return None

    def status(self) -> str:
        return f"Bend: sweep {self.done}/{self.tiles} tiles ({self.fraction:.0%})"

    def outcome(self, code: int) -> tuple[str, str]:
        if code == 0:
            _show_sheet(self.sheet)
            return "INFO", f"Sweep sheet: {self.sheet}"
        if code == EXIT_STOPPED:
            return "WARNING", "Sweep stopped: the tiles so far are kept; sweep again to resume"
        if self.error:
            return "ERROR", f"Sweep failed: {self.error}"
        return "ERROR", f"The sweep process failed (exit code {code}): {self.process.last_error_line()}"


def _show_sheet(path: Path) -> None:
    image = bpy.data.images.get(path.name)
    if image is None:
        image = bpy.data.images.load(str(path))
    else:
        image.reload()


class BEND_OT_sweep(EngineRun, bpy.types.Operator):
    """Render the active bend's parameter range × layers as a labelled contact sheet next to the .blend"""

    bl_idname = "bend.sweep"
    bl_label = "Sweep Bend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return (scene := compat.sequencer_scene(context)) is not None and bend_stack.active_bend(scene) is not None

    def _start(self, context: bpy.types.Context) -> SweepSession:
        scene = compat.sequencer_scene(context)
        check_dependencies(context)
        bend = bend_stack.active_bend(scene)
        if not bend.enabled:
            raise SceneJobError(f"Bend {bend.name!r} is disabled: enable it to sweep it")
        param = OPERATORS[bend.op].param
        if param is not None and param.is_vector:
            raise SceneJobError(
                f"Bend {bend.name!r} ({bend.op}) takes {param.length} numbers and a sweep varies one: sweep a bend "
                "with a single Parameter"
            )
        if OPERATORS[bend.op].takes_param and not all(
            math.isfinite(v) for v in (scene.bend.sweep.value_start, scene.bend.sweep.value_end)
        ):
            raise SceneJobError("Bend > Sweep > From and To must be finite numbers")
        sheet = sheet_path(scene, bend.name)
        document = build_job(scene, preferences.get(context), only=range(scene.frame_current, scene.frame_current + 1))
        document["sweep"] = sweep_section(bend, scene.bend.sweep)
        folder = output_folder(scene) / "sweeps" / bpy.path.clean_name(bend.name)
        job_path = write_job(document, folder, name=SWEEP_FILE)
        process = start_command("sweep", document, str(job_path), engine_python(context), sheet=str(sheet))
        return SweepSession(process, sheet)


CLASSES = (BEND_OT_sweep,)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
