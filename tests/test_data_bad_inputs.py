"""Reliability of the data path (issue 5, data side): every bad input of the issue's list, fed through the entry
points users hit, gives a clear error that names the offending file, or, where acceptance is right, the correct result.

Entry points: ``scripts.data.prepare.prepare_dataset`` / ``discover_cases`` for a dataset folder (folder layout
``images/`` + ``labels/`` of ``scripts/data/folder.py``; Duke box table of ``scripts/data/duke.py``) and
``scripts.data.readers.read_case`` / ``read_image`` / ``read_mask`` for single files. All files are built in
``tmp_path`` at 32 px or smaller, so the whole file runs in seconds on a CPU.

Issue row → test:
    missing or empty ``dataset_dir``                      → test_missing_or_empty_dataset_dir
    unreadable/truncated NIfTI/NRRD/DICOM/JPEG/PNG         → test_unreadable_or_truncated_file
    image and mask of different shape/spacing/orientation → test_image_mask_grid_mismatch
    lossless masks with other values / lossy / empty      → test_lossless_mask_with_other_values,
                                                            test_lossy_jpeg_mask_thresholded_with_warning,
                                                            test_empty_mask
    NaN or Inf pixels                                     → test_nan_or_inf_pixels
    8- vs 16-bit and signed inputs (accepted)             → test_bit_depths_and_signed_inputs_accepted
    4-D inputs                                            → test_4d_inputs
    box table: missing columns, negative sizes, outside   → test_box_table_problems
    duplicate ids (several boxes united / same id, two    → test_several_boxes_on_one_image_are_united,
    different images rejected)                              test_same_id_for_two_different_images
    paths with spaces and non-ASCII characters (accepted) → test_paths_with_spaces_and_non_ascii
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import itk
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import write_dicom
from PIL import Image
from pydicom.uid import generate_uid

from scripts.data.case import DataError
from scripts.data.duke import REQUIRED_COLUMNS, ellipse_mask
from scripts.data.prepare import discover_cases, prepare_dataset
from scripts.data.readers import read_case, read_image, read_mask

S, H, W = 3, 32, 24  # tiny (slices, rows, columns) volumes: every case prepares in milliseconds
SIZE = 16  # prepared output side in pixels


# --------------------------------------------------------------------------- synthetic data
def volume(seed: int = 0, dtype=np.float32, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(S, H, W)`` breast-like volume (bright half-ellipse on the left) and its {0, 1} lesion mask.

    The lesion (10×8 px on slices 1-2) is brighter than the breast. ``offset`` shifts the intensities (negative values
    for signed types); for integer ``dtype`` values are rounded and clipped to its range (no wrap-around), then cast.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:H, :W]
    inside = ((rows - H / 2) / (0.45 * H)) ** 2 + (cols / (0.8 * W)) ** 2 <= 1
    image = np.where(inside, 120.0, 10.0) + 5 * rng.standard_normal((S, H, W))
    label = np.zeros((S, H, W), np.uint8)
    label[1:3, 12:22, 4:12] = 1
    image[label > 0] = 220
    image = image + offset
    if np.dtype(dtype).kind in "ui":
        image = np.round(image).clip(np.iinfo(dtype).min, np.iinfo(dtype).max)
    return image.astype(dtype), label


def write_nifti(path: Path, shw: np.ndarray, spacing=(1.0, 0.1, 0.1), affine=None) -> Path:
    """Save an ``(S, H, W)`` array as NIfTI ``(X=H, Y=W, Z=S)`` (the readers' axis convention)."""
    if affine is None:
        affine = np.diag([spacing[1], spacing[2], spacing[0], 1.0])
    nib.save(nib.Nifti1Image(np.transpose(shw, (1, 2, 0)), affine), str(path))
    return path


def write_itk(path: Path, shw: np.ndarray, spacing=(1.0, 0.1, 0.1), is_vector: bool = False) -> Path:
    """Save an ``(S, H, W)`` array with ITK (its ``(z, y, x)`` order); ``spacing`` is ``(slice, row, column)``."""
    img = itk.image_from_array(np.ascontiguousarray(shw), is_vector=is_vector)
    if not is_vector and shw.ndim == 3:
        img.SetSpacing((spacing[2], spacing[1], spacing[0]))
    itk.imwrite(img, str(path))
    return path


def write_png(path: Path, hw: np.ndarray, **save_args) -> Path:
    Image.fromarray(hw).save(path, **save_args)
    return path


def folder_dataset(root: Path, cases: dict[str, tuple]) -> Path:
    """Folder layout ``root/images/<name>`` + ``root/labels/<name>``; ``cases`` maps a name to ``(write_image,
    write_mask)``, two callables taking the target folder and returning the written path."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    for write_image, write_mask in cases.values():
        write_image(root / "images")
        write_mask(root / "labels")
    return root


def nifti_case(name: str, seed: int = 0, image=None, label=None) -> tuple:
    """``(write_image, write_mask)`` of a NIfTI case (default: :func:`volume`)."""
    default_image, default_label = volume(seed)
    image = default_image if image is None else image
    label = default_label if label is None else label
    return (lambda d: write_nifti(d / f"{name}.nii.gz", image), lambda d: write_nifti(d / f"{name}.nii.gz", label))


def duke_folder(root: Path, rows: list[dict], images=("images/a.jpg",)) -> Path:
    """Duke layout: 8-bit three-channel JPEG slices (``volume``'s slice 1) and ``annotations.csv`` of ``rows``."""
    gray = np.clip(volume()[0][1], 0, 255).astype(np.uint8)
    for name in images:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([gray] * 3, axis=-1)).save(root / name, quality=95)
    pd.DataFrame(rows).to_csv(root / "annotations.csv", index=False)
    return root


def box_row(file="images/a.jpg", pid="P1", view="lcc", x=4, y=12, w=8, h=10, ad=0, **extra) -> dict:
    """One Duke box (x = column, y = row of the top-left corner; size in pixels)."""
    return {"file": file, "PatientID": pid, "View": view, "X": x, "Y": y, "Width": w, "Height": h, "AD": ad, **extra}


def prepare(root: Path, tmp_path: Path, **kwargs) -> dict:
    return prepare_dataset(str(root), str(tmp_path / "cache"), image_size=SIZE, **kwargs)


def assert_names(err: pytest.ExceptionInfo, *names) -> str:
    """The error message contains every file name/path in ``names``; returns the message."""
    message = str(err.value)
    for name in names:
        assert str(name) in message, f"{name!r} not named in: {message}"
    return message


def damage(path: Path, how: str) -> None:
    """Truncate ``path`` to half its bytes, empty it, or overwrite it with text."""
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "zero_bytes": b"", "garbage": b"not an image " * 20}[how])


# --------------------------------------------------------------------------- rows
@pytest.mark.parametrize(
    ("problem", "fragment"),
    [("missing", "dataset folder not found"), ("empty", "dataset folder is empty"), ("empty_subfolders", "no image")],
)
def test_missing_or_empty_dataset_dir(tmp_path, problem, fragment):
    """A missing folder, an empty one, and images/ + labels/ without any file all stop with the folder's path."""
    root = tmp_path / "data set"
    if problem != "missing":
        root.mkdir()
    if problem == "empty_subfolders":
        (root / "images").mkdir()
        (root / "labels").mkdir()
    with pytest.raises(DataError) as err:
        prepare(root, tmp_path)
    assert fragment in assert_names(err, root)
    with pytest.raises(DataError):  # the lazy entry point fails on its first case at the latest
        list(discover_cases(str(root)))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


WRITERS = {
    "nifti": ("a.nii.gz", lambda p: write_nifti(p, volume()[0])),
    "nrrd": ("a.nrrd", lambda p: write_itk(p, volume()[0])),
    "dicom": ("a.dcm", lambda p: write_dicom(p, volume(dtype=np.uint16)[0])),
    "jpeg": ("a.jpg", lambda p: write_png(p, volume(dtype=np.uint8)[0][1], quality=95)),
    "png": ("a.png", lambda p: write_png(p, volume(dtype=np.uint8)[0][1])),
}


@pytest.mark.parametrize("how", ["truncated", "zero_bytes", "garbage"])
@pytest.mark.parametrize("fmt", [*WRITERS, "duke_jpeg"])
def test_unreadable_or_truncated_file(tmp_path, fmt, how):
    """A damaged image in a dataset stops preparation with a DataError naming the file and saying it cannot be read."""
    root = tmp_path / "ds"
    if fmt == "duke_jpeg":
        duke_folder(root, [box_row()])
        bad = root / "images" / "a.jpg"
    else:
        name, write = WRITERS[fmt]
        two_d = fmt in ("jpeg", "png")
        mask = volume()[1][1:2] if two_d else volume()[1]
        folder_dataset(root, {"a": (lambda d: write(d / name), lambda d: write_nifti(d / "a.nii.gz", mask))})
        bad = root / "images" / name
    damage(bad, how)
    with pytest.raises(DataError) as err:
        prepare(root, tmp_path)
    assert "cannot read" in assert_names(err, bad)


@pytest.mark.parametrize(
    ("mismatch", "mask_kwargs", "fragment"),
    [
        ("shape", {"shw": np.zeros((S, H, W - 1), np.uint8)}, "shapes differ"),
        ("spacing", {"spacing": (1.0, 0.2, 0.1)}, "spacing differs"),
        ("orientation", {"affine": np.diag([-0.1, 0.1, 1.0, 1.0])}, "orientation differs"),
        ("origin", {"affine": np.array([[0.1, 0, 0, 5], [0, 0.1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])}, "origin"),
    ],
)
def test_image_mask_grid_mismatch(tmp_path, mismatch, mask_kwargs, fragment):
    """Image and mask on different voxel grids: read_case and prepare_dataset name both files and the mismatch."""
    root = tmp_path / "ds"
    image, mask = root / "images" / "a.nii.gz", root / "labels" / "a.nii.gz"
    folder_dataset(
        root,
        {
            "a": (
                lambda d: write_nifti(image, volume()[0]),
                lambda d: write_nifti(mask, **{"shw": volume()[1], **mask_kwargs}),
            )
        },
    )
    with pytest.raises(DataError) as err:
        read_case(image, mask, "a", "p")
    assert fragment in assert_names(err, image, mask)
    with pytest.raises(DataError) as err:
        prepare(root, tmp_path)
    assert fragment in assert_names(err, image, mask)


@pytest.mark.parametrize(
    ("name", "mask", "shown"),
    [
        ("m.png", np.array([[0, 1], [2, 1]], np.uint8), "0, 1, 2"),  # a label map with two labels
        ("m.png", np.array([[0, 128], [255, 0]], np.uint8), "0, 128, 255"),  # antialiased edge
        ("m.nii.gz", np.array([[0, 1], [1, 255]], np.uint8), "0, 1, 255"),  # {0, 1} and {0, 255} mixed
        ("m.nii.gz", np.array([[0.0, 0.5], [1.0, 0.0]], np.float32), "0, 0.5, 1"),  # soft mask
        ("m.nrrd", np.array([[0, -1], [1, 0]], np.int16), "-1, 0, 1"),  # signed labels
    ],
)
def test_lossless_mask_with_other_values(tmp_path, name, mask, shown):
    """A lossless mask with values outside {0, 1} / {0, 255} is refused, listing the values; never thresholded."""
    path = tmp_path / name
    if name.endswith(".png"):
        write_png(path, mask)
    elif name.endswith(".nii.gz"):
        write_nifti(path, mask[None])
    else:
        write_itk(path, mask[None])
    with pytest.raises(DataError) as err:
        read_mask(path)
    assert f"found values {shown}" in assert_names(err, path)
    image = tmp_path / "img.nii.gz"
    write_nifti(image, np.ones((1, 2, 2), np.float32), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(DataError) as err:
        read_case(image, path, "a", "p")
    assert_names(err, path)


def test_lossy_jpeg_mask_thresholded_with_warning(tmp_path, caplog):
    """A JPEG mask is thresholded at half its maximum with a warning naming it; the result is the drawn lesion."""
    truth = volume()[1][1]
    path = write_png(tmp_path / "mask é.jpg", truth * 255, quality=50)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        mask, _, info = read_mask(path)
    assert info["lossy"] and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    # said once, by the logger (a warnings.warn beside it printed every message twice)
    said = [r for r in caplog.records if "thresholded" in r.getMessage()]
    assert len(said) == 1 and str(path) in said[0].getMessage() and not warned
    # JPEG ringing at quality 50 touches at most the 1-pixel rim of the 10×8 lesion: ≤ 2 % of 768 pixels differ.
    assert np.mean(mask[0] != truth) <= 0.02


@pytest.mark.parametrize("all_empty", [False, True], ids=["one_empty", "all_empty"])
def test_empty_mask(tmp_path, caplog, all_empty):
    """An all-zero mask is a lesion-free case: with other cases it is skipped with a warning and counted; when every
    mask is empty, preparation stops with a DataError saying nothing is left to train on."""
    empty_label = np.zeros((S, H, W), np.uint8)
    cases = {"empty": nifti_case("empty", label=empty_label)}
    if not all_empty:
        cases["good"] = nifti_case("good", seed=1)
    root = folder_dataset(tmp_path / "ds", cases)
    if all_empty:
        with pytest.raises(DataError) as err:
            prepare(root, tmp_path)
        assert "no slice kept" in assert_names(err, root) and "masks are not all empty" in str(err.value)
        return
    with caplog.at_level(logging.WARNING, logger="scripts.data.prepare"):
        result = prepare(root, tmp_path)
    assert result["counts"]["cases_without_kept_slice"] == 1
    assert {it["case_id"] for it in result["train"] + result["validation"]} == {"good"}
    empty_warnings = [r.getMessage() for r in caplog.records if "'empty' gives no slice" in r.getMessage()]
    assert len(empty_warnings) == 1 and str(root / "labels" / "empty.nii.gz") in empty_warnings[0]
    assert "'cases_without_kept_slice': 1" in caplog.text  # the count is in the run log too


@pytest.mark.parametrize(
    ("where", "value", "fmt"),
    [("image", np.nan, "nifti"), ("image", np.inf, "nifti"), ("image", -np.inf, "nrrd"), ("mask", np.nan, "nifti")],
)
def test_nan_or_inf_pixels(tmp_path, where, value, fmt):
    """One NaN/Inf pixel in an image or a (float) mask stops preparation with a DataError naming that file."""
    image, label = volume()
    label = label.astype(np.float32)
    (image if where == "image" else label)[1, 5, 5] = value
    ext = ".nii.gz" if fmt == "nifti" else ".nrrd"
    write = write_nifti if fmt == "nifti" else write_itk
    root = folder_dataset(
        tmp_path / "ds", {"a": (lambda d: write(d / f"a{ext}", image), lambda d: write(d / f"a{ext}", label))}
    )
    bad = root / ("images" if where == "image" else "labels") / f"a{ext}"
    with pytest.raises(DataError) as err:
        prepare(root, tmp_path)
    assert "NaN or Inf" in assert_names(err, bad)


ACCEPTED_DEPTHS = {
    # name: (file name, dtype, intensity offset, writer of the (S, H, W) image)
    "png_uint8": ("a.png", np.uint8, 0.0, lambda p, a: write_png(p, a[1])),
    "png_uint16": ("a.png", np.uint16, 40000.0, lambda p, a: write_png(p, a[1])),  # beyond 8 bits
    "nifti_uint16": ("a.nii.gz", np.uint16, 3000.0, write_nifti),
    "nifti_int16_signed": ("a.nii.gz", np.int16, -1000.0, write_nifti),  # negative intensities (CT-like)
    "nifti_int8_signed": ("a.nii.gz", np.int8, -120.0, write_nifti),
    "nrrd_int16_signed": ("a.nrrd", np.int16, -1000.0, write_itk),
    "dicom_int16_signed": ("a.dcm", np.int16, -1000.0, lambda p, a: write_dicom(p, a)),  # PixelRepresentation 1
    "dicom_uint8": ("a.dcm", np.uint8, 0.0, lambda p, a: write_dicom(p, a)),
}


@pytest.mark.parametrize("kind", ACCEPTED_DEPTHS)
def test_bit_depths_and_signed_inputs_accepted(tmp_path, kind):
    """8-/16-bit, unsigned and signed images are read exactly (as float32) and prepare like any other image."""
    name, dtype, offset, write = ACCEPTED_DEPTHS[kind]
    image, label = volume(dtype=dtype, offset=offset)
    path = write(tmp_path / name, image)
    read, _, _ = read_image(path)
    expected = image[1:2] if name.endswith(".png") else image
    assert read.dtype == np.float32 and read.shape == expected.shape
    np.testing.assert_array_equal(read, expected.astype(np.float32))  # exact: no silent rescale or wrap-around
    assert (read.min() < 0) == (np.dtype(dtype).kind == "i")  # signed inputs really carry negative values

    two_d = name.endswith(".png")
    spacing = (1.0, 1.0, 1.0) if name.endswith((".png", ".dcm")) else (1.0, 0.1, 0.1)
    mask = label[1:2] if two_d else label
    # the mask is written by the image's tool where the file carries an orientation (NRRD is LPS, NIfTI RAS)
    mask_write = write_itk if name.endswith(".nrrd") else write_nifti
    mask_name = "a.nrrd" if name.endswith(".nrrd") else "a.nii.gz"
    root = folder_dataset(
        tmp_path / "ds", {"a": (lambda d: write(d / name, image), lambda d: mask_write(d / mask_name, mask, spacing))}
    )
    result = prepare(root, tmp_path)
    item = (result["train"] + result["validation"])[0]
    out = np.asanyarray(nib.load(item["image"]).dataobj)
    lab = np.asanyarray(nib.load(item["label"]).dataobj)
    assert out.shape == (SIZE, SIZE) and out.min() >= -1.0 and out.max() <= 1.0 and lab.any()
    # the window maps the bright lesion to the top of the range whatever the bit depth or sign
    assert out[lab > 0].mean() > out[lab == 0].mean()


@pytest.mark.parametrize("kind", ["nifti_4d", "nrrd_4d", "nrrd_rgb", "dicom_rgb"])
def test_4d_inputs(tmp_path, kind):
    """4-D data (a series of volumes, or colour volumes) is refused with a DataError naming the file."""
    if kind == "nifti_4d":
        path = tmp_path / "a.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((H, W, S, 2), np.float32), np.eye(4)), str(path))
    elif kind == "nrrd_4d":
        path = write_itk(tmp_path / "a.nrrd", np.zeros((2, S, H, W), np.float32))
    elif kind == "nrrd_rgb":
        path = write_itk(tmp_path / "a.nrrd", np.zeros((S, H, W, 3), np.uint8), is_vector=True)
    else:
        path = write_dicom(tmp_path / "a.dcm", np.zeros((S, H, W, 3), np.uint8), "RGB")
    with pytest.raises(DataError) as err:
        read_image(path)
    assert_names(err, path)
    mask = write_nifti(tmp_path / "m.nii.gz", volume()[1])
    with pytest.raises(DataError) as err:
        read_case(path, mask, "a", "p")
    assert_names(err, path)


def test_4d_with_trailing_singleton_is_3d(tmp_path):
    """An ``(X, Y, Z, 1)`` NIfTI (a 4-D header around a 3-D volume) carries nothing extra and is accepted."""
    image = volume()[0]
    path = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(image, (1, 2, 0))[..., None], np.eye(4)), str(path))
    np.testing.assert_array_equal(read_image(path)[0], image)


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        *[({"drop": column}, ["missing required column", column]) for column in REQUIRED_COLUMNS],
        ({"w": -8}, ["row 2", "must be > 0"]),
        ({"h": -1}, ["row 2", "must be > 0"]),
        ({"w": 0}, ["row 2", "must be > 0"]),
        ({"x": -2}, ["row 2", "negative"]),
        ({"x": 20, "w": 8}, ["row 2", "outside", f"{W}x{H}"]),  # 20 + 8 > W: outside the real JPEG
        ({"y": 30, "image_width": W, "image_height": H}, ["row 2", "outside"]),  # outside the stated image size
        ({"y": "twelve"}, ["row 2", "not a number"]),
        ({"ad": 3}, ["row 2", "AD="]),
    ],
    ids=lambda v: "-".join(f"{k}={v}" for k, v in v.items()) if isinstance(v, dict) else None,
)
def test_box_table_problems(tmp_path, change, fragments):
    """A Duke box table with a missing column, a negative or zero size, a box outside the image, a non-numeric
    value or a bad AD flag stops preparation with a DataError naming annotations.csv (and the row and file)."""
    change = dict(change)
    row = box_row(**{k: v for k, v in change.items() if k != "drop"})
    if "drop" in change:
        del row[change["drop"]]
    root = duke_folder(tmp_path / "duke", [row])
    with pytest.raises(DataError) as err:
        prepare(root, tmp_path)
    message = assert_names(err, root / "annotations.csv", *fragments)
    if "drop" not in change:
        assert "images/a.jpg" in message


def test_several_boxes_on_one_image_are_united(tmp_path):
    """Several boxes on one image (same id, same image) are valid: one case whose mask is the union of the ellipses."""
    boxes = [(4, 12, 8, 10), (8, 14, 8, 8)]  # overlapping: the second box must not erase the first one's ellipse
    rows = [box_row(x=x, y=y, w=w, h=h) for x, y, w, h in boxes]
    (case,) = discover_cases(str(duke_folder(tmp_path / "duke", rows)))
    single = [ellipse_mask((H, W), [b]) for b in boxes]
    np.testing.assert_array_equal(case.label[0], np.maximum(*single))  # the union, pixel for pixel
    assert case.meta["n_mass_boxes"] == 2
    assert case.label.sum() > max(m.sum() for m in single)  # really both boxes, not the first or last only


@pytest.mark.parametrize(
    "duplicate", ["duke_two_patients", "duke_two_views", "duke_same_case_id", "folder_two_files", "patients_csv"]
)
def test_same_id_for_two_different_images(tmp_path, duplicate):
    """The same id for two different images is refused with a DataError naming the table/folder and the id."""
    if duplicate.startswith("duke"):
        if duplicate == "duke_same_case_id":  # "a b.jpg" and "a_b.jpg" both become case id "a_b"
            images = ("images/a b.jpg", "images/a_b.jpg")
            rows = [box_row(file=f) for f in images]
        else:
            other = {"pid": "P2"} if duplicate == "duke_two_patients" else {"view": "rcc"}
            rows, images = [box_row(), box_row(x=10, y=2, w=6, h=6, **other)], ("images/a.jpg",)
        root = duke_folder(tmp_path / "duke", rows, images)
        named = [root / "annotations.csv", "a_b" if duplicate == "duke_same_case_id" else "images/a.jpg"]
    else:
        cases = {"a": nifti_case("a"), "b": nifti_case("b", seed=1)}
        root = folder_dataset(tmp_path / "ds", cases)
        if duplicate == "folder_two_files":  # a.nii.gz and a.png: two images for case "a"
            write_png(root / "images" / "a.png", volume(dtype=np.uint8)[0][1])
            named = [root / "images", "a.nii.gz", "a.png"]
        else:
            (root / "patients.csv").write_text("case,patient\na,P1\nb,P2\na,P3\n", encoding="utf-8")
            named = [root / "patients.csv", "row 4", "'a'", "P1", "P3"]
    with pytest.raises(DataError) as err:
        prepare(root, tmp_path)
    assert_names(err, *named)


def _dicom_series(folder: Path, image: np.ndarray) -> None:
    folder.mkdir()
    uid = generate_uid()
    for s in range(image.shape[0]):
        write_dicom(
            folder / f"slice {s}.dcm", image[s], SeriesInstanceUID=uid, InstanceNumber=s + 1,
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[0, 0, float(s)],
        )  # fmt: skip


@pytest.mark.parametrize("layout", ["folder_nifti", "folder_png", "folder_nrrd", "folder_dicom_series", "duke"])
def test_paths_with_spaces_and_non_ascii(tmp_path, layout):
    """Folder and file names with spaces and non-ASCII characters are read and prepared like any other."""
    root = tmp_path / "Daten für Studie" / "données DBT"
    name = "patiënt 01 – ß"
    if layout == "duke":
        root = duke_folder(root, [box_row(file=f"images/{name}.jpg")], (f"images/{name}.jpg",))
    else:
        image, label = volume(dtype=np.uint16)
        writers = {
            "folder_nifti": (lambda d: write_nifti(d / f"{name}.nii.gz", image), ".nii.gz", (1.0, 0.1, 0.1)),
            "folder_png": (lambda d: write_png(d / f"{name}.png", image[1]), ".nii.gz", (1.0, 1.0, 1.0)),
            "folder_nrrd": (lambda d: write_itk(d / f"{name}.nrrd", image), ".nrrd", (1.0, 0.1, 0.1)),
            "folder_dicom_series": (lambda d: _dicom_series(d / name, image), ".nii.gz", (1.0, 1.0, 1.0)),
        }
        write_image, mask_ext, spacing = writers[layout]
        mask = label[1:2] if layout == "folder_png" else label
        write_mask = write_itk if mask_ext == ".nrrd" else write_nifti  # same tool as the image: same orientation
        if layout == "folder_dicom_series":  # the series' geometry (IOP [1,0,0,0,1,0]) as NIfTI (x, y, z) = (h, w, s)
            write_mask = lambda p, a, s: write_nifti(p, a, s, affine=np.array(  # noqa: E731
                [[0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float))  # fmt: skip
        root = folder_dataset(root, {name: (write_image, lambda d: write_mask(d / f"{name}{mask_ext}", mask, spacing))})
    result = prepare(root, tmp_path)
    items = result["train"] + result["validation"]
    assert items and all(name in it["source"] for it in items)
    lab = np.asanyarray(nib.load(items[0]["label"]).dataobj)
    assert lab.any()  # the lesion survived: the pair really was read, not an empty stand-in


def test_operating_system_junk_files_are_ignored_by_one_rule(tmp_path):
    """Thumbs.db and desktop.ini (Windows), .DS_Store and ._ files (macOS) and side files never stop a run; an image
    file of an unknown type still does."""
    from scripts.data.folder import list_folder_pairs

    image, mask = volume(dtype=np.uint8)[0][1], (volume()[1][1] * 255).astype(np.uint8)
    root = folder_dataset(tmp_path / "set", {"a": (lambda d: write_png(d / "a.png", image),
                                                   lambda d: write_png(d / "a.png", mask))})  # fmt: skip
    for sub in ("images", "labels"):
        for junk in ("Thumbs.db", "desktop.ini", ".DS_Store", "._a.png", "notes.txt"):
            (root / sub / junk).write_bytes(b"junk")
    assert [case for case, *_ in list_folder_pairs(root)] == ["a"]
    (root / "images" / "b.tif").write_bytes(b"tiff")
    with pytest.raises(DataError, match=r"b.tif: unsupported file type"):
        list_folder_pairs(root)


def test_cases_without_a_patient_are_said_to_count_as_their_own(tmp_path, caplog):
    from scripts.data.folder import list_folder_pairs

    image, mask = volume(dtype=np.uint8)[0][1], (volume()[1][1] * 255).astype(np.uint8)
    cases = {n: (lambda d, n=n: write_png(d / f"{n}.png", image), lambda d, n=n: write_png(d / f"{n}.png", mask))
             for n in ("a", "b", "c")}  # fmt: skip
    root = folder_dataset(tmp_path / "set", cases)
    with caplog.at_level(logging.WARNING):
        list_folder_pairs(root)
    assert "3 case(s) have no patient" in caplog.text and "patients.csv" in caplog.text
    caplog.clear()
    (root / "patients.csv").write_text("case,patient\na,p1\nb,p1\nc,p2\n")
    with caplog.at_level(logging.WARNING):
        assert [p for _, p, _, _ in list_folder_pairs(root)] == ["p1", "p1", "p2"]
    assert "have no patient" not in caplog.text


def test_palette_masks_read_by_index_and_colour_masks_refused_with_their_own_colours(tmp_path):
    truth = volume()[1][1].astype(np.uint8)
    palette = Image.fromarray(truth, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 1 shown red (luma 76)
    palette.save(tmp_path / "p.png")
    mask, _, _ = read_mask(tmp_path / "p.png")
    assert np.array_equal(mask[0], truth)
    rgb = np.zeros((*truth.shape, 3), np.uint8)
    rgb[truth > 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=r"rgb.png: a colour \(RGB\) mask with colours \(0, 0, 0\), \(255, 0, 0\)"):
        read_mask(tmp_path / "rgb.png")
    gray_as_rgb = np.repeat((truth * 255)[..., None], 3, axis=2)
    Image.fromarray(gray_as_rgb).save(tmp_path / "gray.png")
    assert np.array_equal(read_mask(tmp_path / "gray.png")[0][0], truth)  # a gray mask saved as RGB still reads
