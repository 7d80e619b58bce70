"""The whole slice pipeline on the embedded phantom volumes and on the real Duke slices (no fakes)."""

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from scripts.data.prepare import prepare_dataset


def _check_items(items, size):
    contrasts, left_heavier = [], []
    for d in items:
        img = nib.load(d["image"]).get_fdata()
        lab = nib.load(d["label"]).get_fdata()
        assert img.shape == lab.shape == (size, size)
        assert -1.0 <= img.min() and img.max() <= 1.0
        assert set(np.unique(lab)) <= {0.0, 1.0}
        m = lab > 0
        if m.any():
            ring = ndimage.binary_dilation(m, iterations=2) & ~m
            if ring.any():
                contrasts.append(img[m].mean() - img[ring].mean())
        left_heavier.append(img[:, : size // 2].mean() > img[:, size // 2 :].mean())
    return np.array(contrasts), np.array(left_heavier)


@pytest.mark.parametrize("crop_mode", ["slice", "patch"])
def test_phantom_volumes_to_slices(tmp_path, crop_mode):
    dl = prepare_dataset(
        None, str(tmp_path / "cache"), 48, crop_mode=crop_mode, min_patch_size=32, phantom_cases=4, seed=1
    )
    items = dl["train"] + dl["validation"]
    assert (
        items
        and dl["validation"]
        and not {d["patient_id"] for d in dl["train"]} & {d["patient_id"] for d in dl["validation"]}
    )
    contrasts, left = _check_items(items, 48)
    # Masses are denser than their surroundings: if the mask were shifted off the mass, the contrast would vanish.
    assert len(contrasts) >= len(items) * 0.9 and np.median(contrasts) > 0.1
    if crop_mode == "slice":
        assert left.all(), "laterality: the breast must lie on the left (chest wall at column 0) after preparation"
    # Every kept slice holds lesion pixels (the phantom masses span several slices, min_lesion_area=10).
    assert all(nib.load(d["label"]).get_fdata().sum() > 0 for d in items)


def test_duke_slices_through_the_pipeline(tmp_path, duke_dir):
    dl = prepare_dataset(str(duke_dir), str(tmp_path / "cache"), 64, crop_mode="slice", seed=0)
    items = dl["train"] + dl["validation"]
    assert len(items) == 58  # 58 slices carry a mass box; AD-only slices are left out by default
    contrasts, left = _check_items(items, 64)
    assert left.mean() > 0.95, "right views must be flipped so the breast lies on the left"
    patients = {d["patient_id"] for d in items}
    assert len(patients) == 27
