"""The DDIM-steps runner ``scripts.experiments.steps_sweep``: the equal-to-reference rule on fixed numbers, and one
resumable end-to-end smoke run (``smoke.json`` PIG on the embedded phantom, 1 and 2 steps, N = 4, the sanity-only
random ResNet-18 extractor: the numbers only prove the pipeline)."""

import csv
import json
import subprocess
from pathlib import Path

import pytest
from helpers import LAUNCHER, bundle_run, run_python_module

from scripts.experiments.stages import MARKER
from scripts.experiments.steps_sweep import COLUMNS, format_table, parse_args, sweep_rows


def _metrics(kid: float, n: int = 8, real_n: int = 11) -> dict:
    """A minimal ``metrics.json`` of ``run_evaluation``: KID ``kid`` ± 0.01, the control 0.002 ± 0.005."""
    control = {"n_a": 5, "n_b": 6, "fid": 1.5, "kid_mean": 0.002, "kid_std": 0.005}
    return {
        "sets": {"real": {"n": real_n, "split": "train", "patients": 3}},
        "extractor": {"name": "seg_unet_encoder", "weights_sha256": "ab" * 32, "input_size_px": 64},
        "distances": {
            "generated_vs_real": {"fid": 3.0, "kid_mean": kid, "kid_std": 0.01},
            "controls": {"real_half_a_vs_real_half_b": control,
                         "generated_subset_vs_real_half_a": {"kid_mean": kid + 0.001, "kid_std": 0.02}},
            "half_split": "patient-wise",
        },  # fmt: skip
        "diversity": {"generated": {"mask_dice": {"mean": 0.3}}},
        "mask_statistics": {"area_px": {"wasserstein": 40.0}, "components": {"wasserstein": 0.5}},
        "pair_consistency": {"status": "ok", "dice_mean": 0.4},
        "headline": {"n_generated": n},
    }


def test_sweep_rows_equal_within_the_real_half_spread():
    # |ΔKID| against the 256-step reference: 0.004 (within the control's std 0.005), 0.006 (outside).
    metrics = {25: _metrics(0.026), 50: _metrics(0.024), 256: _metrics(0.020)}
    rows = sweep_rows(metrics, {25: 4.0, 50: 8.0, 256: 40.0}, reference_steps=256)
    assert [r["key"] for r in rows] == ["steps_25", "steps_50", "steps_256", "real_half_a_vs_real_half_b"]
    assert [r["equal"] for r in rows[:3]] == ["no", "yes", "reference"]
    assert rows[0]["delta_kid"] == pytest.approx(0.006) and rows[0]["s_per_pair"] == 0.5
    assert rows[1]["kid_subset"] == (0.025, 0.02) and rows[0]["pair_dice"] == 0.4
    lines = format_table(rows).splitlines()
    assert lines[0] == "| " + " | ".join(h for h, _ in COLUMNS) + " |"
    assert lines[3].startswith("| 50 | 8 | 0.024 ± 0.01 | 3 | 0.025 ± 0.02 | 0.4 | 40 | 0.5 | 0.3 | 1 |")
    assert lines[-1].startswith("| control: real half A vs half B (patient-wise) | 5 vs 6 | 0.002 ± 0.005 | 1.5 |")
    with pytest.raises(ValueError, match="another real set"):
        sweep_rows({25: _metrics(0.02, real_n=12), 256: _metrics(0.02)}, {25: 1.0, 256: 1.0}, 256)


def test_parse_args_refusals():
    a = parse_args(["--work_dir", "w", "--ckpt_dir", "c", "--steps", "50,25,256,50"])
    assert a.steps == [25, 50, 256] and a.reference_steps == 256 and a.fid_extractor == "random_resnet18_seed0"
    for bad in (["--steps", "50"], ["--steps", "0,5"], ["--steps", "a,b"], ["--reference_steps", "7"],
                ["--num_samples", "1"], ["--overrides", '{"num_inference_steps": 3}']):  # fmt: skip
        with pytest.raises(SystemExit):
            parse_args(["--work_dir", "w", "--ckpt_dir", "c", *bad])


def _sweep(work: Path, ckpt: Path, cache: Path) -> subprocess.CompletedProcess:
    args = ["--work_dir", work, "--ckpt_dir", ckpt, "--cache_dir", cache, "--overlay", "configs/smoke.json",
            "--steps", "1,2", "--num_samples", "4", "--launcher", LAUNCHER]  # fmt: skip
    return run_python_module("scripts.experiments.steps_sweep", args)


@pytest.mark.slow
def test_steps_sweep_smoke_end_to_end_and_resume(tmp_path):
    ckpt, cache, work = tmp_path / "pig", tmp_path / "cache", tmp_path / "work"
    bundle_run("training", "train", "--ckpt_dir", ckpt, "--cache_dir", cache, "--preview_samples", 0)
    _sweep(work, ckpt, cache)
    with open(work / "table.csv", newline="", encoding="utf-8") as f:
        rows = {r["key"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["steps_1", "steps_2", "real_half_a_vs_real_half_b"]
    assert rows["steps_2"]["equal"] == "reference" and rows["steps_1"]["equal"] in ("yes", "no")
    for key in ("steps_1", "steps_2"):
        assert rows[key]["n"] == "4" and float(rows[key]["s_per_pair"]) > 0 and float(rows[key]["kid_std"]) >= 0
        with open(work / "samples" / key / "manifest.csv", newline="", encoding="utf-8") as f:
            assert len(list(csv.DictReader(f))) == 4
    # Same seed, other step count: the two settings' pairs differ (the steps override reached the sampler).
    a, b = (work / "samples" / k / "pig-s0-00000_image.nii.gz" for k in ("steps_1", "steps_2"))
    assert a.read_bytes() != b.read_bytes()
    png = (work / "steps_kid.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((work / "config.json").read_text(encoding="utf-8"))
    assert len(config["checkpoints_sha256"]) == 2 and len(config["stages"]) == 4
    assert "pipeline check only" in (work / "table.md").read_text(encoding="utf-8")
    # Rerun: every stage skipped, a second table beside the first.
    markers = {p: p.read_bytes() for p in work.rglob(MARKER)}
    proc = _sweep(work, ckpt, cache)
    assert proc.stderr.count(": complete (") == 4 and ": running (" not in proc.stderr
    assert {p: p.read_bytes() for p in work.rglob(MARKER)} == markers
    assert len(list(work.glob("table_*.md"))) == len(list(work.glob("steps_kid_*.png"))) == 1
