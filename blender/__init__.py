"""The Blender side's state and services: scene properties, preferences, the Blender-version seam, animation
paths, the sound strips, the job written from a scene, and the engine's child process.

Operators (``operators/``, the verbs) and panels (``panels/``, the views) build on these; nothing here imports
them, and ``engine/`` never imports anything here.
"""

# The extension's own package (``bl_ext.<repo>.diffusion_bender``): Blender keys the preferences and the user
# folders by it, not by this subpackage.
EXTENSION_PACKAGE = __package__.rpartition(".")[0]
