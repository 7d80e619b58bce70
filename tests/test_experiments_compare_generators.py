"""The Table-1 runner ``scripts.experiments.compare_generators``: table formatting on fixed numbers, and one resumable
end-to-end smoke run of all five generators on the embedded phantom.

The smoke run uses ``smoke.json`` (32 px, 1 epoch of 2 iterations, 2 DDIM steps) with ``num_train_timesteps`` 16 for
every model: DDPM samples take all T steps, and T = 1024 would make DDPM alone cost about 1024 × 4 network
evaluations; T = 16 runs the same code path. The extractor is the sanity-only random ResNet-18 (offline, no weights
file), so the FID/KID values only prove the pipeline, not quality.
"""

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest
from helpers import LAUNCHER, run_python_module

from scripts.evaluation.sections import IMAGE_ONLY_REASON
from scripts.experiments.compare_generators import COLUMNS, format_table, parse_args, table_rows, write_outputs
from scripts.experiments.seg_grid import DUKE_NOTE
from scripts.experiments.stages import MARKER

KEYS = ("pig", "ddpm", "ddim", "concat", "controlnet")


def _metrics(fid: float, n: int, image_only: bool) -> dict:
    """A minimal ``metrics.json`` of ``run_evaluation`` with fixed numbers (shared real set and extractor)."""
    skipped = {"status": "skipped", "reason": IMAGE_ONLY_REASON}
    stats = {k: {"wasserstein": w} for k, w in (("area_px", 12.5), ("components", 0.25), ("eccentricity", 0.0042))}
    control = {"n_a": 5, "n_b": 6, "fid": 1.5, "kid_mean": 0.001, "kid_std": 0.0}
    return {
        "sets": {"real": {"n": 11, "split": "train", "format": "phantom", "patients": 3}},
        "extractor": {"name": "random_resnet18_seed0", "weights_sha256": "ab" * 32, "input_size_px": 64},
        "distances": {
            "generated_vs_real": {"fid": fid, "kid_mean": 0.125, "kid_std": 0.0634},
            "controls": {"real_half_a_vs_real_half_b": control, "real_vs_blurred_real": {**control, "fid": 40.0}},
            "half_split": "patient-wise",
            "blur_sigma_px": 1.0,
        },
        "diversity": {
            "generated": {"ms_ssim": {"mean": 0.5}, "mask_dice": skipped if image_only else {"mean": 0.2}},
            "real": {"ms_ssim": {"mean": 0.4}, "mask_dice": {"mean": 0.1}},
        },
        "mask_statistics": skipped if image_only else stats,
        "pair_consistency": skipped if image_only else {"status": "skipped", "reason": "seg_model_path is not set"},
        "headline": {"n_generated": n, "n_real": 11},
    }


def _config(rows: list[dict]) -> dict:
    m = _metrics(1.0, 4, False)
    args = {"num_samples": 4, "num_samples_ddpm": 2}
    return {"extractor": {**m["extractor"], "sanity_only": True}, "real_set": m["sets"]["real"], "arguments": args,
            "seed": 0, "rows": rows}  # fmt: skip


def test_table_rows_and_format_on_fixed_numbers():
    metrics = {"pig": _metrics(10.0, 4, False), "ddpm": _metrics(31.84, 2, True)}
    rows = table_rows(metrics, {"pig": 50, "ddpm": 1024}, {"pig": 2.0, "ddpm": 10.0})
    assert [r["key"] for r in rows] == ["pig", "ddpm", "real_half_a_vs_real_half_b", "real_vs_blurred_real", "real"]
    assert rows[0]["s_per_image"] == 0.5 and rows[1]["s_per_image"] == 5.0  # stage seconds / N of that row
    lines = format_table(rows).splitlines()
    assert lines[0] == "| " + " | ".join(h for h, _ in COLUMNS) + " |" and lines[1] == "|---" * len(COLUMNS) + "|"
    assert (
        lines[2] == "| PIG | DDIM | 50 | 4 | 10 | 0.125 ± 0.063 | 0.5 | 0.2 | 12.5 | 0.25 | 0.0042 | skipped | 0.5 |"
    )
    assert lines[3] == "| DDPM | DDPM | 1024 | 2 | 31.84 | 0.125 ± 0.063 | 0.5 |" + " skipped |" * 5 + " 5 |"
    assert lines[4] == "| control: real half A vs half B (patient-wise) | — | — | 5 vs 6 | 1.5 | 0.001 ± 0 | " + (
        "— | " * 6
    ) + "— |"  # fmt: skip
    assert lines[5].startswith("| control: real vs blurred real (σ 1 px) | — | — | 5 vs 6 | 40 |")
    assert lines[6] == "| real training set (diversity reference) | — | — | 11 | — | — | 0.4 | 0.1 |" + " — |" * 5
    # Evaluations against another real set (or extractor) are not comparable: refused.
    other = _metrics(5.0, 4, False)
    other["sets"]["real"]["n"] = 12
    with pytest.raises(ValueError, match="another real set or extractor"):
        table_rows({"pig": metrics["pig"], "ddim": other}, {"pig": 50, "ddim": 50}, {"pig": 1.0, "ddim": 1.0})


def test_write_outputs_header_and_never_overwrites(tmp_path):
    rows = table_rows({"pig": _metrics(10.0, 4, False)}, {"pig": 50}, {"pig": 2.0})
    first = write_outputs(tmp_path, rows, _config(rows))
    md = Path(first["table_md"]).read_text(encoding="utf-8")
    assert f"`random_resnet18_seed0` (weights SHA-256 `{'ab' * 32}`, 64 px input)" in md
    assert "pipeline check only" in md and "11 slices of the 'train' split" in md
    assert "N = 4 per generator (DDPM: 2)" in md and "biased upward" in md and DUKE_NOTE not in md
    before = {p: Path(p).read_bytes() for p in first.values()}
    config = _config(rows)
    config["real_set"] = {**config["real_set"], "format": "duke"}
    second = write_outputs(tmp_path, rows, config)
    assert {Path(p).name for p in first.values()} == {"table.md", "table.csv", "config.json"}
    assert set(second.values()).isdisjoint(first.values())
    assert {p: Path(p).read_bytes() for p in first.values()} == before
    assert DUKE_NOTE in Path(second["table_md"]).read_text(encoding="utf-8")
    with open(first["table_csv"], newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["key"] == "pig" and float(row["fid"]) == 10.0 and row["pair_dice"] == "skipped"
    assert float(row["kid_mean"]) == 0.125 and float(row["kid_std"]) == 0.0634


def test_parse_args_defaults_and_refusals():
    a = parse_args(["--work_dir", "w"])
    assert a.generators == list(KEYS) and a.num_samples_ddpm == a.num_samples
    assert a.fid_extractor == "random_resnet18_seed0"  # offline default without a seg model
    assert parse_args(["--work_dir", "w", "--seg_model_path", "m.pt"]).fid_extractor == "seg_unet_encoder"
    for bad in (["--generators", "pig,gan"], ["--generators", "pig,pig"], ["--num_samples", "1"],
                ["--overrides", '{"num_samples": 3}']):  # fmt: skip
        with pytest.raises(SystemExit):
            parse_args(["--work_dir", "w", *bad])


def _run(work: Path, cache: Path) -> subprocess.CompletedProcess:
    args = ["--work_dir", work, "--cache_dir", cache, "--overlay", "configs/smoke.json", "--overrides",
            '{"num_train_timesteps": 16, "preview_samples": 1}', "--num_samples", "4",
            "--launcher", LAUNCHER]  # fmt: skip
    return run_python_module("scripts.experiments.compare_generators", args)


@pytest.mark.slow
def test_compare_generators_smoke_end_to_end_and_resume(tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    _run(work, cache)
    with open(work / "table.csv", newline="", encoding="utf-8") as f:
        rows = {r["key"]: r for r in csv.DictReader(f)}
    assert list(rows) == [*KEYS, "real_half_a_vs_real_half_b", "real_vs_blurred_real", "real"]
    for key in (*KEYS, "real_half_a_vs_real_half_b", "real_vs_blurred_real"):
        for col in ("fid", "kid_mean", "kid_std"):
            assert math.isfinite(float(rows[key][col])), (key, col)
    for key in KEYS:
        assert rows[key]["n"] == "4" and float(rows[key]["s_per_image"]) > 0
        assert float(rows[key]["ms_ssim"]) >= 0
    assert rows["ddpm"]["steps"] == "16" and rows["ddim"]["steps"] == "2" and rows["pig"]["steps"] == "2"
    for key in ("ddpm", "ddim"):  # image-only: every mask column skipped, never a number
        assert all(rows[key][c] == "skipped" for c in ("mask_dice", "w_area_px", "w_components", "pair_dice"))
    for key in ("pig", "concat", "controlnet"):
        assert math.isfinite(float(rows[key]["mask_dice"])) and math.isfinite(float(rows[key]["w_area_px"]))
    table = (work / "table.md").read_text(encoding="utf-8")
    assert "random_resnet18_seed0" in table and "pipeline check only" in table and "biased upward" in table
    config = json.loads((work / "config.json").read_text(encoding="utf-8"))
    assert "scripts.experiments.compare_generators" in config["command"] and config["versions"]["packages"]["torch"]
    assert set(config["checkpoints_sha256"]) == {"pig", "image", "concat", "controlnet"}
    assert all(len(h) == 64 for d in config["checkpoints_sha256"].values() for h in d.values())
    assert len(config["checkpoints_sha256"]["pig"]) == 2  # guider + generator
    assert all(s["seconds"] > 0 and "monai.bundle" in s["command"] for s in config["stages"].values())
    assert len(config["stages"]) == 4 + 5 + 5  # trainings (pig, image, concat, controlnet), samples, evaluations
    # DDPM and DDIM sample the one image model; ControlNet's frozen model is that same file.
    manifests = {}
    for key in KEYS:
        with open(work / "samples" / key / "manifest.csv", newline="", encoding="utf-8") as f:
            manifests[key] = list(csv.DictReader(f))
    assert manifests["ddpm"][0]["generator"] == manifests["ddim"][0]["generator"]
    assert manifests["controlnet"][0]["image_model"] == manifests["ddim"][0]["generator"]

    # Rerun: every stage skipped (markers untouched), a second table written beside the first.
    markers = {p: p.read_bytes() for p in work.rglob(MARKER)}
    assert len(markers) == 14
    first = {p.name: p.read_bytes() for p in work.glob("*.*")}
    proc = _run(work, cache)
    assert proc.stderr.count(": complete (") == 14 and ": running (" not in proc.stderr
    assert {p: p.read_bytes() for p in work.rglob(MARKER)} == markers
    assert {p.name: p.read_bytes() for p in work.glob("*.*") if p.name in first} == first
    assert len(list(work.glob("table_*.md"))) == len(list(work.glob("table_*.csv"))) == 1
    assert len(list(work.glob("config_*.json"))) == 1
