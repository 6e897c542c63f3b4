"""The toy model's bend sheets for the README, made with the project's own ``python -m engine sweep``.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/toy_model/sheets.py [--out docs/images] [--work /tmp/toy-sheets]

* ``toy-r1-sweep.png``: R1 over 8 angles in [0, 2π) × latent layers 0-19 of 20 (the paper's figure 5 grid);
* ``toy-operators.png``: one sweep per operator (add, threshold, inversion, R1-R4, reflection, erosion,
  dilation), each over a few values at latent layers 12 and 19 of 20 (the model repairs most bends made earlier),
  stacked into one picture.

The sweep files and their rendered rows go to ``--work``; rerunning resumes what is already rendered.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

PROMPT = "a gorgeous landscape"
STEPS = 20
LAYERS = [12, 19]
# (bend name, operator, options, values): values None for an operator without a parameter
OPERATORS = [
    ("add", "add", {}, [-1.0, -0.5, 0.5, 1.0]),
    ("threshold", "threshold", {}, [-0.5, 0.0, 0.5]),
    ("inversion", "invert", {}, [0.5, 1.0, 2.0]),
    ("R1", "rotate_r1", {}, [math.pi / 2, math.pi]),
    ("R2", "rotate_r2", {}, [math.pi / 2, math.pi]),
    ("R3", "rotate_r3", {}, [math.pi / 2, math.pi]),
    ("R4", "rotate_r4", {}, [math.pi / 2, math.pi]),
    ("reflection", "reflect", {"channel": 0}, None),
    ("erosion", "erode", {}, [2.0, 3.0, 5.0]),
    ("dilation", "dilate", {}, [2.0, 3.0, 5.0]),
]


def sweep_document(name: str, op: str, options: dict, values, layers: list[int], prompt: str, seed: int) -> dict:
    bend = {"name": name, "op": op, "latent_layer": layers[0], **({"options": options} if options else {})}
    frame = {"frame": 0, "phase": 0.0}
    if values is not None:
        frame["bends"] = {name: values[0]}
    sweep = {"bend": name, "layers": layers}
    if values is not None:
        sweep["values"] = values
    return {
        "format": "diffusion-bender-job",
        "version": 1,
        "model": {"source": "toy-shapes", "device": "cpu"},
        "mode": "txt2img",
        "width": 64,
        "height": 64,
        "steps": STEPS,
        "guidance": 5.0,
        "seed": seed,
        "prompts": [prompt],
        "bends": [bend],
        "frames": [frame],
        "sweep": sweep,
    }


def run_sweep(document: dict, path: Path, sheet: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    command = [sys.executable, "-m", "engine", "sweep", str(path), "--sheet", str(sheet)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{path.name}: engine sweep failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")


def stack(sheets: list[Path], out: Path) -> None:
    from PIL import Image

    images = [Image.open(s).convert("RGB") for s in sheets]
    width = max(i.width for i in images)
    canvas = Image.new("RGB", (width, sum(i.height for i in images)), (255, 255, 255))
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    canvas.save(out, optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--work", type=Path, default=Path("/tmp/toy-sheets"))
    parser.add_argument("--seed", type=int, default=46)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    r1 = sweep_document("R1", "rotate_r1", {}, None, [0, 4, 8, 12, 16, 19], PROMPT, args.seed)
    r1["frames"][0]["bends"] = {"R1": 0.0}
    r1["sweep"]["values"] = {"start": 0, "stop": 2 * math.pi, "count": 8, "endpoint": False}
    run_sweep(r1, args.work / "r1" / "r1.json", args.out / "toy-r1-sweep.png")
    print(f"wrote {args.out / 'toy-r1-sweep.png'}")

    parts = []
    for name, op, options, values in OPERATORS:
        sheet = args.work / name / f"{name}.png"
        run_sweep(
            sweep_document(name, op, options, values, LAYERS, PROMPT, args.seed), sheet.with_suffix(".json"), sheet
        )
        parts.append(sheet)
        print(f"rendered {name}")
    stack(parts, args.out / "toy-operators.png")
    print(f"wrote {args.out / 'toy-operators.png'}")


if __name__ == "__main__":
    main()
