"""Readers: axis order and spacing per format, DICOM DBT specifics, mask and pair checks, errors naming the file."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
from helpers import write_dicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from scripts.data.case import DataError
from scripts.data.readers import check_mask, check_pair, read_array, read_case, read_mask, split_extension


def _volume(shape=(3, 6, 8)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)


def _item(**tags) -> Dataset:
    item = Dataset()
    for key, value in tags.items():
        setattr(item, key, value)
    return item


# --------------------------------------------------------------------------- formats
def test_nifti_3d_axes_and_spacing(tmp_path):
    xyz = np.random.default_rng(0).random((6, 8, 3)).astype(np.float32)  # (X, Y, Z)
    path = tmp_path / "vol ümlaut.nii.gz"
    nib.save(nib.Nifti1Image(xyz, np.diag([0.1, 0.2, 1.0, 1.0])), str(path))
    arr, spacing, info = read_array(path)
    assert arr.shape == (3, 6, 8) and arr.dtype == np.float32
    assert arr[2, 5, 7] == xyz[5, 7, 2] and arr[1, 0, 3] == xyz[0, 3, 1]
    assert spacing == pytest.approx((1.0, 0.1, 0.2))
    assert info["format"] == "nifti"


def test_nifti_2d_is_one_slice(tmp_path):
    path = tmp_path / "slice.nii"
    nib.save(nib.Nifti1Image(np.ones((5, 7), np.uint8), np.eye(4)), str(path))
    arr, spacing, _ = read_array(path)
    assert arr.shape == (1, 5, 7) and arr.dtype == np.uint8


def test_nifti_4d_and_nan_rejected(tmp_path):
    four = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), str(four))
    with pytest.raises(DataError, match="four.nii.gz"):
        read_array(four)
    bad = np.zeros((4, 4, 2), np.float32)
    bad[1, 1, 1] = np.nan
    nan = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(bad, np.eye(4)), str(nan))
    with pytest.raises(DataError, match="nan.nii.gz.*NaN"):
        read_array(nan)


def test_itk_nrrd_axes_and_spacing(tmp_path):
    import itk

    zyx = _volume((3, 6, 8)).astype(np.float32)
    img = itk.image_from_array(zyx)
    img.SetSpacing((0.1, 0.2, 1.5))  # (x, y, z)
    path = tmp_path / "vol.nrrd"
    itk.imwrite(img, str(path))
    arr, spacing, info = read_array(path)
    np.testing.assert_array_equal(arr, zyx)
    assert spacing == pytest.approx((1.5, 0.2, 0.1))
    assert info["affine_ras"].shape == (4, 4)


def test_png_bit_depths_and_rgb(tmp_path):
    gray16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "a.png")
    arr, spacing, info = read_array(tmp_path / "a.png")
    assert arr.shape == (1, 6, 8) and arr.dtype == np.uint16 and arr.max() == gray16.max()
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., :] = 200
    Image.fromarray(rgb).save(tmp_path / "b.png")
    arr, _, info = read_array(tmp_path / "b.png")
    assert arr.shape == (1, 6, 8) and arr.dtype == np.uint8 and int(arr[0, 0, 0]) == 200 and not info["lossy"]


@pytest.mark.parametrize("name", ["missing.nii.gz", "file.xyz"])
def test_missing_or_unsupported_file(tmp_path, name):
    if name == "file.xyz":
        (tmp_path / name).write_bytes(b"abc")
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        read_array(tmp_path / name)


def test_truncated_files_are_data_errors(tmp_path):
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t.png"):
        read_array(tmp_path / "t.png")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.float32), np.eye(4)), str(tmp_path / "t.nii"))
    data = (tmp_path / "t.nii").read_bytes()
    (tmp_path / "t.nii").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t.nii"):
        read_array(tmp_path / "t.nii")
    (tmp_path / "t.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(DataError, match="t.dcm"):
        read_array(tmp_path / "t.dcm")


def test_split_extension_knows_nii_gz():
    assert split_extension("a b.nii.gz") == ("a b", ".nii.gz")
    assert split_extension("x.JPG") == ("x", ".jpg")


# --------------------------------------------------------------------------- DICOM
def test_dicom_multiframe_frames_first_functional_groups_monochrome1(tmp_path):
    frames = _volume((4, 6, 8))
    shared = _item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[0.085, 0.09], SpacingBetweenSlices=1.0)]),
        PixelValueTransformationSequence=Sequence([_item(RescaleSlope=2.0, RescaleIntercept=10.0)]),
    )
    path = write_dicom(
        tmp_path / "mf.dcm", frames, "MONOCHROME1", SharedFunctionalGroupsSequence=Sequence([shared]),
        ImageLaterality="R",
    )  # fmt: skip
    arr, spacing, info = read_array(path)
    assert arr.shape == (4, 6, 8)  # frames on axis 0, not on a spatial axis
    assert spacing == pytest.approx((1.0, 0.085, 0.09))
    rescaled = frames.astype(np.float32) * 2 + 10
    np.testing.assert_allclose(arr, rescaled.max() - rescaled)  # MONOCHROME1 inverted after rescale
    assert info["inverted"] and info["laterality"] == "R"


def test_dicom_multiframe_top_level_tags(tmp_path):
    frames = _volume((2, 4, 5))
    path = write_dicom(tmp_path / "mf.dcm", frames, PixelSpacing=[0.1, 0.1], SliceThickness=1.5)
    arr, spacing, info = read_array(path)
    np.testing.assert_array_equal(arr, frames)
    assert spacing == pytest.approx((1.5, 0.1, 0.1)) and not info["inverted"]


def test_dicom_series_sorted_by_position(tmp_path):
    series = tmp_path / "series folder"
    series.mkdir()
    uid = generate_uid()
    z_positions = [3.0, 0.0, 6.0, 1.5]  # written out of order, file names in a misleading order
    for i, z in enumerate(z_positions):
        plane = np.full((1, 4, 5), int(z * 10), np.uint16)[0]
        write_dicom(
            series / f"{i}.dcm", plane, SeriesInstanceUID=uid, ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            ImagePositionPatient=[0, 0, z], InstanceNumber=10 - i, PixelSpacing=[0.2, 0.3],
        )  # fmt: skip
    arr, spacing, _ = read_array(series)
    assert arr.shape == (4, 4, 5)
    assert arr[:, 0, 0].tolist() == [0, 15, 30, 60]
    assert spacing == pytest.approx((1.5, 0.2, 0.3))


def test_dicom_series_falls_back_to_instance_number(tmp_path):
    series = tmp_path / "s"
    series.mkdir()
    for i, n in enumerate([3, 1, 2]):
        write_dicom(series / f"{i}.dcm", np.full((4, 5), n, np.uint16), InstanceNumber=n)
    arr, _, _ = read_array(series)
    assert arr[:, 0, 0].tolist() == [1, 2, 3]


# --------------------------------------------------------------------------- masks and pairs
def test_check_mask_values():
    assert check_mask(np.array([0, 255, 255]), "m.png").tolist() == [0, 1, 1]
    assert check_mask(np.array([0, 1]), "m.png").dtype == np.uint8
    assert check_mask(np.zeros(3), "m.png").tolist() == [0, 0, 0]  # lesion-free allowed at read time
    with pytest.raises(DataError, match=r"m\.png.*0, 1, 2"):
        check_mask(np.array([0, 1, 2]), "m.png")
    with pytest.raises(DataError, match="m.png"):
        check_mask(np.array([0, 1, 255]), "m.png")


def test_jpeg_mask_thresholded_with_warning(tmp_path, caplog):
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    Image.fromarray(mask).save(tmp_path / "m.jpg", quality=60)
    with caplog.at_level(logging.WARNING):
        arr, _, info = read_mask(tmp_path / "m.jpg")
    assert "m.jpg: lossy (JPEG) mask thresholded" in caplog.text
    assert info["lossy"] and set(np.unique(arr)) <= {0, 1}
    assert np.mean(arr[0] == (mask > 0)) > 0.98


def _nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.diag([0.1, 0.1, 1, 1]) if affine is None else affine), str(path))
    return path


def test_pair_checks_name_both_files(tmp_path):
    img = _nifti(tmp_path / "img.nii.gz", np.zeros((6, 8, 2), np.float32))
    small = _nifti(tmp_path / "small.nii.gz", np.zeros((6, 7, 2), np.uint8))
    with pytest.raises(DataError, match=r"img\.nii\.gz.*small\.nii\.gz.*\(2, 6, 8\).*\(2, 6, 7\)"):
        read_case(img, small, "c", "p")
    coarse = _nifti(tmp_path / "coarse.nii.gz", np.zeros((6, 8, 2), np.uint8), np.diag([0.2, 0.1, 1, 1]))
    with pytest.raises(DataError, match="spacing"):
        read_case(img, coarse, "c", "p")
    flipped = _nifti(tmp_path / "flip.nii.gz", np.zeros((6, 8, 2), np.uint8), np.diag([-0.1, 0.1, 1, 1]))
    with pytest.raises(DataError, match="orientation"):
        read_case(img, flipped, "c", "p")
    good = _nifti(tmp_path / "good.nii.gz", np.zeros((6, 8, 2), np.uint8))
    case = read_case(img, good, "c", "p")
    assert case.image.shape == (2, 6, 8) and case.breast_side is None


def test_check_pair_without_affines_only_compares_grid():
    check_pair("a.png", (1, 4, 4), (1, 1, 1), {}, "b.png", (1, 4, 4), (1, 1, 1.0005), {})
    with pytest.raises(DataError, match=r"a\.png.*b\.png"):
        check_pair("a.png", (1, 4, 4), (1, 1, 1), {}, "b.png", (1, 4, 4), (1, 1, 1.01), {})


def test_itk_pair_orientation_checked(tmp_path):
    import itk

    for name, direction in (("img.nrrd", np.eye(3)), ("same.mha", np.eye(3)), ("rot.mha", np.diag([1.0, -1, -1]))):
        vol = itk.image_from_array(np.zeros((2, 8, 6), np.uint8))
        vol.SetSpacing((0.1, 0.1, 1.0))
        vol.SetDirection(direction)
        itk.imwrite(vol, str(tmp_path / name))
    assert read_case(tmp_path / "img.nrrd", tmp_path / "same.mha", "c", "p").image.shape == (2, 8, 6)
    with pytest.raises(DataError, match=r"img\.nrrd.*rot\.mha.*orientation"):
        read_case(tmp_path / "img.nrrd", tmp_path / "rot.mha", "c", "p")


def test_a_jpeg_image_pairs_with_a_mask_of_its_shape_whatever_spacing_the_mask_states(tmp_path):
    """A label drawn in Slicer on a JPEG (or returned by inference) carries ITK's dpi spacing (0.254 mm at 100 dpi)
    while the JPEG is read at 1 mm: the pair is on one grid; a mask of another shape is still refused."""
    from scripts.export.nifti import write_nifti_mask

    image = tmp_path / "slice.jpg"
    Image.fromarray(np.full((30, 20), 100, np.uint8)).save(image, dpi=(100, 100))
    mask = np.zeros((1, 30, 20), np.uint8)
    mask[0, 10:15, 5:9] = 1
    write_nifti_mask(mask, None, (1.0, 0.254, 0.254), str(tmp_path / "slice_label.nii.gz"))
    case = read_case(image, tmp_path / "slice_label.nii.gz", "slice", "p1")
    assert case.label.sum() == 20
    write_nifti_mask(np.zeros((1, 30, 21), np.uint8), None, (1.0, 0.254, 0.254), str(tmp_path / "wide.nii.gz"))
    with pytest.raises(DataError, match="shapes differ"):
        read_case(image, tmp_path / "wide.nii.gz", "slice", "p1")
