"""End-to-end ``python -m monai.bundle run`` of the segmentation configs with ``seg_smoke.json``, from ``bundle/``."""

import json
import re
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import bundle_run
from test_seg_synthetic import make_pig_folder

pytestmark = pytest.mark.slow
#: run id → workflow config (``scripts.common.configs``).
WORKFLOWS = {
    "training": "seg_train", "evaluating": "seg_evaluate", "inference": "seg_inference", "external": "seg_evaluate"
}  # fmt: skip


@pytest.fixture(scope="module")
def seg_cache(tmp_path_factory) -> Path:
    """One prepared-slice cache of the phantom for the module (the Duke slices use the session's ``duke_cache``)."""
    return tmp_path_factory.mktemp("seg_cache")


def seg_run(run_id: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return bundle_run(run_id, WORKFLOWS[run_id], *args, check=check)


def train_and_evaluate(ckpt: Path, cache: Path, *data_args: str) -> tuple[dict, dict, str]:
    proc = seg_run("training", "--ckpt_dir", str(ckpt), "--cache_dir", str(cache), *data_args)
    log = proc.stdout
    assert f"segmentation training finished: wrote seg_model.pt, folds.json, seg_preparation.json in {ckpt}" in (
        proc.stdout + proc.stderr
    )
    state = torch.load(ckpt / "seg_model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())  # plain state_dict, as MONAI Label loads it
    folds = json.loads((ckpt / "folds.json").read_text())
    train_p, val_p, test_p = (set(folds[f"{k}_patients"]) for k in ("train", "validation", "test"))
    assert val_p and not train_p & val_p and not (train_p | val_p) & test_p  # selection on inner validation
    assert folds["test_patients"] == folds["folds"][0]
    log += seg_run("evaluating", "--ckpt_dir", str(ckpt), "--cache_dir", str(cache), *data_args).stdout
    metrics = json.loads((ckpt / "eval" / "metrics.json").read_text())
    assert set(metrics["mean"]) == {"dice", "iou", "precision", "recall"}
    assert all(0.0 <= v <= 1.0 for v in metrics["mean"].values())
    assert metrics["num_images"] == folds["num_test_items"] == len(metrics["per_image"])  # the held-out fold
    assert (ckpt / "eval" / "metrics_per_image.csv").is_file() and (ckpt / "eval" / "val_dice_raw.csv").is_file()
    assert re.search(r"lesion metrics over \d+ image\(s\): dice [\d.]+, iou [\d.]+, precision [\d.]+, recall", log)
    return folds, metrics, log


def test_seg_smoke_on_embedded_phantom_train_evaluate_infer(tmp_path, seg_cache):
    ckpt = tmp_path / "ckpt dir"
    folds, _, log = train_and_evaluate(ckpt, seg_cache)
    assert f"training set as loaded: {folds['num_train_items']} real + 0 synthetic" in log
    # A second evaluation into the same folder is refused before anything is written.
    metrics_file = ckpt / "eval" / "metrics.json"
    before_eval = metrics_file.read_bytes()
    proc = seg_run("evaluating", "--ckpt_dir", str(ckpt), "--cache_dir", str(seg_cache), check=False)
    assert proc.returncode != 0 and f"refusing to overwrite {metrics_file}" in proc.stdout + proc.stderr
    assert metrics_file.read_bytes() == before_eval
    # Inference on one prepared cache folder: uint8 {0, 1} masks with the input's affine, never overwriting.
    inputs = _phantom_cache(seg_cache)
    out = tmp_path / "pred"
    seg_run("inference", "--ckpt_dir", str(ckpt), "--input_dir", str(inputs), "--output_dir", str(out))
    sources = sorted(inputs.glob("*_image.nii.gz"))
    preds = sorted(out.glob("*_pred.nii.gz"))
    assert len(preds) == len(sources) > 0
    for src in sources[:3]:
        pred = nib.load(out / src.name.replace(".nii.gz", "_pred.nii.gz"))
        assert pred.get_data_dtype() == np.uint8 and pred.shape == nib.load(src).shape
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1}
        assert np.allclose(pred.affine, nib.load(src).affine)
    before = {p: p.stat().st_mtime_ns for p in preds}
    proc = seg_run("inference", "--ckpt_dir", str(ckpt), "--input_dir", str(inputs), "--output_dir", str(out),
                   check=False)  # fmt: skip
    assert proc.returncode != 0 and "refusing to overwrite" in proc.stdout + proc.stderr
    assert {p: p.stat().st_mtime_ns for p in sorted(out.glob("*_pred.nii.gz"))} == before
    _raw_inference(ckpt, tmp_path)
    _external_on_phantom_folder_set(ckpt, tmp_path)


def _external_on_phantom_folder_set(ckpt: Path, tmp_path: Path) -> None:
    """External validation on another dataset laid out differently (phantom volumes of another seed as a NIfTI folder
    set), lesion-free slices included: the same metric files as fold evaluation, the false-positive rate apart."""
    from scripts.data.phantom import make_phantom_cases

    root = tmp_path / "external set"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for case in make_phantom_cases(3, 7):
        affine = np.diag([case.spacing[1], case.spacing[2], case.spacing[0], 1.0])
        for sub, array in (("images", case.image), ("labels", case.label)):
            path = root / sub / f"site-b-{case.case_id}.nii.gz"  # other patients than the training phantom's
            nib.save(nib.Nifti1Image(np.transpose(array, (1, 2, 0)), affine), str(path))
    log = seg_run("external", "--ckpt_dir", str(ckpt), "--eval_dataset_dir", str(root),
                  "--lesion_free_fraction", "0.5").stdout  # fmt: skip
    metrics = json.loads((ckpt / "eval_external" / "metrics.json").read_text())
    assert metrics["num_cases"] == 3 and metrics["num_images"] > 0 and metrics["num_lesion_free"] > 0
    assert 0 <= metrics["false_positive_rate"] <= 1 and set(metrics["mean"]) == {"dice", "iou", "precision", "recall"}
    assert metrics["patients_seen_in_training"] == []
    rows = (ckpt / "eval_external" / "metrics_per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + metrics["num_images"] + metrics["num_lesion_free"]
    assert re.search(r"external evaluation on .*lesion-free slice\(s\): false-positive rate [\d.]+", log)
    # The fold evaluation refuses that dataset, naming what differs and the external run.
    proc = seg_run("evaluating", "--ckpt_dir", str(ckpt), "--dataset_dir", str(root), "--cache_dir",
                   str(tmp_path / "ext cache"), "--output_dir", str(tmp_path / "ext eval"), check=False)  # fmt: skip
    assert proc.returncode != 0 and "run external --eval_dataset_dir" in proc.stdout + proc.stderr


def _raw_inference(ckpt: Path, tmp_path: Path) -> None:
    """The patch-mode smoke segmenter on raw files (JPEG, 3-D NIfTI, DBT multi-frame DICOM) as ``monai.bundle run``
    runs it: every mask has its source's shape and geometry, in every format (the lesion positions are checked with an
    oracle network in ``test_data_source.py``; a 1-epoch model predicts noise)."""
    from test_data_source import _raw_files

    from scripts.data.dicom import read_dicom_datasets
    from scripts.data.readers import _read_itk, read_array
    from scripts.export import read_dicom_seg, read_seg_nrrd

    files = _raw_files(tmp_path / "raw")
    out = tmp_path / "raw pred"
    seg_run("inference", "--ckpt_dir", str(ckpt), "--input_dir", str(tmp_path / "raw"), "--output_dir", str(out),
            "--output_formats", "nifti,seg.nrrd,dicom_seg")  # fmt: skip
    for path in files:
        stem = path.name.split(".")[0]
        mask, spacing, info = read_array(out / f"{stem}_pred.nii.gz")
        src, src_spacing, src_info = read_array(path)
        assert mask.shape == src.shape and set(np.unique(mask)) <= {0, 1}
        if path.suffix == ".jpg":  # no geometry of its own: the one ITK and Slicer read it with
            src_info = _read_itk(path)[2]
        else:
            assert np.allclose(spacing, src_spacing)
        assert np.allclose(info["affine_ras"], src_info["affine_ras"])
        seg, _, _ = read_seg_nrrd(out / f"{stem}_pred.seg.nrrd")
        assert np.array_equal(seg, mask)
        if path.suffix == ".dcm":
            assert np.array_equal(read_dicom_seg(out / f"{stem}_pred_seg.dcm", read_dicom_datasets(path)), mask)
        else:
            assert not (out / f"{stem}_pred_seg.dcm").exists()


def _phantom_cache(cache: Path) -> Path:
    folders = [p for p in cache.iterdir() if (p / "datalist.json").is_file()]
    phantom = [p for p in folders if json.loads((p / "datalist.json").read_text())["params"]["format"] == "phantom"]
    assert len(phantom) == 1
    return phantom[0]


def test_seg_smoke_on_duke_slices(tmp_path, duke_dir, duke_cache):
    folds, metrics, _ = train_and_evaluate(tmp_path / "ckpt", duke_cache, "--dataset_dir", str(duke_dir))
    assert all(p.startswith("DBT-P") for f in folds["folds"] for p in f)
    assert sum(len(f) for f in folds["folds"]) == len({p for f in folds["folds"] for p in f})
    assert all(Path(row["image"]).name.startswith(tuple(folds["test_patients"])) for row in metrics["per_image"])
    # External validation on the held-out patients' slices laid out as a folder set (PNG image + PNG mask), which
    # the fold evaluation could not read as the same dataset: every slice scored on its own grid, none seen in training.
    from PIL import Image

    from scripts.data.duke import load_duke_cases

    root = tmp_path / "held-out as folder"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    (root / "patients.csv").write_text("case,patient\n")
    n = 0
    for case in load_duke_cases(duke_dir):
        if case.patient_id in folds["test_patients"]:
            Image.fromarray(case.image[0].astype(np.uint8)).save(root / "images" / f"{case.case_id}.png")
            Image.fromarray(case.label[0] * 255).save(root / "labels" / f"{case.case_id}.png")
            with open(root / "patients.csv", "a") as f:
                f.write(f"{case.case_id},{case.patient_id}\n")
            n += 1
    ckpt = tmp_path / "ckpt"
    seg_run("external", "--ckpt_dir", str(ckpt), "--eval_dataset_dir", str(root))
    external = json.loads((ckpt / "eval_external" / "metrics.json").read_text())
    held_out_slices = {Path(row["image"]).name.split("_s0")[0] for row in metrics["per_image"]}  # patches → slices
    assert external["num_cases"] == n == len(held_out_slices) and external["num_images"] == n
    assert external["patients_seen_in_training"] == [] and external["num_patients"] == len(folds["test_patients"])
    assert external["num_lesion_free"] == 0 and external["false_positive_rate"] is None  # Duke has none


def test_seg_smoke_with_synthetic_pairs(tmp_path, seg_cache):
    pig = make_pig_folder(tmp_path / "pig out", n=6, size=32)
    ckpt = tmp_path / "ckpt"
    args = ["--ckpt_dir", str(ckpt), "--cache_dir", str(seg_cache), "--synthetic_dir", str(pig)]
    log = seg_run("training", *args, "--num_synthetic", "4").stdout
    folds = json.loads((ckpt / "folds.json").read_text())
    assert f"training set as loaded: {folds['num_train_items']} real + 4 synthetic" in log
    summary = json.loads((ckpt / "seg_data.json").read_text())
    assert summary["train"]["synthetic"] == 4 and summary["train"]["real"] == folds["num_train_items"]
    assert summary["validation"]["synthetic"] == 0 and summary["validation"]["real"] == folds["num_validation_items"]


def test_seg_smoke_without_inner_validation_keeps_the_final_model(tmp_path, seg_cache):
    ckpt = tmp_path / "ckpt"
    log = seg_run("training", "--ckpt_dir", str(ckpt), "--cache_dir", str(seg_cache), "--inner_val_fraction", "0")
    folds = json.loads((ckpt / "folds.json").read_text())
    assert folds["validation_patients"] == [] and folds["num_validation_items"] == 0 and folds["test_patients"]
    assert "final-epoch model" in log.stdout + log.stderr
    state = torch.load(ckpt / "seg_model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
