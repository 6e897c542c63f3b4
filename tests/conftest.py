"""Shared fixtures for the engine tests: the tiny model, loaded once per session, and an offline Hugging Face cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model():
    from engine.models import load_model

    return load_model("tiny-random", device="cpu")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache of our own; huggingface_hub reads these variables at import, so patch both."""
    import huggingface_hub.constants as hub_constants

    home = tmp_path / "hf-home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    for name, value in {"HF_HOME": home, "HF_HUB_CACHE": cache}.items():
        monkeypatch.setenv(name, str(value))
        monkeypatch.setattr(hub_constants, name, str(value))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache
