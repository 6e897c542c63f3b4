"""Errors the engine raises on purpose.

Every error a user can cause is an ``EngineError`` whose message names what to change. The CLI prints
such errors as one line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EngineError(Exception):
    """A problem with the user's input or environment, described in a message meant for the user."""


class BendError(EngineError):
    """A bend is misconfigured or got a parameter it cannot use. The message names the bend."""


class JobError(EngineError):
    """A job file is invalid. The message names the offending field."""


class ModelError(EngineError):
    """A model could not be found or loaded. The message says how to get it."""


class AudioError(EngineError):
    """Audio could not be read or analysed."""


class RenderCancelled(EngineError):
    """The render was asked to stop (SIGINT/SIGTERM or a cancel request)."""
