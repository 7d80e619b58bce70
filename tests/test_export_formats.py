"""Result files for 3D Slicer and PACS: ``.seg.nrrd`` and DICOM SEG round trips on asymmetric masks and geometry,
synthetic Secondary Capture images, ``dciodvfy`` conformance, no overwrite, atomic writes, format names."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
import slicerio
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scripts.data.readers import read_array
from scripts.export import (
    MASS_SEGMENT,
    OUTPUT_FORMATS,
    check_output_formats,
    read_dicom_seg,
    read_seg_nrrd,
    synthetic_dicom,
    synthetic_patient_id,
    write_dicom_seg,
    write_seg_nrrd,
    write_synthetic_image,
    write_synthetic_pair,
)
from scripts.export import formats as export_formats

BREAST_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
H, W = 40, 56  # non-square: a transposed result cannot have the right shape

#: (s, h, w) -> RAS mm: anisotropic (1.5, 0.5, 0.7) mm, axes permuted, the column axis flipped, origin off zero.
AFFINE = np.array(
    [
        [0.0, 0.0, -0.7, 12.5],
        [0.0, 0.5, 0.0, -20.0],
        [1.5, 0.0, 0.0, 33.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _mask(slices: int) -> np.ndarray:
    """A lesion off-centre (rows 5-11, columns 30-49); with several slices the first is empty and the last has a
    second blob, so that slice order, flips and transposes all change the array."""
    mask = np.zeros((slices, H, W), np.uint8)
    mask[-1, 5:12, 30:50] = 1
    if slices > 1:
        mask[1:, 5:12, 30:50] = 1
        mask[-1, 28:34, 2:7] = 1
    return mask


@pytest.fixture(params=[1, 3], ids=["2d", "3d"])
def mask(request) -> np.ndarray:
    return _mask(request.param)


# --------------------------------------------------------------------------- synthetic DICOM sources
def _item(**tags) -> Dataset:
    item = Dataset()
    for key, value in tags.items():
        setattr(item, key, value)
    return item


def _code(code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)


def _patient_study(ds: Dataset) -> None:
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "TEST^DBT", "TEST-1", "", "F"
    ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = generate_uid(), "1", "", ""
    ds.StudyDate, ds.StudyTime = "20240101", "120000"
    ds.SeriesInstanceUID, ds.SeriesNumber = generate_uid(), 1
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = generate_uid(), ""
    ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber, ds.SoftwareVersions = "TEST", "T", "1", "1"
    ds.ContentDate, ds.ContentTime = "20240101", "120000"


def _new_dataset(sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    return ds


def make_dbt_source(frames: int = 3, rows: int = H, cols: int = W) -> Dataset:
    """A Breast Tomosynthesis Image (enhanced multi-frame, 12-bit MONOCHROME2) that ``dciodvfy`` accepts without
    errors: Patient / Study / Series / Frame of Reference / Equipment, X-Ray 3D Image, Breast View, and functional
    groups (shared Pixel Measures 0.5 × 0.7 mm, Plane Orientation, Frame Anatomy, Pixel Value Transformation;
    per-frame Plane Position, Frame Content, X-Ray 3D Frame Type), one dimension (Image Position Patient)."""
    ds = _new_dataset(BREAST_TOMOSYNTHESIS)
    _patient_study(ds)
    ds.Modality, ds.InstanceNumber = "MG", 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMOSYNTHESIS", "NONE"]
    ds.PixelPresentation, ds.VolumetricProperties, ds.VolumeBasedCalculationTechnique = (
        "MONOCHROME",
        "VOLUME",
        "TOMOSYNTHESIS",
    )
    ds.ContentQualification, ds.BurnedInAnnotation, ds.LossyImageCompression = "RESEARCH", "NO", "00"
    ds.PresentationLUTShape, ds.BreastImplantPresent = "IDENTITY", "NO"
    ds.ViewCodeSequence = [_code(codes.SCT.CranioCaudal)]
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = []
    ds.AcquisitionContextSequence = []
    ds.NumberOfFrames = frames
    pixels = (np.arange(frames * rows * cols).reshape(frames, rows, cols) % 4096).astype(np.uint16)
    ds.set_pixel_data(pixels, "MONOCHROME2", 12)
    dimension = generate_uid()
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=dimension)]
    ds.DimensionIndexSequence = [
        _item(DimensionOrganizationUID=dimension, DimensionIndexPointer=0x00200032, FunctionalGroupPointer=0x00209113)
    ]
    shared = Dataset()
    shared.PixelMeasuresSequence = [_item(PixelSpacing=[0.5, 0.7], SliceThickness=1.5, SpacingBetweenSlices=1.5)]
    shared.PlaneOrientationSequence = [_item(ImageOrientationPatient=[0, 1, 0, 0, 0, -1])]
    shared.FrameAnatomySequence = [_item(AnatomicRegionSequence=[_code(codes.SCT.Breast)], FrameLaterality="L")]
    shared.PixelValueTransformationSequence = [_item(RescaleIntercept=0, RescaleSlope=1, RescaleType="US")]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for f in range(frames):
        group = Dataset()
        group.PlanePositionSequence = [_item(ImagePositionPatient=[10.0 + 1.5 * f, -20.0, 33.0])]
        group.FrameContentSequence = [
            _item(
                DimensionIndexValues=[f + 1],
                FrameReferenceDateTime="20240101120000",
                FrameAcquisitionDateTime="20240101120000",
                FrameAcquisitionDuration=100,
            )
        ]
        group.XRay3DFrameTypeSequence = [
            _item(
                FrameType=["ORIGINAL", "PRIMARY", "TOMOSYNTHESIS", "NONE"],
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="TOMOSYNTHESIS",
            )
        ]
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    return ds


def make_ct_series(slices: int = 3, rows: int = H, cols: int = W) -> list[Dataset]:
    """A legacy series of single-frame CT images in slice order, whose positions run *against* the slice normal
    (so that a writer sorting by position instead of keeping the given order is caught)."""
    first = _new_dataset(CT_IMAGE)
    _patient_study(first)
    series = []
    for s in range(slices):
        ds = copy.deepcopy(first) if s else first
        if s:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.Modality, ds.InstanceNumber, ds.ImageType = "CT", s + 1, ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-30.0, -40.0, 50.0 - 2.0 * s]
        ds.PixelSpacing, ds.SliceThickness = [0.5, 0.7], 2.0
        ds.KVP, ds.RescaleIntercept, ds.RescaleSlope = 120, -1024, 1
        ds.set_pixel_data(np.full((rows, cols), 100 * s, np.uint16), "MONOCHROME2", 12)
        series.append(ds)
    return series


# --------------------------------------------------------------------------- .seg.nrrd
def test_seg_nrrd_round_trip_slicerio_and_itk(tmp_path, mask):
    path = write_seg_nrrd(mask, AFFINE, tmp_path / "lesion.seg.nrrd")
    assert path == tmp_path / "lesion.seg.nrrd" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]

    segmentation = slicerio.read_segmentation(str(path))
    (segment,) = segmentation["segments"]
    assert segment["name"] == "mass" and segment["labelValue"] == MASS_SEGMENT.label_value == 1
    assert "4147007" in segment["terminology"]["type"] and "49755003" in segment["terminology"]["category"]
    assert segmentation["voxels"].shape == (W, H, mask.shape[0])  # NRRD (i, j, k) = (column, row, slice)

    back, affine, segments = read_seg_nrrd(path)
    assert back.dtype == np.uint8 and np.array_equal(back, mask)
    np.testing.assert_allclose(affine, AFFINE, atol=1e-9)
    assert segments[0]["id"] == "mass"

    # an independent reader: the project's ITK path, whose LPS -> RAS and axis handling must agree
    array, spacing, info = read_array(path)
    assert np.array_equal(array, mask)
    np.testing.assert_allclose(info["affine_ras"], AFFINE, atol=1e-6)
    assert spacing == pytest.approx((1.5, 0.5, 0.7))


def test_seg_nrrd_input_errors(tmp_path):
    with pytest.raises(ValueError, match=r"bad\.seg\.nrrd.*\(S, H, W\)"):
        write_seg_nrrd(np.zeros((H, W), np.uint8), AFFINE, tmp_path / "bad.seg.nrrd")
    with pytest.raises(ValueError, match=r"bad\.seg\.nrrd.*only 0 and 1"):
        write_seg_nrrd(_mask(1) * 255, AFFINE, tmp_path / "bad.seg.nrrd")
    with pytest.raises(ValueError, match="singular"):
        write_seg_nrrd(_mask(1), np.diag([0.0, 1, 1, 1]), tmp_path / "bad.seg.nrrd")
    path = write_seg_nrrd(_mask(1), AFFINE, tmp_path / "ok.seg.nrrd")
    with pytest.raises(ValueError, match=r"ok\.seg\.nrrd.*no segment named 'tumour'.*\['mass'\]"):
        read_seg_nrrd(path, segment="tumour")
    assert not (tmp_path / "bad.seg.nrrd").exists()


# --------------------------------------------------------------------------- DICOM SEG
@pytest.mark.parametrize("synthetic", [False, True], ids=["real", "synthetic"])
def test_dicom_seg_on_dbt_source(tmp_path, synthetic):
    mask = _mask(3)
    source = make_dbt_source(frames=3)
    path = write_dicom_seg(mask, [source], tmp_path / "seg.dcm", algorithm_version="9.9", synthetic=synthetic)

    assert np.array_equal(read_dicom_seg(path, [source]), mask)
    seg = hd.seg.segread(path)
    by_frame = seg.get_pixels_by_source_frame(
        source.SOPInstanceUID, source_frame_numbers=[1, 2, 3], segment_numbers=[1]
    )
    assert np.array_equal(by_frame[..., 0], mask)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "mass" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "4147007"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.SegmentAlgorithmName == "PIG bundle" and seg.SoftwareVersions == "9.9"
    # in the source's study and frame of reference, a new series and instance, referencing the source series
    (ref_series,) = seg.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == source.SeriesInstanceUID
    assert [r.ReferencedSOPInstanceUID for r in ref_series.ReferencedInstanceSequence] == [source.SOPInstanceUID]
    assert (seg.StudyInstanceUID, seg.PatientID, seg.FrameOfReferenceUID) == (
        source.StudyInstanceUID, source.PatientID, source.FrameOfReferenceUID
    )  # fmt: skip
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID and seg.SOPInstanceUID != source.SOPInstanceUID
    # each SEG frame lies where its source frame lies
    for group in seg.PerFrameFunctionalGroupsSequence:
        frame = int(group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
        source_position = source.PerFrameFunctionalGroupsSequence[frame - 1].PlanePositionSequence[0]
        assert group.PlanePositionSequence[0].ImagePositionPatient == source_position.ImagePositionPatient
    assert ("SyntheticData" in seg) == synthetic
    if synthetic:
        assert seg.SyntheticData == "YES"


def test_dicom_seg_single_frame_dbt(tmp_path):
    source, mask = make_dbt_source(frames=1), _mask(1)
    path = write_dicom_seg(mask, [source], tmp_path / "seg.dcm")
    assert np.array_equal(read_dicom_seg(path, [source]), mask)


def test_dicom_seg_on_legacy_series(tmp_path):
    mask, series = _mask(3), make_ct_series(3)
    path = write_dicom_seg(mask, series, tmp_path / "seg.dcm")
    assert np.array_equal(read_dicom_seg(path, series), mask)
    assert np.array_equal(read_dicom_seg(path, series[::-1]), mask[::-1])  # the given order sets the slice order
    seg = hd.seg.segread(path)
    by_instance = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in series], segment_numbers=[1])
    assert np.array_equal(by_instance[..., 0], mask)
    (ref_series,) = seg.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == series[0].SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in ref_series.ReferencedInstanceSequence} == {
        ds.SOPInstanceUID for ds in series
    }
    assert seg.StudyInstanceUID == series[0].StudyInstanceUID and "SyntheticData" not in seg


def test_dicom_seg_shape_must_match_source(tmp_path):
    source = make_dbt_source(frames=3)
    target = tmp_path / "seg.dcm"
    for wrong in (_mask(3).transpose(0, 2, 1), _mask(1), np.zeros((3, H, W + 1), np.uint8)):
        with pytest.raises(ValueError, match=r"seg\.dcm.*does not match"):
            write_dicom_seg(wrong, [source], target)
    with pytest.raises(ValueError, match=r"seg\.dcm.*several source images"):
        write_dicom_seg(_mask(3), [source, source, source], target)
    with pytest.raises(ValueError, match=r"seg\.dcm.*no source images"):
        write_dicom_seg(_mask(3), [], target)
    assert not target.exists()
    path = write_dicom_seg(_mask(3), [source], target)
    with pytest.raises(ValueError, match=r"seg\.dcm.*40x56.*40x57"):
        read_dicom_seg(path, [make_dbt_source(frames=3, cols=W + 1)])
    with pytest.raises(ValueError, match=r"seg\.dcm.*does not match these source images"):
        read_dicom_seg(path, [make_dbt_source(frames=3)])  # same grid, other instance
    with pytest.raises(ValueError, match=r"seg\.dcm.*no segment labelled 'tumour'.*\['mass'\]"):
        read_dicom_seg(path, [source], segment="tumour")


# --------------------------------------------------------------------------- synthetic Secondary Capture
def _image() -> np.ndarray:
    image = np.random.default_rng(0).random((H, W))
    image[0, 0], image[-1, -1] = 0.0, 1.0
    return image


def test_synthetic_pair_attributes(tmp_path):
    image, mask = _image(), _mask(1)
    first = write_synthetic_pair(image, mask[0], (0.1, 0.085), tmp_path / "a.dcm", tmp_path / "a_seg.dcm")
    second = write_synthetic_pair(image[None], mask, (0.1, 0.085), tmp_path / "b.dcm", tmp_path / "b_seg.dcm")
    assert first == (tmp_path / "a.dcm", tmp_path / "a_seg.dcm")
    datasets = []
    for image_path, seg_path in (first, second):
        ds, seg = pydicom.dcmread(image_path), pydicom.dcmread(seg_path)
        datasets.append(ds)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
        assert ds.SyntheticData == "YES" and seg.SyntheticData == "YES"
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"] and ds.ConversionType == "SYN"
        purposes = {
            (
                item.PurposeOfReferenceCodeSequence[0].CodingSchemeDesignator,
                item.PurposeOfReferenceCodeSequence[0].CodeValue,
            ): item
            for item in ds.ContributingEquipmentSequence
        }
        equipment = purposes[("DCM", "109100")]  # Synthesizing Equipment (highdicom adds its own item, 109102)
        assert equipment.Manufacturer == "PIG bundle" and equipment.SoftwareVersions
        assert ds.PatientName == "SYNTHETIC^PIG" and ds.PatientID.startswith("PIG-SYN-")
        assert ds.PatientID == synthetic_patient_id(ds.StudyInstanceUID)
        assert (ds.BitsStored, ds.PhotometricInterpretation, ds.PixelSpacing) == (16, "MONOCHROME2", [0.1, 0.085])
        assert np.abs(ds.pixel_array / 65535.0 - image).max() <= 0.5 / 65535 + 1e-12
        # the project's reader applies the rescale: the generator's [0, 1] again
        array, _, _ = read_array(image_path)
        assert np.abs(array[0] - image).max() <= 1 / 65535
        # the SEG sits in the image's study and reads back on it
        assert (seg.StudyInstanceUID, seg.PatientID) == (ds.StudyInstanceUID, ds.PatientID)
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ds.SeriesInstanceUID
        assert np.array_equal(read_dicom_seg(seg_path, [ds]), mask)
    a, b = datasets
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert a[uid].value != b[uid].value
    assert a.PatientID != b.PatientID


def test_synthetic_image_options_and_errors(tmp_path):
    study, series = generate_uid(), generate_uid()
    ds = write_synthetic_image(
        _image(), None, tmp_path / "x.dcm", study_instance_uid=study, series_instance_uid=series, laterality="L"
    )
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Laterality) == (study, series, "L")
    assert "PixelSpacing" not in ds and ds.SeriesDescription == "PIG synthetic pair"
    for bad, message in ((_image() * 1.5, r"\[0, 1\]"), (np.full((H, W), np.nan), "NaN"), (np.zeros((2, H, W)), "2-D")):
        with pytest.raises(ValueError, match=r"y\.dcm.*" + message):
            write_synthetic_image(bad, (0.1, 0.1), tmp_path / "y.dcm")
    with pytest.raises(ValueError, match="spacing_mm"):
        write_synthetic_image(_image(), (0.1, -1), tmp_path / "y.dcm")
    assert not (tmp_path / "y.dcm").exists()


# --------------------------------------------------------------------------- dciodvfy
def _dciodvfy() -> str:
    tool = shutil.which("dciodvfy")
    if tool is None:
        reason = "dciodvfy (Debian package dicom3tools) is not installed; install it to check DICOM conformance"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return tool


def _errors(tool: str, path) -> list[str]:
    """dciodvfy's error lines, without those on Synthetic Data (0008,001C), which its 2022 dictionary lacks."""
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [
        line for line in lines
        if line.startswith("Error") and "0x0008,0x001c" not in line.lower() and "syntheticdata" not in line.lower()
    ]  # fmt: skip


def test_dciodvfy_finds_no_errors(tmp_path):
    tool = _dciodvfy()
    image_path, seg_path = write_synthetic_pair(
        _image(), _mask(1), (0.1, 0.085), tmp_path / "i.dcm", tmp_path / "s.dcm"
    )
    source = make_dbt_source(frames=3)
    source_path = tmp_path / "dbt.dcm"
    source.save_as(source_path, enforce_file_format=True)
    dbt_seg = write_dicom_seg(_mask(3), [source], tmp_path / "dbt_seg.dcm", synthetic=True)
    found = {path.name: _errors(tool, path) for path in (image_path, seg_path, source_path, dbt_seg)}
    assert found == {name: [] for name in found}


# --------------------------------------------------------------------------- no overwrite, atomic writes
def test_writers_refuse_to_overwrite(tmp_path):
    existing = tmp_path / "taken.dcm"
    existing.write_bytes(b"keep me")
    nrrd_existing = tmp_path / "taken.seg.nrrd"
    nrrd_existing.write_bytes(b"keep me")
    source = make_dbt_source(frames=1)
    calls = [
        lambda: write_seg_nrrd(_mask(1), AFFINE, nrrd_existing),
        lambda: write_dicom_seg(_mask(1), [source], existing),
        lambda: write_synthetic_image(_image(), (0.1, 0.1), existing),
        lambda: write_synthetic_pair(_image(), _mask(1), (0.1, 0.1), tmp_path / "new.dcm", existing),
        lambda: write_synthetic_pair(_image(), _mask(1), (0.1, 0.1), existing, tmp_path / "new_seg.dcm"),
    ]
    for call in calls:
        with pytest.raises(FileExistsError, match="refusing to overwrite .*taken"):
            call()
    assert existing.read_bytes() == nrrd_existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.dcm", "taken.seg.nrrd"]


def test_failed_writes_leave_nothing(tmp_path, monkeypatch):
    def half_write_then_fail(*args, **kwargs):
        target = next(a for a in (*args, *kwargs.values()) if isinstance(a, str | os.PathLike))
        with open(target, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(slicerio, "write_segmentation", half_write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_seg_nrrd(_mask(1), AFFINE, tmp_path / "m.seg.nrrd")
    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", lambda self, filename, **kw: half_write_then_fail(filename))
    with pytest.raises(OSError, match="No space left"):
        write_dicom_seg(_mask(1), [make_dbt_source(frames=1)], tmp_path / "seg.dcm")
    with pytest.raises(OSError, match="No space left"):
        write_synthetic_image(_image(), (0.1, 0.1), tmp_path / "img.dcm")
    assert list(tmp_path.iterdir()) == []


def test_pair_is_all_or_nothing(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("SEG refused")

    monkeypatch.setattr(synthetic_dicom, "write_dicom_seg", refuse)
    with pytest.raises(ValueError, match="SEG refused"):
        write_synthetic_pair(_image(), _mask(1), (0.1, 0.1), tmp_path / "i.dcm", tmp_path / "s.dcm")
    assert list(tmp_path.iterdir()) == []


def test_write_new_file_never_replaces_a_file_that_appears(tmp_path):
    target = tmp_path / "race.dcm"

    def write_while_another_appears(tmp):
        tmp.write_bytes(b"ours")
        target.write_bytes(b"theirs")

    with pytest.raises(FileExistsError, match="appeared while writing"):
        export_formats.write_new_file(target, write_while_another_appears)
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["race.dcm"]


# --------------------------------------------------------------------------- format names
def test_check_output_formats():
    assert OUTPUT_FORMATS == ("nifti", "seg.nrrd", "dicom_seg")
    assert check_output_formats(" NIfTI, seg.nrrd ,nifti") == ("nifti", "seg.nrrd")
    assert check_output_formats(["DICOM_SEG", "nifti", "dicom_seg"]) == ("dicom_seg", "nifti")
    for bad, message in (("nifti,png", "'png'"), (["seg.nrrd", "dcm"], "'dcm'"), ("", "no output format"),
                         ([], "no output format"), (" , ", "no output format"), ([3], "3")):  # fmt: skip
        with pytest.raises(ValueError, match=message) as err:
            check_output_formats(bad)
        assert "nifti, seg.nrrd, dicom_seg" in str(err.value) and "\n" not in str(err.value)
