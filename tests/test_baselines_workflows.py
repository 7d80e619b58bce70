"""End-to-end baseline runs (``baseline_train.json`` / ``baseline_inference.json`` + ``smoke.json``) from ``bundle/``.

All runs use ``--num_train_timesteps 16``: DDPM sampling takes every one of the T steps (1024 three 32 px samples
take about 25 s on one core even with the smoke U-Net); T = 16 runs the same code path, training included.
"""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import bundle_run

from scripts.seg.synthetic import synthetic_items

pytestmark = pytest.mark.slow

T = "16"


def train(ckpt: Path, cache: Path, generator_type: str, *args: str):
    return bundle_run(
        "training",
        "baseline_train",
        "--ckpt_dir",
        str(ckpt),
        "--cache_dir",
        str(cache),
        "--generator_type",
        generator_type,
        "--num_train_timesteps",
        T,
        *args,
    )


def sample(ckpt: Path, out: Path, generator_type: str, sampler: str, n: int = 3):
    bundle_run(
        "inference",
        "baseline_inference",
        "--ckpt_dir",
        str(ckpt),
        "--output_dir",
        str(out),
        "--generator_type",
        generator_type,
        "--sampler",
        sampler,
        "--num_samples",
        str(n),
        "--num_train_timesteps",
        T,
    )
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and list((out / "runs").glob("*_inference_*.json"))
    for row in rows:
        img = nib.load(out / row["image"])
        data = img.get_fdata()
        assert img.shape == (32, 32) and img.get_data_dtype() == np.float32
        assert np.isfinite(data).all() and 0.0 <= data.min() and data.max() <= 1.0
        assert row["generator_type"] == generator_type and row["sampler"] == sampler and row["guider"] == ""
        assert row["generator"].startswith(f"{generator_type}.pt:sha256=")
        # smoke.json asks for 2 steps: DDIM takes them, DDPM takes all T.
        assert int(row["num_inference_steps"]) == (int(T) if sampler == "ddpm" else 2)
    return rows


def test_image_only_baseline_trains_once_and_samples_with_ddpm_and_ddim(tmp_path):
    ckpt, cache = tmp_path / "ckpt", tmp_path / "cache"
    train(ckpt, cache, "image")
    for name in ("image.pt", "image_checkpoint.pt", "dataset.json", "train_masks.json", "preview_image.png"):
        assert (ckpt / name).is_file(), name
    assert list((ckpt / "runs").glob("*_training_image.json"))
    before = (ckpt / "image.pt").read_bytes()
    assert "stage already complete" in (lambda p: p.stdout + p.stderr)(train(ckpt, cache, "image"))
    assert (ckpt / "image.pt").read_bytes() == before
    for sampler in ("ddpm", "ddim"):
        out = tmp_path / sampler
        rows = sample(ckpt, out, "image", sampler)
        assert all(r["label"] == "" and r["lesion_area_px"] == "" for r in rows)
        assert not list(out.glob("*_label.nii.gz"))
        with pytest.raises(ValueError, match="image-only"):
            synthetic_items(str(out))
    # One trained model, two samplers: the same weights are recorded for both.
    assert len({r["generator"] for s in ("ddpm", "ddim") for r in sample_rows(tmp_path / s)}) == 1


def sample_rows(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def check_mask_pairs(out: Path, rows: list[dict], ckpt: Path) -> None:
    train_masks = {m["label"] for m in json.loads((ckpt / "train_masks.json").read_text())["masks"]}
    for row in rows:
        assert row["mask_source"] in train_masks  # masks come from the training split
        label = nib.load(out / row["label"]).get_fdata()
        np.testing.assert_array_equal(label, nib.load(row["mask_source"]).get_fdata())
        assert int(row["lesion_area_px"]) == int(label.sum()) > 0
    assert len(synthetic_items(str(out), image_size=32)) == len(rows)  # the segmentation experiment takes it


def test_concat_baseline_trains_and_samples_from_training_masks(tmp_path):
    ckpt = tmp_path / "ckpt"
    train(ckpt, tmp_path / "cache", "concat")
    assert (ckpt / "concat.pt").is_file() and (ckpt / "preview_concat.png").is_file()
    out = tmp_path / "out"
    check_mask_pairs(out, sample(ckpt, out, "concat", "ddpm"), ckpt)


def test_controlnet_baseline_needs_the_image_model_then_trains_on_it(tmp_path):
    ckpt, cache = tmp_path / "ckpt", tmp_path / "cache"
    with pytest.raises(AssertionError, match="image model .*not found.*--generator_type image first"):
        train(ckpt, cache, "controlnet")
    train(ckpt, cache, "image")
    proc = train(ckpt, cache, "controlnet")
    assert "ControlNet initialised from the image model" in proc.stdout + proc.stderr
    assert (ckpt / "controlnet.pt").is_file() and (ckpt / "controlnet_checkpoint.pt").is_file()
    out = tmp_path / "out"
    rows = sample(ckpt, out, "controlnet", "ddim")
    assert all(r["image_model"].startswith("image.pt:sha256=") for r in rows)
    check_mask_pairs(out, rows, ckpt)
