"""End-to-end ``python -m monai.bundle run`` with the smoke overlay, as a user runs it from ``bundle/``."""

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import bundle_run

pytestmark = pytest.mark.slow


def check_pairs(out: Path, n: int, size: int) -> list[dict]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n
    for row in rows:
        img, lab = nib.load(out / row["image"]), nib.load(out / row["label"])
        assert img.shape == lab.shape == (size, size)
        assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8
        data = img.get_fdata()
        assert np.isfinite(data).all() and 0.0 <= data.min() and data.max() <= 1.0
        assert set(np.unique(lab.get_fdata())) <= {0.0, 1.0}
        assert np.allclose(img.affine, lab.affine)
        assert int(row["lesion_area_px"]) == int(lab.get_fdata().sum())
        assert row["guider"].startswith("guider.pt:sha256=") and row["generator"].startswith("generator.pt:sha256=")
        assert row["label_source"] == "condition"  # the bundle's default
    return rows


def train_and_sample(tmp_path: Path, n: int, *data_args: str, cache: Path | None = None) -> tuple[Path, Path]:
    ckpt, out, cache = tmp_path / "ckpt dir", tmp_path / "out", cache or tmp_path / "cache"
    proc = bundle_run("training", "train", "--ckpt_dir", str(ckpt), "--cache_dir", str(cache), *data_args)
    for name in ("guider.pt", "generator.pt", "guider_checkpoint.pt", "generator_checkpoint.pt", "dataset.json"):
        assert (ckpt / name).is_file(), name
    log = proc.stdout + proc.stderr  # the log says which stage runs, and at the end what was written where
    assert "stage 1 of 2: guider: training from scratch" in log and "stage 2 of 2: generator: done, weights" in log
    assert "resuming from iteration 0" not in log and "Engine run starting: epochs 1 to" in log  # a fresh run
    assert f"training finished: wrote guider.pt, generator.pt, preview.png, dataset.json in {ckpt}" in log
    assert list((ckpt / "runs").glob("*_training.json"))
    assert (ckpt / "preview.png").is_file()
    proc = bundle_run(
        "inference", "inference", "--ckpt_dir", str(ckpt), "--output_dir", str(out), "--num_samples", str(n)
    )
    log = proc.stdout + proc.stderr
    assert f"inference finished: wrote {n} × *_image.nii.gz, {n} × *_label.nii.gz, manifest.csv in {out}" in log
    check_pairs(out, n, 32)
    return ckpt, out


def test_smoke_training_and_inference_on_embedded_phantom(tmp_path, capsys):
    ckpt, out = train_and_sample(tmp_path, 3)
    # pair_stats finds the real slices from the training folder's dataset.json (the README's "What to expect")
    from scripts.evaluation.pair_stats import main as pair_stats

    result = pair_stats(["--ckpt_dir", str(ckpt), "--generated", str(out)])
    summary = __import__("json").loads((ckpt / "dataset.json").read_text())
    assert result["generated"]["n"] == 3 and result["real"]["n"] == summary["num_train_slices"] > 0
    assert "| masks touching the patch border (share) |" in capsys.readouterr().out
    # A second training run finds both stages complete and leaves the weights alone.
    before = (ckpt / "generator.pt").read_bytes()
    proc = bundle_run("training", "train", "--ckpt_dir", str(ckpt), "--cache_dir", str(tmp_path / "cache"))
    assert "stage already complete" in proc.stdout + proc.stderr
    assert (ckpt / "generator.pt").read_bytes() == before
    # Inference never overwrites: the same output folder is refused before anything is written.
    with pytest.raises(AssertionError, match="refusing to overwrite"):
        bundle_run("inference", "inference", "--ckpt_dir", str(ckpt), "--output_dir", str(out), "--num_samples", "3")
    # --output_formats adds the 3D Slicer and DICOM files beside the NIfTI pairs.
    more = tmp_path / "formats"
    proc = bundle_run("inference", "inference", "--ckpt_dir", str(ckpt), "--output_dir", str(more), "--num_samples",
                      "1", "--output_formats", "nifti,seg.nrrd,dicom_seg")  # fmt: skip
    check_pairs(more, 1, 32)
    assert "1 × *_label.seg.nrrd, 1 × *_image.dcm, 1 × *_label_seg.dcm, manifest.csv" in proc.stdout + proc.stderr
    assert sorted(p.name for p in more.glob("pig-s0-00000_*") if not p.name.endswith(".nii.gz")) == [
        "pig-s0-00000_image.dcm", "pig-s0-00000_label.seg.nrrd", "pig-s0-00000_label_seg.dcm"
    ]  # fmt: skip


def test_smoke_training_and_inference_on_duke_slices(tmp_path, duke_dir, duke_cache):
    ckpt, out = train_and_sample(tmp_path, 8, "--dataset_dir", str(duke_dir), cache=duke_cache)
    import json

    summary = json.loads((ckpt / "dataset.json").read_text())
    assert summary["num_train_slices"] > 0
    assert not set(summary["train_patients"]) & set(summary["validation_patients"])


def test_interrupted_training_resumes_from_checkpoint(tmp_path):
    """A run stopped after its first epoch continues from the resume checkpoint instead of starting over."""
    import torch

    ckpt, cache = tmp_path / "ckpt", tmp_path / "cache"
    bundle_run("training", "train", "--ckpt_dir", str(ckpt), "--cache_dir", str(cache), "--max_epochs", "1")
    first = torch.load(ckpt / "guider_checkpoint.pt", weights_only=True)
    assert first["trainer"]["iteration"] == 2  # ignite stores the iteration: 1 epoch x epoch_length 2
    # Simulate a run interrupted after epoch 1: only the resume checkpoints are left.
    for name in ("guider.pt", "generator.pt", "generator_checkpoint.pt"):
        (ckpt / name).unlink()
    proc = bundle_run(
        "training",
        "train",
        "--ckpt_dir",
        str(ckpt),
        "--cache_dir",
        str(cache),
        "--max_epochs",
        "2",
        "--use_ema",
        "True",
    )
    log = proc.stdout + proc.stderr
    assert "resumed from" in log and "at epoch 1" in log
    assert f"stage 1 of 2: guider: resuming from {ckpt / 'guider_checkpoint.pt'}" in log
    assert "stage 2 of 2: generator: training from scratch" in log  # its checkpoint was removed
    resumed = torch.load(ckpt / "guider_checkpoint.pt", weights_only=True)
    assert resumed["trainer"]["iteration"] == 4  # 2 epochs x epoch_length 2, the first one not repeated
    assert (ckpt / "generator.pt").is_file()
    assert "ema" in torch.load(ckpt / "generator_checkpoint.pt", weights_only=True)
