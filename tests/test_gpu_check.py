"""benchmarks/gpu_check.sh: valid bash, a loud stop without a GPU, and (smoke mode) every
step at toy sizes on the CPU with its Markdown report."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def run_script(out: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable,
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(SCRIPT.parents[1]),
                                                               os.environ.get("PYTHONPATH")])),
                   **env}
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                          env=environment, cwd=SCRIPT.parents[1], check=False)


def test_the_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop without a GPU")
def test_without_a_gpu_it_stops_at_once_saying_why(tmp_path):
    done = run_script(tmp_path / "report")
    assert done.returncode == 2
    assert "FAILED: no CUDA GPU is visible" in done.stderr
    assert not (tmp_path / "report").exists()


@pytest.mark.skipif(not os.environ.get("GRW_EDGE_SMOKE_TESTS"),
                    reason="runs the whole script, minutes on 2 cores: GRW_EDGE_SMOKE_TESTS=1")
def test_the_smoke_run_passes_every_step_and_writes_the_report(tmp_path):
    done = run_script(tmp_path / "report", GRW_EDGE_GPU_CHECK_SMOKE="1")
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "report" / "report.md").read_text()
    for step in ("graph-safety", "make-synthetic", "train", "train-resume", "torchrun-1-process", "eval",
                 "export", "verify-onnxruntime", "verify-torch-cpu", "model-only-speed",
                 "bench", "streams", "bench-compiled"):
        assert f"| {step} | ok |" in report
        assert f"## {step}\n" in report  # its own section, appended when it finished
    assert "time to the first step" in report and "streams @ 5 fps" in report
    assert "clips/s" in report and "ratio:" in report and "| movineta0s |" in report


def test_every_step_runs_under_a_timeout_and_appends_its_section():
    """Step by step: a killed run keeps the sections of the steps that finished."""
    text = SCRIPT.read_text()
    assert 'timeout "$STEP_TIMEOUT" "$@"' in text
    assert text.count('>> "$REPORT"') >= 3 and "rows.md" not in text
