"""The value-range convention (``scripts.common.value_range``) and that the writers and readers use it."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from scripts.common.value_range import (
    MaskToSigned,
    MaskToSignedd,
    image_to_unit,
    mask_to_signed,
    signed_to_mask,
    unit_to_image,
)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_image_maps_are_inverse_on_the_ranges_and_clip_outside(kind):
    x = np.array([-1.5, -1.0, -0.25, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    arr = torch.from_numpy(x) if kind == "torch" else x
    unit = image_to_unit(arr)
    assert type(unit) is type(arr) and unit.dtype == arr.dtype
    assert np.asarray(unit).tolist() == [0.0, 0.0, 0.375, 0.5, 0.75, 1.0, 1.0]
    back = unit_to_image(unit)
    assert np.asarray(back).tolist() == [-1.0, -1.0, -0.25, 0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
def test_mask_maps_round_trip_and_threshold_at_the_midpoints(kind):
    m = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    arr = {"numpy": m, "torch": torch.from_numpy(m), "meta": MetaTensor(torch.from_numpy(m).float())}[kind]
    signed = mask_to_signed(arr)
    assert np.asarray(signed).tolist() == [[-1.0, 1.0], [1.0, -1.0]] and signed.dtype in (np.float32, torch.float32)
    assert isinstance(signed, torch.Tensor) is (kind != "numpy")
    back = signed_to_mask(signed)
    assert np.asarray(back).tolist() == m.tolist() and back.dtype in (np.uint8, torch.uint8)
    # resampled masks: > 0.5 is lesion; NaN is background; x̂0 exactly 0 is background (strict >)
    assert mask_to_signed(np.array([0.49, 0.51, np.nan])).tolist() == [-1.0, 1.0, -1.0]
    assert signed_to_mask(torch.tensor([-0.1, 0.0, 1e-6])).tolist() == [0, 0, 1]


def test_dictionary_twin_maps_only_its_keys():
    d = {"image": np.array([0.0, 1.0], np.float32), "label": np.array([0, 1], np.uint8)}
    out = MaskToSignedd(keys="label")(d)
    assert out["label"].tolist() == [-1.0, 1.0] and out["image"] is d["image"]
    assert MaskToSigned()(np.array([1])).tolist() == [1.0]


def test_training_pipelines_load_masks_as_signed_and_images_unchanged(tmp_path):
    """The diffusion training preprocessing (diffusion.json) maps {0, 1} label files to {-1, +1} with MaskToSignedd
    and leaves the [-1, 1] image as stored."""
    import nibabel as nib
    from helpers import parser

    image = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
    label = (image > 0.3).astype(np.uint8)
    for name, arr in (("img.nii.gz", image), ("lab.nii.gz", label)):
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / name))
    out = parser("train", "smoke.json").get_parsed_content("train#preprocessing")(
        {"image": str(tmp_path / "img.nii.gz"), "label": str(tmp_path / "lab.nii.gz")}
    )
    assert torch.equal(out["label"][0], torch.from_numpy(mask_to_signed(label)))
    assert torch.equal(out["image"][0], torch.from_numpy(image))
