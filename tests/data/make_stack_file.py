"""Write tests/data/stack_bends_<blender>.blend: a file saved by the version whose bend stack was a node tree.

Run with THAT extension (18c419e), never with this checkout:

    git -C . archive 18c419e | tar -x -C /tmp/prev-stack
    .venv-bpy42/bin/python tests/data/make_stack_file.py /tmp/prev-stack tests/data/stack_bends_4_2.blend

Its bends and LoRA are nodes of ``scene.bend.stack`` with their keys and drivers on the tree (``nodes["R1"].param``),
the baked features are ``scene.bend.audio.*`` and the prompts' weights are keyed by name
(``bend.prompts["Prompt 1"].weight``): what tests/blender/test_migration.py expects to find on the Scene, at index
paths, after loading.
"""

import os
import sys
import tempfile
from pathlib import Path

PREVIOUS, OUTPUT = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
home = Path(tempfile.mkdtemp(prefix="bend-stack-"))
os.environ["BLENDER_USER_RESOURCES"] = str(home / "user")
(home / "repo").mkdir()
(home / "repo" / "diffusion_bender").symlink_to(PREVIOUS, target_is_directory=True)

import bpy  # noqa: E402, I001  (after BLENDER_USER_RESOURCES)
import addon_utils  # noqa: E402  (importable once bpy is)

bpy.context.preferences.extensions.repos.new(
    name="dev", module="dev", custom_directory=str(home / "repo"), source="USER"
)
addon_utils.enable("bl_ext.dev.diffusion_bender", default_set=True)
ext = sys.modules["bl_ext.dev.diffusion_bender"]
assert hasattr(ext.blender, "bend_stack") and hasattr(ext.blender.bend_stack, "BendStackTree"), (
    "run this with the node-tree extension (18c419e), not the current one"
)

bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 12
ext.blender.animation.write_keys(scene, "bend.audio.rms", list(range(1, 13)), [i / 11 for i in range(12)])
ext.blender.animation.write_keys(scene, "bend.audio.onset", list(range(1, 13)), [(i % 3) / 2 for i in range(12)])
for op in ("rotate_r1", "add", "rotate_six", "multiply", "erode"):
    bpy.ops.bend.bend_add(op=op)
tree = scene.bend.stack
nodes = tree.nodes

# Two prompts crossfading over the range, keyed by name as that version keyed them.
for text in ("a floating orb", "a gorgeous landscape"):
    bpy.ops.bend.prompt_add()
    scene.bend.prompts[-1].text = text
ext.operators.prompts.key_crossfade(scene, [1, 12])

# R1: a feature driver, with a Generator modifier on it.
ext.operators.drive.add_feature_driver(scene, "R1", "rms", 0.0, 6.0)
generator = tree.animation_data.drivers.find('nodes["R1"].param').modifiers.new("GENERATOR")
generator.coefficients = (0.5, 2.0)

# Add: Bezier keys with custom handles, then a CONSTANT one; a Cycles modifier.
add = nodes["Add"]
add.selection, add.fraction, add.selection_seed = "random", 0.25, 7
for frame, value in ((1, 0.0), (6, 1.5), (12, -0.5)):
    add.param = value
    add.keyframe_insert("param", frame=frame)
curve = ext.blender.compat.find_fcurve(tree, 'nodes["Add"].param')
curve.keyframe_points[1].handle_left_type = curve.keyframe_points[1].handle_right_type = "FREE"
curve.keyframe_points[1].handle_left = (4.0, 2.5)
curve.keyframe_points[1].handle_right = (8.0, 0.25)
curve.keyframe_points[2].interpolation = "CONSTANT"
curve.modifiers.new("CYCLES")

# Rotate Six: keys on components 0 and 2, a two-variable averaged driver on component 4.
six = nodes["Rotate Six"]
six.latent_layer = 3
for frame, value in ((1, 0.25), (12, 1.0)):
    six.param_vector[0] = value
    six.param_vector[2] = -value
    six.keyframe_insert("param_vector", index=0, frame=frame)
    six.keyframe_insert("param_vector", index=2, frame=frame)
driver = six.driver_add("param_vector", 4)
for modifier in list(driver.modifiers):
    driver.modifiers.remove(modifier)
driver.driver.type = "AVERAGE"
for name, path in (("a", "bend.audio.onset"), ("b", "frame_current")):
    variable = driver.driver.variables.new()
    variable.name, variable.type = name, "SINGLE_PROP"
    variable.targets[0].id_type, variable.targets[0].id, variable.targets[0].data_path = "SCENE", scene, path

# Multiply inside the U-Net, keyed; Erode keyed, then renamed (Blender moved its curve) and disabled.
multiply = nodes["Multiply"]
multiply.place, multiply.unet_target, multiply.step_start, multiply.step_end = "UNET", "up_blocks.1", 2, 9
for frame, value in ((1, 1.0), (12, 3.0)):
    multiply.param = value
    multiply.keyframe_insert("param", frame=frame)
erode = nodes["Erode"]
erode.normalize_dim = "1"
erode.param = 3.0
erode.keyframe_insert("param", frame=4)
erode.name = "Grit"
erode.enabled = False
tree.active_bend = 2

# A LoRA whose weight is keyed 0 -> 1.
bpy.ops.bend.lora_add(filepath="")
lora = ext.blender.bend_stack.loras(scene)[0]
lora.name, lora.filepath = "Style", "//style.safetensors"
for frame, value in ((1, 0.0), (12, 1.0)):
    lora.weight = value
    lora.keyframe_insert("weight", frame=frame)

# An object whose driver reads R1's parameter on the tree, and one reading the baked RMS on the Scene.
empty = bpy.data.objects.new("Watcher", None)
scene.collection.objects.link(empty)
for axis, (id_type, target, path) in enumerate(
    (("NODETREE", tree, 'nodes["R1"].param'), ("SCENE", scene, "bend.audio.rms"))
):
    fcurve = empty.driver_add("location", axis)
    for modifier in list(fcurve.modifiers):
        fcurve.modifiers.remove(modifier)
    fcurve.driver.type = "SUM"
    variable = fcurve.driver.variables.new()
    variable.type = "SINGLE_PROP"
    variable.targets[0].id_type, variable.targets[0].id, variable.targets[0].data_path = id_type, target, path

scene.frame_set(1)
bpy.context.preferences.filepaths.save_version = 0  # no .blend1 beside the fixture when it is remade
bpy.ops.wm.save_as_mainfile(filepath=str(OUTPUT), compress=True)
print("saved", OUTPUT, OUTPUT.stat().st_size, "bytes")
for owner in (scene, tree, empty):
    for fcurve in ext.blender.animation.animation_curves(owner):
        print(" ", owner.name, fcurve.data_path, fcurve.array_index)
sys.stdout.flush()
os._exit(0)  # the bpy 4.2 module segfaults at teardown with Python property callbacks (tests/blender/conftest.py)
