"""Builders for small, valid job documents, shared by the engine tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

BASE_JOB: dict[str, Any] = {
    "format": "diffusion-bender-job",
    "version": 1,
    "model": {"source": "tiny-random", "device": "cpu"},
    "mode": "txt2img",
    "width": 32,
    "height": 32,
    "steps": 4,
    "guidance": 7.5,
    "seed": 46,
    "prompts": ["a floating orb", "a gorgeous landscape"],
    "bends": [],
    "frames": [],
}


def job_document(n_frames: int = 3, bends: list[dict] | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid job with ``n_frames`` frames crossfading between two prompts; bends get parameter i/10."""
    doc = copy.deepcopy(BASE_JOB)
    doc["bends"] = bends or []
    doc["frames"] = [
        {
            "frame": i + 1,
            "prompt_weights": [1 - i / max(n_frames - 1, 1), i / max(n_frames - 1, 1)],
            "bends": {b["name"]: 0.1 * (i + 1) for b in doc["bends"] if b["op"] not in ("reflect", "ablate")},
        }
        for i in range(n_frames)
    ]
    doc.update(overrides)
    return doc


def write_job(folder: Path, doc: dict[str, Any], name: str = "job.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path
