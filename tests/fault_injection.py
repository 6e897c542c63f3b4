"""Run ``python -m engine`` with one fault injected, as a user's machine would suffer it.

    python tests/fault_injection.py FAULT N [ARG] -- ENGINE ARGS...

Faults (N counts calls from 1; the fault hits call N, or every call from N on for the ``*-from`` kinds):
    kill-png N          write half of the N-th frame's temporary file, then SIGKILL this process
    kill-manifest N     write half of the N-th manifest record, then SIGKILL this process
    enospc N            write half of the N-th frame file, then fail with ENOSPC (disk full)
    enospc-from N       the same for the N-th and every later frame file (the disk stays full)
    oom N               the N-th U-Net call raises torch.OutOfMemoryError, as CUDA does
    slow-unet 0 S       every U-Net call sleeps S seconds first (so a test can signal mid-render)
    fifo-unet 0 PATH    every U-Net call first opens the FIFO at PATH and reads it to its end: a call that blocks
                        in open() and read() for as long as the test likes
    hold-write N PATH   the N-th frame file stays half-written until PATH exists (so another worker overlaps)
    readonly-from N     the output filesystem turns read-only at the N-th frame file: that write and every later
                        write, rename and unlink fail with EROFS (the error handler's own cleanup included)
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _inject(kind: str, n: int, arg: str) -> None:
    from engine import frame_store

    calls = {"png": 0, "manifest": 0, "unet": 0}
    write_file, append = frame_store._write_file, frame_store._append

    def half_then(path: Path, data: bytes, then) -> None:
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        then()

    def disk_full() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def faulty_write(path: Path, data: bytes) -> None:
        calls["png"] += 1
        hit = calls["png"] == n or (kind == "enospc-from" and calls["png"] >= n)
        if kind == "kill-png" and hit:
            half_then(path, data, lambda: os.kill(os.getpid(), signal.SIGKILL))
        elif kind in ("enospc", "enospc-from") and hit:
            half_then(path, data, disk_full)
        elif kind == "readonly-from" and calls["png"] >= n:
            readonly["on"] = True
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        elif kind == "hold-write" and hit:
            half_then(path, data, lambda: _wait_for(Path(arg)))
            write_file(path, data)
        else:
            write_file(path, data)

    def faulty_append(path: Path, data: bytes) -> None:
        if len(data) > 1:  # a record, not the newline that ends a torn line
            calls["manifest"] += 1
            if kind == "kill-manifest" and calls["manifest"] == n:
                with open(path, "ab") as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
        append(path, data)

    frame_store._write_file = faulty_write
    frame_store._append = faulty_append
    if kind == "readonly-from":
        readonly = {"on": False}
        unlink = Path.unlink

        def read_only_unlink(self, *args, **kwargs):
            if readonly["on"]:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            return unlink(self, *args, **kwargs)

        Path.unlink = read_only_unlink
    if kind in ("oom", "slow-unet", "fifo-unet"):
        import torch
        from diffusers import UNet2DConditionModel

        forward = UNet2DConditionModel.forward

        def faulty_forward(self, *args, **kwargs):
            calls["unet"] += 1
            if kind == "oom" and calls["unet"] == n:
                raise torch.OutOfMemoryError(
                    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.79 GiB of "
                    "which 1.06 GiB is free.\nOf the allocated memory 5.1 GiB is allocated by PyTorch"
                )
            if kind == "slow-unet":
                time.sleep(float(arg))
            if kind == "fifo-unet":
                with open(arg, "rb") as fifo:
                    fifo.read()
            return forward(self, *args, **kwargs)

        UNet2DConditionModel.forward = faulty_forward


def _wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def main(argv: list[str]) -> int:
    split = argv.index("--")
    kind, n, *rest = argv[:split]
    _inject(kind, int(n), rest[0] if rest else "")
    from engine.cli import main as engine_main

    return engine_main(argv[split + 1 :])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
