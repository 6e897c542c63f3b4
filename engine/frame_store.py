"""The output folder: PNG frames written atomically, and a manifest that makes resuming safe.

Frames are written to a hidden temporary file, flushed to disk and renamed into place, so a frame file either is
complete or does not exist: a render killed mid-write leaves at most a temporary file, which the next run
removes. After the rename, one JSON line is appended to ``manifest.jsonl`` with the frame's parameter hash,
seed, timing and the file's SHA-256. Appending keeps the cost per frame constant on long renders; a line torn by
a kill is the last one, and it is ignored when read. A frame counts as done only when its manifest record has
the expected hash and the file on disk still has the recorded checksum.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EngineError

MANIFEST_NAME = "manifest.jsonl"
TEMP_PREFIX = ".partial-"


def frame_file_name(frame: int) -> str:
    return f"frame_{frame:05d}.png"


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FrameStore:
    """One render's output folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest_path = folder / MANIFEST_NAME

    def path(self, frame: int) -> Path:
        return self.folder / frame_file_name(frame)

    def prepare(self) -> None:
        """Create the folder, prove it is writable before any work starts, and drop stale temporaries."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f"{TEMP_PREFIX}probe-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise EngineError(
                f"output folder {self.folder} is not writable ({exc.strerror}); choose another output folder"
            ) from exc
        self.remove_temporaries()

    def remove_temporaries(self) -> None:
        """Delete half-written frames left by a render that was killed; only safe when no render is running."""
        for stale in self.folder.glob(f"{TEMP_PREFIX}*"):
            stale.unlink(missing_ok=True)

    def load_manifest(self) -> dict[int, dict[str, Any]]:
        """The latest record per frame; unreadable lines (a write cut short by a kill) are skipped."""
        records: dict[int, dict[str, Any]] = {}
        try:
            lines = self.manifest_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return records
        for line in lines:
            try:
                record = json.loads(line)
                records[int(record["frame"])] = record
            except (ValueError, KeyError, TypeError):
                continue
        return records

    def is_done(self, record: dict[str, Any] | None, frame_hash: str) -> bool:
        if record is None or record.get("hash") != frame_hash:
            return False
        try:
            data = self.path(record["frame"]).read_bytes()
        except OSError:
            return False
        return hashlib.sha256(data).hexdigest() == record.get("sha256")

    def write(self, frame: int, png: bytes, record: dict[str, Any]) -> Path:
        """Write an encoded frame atomically, then record it in the manifest."""
        data = png
        final = self.path(frame)
        temp = self.folder / f"{TEMP_PREFIX}{final.name}"
        try:
            with open(temp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
            _fsync_folder(self.folder)
            checksum = hashlib.sha256(data).hexdigest()
            line = json.dumps({**record, "frame": frame, "file": final.name, "sha256": checksum})
            with open(self.manifest_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise EngineError(f"frame {frame}: could not write {final} ({exc.strerror}); free some disk space "
                              "or choose another output folder, then render again to resume") from exc
        return final

    def read(self, frame: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path(frame)) as image:
            return np.asarray(image.convert("RGB"))
