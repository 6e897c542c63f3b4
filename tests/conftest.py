"""Shared fixtures for the engine tests: the tiny model, loaded once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model():
    from engine.models import load_model

    return load_model("tiny-random", device="cpu")
