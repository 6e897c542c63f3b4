"""Diffusion Bender: music videos from Stable Diffusion with audio-driven network bending.

The Blender side (properties, operators, panels) is registered here. The numeric work lives in ``engine/``,
which never imports Blender and runs in a child process during renders.
"""


def register() -> None:
    pass


def unregister() -> None:
    pass
