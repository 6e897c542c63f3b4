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

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EngineError

if TYPE_CHECKING:  # Blender imports this module at registration, where numpy may be missing
    import numpy as np
from .files import UnsafeFileError, create_new, is_real_folder, open_regular, read_regular, write_all
from .limits import MAX_IMAGE_BYTES, MAX_MANIFEST_BYTES
from .stopping import critical

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
    except FileNotFoundError:
        # Reaped since kill(pid, 0) answered (a killed render's parent does it right then), so dead; unless there
        # is no procfs at all (macOS), where the age rule removes it later.
        return os.path.exists("/proc/self/stat")
    except (OSError, IndexError):
        return False


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
    """Create ``path`` with ``data``, flushed to disk (a seam the fault-injection tests patch).

    Created anew (``O_EXCL``, ``O_NOFOLLOW``): a link planted under a temporary's name is replaced, never followed.
    """
    fd = create_new(path, "temporary file")
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` with one ``O_APPEND`` write, so records of concurrent writers never interleave.

    Only to a regular file in the folder itself: a symbolic link, FIFO, device or hard-linked file is refused.
    """
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "manifest", follow=False, single_link=True)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NONBLOCK", 0))
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
            if not is_real_folder(self.folder):  # a link would lead the frames out of the job's folder
                raise UnsafeFileError(
                    f"output folder {self.folder} is a symbolic link or not a folder; make it a real folder"
                )
            probe = self.folder / temp_name("probe")
            os.close(create_new(probe, "temporary file"))
            probe.unlink()
            self._end_torn_line()
        except OSError as exc:
            raise EngineError(
                f"output folder {self.folder} is not writable ({exc.strerror}); choose another output folder"
            ) from exc
        with contextlib.suppress(OSError):  # tidying is best effort: a failing disk fails the first frame's write
            self.remove_temporaries()

    def _end_torn_line(self) -> None:
        """End a manifest line torn by a kill, so the next record does not join it and get lost with it."""
        try:
            fd = open_regular(self.manifest_path, os.O_RDONLY, "manifest", follow=False)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            torn = size > 0 and os.lseek(fd, size - 1, os.SEEK_SET) >= 0 and os.read(fd, 1) != b"\n"
        finally:
            os.close(fd)
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
            data = read_regular(self.manifest_path, "manifest", MAX_MANIFEST_BYTES, follow=False)
        except FileNotFoundError:
            return records
        except OSError as exc:
            raise EngineError(f"manifest {self.manifest_path} cannot be read ({exc.strerror}); remove it") from exc
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                records[int(record["frame"])] = record
            except (ValueError, KeyError, TypeError, RecursionError):  # torn, foreign or hostile lines
                continue
        return records

    def is_done(self, record: dict[str, Any] | None, frame_hash: str) -> bool:
        if record is None or record.get("hash") != frame_hash:
            return False
        try:
            data = read_regular(self.path(record["frame"]), "frame", MAX_IMAGE_BYTES, follow=False)
        except (OSError, EngineError, TypeError, ValueError):  # missing, special, or a record with a bad frame
            return False
        return hashlib.sha256(data).hexdigest() == record.get("sha256")

    def write(self, frame: int, png: bytes, record: dict[str, Any]) -> Path:
        """Write an encoded frame atomically, then record it in the manifest."""
        final = self.path(frame)
        temp = self.folder / temp_name(final.name)
        _writing.add(temp)
        try:
            with critical():  # a signal waits until the frame's file and record are written: no frame is lost
                _write_file(temp, png)
                os.replace(temp, final)
                _fsync_folder(self.folder)
                checksum = hashlib.sha256(png).hexdigest()
                line = json.dumps({**record, "frame": frame, "file": final.name, "sha256": checksum})
                _append(self.manifest_path, (line + "\n").encode("utf-8"))
        except OSError as exc:
            with contextlib.suppress(OSError):  # the disk turned read-only: the next run removes the stale temporary
                temp.unlink(missing_ok=True)
            full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
            fix = "free some disk space" if full else "make it writable"
            raise EngineError(
                f"frame {frame}: could not write {final} ({exc.strerror}); {fix} "
                "or choose another output folder, then render again to resume"
            ) from exc
        finally:
            _writing.discard(temp)
        return final

    def read(self, frame: int) -> np.ndarray:
        import numpy as np
        from PIL import Image

        path = self.path(frame)
        try:
            data = read_regular(path, "frame", MAX_IMAGE_BYTES, follow=False)
        except OSError as exc:
            raise EngineError(f"frame {frame}: cannot read {path} ({exc.strerror}); render the job again") from exc
        with Image.open(io.BytesIO(data)) as image:
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
