"""Blender state to an engine job: evaluate every frame of the scene into the versioned JSON job document.

Each frame is evaluated with ``scene.frame_set`` (so keyframes and drivers both apply) and its animated values
(prompt weights, noise phase, img2img strength, bend parameters and LoRA weights, read from the scene's bend stack)
become that frame's record; a scene that only Blender 5's Sequencer shows is read from its evaluated copy
(``_animated``). The document is the engine's job format (README.md, "The job file"); the engine validates it again
in the child process.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import bpy

from ..engine.catalog import JOB_FORMAT, JOB_VERSION, OPERATORS
from . import bend_stack
from .audio_source import scene_fps
from .properties import INDEXED_SELECTIONS, RANDOM_SELECTIONS

JOB_NAME = "job.json"


class SceneJobError(Exception):
    """The scene cannot be rendered as set up; the message names the setting to change."""


def output_size(scene: bpy.types.Scene) -> tuple[int, int]:
    """The scene's render resolution (with its percentage), rounded down to a multiple of 8."""
    scale = scene.render.resolution_percentage / 100

    def fit(pixels: int) -> int:
        return max(8, int(pixels * scale) // 8 * 8)

    return fit(scene.render.resolution_x), fit(scene.render.resolution_y)


def output_folder(scene: bpy.types.Scene) -> Path:
    """Where frames and the job go: the scene's Output setting, or ``//bend/<scene name>/``."""
    folder = scene.bend.output_folder or f"//bend/{bpy.path.clean_name(scene.name)}/"
    if folder.startswith("//") and not bpy.data.filepath:
        raise SceneJobError(
            "Save the .blend file first (the output folder is relative to it), "
            "or set an absolute folder in Bend > Render > Output"
        )
    return Path(bpy.path.abspath(folder)).resolve()


def _model(scene: bpy.types.Scene, prefs) -> dict[str, object]:
    source = scene.bend.model_source.strip() or prefs.model_source.strip()
    if not source:
        raise SceneJobError(
            "No model set: choose one in Preferences > Extensions > Diffusion Bender > Model "
            "(a diffusers folder, a .safetensors file or a repo id; tiny-random for a quick test)"
        )
    if source.startswith("//"):
        source = bpy.path.abspath(source)
    # Only when set, so a job written for the common case stays as it was (and keeps its frames' hashes).
    chosen = {"family": scene.bend.model_family} if scene.bend.model_family != "auto" else {}
    if scene.bend.model_config.strip():
        chosen["config"] = str(Path(bpy.path.abspath(scene.bend.model_config.strip())))
    return {
        "source": source,
        **chosen,
        "device": prefs.device,
        "precision": prefs.precision,
        "scheduler": scene.bend.scheduler,
        "memory": prefs.memory,
        "compile": bool(prefs.compile_unet),
        "threads": int(prefs.cpu_threads),
        "allow_download": bool(prefs.allow_download and bpy.app.online_access),
        "trust_pickle": bool(prefs.trust_pickle),
    }


def _bend_record(bend) -> dict[str, object]:
    record: dict[str, object] = {"name": bend.name, "op": bend.op, "options": bend.operator_options()}
    if bend.place == "LATENT":
        record["latent_layer"] = bend.latent_layer
    else:
        if not bend.unet_target:  # a target the model's family lacks (SDXL has three down blocks, not four)
            raise SceneJobError(
                f"Bend '{bend.name}': this model's U-Net has no such block; choose another Bend > Target"
            )
        record["unet"] = {"target": bend.unet_target, "steps": [bend.step_start, bend.step_end or None]}
    kind = bend.selection
    selection: dict[str, object] = {"kind": kind}
    if kind in INDEXED_SELECTIONS:
        selection["index"] = bend.selection_index
    elif kind in RANDOM_SELECTIONS:
        selection.update(fraction=bend.fraction, seed=bend.selection_seed)
    record["selection"] = selection
    return record


def _lora_records(scene: bpy.types.Scene) -> list[dict[str, str]]:
    """The stack's LoRAs with absolute paths; a missing file names the LoRA and where to set it."""
    records = []
    for lora in bend_stack.loras(scene):
        where = f"Bend > LoRAs > {lora.name} > File"
        if not lora.filepath.strip():
            raise SceneJobError(f"LoRA {lora.name!r} has no file: choose its .safetensors in {where}")
        path = Path(bpy.path.abspath(lora.filepath)).resolve()
        if not path.is_file():
            raise SceneJobError(f"LoRA {lora.name!r}: {path} does not exist; fix {where}")
        records.append({"name": lora.name, "path": str(path)})
    return records


def _check_finite(bend, value: float | list[float], frame: int) -> None:
    names = OPERATORS[bend.op].param.names or ("the parameter",)
    for name, component in zip(names, value if isinstance(value, list) else [value], strict=True):
        if not math.isfinite(component):
            raise SceneJobError(
                f"Bend {bend.name!r} at frame {frame}: {name} is {component}; fix its keyframes or driver"
            )


def _animated(scene: bpy.types.Scene) -> Callable[[], bpy.types.Scene]:
    """Where the scene's animated values are read after ``scene.frame_set``.

    For the window's scene, the original data: its depsgraph is the active one, which writes them back. A scene that
    Blender 5 shows only in the Sequencer (the workspace's ``sequencer_scene``) is evaluated by its own depsgraph
    (``frame_set`` makes one when it has none), and after a script's ``frame_set`` its original data kept the last
    values while the evaluated copy had this frame's (Blender 5.2.2 with a window, and the 5.0.1 module). So it is
    read from the evaluated copy; the tag makes that copy take the values set since it was last evaluated.
    """
    if scene == bpy.context.scene:
        return lambda: scene
    scene.update_tag()
    return lambda: scene.evaluated_get(scene.view_layers[0].depsgraph)


def build_job(scene: bpy.types.Scene, prefs, only: range | None = None) -> dict[str, object]:
    """The job document for every frame of the scene's range (frame ranges are chosen when rendering).

    ``only`` evaluates just those frames of the range (a preview or a sweep needs one); the noise walk still
    loops over the whole range, so a frame gets the same record either way."""
    settings = scene.bend
    width, height = output_size(scene)
    bends = [b for b in bend_stack.bends(scene) if b.enabled]
    driven = [b for b in bends if OPERATORS[b.op].takes_param]
    loras = bend_stack.loras(scene)
    lora_records = _lora_records(scene)
    prompts = list(settings.prompts)
    first, last = scene.frame_start, scene.frame_end
    if last < first:
        raise SceneJobError(f"The scene's frame range {first}-{last} is empty: set End after Start")
    if first < 0:
        raise SceneJobError(f"The scene starts at frame {first}: frames must be 0 or later (set Start ≥ 0)")
    n_frames = last - first + 1
    # The loop's phase per noise mode, as engine/noise.py's default_phases (not importable here: it needs torch):
    # the paper's 2πi/k, or the authors' 2πi/(k − 1), whose last frame returns to the first.
    loop = n_frames if settings.noise_mode == "paper" else max(n_frames - 1, 1)
    frames = []
    current = scene.frame_current
    evaluated = _animated(scene)
    try:
        for frame in range(first, last + 1) if only is None else only:
            if not first <= frame <= last:
                raise SceneJobError(
                    f"Frame {frame} is outside the scene's range {first}-{last}: go to a frame within it"
                )
            scene.frame_set(frame)
            live = evaluated()
            live_bends, live_loras = bend_stack.bends(live), bend_stack.loras(live)
            weights = [p.weight for p in live.bend.prompts] if prompts else [1.0]
            if not sum(weights) > 0:
                raise SceneJobError(f"Frame {frame}: every prompt weight is 0; key at least one prompt above 0")
            record = {
                "frame": frame,
                "prompt_weights": weights,
                "phase": (
                    2 * math.pi * (frame - first) / loop if settings.phase_mode == "LOOP" else live.bend.noise_phase
                ),
                "strength": live.bend.strength,
                # a number, or a list of the operator's components for a vector operator
                "bends": {b.name: live_bends[b.name].param_value() for b in driven},
            }
            for bend in driven:
                _check_finite(bend, record["bends"][bend.name], frame)
            if loras:
                record["loras"] = {lora.name: live_loras[lora.name].weight for lora in loras}
                for lora in loras:
                    weight = record["loras"][lora.name]
                    if not math.isfinite(weight):
                        raise SceneJobError(
                            f"LoRA {lora.name!r} at frame {frame}: its weight is {weight}; fix its keyframes or driver"
                        )
            frames.append(record)
    finally:
        scene.frame_set(current)
    document = {
        "format": JOB_FORMAT,
        "version": JOB_VERSION,
        "model": _model(scene, prefs),
        "mode": settings.mode,
        "width": width,
        "height": height,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "seed": settings.seed,
        "batch_size": settings.batch_size,
        "prompts": [p.text for p in prompts] or [""],
        "negative_prompt": settings.negative_prompt,
        "noise": {"seed": settings.noise_seed, "mode": settings.noise_mode},
        "img2img": {
            "prompt": None if settings.img2img_prompt_source == "MIX" else settings.img2img_prompt,
            "init_image": bpy.path.abspath(settings.init_image) if settings.init_image else None,
        },
        "bends": [_bend_record(b) for b in bends],
        "frames": frames,
        "output": {"folder": "."},
        "fps": scene_fps(scene),
    }
    if lora_records:  # only with LoRAs: a job without them reads as every earlier version wrote it
        document["loras"] = lora_records
    return document


def write_job(document: dict[str, object], folder: Path, name: str = JOB_NAME) -> Path:
    """Write the job next to its frames, atomically, so a crash never leaves half a job file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        temp = folder / f".{name}.{os.getpid()}.partial"  # per process: farm workers share the folder
        temp.write_text(json.dumps(document, indent=1), encoding="utf-8")
        os.replace(temp, path)
    except OSError as exc:
        raise SceneJobError(
            f"Cannot write to the output folder {folder} ({exc.strerror}): "
            "choose another folder in Bend > Render > Output"
        ) from exc
    return path
