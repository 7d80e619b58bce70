"""prepare_dataset: format discovery, written slices (range, alignment, spacing), cache reuse, split, errors."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import scripts.data.prepare as prepare_mod
from scripts.data.case import Case, DataError
from scripts.data.prepare import prepare_dataset, split_patients


def synthetic_volume(seed: int, side: str = "left", shape=(6, 64, 48)):
    """(S, H, W) breast volume (bright half-ellipse, chest wall on ``side``) + bright square lesion on slices 2-3."""
    rng = np.random.default_rng(seed)
    s, h, w = shape
    rows, cols = np.mgrid[:h, :w]
    inside = ((rows - h / 2) / (0.4 * h)) ** 2 + (cols / (0.7 * w)) ** 2 <= 1
    image = np.where(inside, 1000.0, 10.0) + 20 * rng.standard_normal(shape)
    label = np.zeros(shape, np.uint8)
    label[2:4, 28:38, 6:16] = 1
    image[label > 0] = 2500
    if side == "right":
        image, label = image[..., ::-1], label[..., ::-1]
    return image.astype(np.float32), np.ascontiguousarray(label)


def write_folder_dataset(root: Path) -> Path:
    """Folder layout: 3 NIfTI cases of 2 patients (patients.csv), names with spaces and non-ASCII characters."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, (name, side) in enumerate([("cas é 1", "left"), ("case 2", "right"), ("case-3", "left")]):
        image, label = synthetic_volume(i, side)
        affine = np.diag([0.1, 0.1, 1.0, 1.0])  # (X=H, Y=W, Z=S) in NIfTI order
        nib.save(nib.Nifti1Image(np.transpose(image, (1, 2, 0)), affine), str(root / "images" / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(np.transpose(label, (1, 2, 0)), affine), str(root / "labels" / f"{name}.nii"))
    (root / "patients.csv").write_text("case,patient\ncas é 1,P1\ncase 2,P1\ncase-3,P2\n", encoding="utf-8")
    return root


def snapshot(root: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = write_folder_dataset(tmp_path_factory.mktemp("data ö") / "data set")
    before = snapshot(root)
    for p in [root, *root.rglob("*")]:  # read-only dataset: any write attempt fails loudly
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    cache = tmp_path_factory.mktemp("cache")
    result = prepare_dataset(str(root), str(cache), image_size=32, min_lesion_area=10, val_fraction=0.5)
    yield root, cache, before, result
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def _load(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img.affine


def test_folder_layout_items_ranges_alignment(folder_run):
    root, _, before, result = folder_run
    items = result["train"] + result["validation"]
    assert len(items) == 6  # 3 cases × lesion slices 2 and 3
    assert sorted({it["slice_index"] for it in items}) == [2, 3]
    for it in items:
        assert Path(it["image"]).is_absolute() and Path(it["image"]).is_file()
        img, affine = _load(it["image"])
        lab, _ = _load(it["label"])
        assert img.shape == lab.shape == (32, 32) and img.dtype == np.float32 and lab.dtype == np.uint8
        assert img.min() >= -1 and img.max() <= 1 and set(np.unique(lab)) == {0, 1}
        assert np.median(img[lab > 0]) > 0.9 and img[lab == 0].mean() < 0.5  # lesion stays under the mask
        assert lab[:, :16].sum() > lab[:, 16:].sum()  # laterality normalised: lesion (near chest wall) on the left
        np.testing.assert_allclose(np.diag(affine), [*it["spacing_mm"], 1, 1])
    assert result["spacing_mm"][0] > 0.1  # crop + resize to 32 px coarsens the 0.1 mm pixels
    assert snapshot(root) == before  # nothing written under dataset_dir


def test_patient_wise_split(folder_run):
    _, _, _, result = folder_run
    train = {it["patient_id"] for it in result["train"]}
    val = {it["patient_id"] for it in result["validation"]}
    assert train and val and not train & val and train | val == {"P1", "P2"}


def test_cache_reused_without_writing(folder_run, caplog):
    root, cache, _, result = folder_run
    files = snapshot(cache)
    with caplog.at_level("INFO", logger="scripts.data.prepare"):
        again = prepare_dataset(str(root), str(cache), image_size=32, min_lesion_area=10, val_fraction=0.5)
    assert "reusing cache" in caplog.text
    assert again["train"] == result["train"] and snapshot(cache) == files
    saved = json.loads((Path(result["cache"]) / "datalist.json").read_text(encoding="utf-8"))
    assert not Path(saved["train"][0]["image"]).is_absolute()  # relocatable cache


def test_changed_parameter_gives_new_cache(folder_run):
    root, cache, _, result = folder_run
    other = prepare_dataset(str(root), str(cache), image_size=16, min_lesion_area=10, val_fraction=0.5)
    assert other["cache"] != result["cache"]
    assert nib.load(other["train"][0]["image"]).shape == (16, 16)


def test_patch_mode_and_lesion_free(tmp_path, folder_run):
    root = folder_run[0]
    result = prepare_dataset(str(root), str(tmp_path), image_size=16, crop_mode="patch", min_patch_size=16,
                             lesion_free_fraction=0.5, seed=1)  # fmt: skip
    items = result["train"] + result["validation"]
    assert result["counts"]["lesion_items"] == 6 and result["counts"]["lesion_free_items"] == 3
    for it in items:
        img, _ = _load(it["image"])
        lab, _ = _load(it["label"])
        assert img.shape == (16, 16) and -1 <= img.min() and img.max() <= 1
        if lab.any():
            assert np.median(img[lab > 0]) > 0.9
        else:
            assert it["slice_index"] not in (2, 3)


def test_interrupted_preparation_leaves_no_cache(tmp_path, folder_run, monkeypatch):
    calls = []

    def failing(case, *args):
        calls.append(case.case_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(case, *args)

    real = prepare_mod._prepare_case
    monkeypatch.setattr(prepare_mod, "_prepare_case", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(str(folder_run[0]), str(tmp_path / "c"), image_size=16)
    assert list((tmp_path / "c").iterdir()) == []


def _fake_cases(n, seed, breast_side="right"):
    for i in range(n):
        image, label = synthetic_volume(seed + i, breast_side)
        yield Case(f"fake{i}", f"P{i}", image, label, (1.0, 0.1, 0.1), breast_side=breast_side, source=f"fake{i}")


def test_phantom_path(tmp_path, monkeypatch):
    import scripts.data.phantom as phantom

    monkeypatch.setattr(phantom, "make_phantom_cases", lambda num_cases, seed: _fake_cases(num_cases, seed))
    result = prepare_dataset(None, str(tmp_path), image_size=16, phantom_cases=3)
    assert result["counts"]["cases"] == 3 and len(result["validation"]) > 0
    assert all(it["flipped"] for it in result["train"])  # breast_side "right" from the case is honoured


def test_duke_path(tmp_path, monkeypatch):
    import scripts.data.duke as duke

    data = tmp_path / "duke"
    data.mkdir()
    (data / "annotations.csv").write_text("file\n")
    seen = {}

    def fake(dataset_dir, include_architectural_distortion=False):
        seen["ad"] = include_architectural_distortion
        for case in _fake_cases(2, 0, "left"):
            case.image, case.label = case.image[2:3], case.label[2:3]  # Duke cases are single slices
            yield case

    monkeypatch.setattr(duke, "load_duke_cases", fake)
    result = prepare_dataset(str(data), str(tmp_path / "cache"), image_size=16, include_architectural_distortion=True)
    assert seen["ad"] is True and len(result["train"]) + len(result["validation"]) == 2


def test_jpeg_and_png_folder(tmp_path, caplog):
    root = tmp_path / "pngs"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    image, label = synthetic_volume(0, "left")
    Image.fromarray((image[2] / 10).clip(0, 255).astype(np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(label[2] * 255).save(root / "labels" / "a.jpg", quality=95)
    with caplog.at_level(logging.WARNING):
        result = prepare_dataset(str(root), str(tmp_path / "cache"), image_size=16)
    assert "a.jpg: lossy (JPEG) mask thresholded" in caplog.text
    assert len(result["train"]) == 1 and result["validation"] == []  # one patient: no validation possible


@pytest.mark.parametrize("problem", ["missing", "empty", "unknown", "no_mask", "no_image", "cache_inside"])
def test_dataset_errors_name_the_path(tmp_path, problem):
    root = tmp_path / "ds"
    cache = tmp_path / "cache"
    expected = str(root)
    if problem != "missing":
        root.mkdir()
    if problem == "unknown":
        (root / "x.txt").write_text("x")
    if problem in ("no_mask", "no_image", "cache_inside"):
        write_folder_dataset(root)
        if problem == "no_mask":
            os.remove(root / "labels" / "case-3.nii")
            expected = "case-3.nii.gz"
        elif problem == "no_image":
            os.remove(root / "images" / "case-3.nii.gz")
            expected = "case-3.nii"
        else:
            cache = root / "cache"
    with pytest.raises(DataError, match=expected.replace(".", r"\.")):
        prepare_dataset(str(root), str(cache), image_size=16)
    assert not (root / "cache").exists()


def test_split_patients_deterministic_and_disjoint():
    ids = [f"p{i}" for i in range(10)]
    val = split_patients(ids, 0.2, seed=3)
    assert len(val) == 2 and val == split_patients(list(reversed(ids)), 0.2, seed=3)
    assert len(split_patients(["a", "b"], 0.01, 0)) == 1 and split_patients(["a"], 0.5, 0) == set()
    assert len(split_patients(["a", "b"], 0.99, 0)) == 1  # never empties the training side


@pytest.mark.parametrize("crop_mode", ["slice", "patch"])
def test_items_record_how_to_map_outputs_back_to_the_source_slice(tmp_path, crop_mode):
    """flip, crop box, window and scale: every output lesion pixel, mapped back with the documented formula, lands
    on the source slice's lesion (a wrong record, e.g. a missed flip or a crop offset, misses it)."""
    root = write_folder_dataset(tmp_path / "data")
    result = prepare_dataset(str(root), str(tmp_path / "cache"), image_size=32, crop_mode=crop_mode,
                             min_patch_size=16, min_lesion_area=10, val_fraction=0.0)  # fmt: skip
    items = result["train"]
    assert items and any(it["flipped"] for it in items) and not all(it["flipped"] for it in items)
    for it in items:
        mask_file = it["source"].split(" + ")[1]  # Case.source: "<image file> + <mask file>"
        source = np.transpose(np.asarray(nib.load(mask_file).dataobj), (2, 0, 1))
        src = source[it["slice_index"]]
        assert it["source_shape"] == list(src.shape)
        out = np.asarray(nib.load(it["label"]).dataobj)
        r0, _, c0, _ = it["crop_bbox"]
        wr, wc, side = it["window"]
        assert it["scale"] == side / 32
        rows, cols = np.nonzero(out)
        r = np.rint(r0 + wr + (rows + 0.5) * it["scale"] - 0.5).astype(int)
        c = np.rint(c0 + wc + (cols + 0.5) * it["scale"] - 0.5).astype(int)
        if it["flipped"]:
            c = src.shape[1] - 1 - c
        hits = src[np.clip(r, 0, src.shape[0] - 1), np.clip(c, 0, src.shape[1] - 1)]
        # nearest source pixel of a resampled mask: all but the boundary ring must land inside the lesion
        assert hits.mean() >= 0.8, (it["case_id"], hits.mean())


def test_patch_mode_gives_no_window_to_specks_below_min_lesion_area(tmp_path, caplog):
    """A lesion with JPEG-like specks around it: one patch for the lesion, none for the 1-px specks (counted)."""
    from PIL import Image

    root = tmp_path / "specks"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    image, label = synthetic_volume(0, "left")
    mask = label[2].copy()
    for r, c in ((2, 2), (2, 40), (40, 2)):
        mask[r, c] = 1  # isolated specks
    Image.fromarray((image[2] / 10).clip(0, 255).astype(np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(mask * 255).save(root / "labels" / "a.png")
    with caplog.at_level(logging.WARNING):
        result = prepare_dataset(str(root), str(tmp_path / "cache"), image_size=16, crop_mode="patch",
                                 min_patch_size=16, min_lesion_area=5, val_fraction=0)  # fmt: skip
    assert len(result["train"]) == 1 and result["counts"]["skipped_small_components"] == 3
    assert "skipped_small_components: mask components smaller than min_lesion_area" in caplog.text  # says what it is
    counts = result["counts"]
    others = [k for k, v in counts.items() if k.startswith("skipped_") and v and k != "skipped_small_components"]
    assert others or "the warnings above" not in caplog.text  # no per-item warning exists for small components
