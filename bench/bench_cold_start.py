"""Cold start: a whole ``python -m engine render`` process against a plain diffusers script doing the same.

Both render one frame of tiny-random, 64x64, 2 DDIM steps, CFG 7.5, and write it as a PNG, each in a fresh Python
process, so every import, the model build and the render count. The plain script is what a diffusers user would
write: ``from diffusers import StableDiffusionPipeline``, the pipeline built from tiny-random's components, one
call, ``image.save``. Runs are interleaved, rotating which goes first; each figure is the median of N runs, of
wall time and of user+sys CPU time (the child's, from ``os.times()``), which a loaded machine disturbs less, and
for the engine the time until its first event (``start``, written before torch is imported).

``--baseline DIR`` times another copy of the extension beside this one (say the last commit:
``mkdir /tmp/head && git archive HEAD | tar -x -C /tmp/head``); ``--importtime N`` then prints where one engine run's
imports go (``python -X importtime``): the N libraries with the most import time of their own, and the imports
made at the top level with their cumulative time.

``--threads-check FRAMES`` instead renders a FRAMES-frame job (64x64, 8 steps) through the engine with its own
thread default (``model.threads`` 0: every core but one) and with torch's (every core), interleaved, and prints
the seconds per frame of each with the load average: the difference shows when other processes want the cores.

    python bench/bench_cold_start.py [--repeats N] [--threads N] [--baseline DIR] [--importtime N]
    python bench/bench_cold_start.py --threads-check FRAMES [--repeats N]
"""

from __future__ import annotations

import argparse
import collections
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


def run_measured(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall seconds and user+sys CPU seconds of one process (its rusage, counted once it is reaped), the wall
    seconds until its first line of stdout (nan if it wrote none), and its stdout."""
    before = os.times()
    started = time.perf_counter()
    first_line = float("nan")
    lines = []
    with tempfile.TemporaryFile(mode="w+") as errors:
        with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=errors, text=True) as process:
            for line in process.stdout:
                if not lines:
                    first_line = time.perf_counter() - started
                lines.append(line)
        wall = time.perf_counter() - started
        after = os.times()
        if process.returncode != 0:
            errors.seek(0)
            last = errors.read().strip().splitlines()[-1:] or [str(process.returncode)]
            sys.exit(f"{' '.join(command[:4])} failed: {last[0]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, first_line, "".join(lines)


def import_summary(stderr: str, top: int) -> list[str]:
    """``python -X importtime`` output, summed: self time per library, and where one library pulls in another."""
    rows = []  # (self µs, cumulative µs, module, depth), children before their parent (importtime's order)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((int(self_us), int(cumulative_us), name.strip(), depth))
    own: collections.Counter[str] = collections.Counter()
    entries = []  # the first module of a library that another library (or the script) imported
    for i, (self_us, cumulative_us, name, depth) in enumerate(rows):
        library = name.split(".")[0]
        own[library] += self_us
        parent = next((r[2] for r in rows[i + 1 :] if r[3] == depth - 1), None) if depth else None
        if parent is None or parent.split(".")[0] != library:
            entries.append((cumulative_us, name, parent or "(top level)"))
    out = [f"  imports: {sum(own.values()) / 1e6:.2f} s in all (importtime's own overhead included)"]
    out.append(f"  the {top} libraries with the most import time of their own:")
    out += [f"    {name:<24} {us / 1e6:6.2f} s" for name, us in own.most_common(top)]
    out.append(f"  the {top} largest imports of one library by another (cumulative, what they pulled in included):")
    out += [f"    {name:<52} {us / 1e6:6.2f} s  <- {by}" for us, name, by in sorted(entries, reverse=True)[:top]]
    return out


def threads_check(work: Path, env: dict[str, str], frames: int, repeats: int) -> None:
    """Seconds per frame with the engine's default threads against torch's default (every core), interleaved."""
    cores = os.cpu_count() or 1
    counts = {"engine default (model.threads 0)": 0, f"torch's default ({cores} threads)": cores}
    seconds: dict[str, list[float]] = {name: [] for name in counts}
    used: dict[str, set[int]] = {name: set() for name in counts}
    load = os.getloadavg()
    for i in range(repeats):
        for name, threads in counts.items():
            doc = job_document(threads) | {"steps": 8, "frames": [{"frame": f + 1} for f in range(frames)]}
            job = work / f"threads-{threads}-{i}" / "job.json"
            job.parent.mkdir()
            job.write_text(json.dumps(doc), encoding="utf-8")
            *_, out = run_measured([sys.executable, "-m", "engine", "render", str(job)], ROOT, env)
            events = [json.loads(line) for line in out.splitlines()]
            seconds[name] += [e["seconds"] for e in events if e["event"] == "frame"]
            used[name] |= {e["threads"] for e in events if e["event"] == "loaded"}
    end = os.getloadavg()
    print(
        f"threads: {frames} frames of tiny-random, {SIZE}x{SIZE}, 8 DDIM steps, CFG {GUIDANCE:g}, {repeats} "
        f"interleaved runs each, on {cores} cores; load average {load[0]:.2f} at the start, {end[0]:.2f} at the end"
    )
    for name in counts:
        values = seconds[name]
        print(
            f"  {name:<34} {statistics.median(values):6.2f} s a frame (median; {min(values):.2f} to "
            f"{max(values):.2f}), torch threads {', '.join(map(str, sorted(used[name])))}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each (default 5)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of both (default 1; 0: each one's own default)"
    )
    parser.add_argument("--baseline", type=Path, help="another copy of the extension to time beside this one")
    parser.add_argument(
        "--importtime", type=int, default=0, metavar="N", help="print the N largest imports of one engine run"
    )
    parser.add_argument(
        "--threads-check", type=int, default=0, metavar="FRAMES", help="compare thread defaults instead (see above)"
    )
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "engine" / "__main__.py").is_file():
        sys.exit(f"--baseline: {args.baseline} holds no engine/__main__.py; give a copy of the extension's root")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(DIFFUSERS_VERBOSITY="error", TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as folder:
        work = Path(folder)
        if args.threads_check:
            threads_check(work, env, args.threads_check, args.repeats)
            return
        (work / "plain.py").write_text(PLAIN_SCRIPT, encoding="utf-8")
        roots = {"engine": ROOT} | ({"engine, baseline": args.baseline.resolve()} if args.baseline else {})

        def engine_run(name: str, i: int) -> tuple[list[str], Path]:
            # a fresh output folder per engine run: a finished frame would be skipped, not rendered
            job = work / f"{name}-{i}".replace(", ", "-") / "job.json"
            job.parent.mkdir()
            job.write_text(json.dumps(job_document(args.threads)), encoding="utf-8")
            return [sys.executable, "-m", "engine", "render", str(job)], roots[name]

        runs = {name: (lambda i, name=name: engine_run(name, i)) for name in roots}
        runs["plain diffusers"] = lambda i: (
            [sys.executable, str(work / "plain.py"), str(work / f"plain-{i}.png"), str(args.threads)],
            ROOT,
        )
        walls: dict[str, list[float]] = {name: [] for name in runs}
        cpus: dict[str, list[float]] = {name: [] for name in runs}
        starts: dict[str, list[float]] = {name: [] for name in roots}
        loaded: dict[str, list[float]] = {name: [] for name in roots}
        again: dict[str, list[float]] = {name: [] for name in roots}  # user+sys of a re-run with nothing to render
        names = list(runs)
        for i in range(args.repeats):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                command, cwd = runs[name](i)
                wall, cpu, first_line, out = run_measured(command, cwd, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
                if name in roots:
                    events = {e["event"]: e for e in map(json.loads, out.splitlines())}
                    assert events["done"]["rendered"] == 1, out
                    loaded[name].append(events["loaded"]["seconds"])
                    starts[name].append(first_line)
                    _, cpu, _, out = run_measured(command, cwd, env)  # the same job again: its frame is done
                    assert json.loads(out.splitlines()[-1])["skipped"] == 1, out
                    again[name].append(cpu)
        if args.importtime:
            command, cwd = engine_run("engine", args.repeats)
            traced = subprocess.run(
                [command[0], "-X", "importtime", *command[1:]], cwd=cwd, env=env, capture_output=True, text=True
            )
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
            f"  {name:<17} wall {statistics.median(walls[name]):6.2f} s   "
            f"user+sys {statistics.median(cpus[name]):6.2f} s"
            f"   (walls {', '.join(f'{w:.1f}' for w in walls[name])})"
        )
    for name in roots:
        print(
            f"  {name}: first event (start) after {statistics.median(starts[name]):.2f} s; loaded event (imports "
            f"after the start, model build) {statistics.median(loaded[name]):.2f} s; the same job again (nothing "
            f"to render) user+sys {statistics.median(again[name]):.2f} s (medians)"
        )
    plain_wall, plain_cpu = statistics.median(walls["plain diffusers"]), statistics.median(cpus["plain diffusers"])
    for name in roots:
        engine_wall, engine_cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(
            f"  ratio {name} / plain diffusers: wall {engine_wall / plain_wall:.2f}x, "
            f"user+sys {engine_cpu / plain_cpu:.2f}x (goal: at most 0.5x)"
        )
    if args.importtime:
        print(f"one more engine run under python -X importtime (exit code {traced.returncode}):")
        print("\n".join(import_summary(traced.stderr, args.importtime)))


if __name__ == "__main__":
    main()
