"""Opening files safely: only regular files, never blocking, and never through a link when writing in a job's folder.

A path the engine reads or writes may name a FIFO (``open()`` would block until a writer comes, beyond the reach of
SIGTERM), a device (``/dev/zero`` never ends), a socket, a symbolic link that leads out of the job's folder, or a
file with a second hard link elsewhere (an append would land there too). Every open here is non-blocking and
checks the file type on the opened descriptor (``fstat``: no window between the check and the use); files in an
output folder are opened with ``O_NOFOLLOW``, created with ``O_EXCL``, and appended to only when they have one link.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import EngineError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class UnsafeFileError(EngineError):
    """A path names something other than a regular file (or a file the engine must not write through)."""


def kind_of(mode: int) -> str:
    """What a file mode is, in words for an error message."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: Path, what: str, kind: str) -> UnsafeFileError:
    return UnsafeFileError(f"{what} {path} is {kind}, not a regular file; replace it with a regular file or remove it")


def open_regular(path: str | os.PathLike, flags: int, what: str, *, follow: bool = True, single_link: bool = False):
    """``os.open`` a regular file without blocking; returns the descriptor (blocking again, for plain I/O).

    ``what`` names the file in errors ("job file", "manifest"). ``follow=False`` refuses a symbolic link as the
    last component; ``single_link`` refuses a file with other hard links. OSErrors other than the file type
    propagate for the caller to word.
    """
    path = Path(path)
    extra = _NONBLOCK | _CLOEXEC | _BINARY | (0 if follow else _NOFOLLOW)
    try:
        fd = os.open(path, flags | extra, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise _refuse(path, what, "a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader opened for writing, or a socket
            raise _refuse(path, what, "a FIFO or socket") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, what, kind_of(info.st_mode))
        if single_link and info.st_nlink > 1:
            raise UnsafeFileError(
                f"{what} {path} has {info.st_nlink} hard links, so writing it would change another file too; "
                "replace it with a copy (cp, then mv over it) or remove it"
            )
        if _NONBLOCK and hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike, what: str, max_bytes: int, *, follow: bool = True) -> bytes:
    """The whole content of a regular file of at most ``max_bytes``; refused before reading when larger."""
    fd = open_regular(path, os.O_RDONLY, what, follow=follow)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise UnsafeFileError(
                f"{what} {path} is {size:,} bytes, more than the engine reads ({max_bytes:,} bytes); use a smaller file"
            )
        chunks = []
        total = 0
        while True:  # read until the end even if the file grew, but never past the limit
            chunk = os.read(fd, min(1 << 24, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UnsafeFileError(
                    f"{what} {path} grew beyond {max_bytes:,} bytes while being read; use a smaller file"
                )
        return b"".join(chunks)
    finally:
        os.close(fd)


def create_new(path: str | os.PathLike, what: str):
    """Create ``path`` for writing; a leftover (a stale temporary, or a link planted under its name) is removed
    first, never written through. Returns a blocking descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return open_regular(path, flags, what, follow=False)
    except FileExistsError:
        os.unlink(path)  # unlink removes a link itself, never what it points to
        return open_regular(path, flags, what, follow=False)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes the whole write unless the disk is full, which raises instead
        view = view[os.write(fd, view) :]


def is_real_folder(path: str | os.PathLike) -> bool:
    """A folder that is not a symbolic link (to a folder elsewhere)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def remove_planted(path: str | os.PathLike) -> None:
    """Remove whatever sits at ``path`` unless it is a regular file of one link, so a library that then opens the
    path for writing (PIL's ``save``) creates a new file instead of writing through a link, FIFO or device."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        if stat.S_ISDIR(info.st_mode):
            raise UnsafeFileError(f"{path} is a folder where the engine writes a file; move it away")
        os.unlink(path)
