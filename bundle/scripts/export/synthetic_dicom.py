"""Generated 2-D slices as DICOM images that are marked synthetic everywhere a PACS or a reader looks.

SOP class: Secondary Capture Image Storage (1.2.840.10008.5.1.4.1.1.7), built with highdicom ``SCImage``. A generated
slice was never acquired, so the IODs of acquired images would need invented content: Breast Tomosynthesis Image
requires the X-Ray 3D acquisition and reconstruction modules, a Frame of Reference and per-frame plane positions;
Digital Mammography requires detector and exposure attributes. Secondary Capture is the IOD for images that no
modality acquired, and its Conversion Type (0008,0064) has a defined term for this case, ``SYN`` (synthetic image).
The single-frame class rather than Multi-frame Grayscale Word SC because the result is one slice (that class exists
for stacks and adds frame pointers); 16-bit MONOCHROME2 and Pixel Spacing (0028,0030), from the SC Image module's
Basic Pixel Spacing Calibration Macro, fit the plain class, which PACS and viewers widely support and on which highdicom
builds SEGs (without a Frame of Reference, the SEG refers to the image by SOP Instance UID only).

What marks the image synthetic: Synthetic Data (0008,001C) = ``YES``; Image Type (0008,0008) ``DERIVED\\SECONDARY``;
Conversion Type ``SYN``; a Contributing Equipment Sequence (0018,A001) item with Purpose of Reference
(DCM 109100 "Synthesizing Equipment"), the generator's manufacturer and software version (highdicom adds a second
item, DCM 109102 "Processing Equipment", for itself); Patient's Name ``SYNTHETIC^PIG`` and Patient ID ``PIG-SYN-`` +
the first 12 hex digits of the SHA-256 of the Study Instance UID (one synthetic patient per synthetic study, from a
fresh UID, so it matches no hospital's record).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .dicom_seg import write_dicom_seg
from .formats import bundle_version, write_new_file

__all__ = [
    "SYNTHETIC_PATIENT_NAME",
    "SYNTHETIC_PATIENT_ID_PREFIX",
    "synthetic_patient_id",
    "write_synthetic_image",
    "write_synthetic_pair",
]

SYNTHETIC_PATIENT_NAME = "SYNTHETIC^PIG"
SYNTHETIC_PATIENT_ID_PREFIX = "PIG-SYN-"
#: the image's stored values are ``round(65535 * x)``; Rescale Slope maps them back to the generator's [0, 1].
_LEVELS = 65535


def synthetic_patient_id(study_instance_uid: str) -> str:
    """``PIG-SYN-`` + the first 12 hex digits of SHA-256(``study_instance_uid``): 20 characters (Patient ID is LO,
    at most 64), the same for every image of one synthetic study."""
    return SYNTHETIC_PATIENT_ID_PREFIX + hashlib.sha256(study_instance_uid.encode("ascii")).hexdigest()[:12]


def _check_image(image, what: str) -> np.ndarray:
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or min(array.shape) < 1:
        raise ValueError(f"{what}: expected a 2-D image (H, W) or (1, H, W), got shape {np.shape(image)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: image contains NaN or Inf values")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"{what}: image values must lie in [0, 1] (the generator's output range), got [{low:g}, {high:g}]"
        )
    return array


def write_synthetic_image(
    image,
    spacing_mm: Sequence[float] | None,
    path: str | Path,
    *,
    series_description: str = "PIG synthetic pair",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    series_number: int = 1,
    instance_number: int = 1,
    manufacturer: str = "PIG bundle",
    software_version: str | None = None,
    patient_orientation: tuple[str, str] | None = None,
    laterality: str | None = None,
):
    """Write one generated 2-D slice as a synthetic 16-bit Secondary Capture image (see the module docstring).

    Args:
        image: ``(H, W)`` (or ``(1, H, W)``) floats in [0, 1], the generator's output range; stored as unsigned
            16-bit ``round(65535 * x)``, MONOCHROME2 (bright = dense), with Rescale Slope (0028,1053) ``1/65535``
            and Rescale Intercept (0028,1052) 0 so that rescaled values are the generator's [0, 1] again.
        spacing_mm: ``(row, column)`` pixel spacing in mm, written as Pixel Spacing (0028,0030); ``None`` omits it.
        path: new file (``.dcm``).
        series_description: Series Description (0008,103E).
        study_instance_uid, series_instance_uid: join an existing synthetic study / series (e.g. several slices of
            one run); fresh UIDs when ``None``. The SOP Instance UID is always fresh.
        series_number, instance_number: Series Number (0020,0011), Instance Number (0020,0013).
        manufacturer, software_version: Manufacturer (0008,0070) of the image and of its Contributing Equipment
            item; Software Versions (0018,1020), default the bundle version.
        patient_orientation: Patient Orientation (0020,0020) row/column directions (e.g. ``("P", "F")``) when the
            slice's display orientation is known; empty otherwise (Type 2C).
        laterality: Laterality (0020,0060) of the breast, ``"L"`` or ``"R"``, when known; present and empty
            otherwise (Type 2C, required for a paired body part: Body Part Examined (0018,0015) is ``BREAST``).

    Returns:
        The written pydicom Dataset (a highdicom ``SCImage``), written atomically.

    Raises:
        FileExistsError: ``path`` exists (it is never overwritten).
        ValueError: image not 2-D, not finite or outside [0, 1]; spacing not two positive finite numbers;
            laterality not ``"L"``/``"R"``/``None``. The message names ``path``.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid
    from pydicom.valuerep import DS

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"refusing to overwrite {path}")
    array = _check_image(image, str(path))
    if spacing_mm is not None:
        spacing = tuple(float(s) for s in spacing_mm)
        if len(spacing) != 2 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"{path}: spacing_mm must be (row, column) positive mm values, got {tuple(spacing_mm)}")
    else:
        spacing = None
    if laterality not in (None, "L", "R"):
        raise ValueError(f"{path}: laterality must be 'L', 'R' or None, got {laterality!r}")
    pixels = np.round(array * _LEVELS).astype(np.uint16)
    version = software_version or bundle_version()
    study_uid = study_instance_uid or generate_uid()
    now = datetime.datetime.now()
    equipment = hd.ContributingEquipment(
        manufacturer=manufacturer,
        purpose_of_reference=codes.DCM.SynthesizingEquipment,
        manufacturer_model_name="PIG",
        software_versions=version,
        contribution_datetime=now,
        contribution_description="image generated by a diffusion model; not acquired from a patient",
    )
    ds = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation="MONOCHROME2",
        bits_allocated=16,
        coordinate_system="PATIENT",
        study_instance_uid=study_uid,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        patient_id=synthetic_patient_id(study_uid),
        patient_name=SYNTHETIC_PATIENT_NAME,
        study_id="PIGSYN",
        study_date=now.date(),
        study_time=now.time(),
        pixel_spacing=spacing,
        patient_orientation=patient_orientation or ("P", "F"),  # highdicom needs one; emptied below when unknown
        contributing_equipment=[equipment],
        series_description=series_description,
        software_versions=version,
        manufacturer_model_name="PIG",
        content_date=now.date(),
        content_time=now.time(),
    )
    if patient_orientation is None:
        ds.PatientOrientation = None  # Type 2C: present, empty (a generated slice has no known orientation)
    ds.SyntheticData = "YES"
    ds.ConversionType = "SYN"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BodyPartExamined = "BREAST"
    ds.Laterality = laterality
    ds.BurnedInAnnotation = "NO"
    ds.RescaleIntercept = DS(0)
    ds.RescaleSlope = DS(1 / _LEVELS, auto_format=True)
    ds.RescaleType = "US"  # unspecified units: unitless intensity
    write_new_file(path, lambda tmp: ds.save_as(tmp, enforce_file_format=True))
    return ds


def write_synthetic_pair(
    image,
    mask,
    spacing_mm: Sequence[float] | None,
    image_path: str | Path,
    seg_path: str | Path,
    **image_options,
) -> tuple[Path, Path]:
    """Write a generated slice and its mass mask: the image (:func:`write_synthetic_image`) and a DICOM SEG on it
    (:func:`~scripts.export.dicom_seg.write_dicom_seg` with ``synthetic=True``), in the image's study.

    Args:
        image: ``(H, W)`` or ``(1, H, W)`` floats in [0, 1].
        mask: ``(H, W)`` or ``(1, H, W)`` in {0, 1}, on the image's grid.
        spacing_mm: ``(row, column)`` pixel spacing in mm, or ``None``.
        image_path, seg_path: new files.
        **image_options: keyword arguments of :func:`write_synthetic_image` (series description, UIDs, ...).

    Returns:
        ``(image_path, seg_path)`` as :class:`~pathlib.Path`. Both files or neither: when the SEG cannot be
        written, the image written just before is removed.

    Raises:
        FileExistsError: either path exists (checked before anything is written).
        ValueError: as :func:`write_synthetic_image` and :func:`~scripts.export.dicom_seg.write_dicom_seg`.
    """
    image_path, seg_path = Path(image_path), Path(seg_path)
    for target in (image_path, seg_path):
        if target.exists():
            raise FileExistsError(f"refusing to overwrite {target}")
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[None]
    ds = write_synthetic_image(image, spacing_mm, image_path, **image_options)
    try:
        write_dicom_seg(mask, [ds], seg_path, synthetic=True, series_description=f"{ds.SeriesDescription} mask"[:64])
    except BaseException:
        image_path.unlink(missing_ok=True)
        raise
    return image_path, seg_path
