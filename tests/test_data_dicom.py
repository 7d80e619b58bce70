"""DICOM reader (``scripts.data.dicom`` through ``readers.read_array``): enhanced DBT multi-frame functional groups
(spacing, laterality, per-frame rescale and VOI LUT, MONOCHROME1, affine), legacy single-frame series, the source
datasets for DICOM SEG, and the pseudonymised DICOM Patient ID of the folder layout.

The VOI LUT expectations are the PS3.3 C.11.2.1.2 / C.11.2.1.3 formulas written out here, independently of pydicom.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import fields
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import write_dbt, write_dicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from scripts.data.case import DataError
from scripts.data.dicom import dicom_patient_id, read_dicom_datasets
from scripts.data.folder import list_folder_pairs, load_folder_cases
from scripts.data.pseudonym import SALT_FILE_NAME, pseudonymise, site_salt
from scripts.data.readers import read_array, read_case, read_mask

S, H, W = 3, 40, 56  # non-square frames
U16 = (0.0, 65535.0)  # stored range of 16-bit unsigned data: the window output range


# --------------------------------------------------------------------------- PS3.3 formulas
def voi_window(x: np.ndarray, centre: float, width: float, function: str, y=U16) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT), C.11.2.1.3.1 (SIGMOID) into ``[ymin, ymax]``."""
    x = np.asarray(x, np.float64)
    y_min, y_max = y
    if function == "SIGMOID":
        return (y_max - y_min) / (1 + np.exp(-4 * (x - centre) / width)) + y_min
    if function == "LINEAR":
        lo, hi = centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
        inside = ((x - (centre - 0.5)) / (width - 1) + 0.5) * (y_max - y_min) + y_min
    else:  # LINEAR_EXACT
        lo, hi = centre - width / 2, centre + width / 2
        inside = ((x - centre) / width + 0.5) * (y_max - y_min) + y_min
    return np.where(x <= lo, y_min, np.where(x > hi, y_max, inside))


# --------------------------------------------------------------------------- synthetic DBT
def dbt_frames() -> np.ndarray:
    """``(3, 40, 56)`` uint16: a column ramp 0..4000 (so every window has values below, inside and above it) and a
    bright 6×10 blob at rows 6-11, columns 42-51 (upper right: a transposed or flipped read moves it)."""
    ramp = np.linspace(0, 4000, W)[None, None, :] + np.arange(S)[:, None, None] * 50 + np.zeros((S, H, 1))
    frames = ramp.astype(np.uint16)
    frames[:, 6:12, 42:52] = 4095
    return frames


#: per frame (centre, width, function) and (slope, intercept): every frame different
WINDOWS = [(1500.0, 2000.0, "LINEAR"), (2200.0, 900.0, "SIGMOID"), (2000.0, 3000.0, "LINEAR_EXACT")]
RESCALES = [(1.0, 0.0), (1.5, -300.0), (2.0, -50.0)]
#: oblique plane (orthonormal cosines): row direction (IOP[:3], increasing column index), column direction
ORIENTATION = (0.8, 0.6, 0.0, 0.0, 0.0, -1.0)
ORIGIN = (10.0, -20.0, 30.0)


def write_test_dbt(path: Path, photometric="MONOCHROME2", windows=WINDOWS, rescales=RESCALES, **tags) -> Path:
    return write_dbt(
        path, dbt_frames(), photometric, pixel_spacing=(0.1, 0.085), slice_thickness=1.0, orientation=ORIENTATION,
        origin=ORIGIN, step_mm=1.0, windows=windows, rescales=rescales, laterality="R", **tags,
    )  # fmt: skip


def expected_display(frames, windows=WINDOWS, rescales=RESCALES) -> np.ndarray:
    """Modality rescale, then the window of each frame (test-side implementation)."""
    out = []
    for k, frame in enumerate(frames):
        slope, intercept = rescales[k]
        out.append(voi_window(frame.astype(np.float64) * slope + intercept, *windows[k]))
    return np.stack(out)


def test_dbt_shape_spacing_laterality_and_stored_values(tmp_path):
    path = write_test_dbt(tmp_path / "dbt.dcm")
    arr, spacing, info = read_array(path, display=False)  # masks' path: stored values, no LUTs
    assert arr.shape == (S, H, W) and arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, dbt_frames())  # frames on axis 0, rows × columns not transposed
    assert spacing == pytest.approx((1.0, 0.1, 0.085))  # (slice from positions, between rows, between columns)
    assert info["laterality"] == "R" and "voi" not in info and not info["inverted"]


def test_dbt_per_frame_rescale_and_window(tmp_path):
    """Each frame gets its own Pixel Value Transformation and Frame VOI LUT (LINEAR, SIGMOID, LINEAR_EXACT)."""
    arr, _, info = read_array(write_test_dbt(tmp_path / "dbt.dcm"))
    assert arr.dtype == np.float32
    expected = expected_display(dbt_frames())
    for frame in expected:  # each frame's window really cuts: values at (SIGMOID: near) ymin, inside and at ymax
        assert frame.min() < 100 and frame.max() > 65400 and ((frame > 1000) & (frame < 64000)).any()
    np.testing.assert_allclose(arr, expected, rtol=1e-5, atol=0.05)
    assert info["voi"] == "window" and info["voi_windows"] == WINDOWS and info["voi_range"] == U16


def test_dbt_monochrome1_inverted_within_window_range(tmp_path):
    """Inverted as ``ymax + ymin - value``: with a window the data never fill (max < ymax), a mirror at the data
    maximum would differ."""
    windows = [(6000.0, 8000.0, "LINEAR_EXACT")] * S  # [2000, 10000]: the frames' values stop below 8200
    arr, _, info = read_array(write_test_dbt(tmp_path / "dbt.dcm", "MONOCHROME1", windows=windows))
    windowed = expected_display(dbt_frames(), windows=windows)
    assert windowed.min() == U16[0] and windowed.max() < 0.9 * U16[1]
    np.testing.assert_allclose(arr, U16[1] + U16[0] - windowed, rtol=1e-5, atol=0.05)
    assert info["inverted"] and arr.min() >= U16[0] and arr.max() == U16[1]


def test_dbt_affine_ras(tmp_path):
    _, spacing, info = read_array(write_test_dbt(tmp_path / "dbt.dcm"))
    affine = info["affine_ras"]
    # by hand: LPS columns s = normal × 1 mm = (-0.6, 0.8, 0), h = IOP[3:] × 0.1 = (0, 0, -0.1),
    # w = IOP[:3] × 0.085 = (0.068, 0.051, 0), origin (10, -20, 30); RAS negates x and y
    expected = np.array(
        [[0.6, 0.0, -0.068, -10.0], [-0.8, 0.0, -0.051, 20.0], [0.0, -0.1, 0.0, 30.0], [0.0, 0.0, 0.0, 1.0]]
    )
    np.testing.assert_allclose(affine, expected, atol=1e-9)
    ras = np.diag([-1.0, -1.0, 1.0])
    ds = pydicom.dcmread(tmp_path / "dbt.dcm")
    groups = ds.PerFrameFunctionalGroupsSequence
    ipp = [np.asarray(g.PlanePositionSequence[0].ImagePositionPatient, float) for g in groups]
    np.testing.assert_allclose(affine @ [0, 0, 0, 1], [*(ras @ ipp[0]), 1])  # index (0, 0, 0) → first frame's IPP
    np.testing.assert_allclose(affine @ [2, 0, 0, 1], [*(ras @ ipp[2]), 1])  # frame 2 → its own IPP
    one_column = affine @ [0, 0, 1, 1] - affine @ [0, 0, 0, 1]
    np.testing.assert_allclose(one_column[:3], ras @ (0.085 * np.asarray(ORIENTATION[:3])))  # along IOP[:3]
    one_row = affine @ [0, 1, 0, 1] - affine @ [0, 0, 0, 1]
    np.testing.assert_allclose(one_row[:3], ras @ (0.1 * np.asarray(ORIENTATION[3:])))
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), spacing)


def test_dicom_image_with_nifti_mask_on_its_grid(tmp_path):
    """A NIfTI mask saved with the DICOM image's geometry passes the pair check; one with its rows flipped fails."""
    image = write_test_dbt(tmp_path / "dbt.dcm")
    affine_shw = read_array(image)[2]["affine_ras"]
    mask = np.zeros((S, H, W), np.uint8)
    mask[1, 6:12, 42:52] = 1
    to_xyz = np.zeros((4, 4))  # NIfTI (x, y, z) = (h, w, s) of the readers' convention
    to_xyz[0, 2] = to_xyz[1, 0] = to_xyz[2, 1] = to_xyz[3, 3] = 1.0
    nib.save(nib.Nifti1Image(np.transpose(mask, (1, 2, 0)), affine_shw @ to_xyz), str(tmp_path / "m.nii.gz"))
    case = read_case(image, tmp_path / "m.nii.gz", "c", "p")
    assert case.label.sum() == 60 and case.meta["laterality"] == "R"
    flipped = affine_shw @ to_xyz @ np.diag([-1.0, 1.0, 1.0, 1.0])  # rows reversed: another grid
    nib.save(nib.Nifti1Image(np.transpose(mask, (1, 2, 0)), flipped), str(tmp_path / "f.nii.gz"))
    with pytest.raises(DataError, match="orientation differs"):
        read_case(image, tmp_path / "f.nii.gz", "c", "p")


def test_first_of_several_windows_and_default_linear(tmp_path):
    windows = [([1500.0, 400.0], [2000.0, 100.0], None)] * S  # VM 2; no VOILUTFunction → LINEAR
    arr, _, info = read_array(write_test_dbt(tmp_path / "dbt.dcm", windows=windows))
    first = [(1500.0, 2000.0, "LINEAR")] * S
    np.testing.assert_allclose(arr, expected_display(dbt_frames(), windows=first), rtol=1e-5, atol=0.05)
    assert info["voi_windows"] == first


def test_no_voi_keeps_modality_values(tmp_path):
    arr, _, info = read_array(write_test_dbt(tmp_path / "dbt.dcm", windows=None))
    rescaled = np.stack([f * s + i for f, (s, i) in zip(dbt_frames().astype(np.float64), RESCALES, strict=True)])
    np.testing.assert_allclose(arr, rescaled)
    assert info["voi"] is None and info["voi_windows"] == [] and "voi_range" not in info


@pytest.mark.parametrize("problem", ["width_zero", "some_frames_only", "unknown_function"])
def test_invalid_or_partial_voi_is_not_applied(tmp_path, caplog, problem):
    """All or nothing: a volume is never left with some frames windowed and others not."""
    path = write_test_dbt(tmp_path / "dbt.dcm")
    ds = pydicom.dcmread(path)
    groups = ds.PerFrameFunctionalGroupsSequence
    if problem == "width_zero":
        groups[1].FrameVOILUTSequence[0].WindowWidth = 0
    elif problem == "some_frames_only":
        del groups[2].FrameVOILUTSequence
    else:
        groups[0].FrameVOILUTSequence[0].VOILUTFunction = "GAMMA"
    ds.save_as(path)
    with caplog.at_level(logging.WARNING):
        arr, _, info = read_array(path)
    rescaled = np.stack([f * s + i for f, (s, i) in zip(dbt_frames().astype(np.float64), RESCALES, strict=True)])
    np.testing.assert_allclose(arr, rescaled)
    assert info["voi"] is None and "dbt.dcm" in caplog.text and "VOI LUT" in caplog.text


def test_voi_lut_table(tmp_path):
    """A VOI LUT Sequence table (PS3.3 C.11.2.1.1): values below the first mapped value take entry 0, above the end
    the last entry; MONOCHROME1 inverts within the table's 8-bit range."""
    plane = np.tile(np.arange(0, 400, 8, dtype=np.uint16), (6, 1))  # 6 × 50, 0..392
    lut = Dataset()
    lut.add_new(0x00283002, "US", [256, 100, 8])  # LUT Descriptor: entries, first mapped input value, bits per entry
    lut.add_new(0x00283006, "US", [int(v) for v in np.arange(256)[::-1] // 2])  # LUT Data: decreasing, max 127
    path = write_dicom(
        tmp_path / "lut.dcm", plane, "MONOCHROME1", VOILUTSequence=Sequence([lut]), RescaleSlope=1,
        RescaleIntercept=0, WindowCenter=200, WindowWidth=100,
    )  # fmt: skip
    arr, _, info = read_array(path)
    table = np.asarray(lut.LUTData, float)
    expected = 255.0 - table[np.clip(plane.astype(int) - 100, 0, 255)]
    np.testing.assert_allclose(arr[0], expected)
    assert info["voi"] == "lut" and info["voi_range"] == (0.0, 255.0) and info["voi_windows"] == [None]


# --------------------------------------------------------------------------- legacy single-frame series
def _as_ct(path: Path) -> None:
    """Make a :func:`write_dicom` file a classic CT Image Storage instance."""
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    ds.save_as(path)


def legacy_series(folder: Path, photometric="MONOCHROME2", **extra) -> dict:
    """Four classic single-frame files written out of slice order, each with its own Rescale Slope/Intercept and
    Window Center/Width (file 3: two windows); returns ``{SOPInstanceUID: (z, stored plane, slope, intercept,
    window)}``."""
    folder.mkdir()
    uid = generate_uid()
    z_positions = [5.0, 0.0, 7.5, 2.5]  # file-name order ≠ slice order; InstanceNumber misleading too
    slopes, intercepts = [1.0, 2.0, 0.5, 1.0], [-1024.0, -2048.0, 0.0, -500.0]
    windows = [(40.0, 400.0), (100.0, 1000.0), (300.0, 600.0), ([0.0, 50.0], [800.0, 20.0])]
    out = {}
    for i, z in enumerate(z_positions):
        plane = (np.arange(6 * 7).reshape(6, 7) * 40 + 600 + 100 * i).astype(np.uint16)  # 6 rows × 7 columns
        path = write_dicom(
            folder / f"{i}.dcm", plane, photometric, SeriesInstanceUID=uid, ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            ImagePositionPatient=[5.0, 7.0, z], InstanceNumber=10 - i, PixelSpacing=[0.2, 0.3], RescaleSlope=slopes[i],
            RescaleIntercept=intercepts[i], WindowCenter=windows[i][0], WindowWidth=windows[i][1], **extra,
        )  # fmt: skip
        _as_ct(path)
        centre, width = (np.ravel(v)[0] for v in windows[i])
        out[pydicom.dcmread(path).SOPInstanceUID] = (z, plane, slopes[i], intercepts[i], (centre, width, "LINEAR"))
    return out


def test_legacy_series_windowed_per_file_and_ordered_by_position(tmp_path):
    written = legacy_series(tmp_path / "ct")
    arr, spacing, info = read_array(tmp_path / "ct")
    by_z = sorted(written.values(), key=lambda v: v[0])
    expected = np.stack([voi_window(p * s + i, *w) for _, p, s, i, w in by_z])
    np.testing.assert_allclose(arr, expected, rtol=1e-5, atol=0.05)
    assert info["voi_windows"] == [w for *_, w in by_z]  # the first of file 3's two windows
    assert spacing == pytest.approx((2.5, 0.2, 0.3))
    expected_affine = [[0, 0, -0.3, -5.0], [0, -0.2, 0, -7.0], [2.5, 0, 0, 0.0], [0, 0, 0, 1]]  # by hand, RAS
    np.testing.assert_allclose(info["affine_ras"], expected_affine, atol=1e-9)


def test_legacy_series_monochrome1(tmp_path):
    written = legacy_series(tmp_path / "ct", "MONOCHROME1")
    arr, _, info = read_array(tmp_path / "ct")
    by_z = sorted(written.values(), key=lambda v: v[0])
    windowed = np.stack([voi_window(p * s + i, *w) for _, p, s, i, w in by_z])
    np.testing.assert_allclose(arr, 65535.0 - windowed, rtol=1e-5, atol=0.05)
    assert info["inverted"]


def test_read_dicom_datasets_order_matches_array(tmp_path):
    written = legacy_series(tmp_path / "ct")
    stored, _, _ = read_array(tmp_path / "ct", display=False)
    datasets = read_dicom_datasets(tmp_path / "ct")
    assert len(datasets) == 4 and all("PixelData" not in ds for ds in datasets)
    for k, ds in enumerate(datasets):  # slice k of the array is the file of dataset k
        np.testing.assert_array_equal(stored[k], written[ds.SOPInstanceUID][1])
        assert Path(ds.filename).parent == tmp_path / "ct"
    dbt = write_test_dbt(tmp_path / "dbt.dcm")
    (one,) = read_dicom_datasets(dbt)
    assert one.SOPInstanceUID == pydicom.dcmread(dbt).SOPInstanceUID and int(one.NumberOfFrames) == S
    assert "PixelData" not in one and len(one.PerFrameFunctionalGroupsSequence) == S
    with pytest.raises(DataError, match="missing.dcm"):
        read_dicom_datasets(tmp_path / "missing.dcm")
    (tmp_path / "bad.dcm").write_bytes(b"not dicom")
    with pytest.raises(DataError, match="bad.dcm"):
        read_dicom_datasets(tmp_path / "bad.dcm")


def test_series_mask_keeps_stored_values(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    for z in range(3):
        plane = np.zeros((6, 7), np.uint8)
        plane[2:4, 1:3] = 1
        write_dicom(
            folder / f"{z}.dcm", plane, ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            ImagePositionPatient=[0, 0, float(z)], WindowCenter=0, WindowWidth=1, RescaleIntercept=5,
        )  # fmt: skip
    mask, _, info = read_mask(folder)
    assert mask.sum() == 12 and "voi" not in info and "affine_ras" in info


# --------------------------------------------------------------------------- pseudonyms
def test_pseudonymise_formula():
    expected = "P" + hashlib.sha256(b"salt\x00PAT-1").hexdigest()[:16]
    assert pseudonymise("PAT-1", "salt") == expected
    assert pseudonymise("PAT-1", "other") != expected and pseudonymise("PAT-2", "salt") != expected
    assert len(expected) == 17 and all(c in "0123456789abcdef" for c in expected[1:])


def test_site_salt_created_once_and_kept(tmp_path):
    salt = site_salt(tmp_path / "cache")
    path = tmp_path / "cache" / SALT_FILE_NAME
    assert len(salt) == 32 and int(salt, 16) >= 0 and path.read_text().strip() == salt
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert site_salt(tmp_path / "cache") == salt  # read, not re-created
    assert not [p for p in path.parent.iterdir() if p.name != SALT_FILE_NAME]  # no temporary file left
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / SALT_FILE_NAME).write_text("fixed-site-secret\n")
    assert site_salt(tmp_path / "other") == "fixed-site-secret"  # an existing file is never overwritten
    (tmp_path / "other" / SALT_FILE_NAME).write_text("")
    with pytest.raises(DataError, match=SALT_FILE_NAME):
        site_salt(tmp_path / "other")


SECRET_ID, SECRET_NAME = "PACS-0047110815", "Mustermann^Erika"


def _dicom_case(root: Path, name: str, patient_id: str | None, seed: int) -> None:
    """A DBT case ``images/<name>.dcm`` + DICOM mask ``labels/<name>.dcm`` (both with the patient's tags)."""
    tags = {"PatientName": SECRET_NAME} | ({"PatientID": patient_id} if patient_id is not None else {})
    frames = dbt_frames()
    frames[:, 20:30, :20] = 800 + seed  # a breast-like dark-side region so every case differs
    write_dbt(root / "images" / f"{name}.dcm", frames, windows=WINDOWS, rescales=RESCALES, **tags)
    mask = np.zeros((S, H, W), np.uint8)
    mask[:, 6:12, 42:52] = 1
    write_dbt(root / "labels" / f"{name}.dcm", mask, **tags)


def dicom_folder(root: Path) -> Path:
    """Folder layout: studies a, b of one patient, c of another, d without Patient ID, e listed in patients.csv."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cases = [("a", SECRET_ID), ("b", SECRET_ID), ("c", "OTHER-42"), ("d", ""), ("e", SECRET_ID)]
    for i, (name, pid) in enumerate(cases):
        _dicom_case(root, name, pid, i)
    (root / "patients.csv").write_text("case,patient\ne,listed-patient\n", encoding="utf-8")
    return root


def test_folder_groups_cases_by_pseudonymised_patient_id(tmp_path):
    root = dicom_folder(tmp_path / "data")
    salt = "site-secret"
    patients = {case: patient for case, patient, _, _ in list_folder_pairs(root, salt=salt)}
    assert patients == {
        "a": pseudonymise(SECRET_ID, salt), "b": pseudonymise(SECRET_ID, salt), "c": pseudonymise("OTHER-42", salt),
        "d": "d", "e": "listed-patient",
    }  # fmt: skip
    assert dicom_patient_id(root / "images" / "a.dcm") == SECRET_ID


def test_patient_identity_never_reaches_a_case_log_or_datalist(tmp_path, caplog, monkeypatch):
    """No Patient ID / Patient Name string of the DICOM input in any Case field, log line or the datalist."""
    root = dicom_folder(tmp_path / "data")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # salt=None: the default salt location
    secrets_ = [SECRET_ID, SECRET_NAME, "OTHER-42", "Mustermann", "Erika", "0047110815"]
    with caplog.at_level(logging.DEBUG):
        cases = list(load_folder_cases(root))
        from scripts.data.prepare import prepare_dataset

        result = prepare_dataset(str(root), str(tmp_path / "cache"), image_size=16)
    salt = (tmp_path / "xdg" / "pig" / SALT_FILE_NAME).read_text().strip()
    assert {c.case_id: c.patient_id for c in cases}["a"] == pseudonymise(SECRET_ID, salt)
    for case in cases:
        text = " ".join(repr(getattr(case, f.name)) for f in fields(case) if f.name not in ("image", "label"))
        assert not any(s in text for s in secrets_), text
    datalist = Path(result["cache"], "datalist.json").read_text(encoding="utf-8")
    assert result["train"] and not any(s in datalist for s in secrets_)
    assert caplog.records and not any(s in caplog.text for s in secrets_)
    assert len({it["patient_id"] for it in result["train"] + result["validation"]}) == 4  # a+b, c, d, e


def test_series_with_two_patient_ids_error_names_no_id(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    uid = generate_uid()
    for z, pid in enumerate([SECRET_ID, "OTHER-42"]):
        write_dicom(
            folder / f"{z}.dcm", np.zeros((4, 5), np.uint16), SeriesInstanceUID=uid, PatientID=pid,
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[0, 0, float(z)],
        )  # fmt: skip
    with pytest.raises(DataError) as err:
        dicom_patient_id(folder)
    assert str(folder) in str(err.value) and SECRET_ID not in str(err.value) and "OTHER-42" not in str(err.value)


def test_a_missing_pixel_decoder_is_named_not_called_corrupt(tmp_path):
    """High-Throughput JPEG 2000 needs pylibjpeg-openjpeg, which the requirements do not install."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, generate_uid

    from scripts.data.case import DataError
    from scripts.data.readers import read_array

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.201")  # HTJ2K lossless
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = encapsulate([b"\x00" * 20])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "htj2k.dcm", enforce_file_format=True)
    with pytest.raises(DataError, match=r"htj2k.dcm: no decoder installed .*High-Throughput JPEG 2000.*pylibjpeg"):
        read_array(tmp_path / "htj2k.dcm")
