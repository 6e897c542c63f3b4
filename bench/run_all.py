"""Run every benchmark in bench/, one after another, each printing its own side-by-side ratios.

python bench/run_all.py [NAME ...]     # NAME: a benchmark file's stem, e.g. bench_features
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(p for p in BENCH.glob("bench_*.py") if not names or p.stem in names)
    failed = 0
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        failed += subprocess.run([sys.executable, str(script)], cwd=BENCH.parent).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
