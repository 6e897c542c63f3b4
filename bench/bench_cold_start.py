"""Cold start: a whole ``python -m engine render`` process against a plain diffusers script doing the same.

Both render one frame of tiny-random, 64x64, 2 DDIM steps, CFG 7.5, and write it as a PNG, each in a fresh Python
process, so every import, the model build and the render count. The plain script is what a diffusers user would
write: ``from diffusers import StableDiffusionPipeline``, the pipeline built from tiny-random's components, one
call, ``image.save``. Runs are interleaved, rotating which goes first; each figure is the median of N runs, of
wall time and of user+sys CPU time (the child's, from ``os.times()``), which a loaded machine disturbs less.

    python bench/bench_cold_start.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE, STEPS, GUIDANCE, SEED, PROMPT = 64, 2, 7.5, 46, "a floating orb"

PLAIN_SCRIPT = f"""
import sys
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
sys.path.insert(0, {str(ROOT)!r})
from engine.tiny_random import build_tiny_components

if int(sys.argv[2]) > 0:
    torch.set_num_threads(int(sys.argv[2]))
pipe = StableDiffusionPipeline(
    **build_tiny_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
)
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
image = pipe(
    {PROMPT!r}, height={SIZE}, width={SIZE}, num_inference_steps={STEPS}, guidance_scale={GUIDANCE},
    generator=torch.Generator().manual_seed({SEED}),
).images[0]
image.save(sys.argv[1])
"""


def job_document(threads: int) -> dict:
    return {
        "format": "diffusion-bender-job",
        "version": 1,
        "model": {"source": "tiny-random", "device": "cpu", "scheduler": "ddim", "threads": threads},
        "mode": "txt2img",
        "width": SIZE,
        "height": SIZE,
        "steps": STEPS,
        "guidance": GUIDANCE,
        "seed": SEED,
        "prompts": [PROMPT],
        "frames": [{"frame": 1}],
    }


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds and user+sys CPU seconds of one process (its rusage, counted once it is reaped), and its stdout."""
    before = os.times()
    started = time.perf_counter()
    process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = os.times()
    if process.returncode != 0:
        last = process.stderr.strip().splitlines()[-1:] or [str(process.returncode)]
        sys.exit(f"{' '.join(command[:4])} failed: {last[0]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, process.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each (default 5)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of both (default 1; 0: each one's own default)"
    )
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(DIFFUSERS_VERBOSITY="error", TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as folder:
        work = Path(folder)
        (work / "plain.py").write_text(PLAIN_SCRIPT, encoding="utf-8")
        runs = {
            "engine": lambda i: [sys.executable, "-m", "engine", "render", str(work / f"engine-{i}" / "job.json")],
            "plain diffusers": lambda i: [
                sys.executable,
                str(work / "plain.py"),
                str(work / f"plain-{i}.png"),
                str(args.threads),
            ],
        }
        walls: dict[str, list[float]] = {name: [] for name in runs}
        cpus: dict[str, list[float]] = {name: [] for name in runs}
        loaded: list[float] = []
        names = list(runs)
        for i in range(args.repeats):
            # a fresh output folder per engine run: a finished frame would be skipped, not rendered
            (work / f"engine-{i}").mkdir()
            (work / f"engine-{i}" / "job.json").write_text(json.dumps(job_document(args.threads)), encoding="utf-8")
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                wall, cpu, out = run_measured(runs[name](i), env)
                walls[name].append(wall)
                cpus[name].append(cpu)
                if name == "engine":
                    events = {e["event"]: e for e in map(json.loads, out.splitlines())}
                    assert events["done"]["rendered"] == 1, out
                    loaded.append(events["loaded"]["seconds"])
    load = os.getloadavg()
    print(
        f"cold start: one frame of tiny-random, {SIZE}x{SIZE}, {STEPS} DDIM steps, CFG {GUIDANCE:g}, each in a fresh "
        f"process, {args.threads} torch thread(s), median of {args.repeats} interleaved runs"
    )
    print(
        f"  on {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min) at the end"
    )
    for name in names:
        print(
            f"  {name:<16} wall {statistics.median(walls[name]):6.2f} s   "
            f"user+sys {statistics.median(cpus[name]):6.2f} s"
            f"   (walls {', '.join(f'{w:.1f}' for w in walls[name])})"
        )
    print(
        "  engine's loaded event (imports after the job is read, model build): "
        f"median {statistics.median(loaded):.2f} s"
    )
    plain_wall, engine_wall = statistics.median(walls["plain diffusers"]), statistics.median(walls["engine"])
    plain_cpu, engine_cpu = statistics.median(cpus["plain diffusers"]), statistics.median(cpus["engine"])
    print(
        f"  ratio engine / plain diffusers: wall {engine_wall / plain_wall:.2f}x, "
        f"user+sys {engine_cpu / plain_cpu:.2f}x (goal: at most 0.5x)"
    )


if __name__ == "__main__":
    main()
