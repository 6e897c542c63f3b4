"""What a cold ``python -m engine render`` imports: the model's own modules, not diffusers' registry of pipelines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from job_documents import job_document, write_job
from test_cli import ROOT

# Runs the CLI's main() as ``python -m engine`` does, then reports which of these modules it had imported.
PROBE = """
import json, sys
from engine.cli import main
code = main(sys.argv[1:])
watched = ("diffusers.pipelines", "engine.postprocess", "engine.features")
print(json.dumps({"code": code, "imported": [m for m in watched if m in sys.modules]}), file=sys.stderr)
"""


def test_a_tiny_render_imports_no_pipeline_registry_and_no_audio_features(tmp_path):
    job = write_job(tmp_path, job_document(1, steps=1))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "render", str(job)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "imported": []}, result.stderr[-2000:]
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()][-1] == "done"
