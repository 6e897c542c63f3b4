"""Diffusion Bender's engine: everything numeric, and nothing that needs Blender.

The engine runs under plain Python (``python -m engine ...`` from the extension root) and inside Blender as
``<extension package>.engine``; it therefore only uses relative imports internally. Importing this package is
cheap: torch, diffusers and scipy load only when the modules that need them are imported.
"""

from .errors import AudioError, BendError, EngineError, JobError, ModelError, RenderCancelled

__all__ = ["AudioError", "BendError", "EngineError", "JobError", "ModelError", "RenderCancelled"]
