"""The benchmark (``scripts.perf.benchmark``) and the GPU check's dry run write every figure with its metadata.

No timing is asserted: speed is read from the benchmark's figures (README, Performance), never from a unit test.
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import BUNDLE, run_python_module

#: every figure is stamped with these (the settings and versions it was measured with).
META = ("device", "dtype", "image_size", "batch", "steps", "repeats", "warmup", "torch", "monai", "preset", "unit")
TINY = ["--preset", "smoke", "--image-size", "16", "--batch", "2", "--steps", "2", "--repeats", "1"]
TINY += ["--train-iters", "1", "--growth-sizes", "16,32", "--growth-batches", "1,2", "--growth-steps", "1,2"]
#: figure names the default sections must produce (a prefix is enough where the name carries a setting).
EXPECTED = (
    "PIG paired sampling per pair",
    "2 x MONAI DiffusionInferer.sample per pair",
    "PIG / (2 x MONAI DiffusionInferer.sample)",
    "PIG step time outside the networks",
    "guider iteration, SupervisedTrainer",
    "generator iteration, SupervisedTrainer",
    "guider engine / bare loop",
    "generator engine / bare loop",
    "generator step / guider step",
    "sampling: inference_mode vs no_grad",
    "sampling: bfloat16 vs float32",
    "sampling: channels_last vs contiguous",
    "training guider: bfloat16 vs float32",
    "training generator: channels_last vs contiguous",
    "loader: num_workers 2 + persistent_workers vs 0",
    "peak memory: sample_fp32",
    "peak memory: train_generator",
    "peak above the loaded state: train_guider",
    "sampling step, batch 2",
    "sampling step, 32 px",
    "sampling run, 2 steps",
)


@pytest.mark.slow
def test_benchmark_writes_every_figure_with_its_metadata_and_the_plot(tmp_path):
    out = tmp_path / "perf"
    proc = run_python_module("scripts.perf.benchmark", [*TINY, "--out", out], one_thread=True)
    doc = json.loads((out / "benchmark.json").read_text())
    names = [f["name"] for f in doc["figures"]]
    for name in EXPECTED:
        assert name in names, f"figure {name!r} missing; got {names}"
    for f in doc["figures"]:
        missing = [k for k in META if k not in f]
        assert not missing, f"{f['name']}: no {missing}"
        assert isinstance(f["value"], float) and f["value"] == f["value"], f"{f['name']}: value {f['value']!r}"
    assert doc["meta"]["image_size"] == 16 and doc["meta"]["steps"] == 2 and doc["meta"]["monai"]
    png = out / "growth.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| sampling | PIG / (2 x MONAI DiffusionInferer.sample) |" in proc.stdout  # the printed table
    assert (out / "benchmark.md").read_text().startswith("| section | figure |")


def test_benchmark_help_documents_the_options():
    proc = run_python_module("scripts.perf.benchmark", ["--help"])
    for option in ("--preset", "--device", "--repeats", "--compile", "--sections", "--out", "--batch", "--steps"):
        assert option in proc.stdout


@pytest.mark.slow
def test_gpu_check_dry_run_writes_its_summary(tmp_path):
    """``gpu_check.sh --tiny`` runs every phase and the summary on the CPU, so the script cannot rot unnoticed."""
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("OUT", None)
    script = BUNDLE / "scripts" / "perf" / "gpu_check.sh"
    proc = subprocess.run(
        ["bash", str(script), "--tiny", "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (tmp_path / "log.txt").read_text()
    assert "phase core: exit 0" in log, log[-3000:]
    assert "phase duke_256: exit 0" in log, log[-3000:]  # PIG train, segmenter, sampling, evaluation (phantom)
    metrics = json.loads((tmp_path / "duke_256_metrics.json").read_text())
    assert metrics["headline"]["n_generated"] == 4 and metrics["memorisation"]["status"] == "ok"
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"core"}
    names = [f["name"] for f in results["core"]["figures"]]
    assert "PIG / (2 x MONAI DiffusionInferer.sample)" in names
    summary = (tmp_path / "summary.md").read_text()
    assert "## core" in summary and "## duke_256" in summary
    assert not (tmp_path / "growth.png").exists()  # the dry run has no growth section (the benchmark test plots it)
    assert len(list(tmp_path.iterdir())) <= 8  # what a lent machine's $OUT can hand back
