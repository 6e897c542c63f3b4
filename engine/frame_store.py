"""The output folder: PNG frames written atomically, and a manifest that makes resuming safe.

Frames are written to a hidden temporary file, flushed to disk and renamed into place, so a frame file either is
complete or does not exist: a render killed mid-write leaves at most a temporary file, which a later run
removes. After the rename, one JSON line is appended to ``manifest.jsonl`` with the frame's parameter hash,
seed, timing and the file's SHA-256. Appending keeps the cost per frame constant on long renders; a line torn by
a kill is ignored when read, and the next run ends it so the next record starts on a line of its own. A frame
counts as done only when its manifest record has the expected hash and the file on disk still has the recorded
checksum.

Several processes may render different frame ranges into one folder (a render farm on a shared disk). Each one
names its temporaries ``.partial-<host>-<pid>-<file>``, writes each manifest record with one ``O_APPEND`` write,
and removes only temporaries that are provably stale: its own that it is not writing, those of a dead process on
this host, and any older than ``STALE_TEMP_SECONDS`` (a frame write takes well under a second).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EngineError

MANIFEST_NAME = "manifest.jsonl"
TEMP_PREFIX = ".partial-"
# Older than this, a temporary is abandoned whoever made it: even a slow network disk writes a frame in seconds.
STALE_TEMP_SECONDS = 3600.0
# Host names go into file names: keep them to characters every file system takes.
HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "host"
_TEMP_NAME = re.compile(rf"^{re.escape(TEMP_PREFIX)}(?P<host>.+)-(?P<pid>[0-9]+)-(?P<name>[^-]+)$")
# Temporaries this process is writing right now: the only ones with its own pid that are not stale.
_writing: set[Path] = set()


def frame_file_name(frame: int) -> str:
    return f"frame_{frame:05d}.png"


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def temp_name(name: str, pid: int | None = None) -> str:
    """The temporary file name that ``name`` is written under by process ``pid`` (default: this one) on this host."""
    return f"{TEMP_PREFIX}{HOST}-{os.getpid() if pid is None else pid}-{name}"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host may still be running; when unsure, yes (its files are kept)."""
    if os.name == "nt":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or an answer we cannot read: keep its files
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process whose parent has not reaped it yet still answers ``kill(pid, 0)``, but writes nothing."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False  # no procfs (macOS): the age rule still removes it later


def _windows_pid_alive(pid: int) -> bool:
    # os.kill(pid, 0) on Windows sends CTRL_C_EVENT, so ask the kernel instead.
    import ctypes

    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    except (AttributeError, OSError):
        return True


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data``, flushed to disk (a seam the fault-injection tests patch)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` with one ``O_APPEND`` write, so records of concurrent writers never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    try:
        view = memoryview(data)
        while view:  # a regular file takes the whole write unless the disk is full, which raises instead
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


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
            probe = self.folder / temp_name("probe")
            probe.write_bytes(b"ok")
            probe.unlink()
            self._end_torn_line()
        except OSError as exc:
            raise EngineError(
                f"output folder {self.folder} is not writable ({exc.strerror}); choose another output folder"
            ) from exc
        self.remove_temporaries()

    def _end_torn_line(self) -> None:
        """End a manifest line torn by a kill, so the next record does not join it and get lost with it."""
        try:
            with open(self.manifest_path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        except (FileNotFoundError, OSError):
            return  # no manifest, or an empty one
        if torn:
            _append(self.manifest_path, b"\n")

    def remove_temporaries(self, pid: int | None = None) -> None:
        """Delete temporaries that no running render can be writing; with ``pid``, also all of that process's.

        A process that has exited (the Blender side calls this after its render child ended) passes its ``pid``;
        temporaries of other renders writing into the same folder are kept unless they are provably stale.
        """
        now = time.time()
        for temp in self.folder.glob(f"{TEMP_PREFIX}*"):
            match = _TEMP_NAME.match(temp.name)
            mine = match is not None and match["host"] == HOST and pid is not None and int(match["pid"]) == pid
            if mine or _is_stale(temp, match, now):
                temp.unlink(missing_ok=True)

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
        final = self.path(frame)
        temp = self.folder / temp_name(final.name)
        _writing.add(temp)
        try:
            _write_file(temp, png)
            os.replace(temp, final)
            _fsync_folder(self.folder)
            checksum = hashlib.sha256(png).hexdigest()
            line = json.dumps({**record, "frame": frame, "file": final.name, "sha256": checksum})
            _append(self.manifest_path, (line + "\n").encode("utf-8"))
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise EngineError(
                f"frame {frame}: could not write {final} ({exc.strerror}); free some disk space "
                "or choose another output folder, then render again to resume"
            ) from exc
        finally:
            _writing.discard(temp)
        return final

    def read(self, frame: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path(frame)) as image:
            return np.asarray(image.convert("RGB"))


def _is_stale(temp: Path, match: re.Match[str] | None, now: float) -> bool:
    """Whether no running render can still be writing ``temp`` (``match``: its parsed name, None if unrecognised)."""
    if match is not None and match["host"] == HOST:
        pid = int(match["pid"])
        if pid == os.getpid():
            return temp not in _writing
        if not _pid_alive(pid):
            return True
    try:  # another host's, or a name this engine does not write: only its age tells
        return now - temp.stat().st_mtime > STALE_TEMP_SECONDS
    except OSError:
        return False
