"""A Hugging Face cache laid out as ``hf download`` leaves it, for tests that load models by repo id, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache: Path, repo_id: str, folder: Path, pattern: str = "*") -> None:
    """Lay ``folder`` out as ``hf download repo_id`` would: a snapshot named by commit, ``refs/main``. ``pattern``
    copies only some files (a download that stopped after the configs)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    for file in folder.rglob(pattern):
        if file.is_file():
            target = snapshot / file.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
