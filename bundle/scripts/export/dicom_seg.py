"""DICOM Segmentation objects (Segmentation Storage, 1.2.840.10008.5.1.4.1.1.66.4) of a lesion mask, with highdicom.

A DICOM SEG is drawn on existing images: it references them (Referenced Series Sequence (0008,1115), per-frame
Derivation Image / Source Image Sequences) and joins their study and patient, so a PACS shows it beside them. The
source is either one multi-frame image (e.g. Breast Tomosynthesis Image Storage 1.2.840.10008.5.1.4.1.1.13.1.3, an
enhanced IOD with functional groups) whose frame ``f`` carries mask slice ``s = f - 1``, or a legacy series of single
frame images given in slice order (``source_datasets[s]`` carries mask slice ``s``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .formats import MASS_SEGMENT, bundle_version, check_mask, write_new_file

__all__ = ["write_dicom_seg", "read_dicom_seg", "source_shape"]

#: Segmentation Storage SOP Class UID.
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def source_shape(source_datasets: Sequence, what: str) -> tuple[int, int, int]:
    """The ``(S, H, W)`` grid of a SEG source: ``(NumberOfFrames, Rows, Columns)`` of one multi-frame image, or
    ``(len(source_datasets), Rows, Columns)`` of a single-frame series.

    Raises:
        ValueError: no datasets, a dataset without Rows/Columns, several datasets that are not all single-frame or
            differ in Rows/Columns; the message names ``what`` (the SEG file).
    """
    datasets = list(source_datasets)
    if not datasets:
        raise ValueError(f"{what}: no source images given; a DICOM SEG must reference the images it segments")
    try:
        sizes = [(int(getattr(ds, "NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)) for ds in datasets]
    except AttributeError as err:
        raise ValueError(f"{what}: source image without Rows/Columns ({err})") from err
    if len(datasets) == 1:
        return sizes[0]
    if any(n != 1 for n, _, _ in sizes) or len({s[1:] for s in sizes}) != 1:
        raise ValueError(
            f"{what}: several source images must be single-frame images of one size (a legacy series), got "
            f"(frames, rows, columns) {sorted(set(sizes))}"
        )
    return (len(datasets), *sizes[0][1:])


def _is_synthetic(datasets: Sequence) -> bool:
    return any(str(getattr(ds, "SyntheticData", "")).upper() == "YES" for ds in datasets)


def _readable_by_highdicom(ds):
    """Drop Pixel Measures items without Slice Thickness from a SEG read in memory.

    DICOM requires Slice Thickness there only when the SEG has a Frame of Reference (PS3.3 C.7.6.16.2.1), so SEGs of
    2-D images without one (highdicom writes them so for Secondary Capture sources) may lack it; highdicom 0.28's
    reader refuses such items. Reading by source frame does not use them.
    """
    if "FrameOfReferenceUID" in ds:
        return ds
    groups = list(ds.get("SharedFunctionalGroupsSequence", [])) + list(ds.get("PerFrameFunctionalGroupsSequence", []))
    for group in groups:
        measures = group.get("PixelMeasuresSequence")
        if measures and "SliceThickness" not in measures[0]:
            del group.PixelMeasuresSequence
    return ds


#: Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) that the SEG copies from its
#: source; some exports leave them out although they must be present (possibly empty).
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")  # fmt: skip


def _with_type2_attributes(ds):
    """``ds``, or a shallow copy with the missing :data:`_TYPE2` attributes present and empty (highdicom needs them)."""
    missing = [name for name in _TYPE2 if name not in ds]
    if not missing:
        return ds
    ds = copy.copy(ds)
    for name in missing:
        setattr(ds, name, None)
    return ds


def write_dicom_seg(
    mask,
    source_datasets: Sequence,
    path: str | Path,
    *,
    algorithm_name: str = "PIG bundle",
    algorithm_version: str | None = None,
    synthetic: bool = False,
    series_description: str = "PIG mass segmentation",
    series_number: int = 900,
) -> Path:
    """Write a binary DICOM SEG with one segment, ``"mass"``, on ``source_datasets``.

    Args:
        mask: ``(S, H, W)`` array in {0, 1}; ``(H, W) = (Rows, Columns)`` of the source and ``S`` its number of
            frames (one multi-frame source) or of images (single-frame series), in the source's order.
        source_datasets: pydicom Datasets in slice order: one multi-frame image, or ``S`` single-frame images of
            one series. They need the Patient, General Study, General Series and Image Pixel attributes; enhanced
            images their functional groups (Pixel Measures, Plane Orientation, Plane Position), which highdicom
            copies into the SEG.
        path: new file (``.dcm``).
        algorithm_name, algorithm_version: Segment Algorithm Name (0062,0009) and the segment's Algorithm
            Identification Sequence (0066,002F): Algorithm Name (0066,0036), Algorithm Version (0066,0031), family
            DCM 123110 "Artificial Intelligence". ``algorithm_version`` defaults to the bundle version
            (:func:`~scripts.export.formats.bundle_version`). The name is also the Manufacturer and Manufacturer
            Model Name, the version the Software Versions.
        synthetic: set Synthetic Data (0008,001C) = ``"YES"`` (highdicom does not write it); also set when any
            source image carries it, since a SEG of a synthetic image describes synthetic content.
        series_description, series_number: of the new SEG series (0008,103E), (0020,0011).

    The SEG (highdicom ``Segmentation``, Segmentation Type BINARY): segment 1 labelled ``"mass"``, category SCT
    49755003, type SCT 4147007 "Mass" (``codes.SCT.Mass``), Segment Algorithm Type AUTOMATIC, display colour of
    :data:`~scripts.export.formats.MASS_SEGMENT`; empty frames are omitted (highdicom's default). New Series and SOP
    Instance UIDs; Study Instance UID, patient and Frame of Reference are the source's.

    Returns:
        ``path`` as a :class:`~pathlib.Path`, written atomically (temporary file in the same folder).

    Raises:
        FileExistsError: ``path`` exists (it is never overwritten).
        ValueError: mask not ``(S, H, W)`` in {0, 1}, or its shape differs from the source grid (see
            :func:`source_shape`); highdicom refusing the sources (e.g. missing attributes, mixed studies). The
            message names ``path``.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"refusing to overwrite {path}")
    mask = check_mask(mask, str(path))
    datasets = [_with_type2_attributes(ds) for ds in source_datasets]
    expected = source_shape(datasets, str(path))
    if mask.shape != expected:
        raise ValueError(
            f"{path}: mask shape {mask.shape} does not match the source images' (frames, rows, columns) {expected}"
        )
    version = algorithm_version or bundle_version()
    info = MASS_SEGMENT
    description = hd.seg.SegmentDescription(
        segment_number=info.label_value,
        segment_label=info.name,
        segmented_property_category=hd.sr.CodedConcept(info.category[1], info.category[0], info.category[2]),
        segmented_property_type=codes.SCT.Mass,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm_name, family=codes.DCM.ArtificialIntelligence, version=version
        ),
        display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in info.color)),
    )
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=mask,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[description],
            series_instance_uid=generate_uid(),
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer=algorithm_name,
            manufacturer_model_name=algorithm_name,
            software_versions=version,
            device_serial_number="1",  # Type 1 (Enhanced General Equipment); software has no serial number
            content_label="MASS",
            content_description=f"{info.name} segmentation by {algorithm_name}"[:64],
            series_description=series_description,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise ValueError(f"{path}: highdicom cannot build a SEG on these source images: {err}") from err
    if "FrameOfReferenceUID" not in seg and "PatientOrientation" not in seg:
        # General Image (0020,0020) is Type 2C without plane geometry (e.g. a Secondary Capture source): the source's
        # value, else present and empty.
        seg.PatientOrientation = datasets[0].get("PatientOrientation") or None
    if synthetic or _is_synthetic(datasets):
        seg.SyntheticData = "YES"
    return write_new_file(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


def read_dicom_seg(path: str | Path, source_datasets: Sequence, segment: str = MASS_SEGMENT.name) -> np.ndarray:
    """Read a DICOM SEG's segment as a mask on its source images' grid.

    Args:
        path: a DICOM Segmentation file.
        source_datasets: the images it was drawn on, as for :func:`write_dicom_seg` (their order sets the order of
            the returned slices).
        segment: Segment Label (0062,0005) of the segment to return (the first of that label).

    Returns:
        uint8 ``(S, H, W)`` in {0, 1}: frame ``s + 1`` of a multi-frame source, or ``source_datasets[s]``; frames
        the SEG omitted (empty) are zeros. Read with highdicom ``segread`` and ``get_pixels_by_source_frame`` /
        ``get_pixels_by_source_instance``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a Segmentation file, no such segment, a SEG that does not reference these source images,
            or a SEG whose Rows/Columns differ from the source's; the message names ``path``.
    """
    import highdicom as hd
    import pydicom

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    datasets = list(source_datasets)
    frames, rows, cols = source_shape(datasets, str(path))
    try:
        seg = hd.seg.Segmentation.from_dataset(_readable_by_highdicom(pydicom.dcmread(path)), copy=False)
    except Exception as err:  # pydicom / highdicom raise several types for non-SEG or broken files
        raise ValueError(f"{path}: not a readable DICOM Segmentation: {type(err).__name__}: {err}") from err
    if (int(seg.Rows), int(seg.Columns)) != (rows, cols):
        raise ValueError(f"{path}: SEG frames are {seg.Rows}x{seg.Columns}, the source images {rows}x{cols}")
    labels = {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}
    numbers = [n for n, label in labels.items() if label == segment]
    if not numbers:
        raise ValueError(f"{path}: no segment labelled {segment!r}; segments present: {sorted(labels.values())}")
    referenced = {str(uid) for _, _, uid in seg.get_source_image_uids()}
    if not referenced & {str(ds.SOPInstanceUID) for ds in datasets}:
        # frames the SEG omits are read as empty below, so an unrelated source would read as an empty mask
        raise ValueError(f"{path}: SEG does not match these source images: it references none of them")
    try:
        if len(datasets) == 1 and "NumberOfFrames" in datasets[0]:  # multi-frame IOD: frames are referenced by number
            pixels = seg.get_pixels_by_source_frame(
                source_sop_instance_uid=datasets[0].SOPInstanceUID,
                source_frame_numbers=list(range(1, frames + 1)),
                segment_numbers=numbers[:1],
                combine_segments=True,
                assert_missing_frames_are_empty=True,  # the writer omits empty frames (highdicom's default)
            )
        else:
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[ds.SOPInstanceUID for ds in datasets],
                segment_numbers=numbers[:1],
                combine_segments=True,
                assert_missing_frames_are_empty=True,  # the writer omits empty frames (highdicom's default)
            )
    except (ValueError, KeyError, IndexError, RuntimeError) as err:
        raise ValueError(f"{path}: SEG does not match these source images: {err}") from err
    return np.ascontiguousarray(np.asarray(pixels) > 0, dtype=np.uint8).reshape(frames, rows, cols)
