"""DICOM images as ``(S, H, W)`` arrays: one (enhanced) multi-frame file, or a folder of single-frame files of one
series.

MONAI's ``PydicomReader`` puts the frames of a multi-frame object on another axis and ignores the functional
groups, hence this reader (pydicom): the frames become the slices (``S = NumberOfFrames``); Rescale Slope/Intercept,
pixel spacing, ``ImagePositionPatient`` and ``FrameLaterality`` are also read from the
``Shared``/``PerFrameFunctionalGroupsSequence`` of enhanced objects (DBT: Breast Tomosynthesis Image Storage);
``MONOCHROME1`` is inverted so that dense tissue is bright. Single-frame series are ordered by
``ImagePositionPatient`` along the slice normal, else by ``InstanceNumber``. Every problem raises
:class:`~scripts.data.case.DataError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .case import DataError

__all__ = ["DICOM_EXTENSIONS", "read_dicom_file", "read_dicom_series"]

DICOM_EXTENSIONS = (".dcm",)


def _first(seq_owner, *names):
    """Walk ``owner.Name1[0].Name2[0]...``; ``None`` when any step is missing or empty."""
    item = seq_owner
    for name in names:
        value = getattr(item, name, None) if item is not None else None
        if value is None:
            return None
        if name.endswith("Sequence"):
            if len(value) == 0:
                return None
            value = value[0]
        item = value
    return item


def _functional(ds, frame: int | None, *names):
    """Attribute from the per-frame functional group of ``frame`` or, failing that, the shared group."""
    if frame is not None:
        per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
        if per_frame is not None and frame < len(per_frame):
            value = _first(per_frame[frame], *names)
            if value is not None:
                return value
    return _first(ds, "SharedFunctionalGroupsSequence", *names)


def _dicom_pixel_spacing(ds) -> tuple[float, float] | None:
    for value in (
        getattr(ds, "PixelSpacing", None),
        _functional(ds, 0, "PixelMeasuresSequence", "PixelSpacing"),
        getattr(ds, "ImagerPixelSpacing", None),  # detector plane: the best left when nothing else is given
    ):
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    return None


def _dicom_slice_spacing_tag(ds) -> float | None:
    for value in (
        getattr(ds, "SpacingBetweenSlices", None),
        _functional(ds, 0, "PixelMeasuresSequence", "SpacingBetweenSlices"),
        getattr(ds, "SliceThickness", None),
        _functional(ds, 0, "PixelMeasuresSequence", "SliceThickness"),
    ):
        if value is not None and float(value) > 0:
            return abs(float(value))
    return None


def _slice_normal(orientation) -> np.ndarray | None:
    if orientation is None or len(orientation) != 6:
        return None
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    return normal if np.linalg.norm(normal) > 0 else None


def _spacing_from_positions(positions: list, normal) -> float | None:
    """Median distance between consecutive slice positions projected on the slice normal (mm)."""
    if normal is None or len(positions) < 2 or any(p is None for p in positions):
        return None
    along = np.sort(np.asarray(positions, float) @ normal)
    steps = np.diff(along)
    steps = steps[steps > 1e-6]
    return float(np.median(steps)) if steps.size else None


def _rescale(frames: np.ndarray, ds, multi: bool) -> np.ndarray:
    """Apply Rescale Slope/Intercept (top level, else functional groups, per frame if they differ)."""
    from pydicom.pixels import apply_modality_lut

    if "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(frames, ds), dtype=np.float32)
    if not multi:
        return frames
    out = None
    for f in range(frames.shape[0]):
        slope = _functional(ds, f, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _functional(ds, f, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is None and intercept is None:
            continue
        if out is None:
            out = frames.astype(np.float32)
        out[f] = frames[f].astype(np.float32) * float(slope if slope is not None else 1.0) + float(intercept or 0.0)
    return frames if out is None else out


def _laterality(ds) -> str | None:
    for value in (
        getattr(ds, "ImageLaterality", None),
        getattr(ds, "Laterality", None),
        _functional(ds, 0, "FrameAnatomySequence", "FrameLaterality"),
    ):
        if value and str(value).upper() in ("L", "R"):
            return str(value).upper()
    return None


def _dcmread(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises InvalidDicomError, AttributeError, ValueError, ... for bad files
        raise DataError(
            f"{path}: cannot read DICOM pixel data (truncated or corrupt?): {type(err).__name__}: {err}"
        ) from err
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1:
        raise DataError(f"{path}: expected a gray DICOM image, got SamplesPerPixel={ds.SamplesPerPixel}")
    return ds, np.asarray(pixels)


def read_dicom_file(path: Path, display: bool = True) -> tuple[np.ndarray, tuple, dict]:
    """One DICOM file (single- or multi-frame) as ``(array (S, H, W), (slice, row, column) spacing mm, info)``.

    ``display``: apply the modality LUT and invert ``MONOCHROME1`` (images); ``False`` keeps stored values (masks).
    ``info`` holds ``format``, ``photometric``, ``inverted`` and, when tagged, ``laterality`` and ``view``.

    Raises:
        DataError: unreadable file, colour data, or pixel data that does not match ``NumberOfFrames``.
    """
    ds, pixels = _dcmread(path)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    multi = n_frames > 1
    if not multi:
        pixels = pixels[None] if pixels.ndim == 2 else pixels
    if pixels.ndim != 3 or pixels.shape[0] != n_frames:
        raise DataError(f"{path}: pixel data of shape {pixels.shape} does not match NumberOfFrames={n_frames}")
    positions = [_functional(ds, f, "PlanePositionSequence", "ImagePositionPatient") for f in range(n_frames)]
    orientation = getattr(ds, "ImageOrientationPatient", None) or _functional(
        ds, 0, "PlaneOrientationSequence", "ImageOrientationPatient"
    )
    slice_spacing = _spacing_from_positions(positions, _slice_normal(orientation)) if multi else None
    return _dicom_finish(path, ds, pixels, multi, slice_spacing, display)


def read_dicom_series(folder: Path, display: bool = True) -> tuple[np.ndarray, tuple, dict]:
    """A folder of single-frame ``.dcm`` files of one series as one volume; same return as :func:`read_dicom_file`.

    Raises:
        DataError: no ``.dcm`` file, files of several series, or slices of different sizes.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(DICOM_EXTENSIONS))
    if not files:
        raise DataError(f"{folder}: no .dcm files in the DICOM series folder")
    slices = [(f, *_dcmread(f)) for f in files]
    if len(slices) == 1:
        return read_dicom_file(files[0], display)
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds, _ in slices}
    if len(series) > 1:
        raise DataError(f"{folder}: .dcm files belong to {len(series)} different series; expected one")
    shapes = {px.shape for _, _, px in slices}
    if len(shapes) > 1 or any(len(s) != 2 for s in shapes):
        raise DataError(f"{folder}: expected single-frame slices of one size, got pixel shapes {sorted(shapes)}")
    normal = _slice_normal(getattr(slices[0][1], "ImageOrientationPatient", None))
    positions = [getattr(ds, "ImagePositionPatient", None) for _, ds, _ in slices]
    if normal is not None and all(p is not None for p in positions):
        order = np.argsort([float(np.dot(np.asarray(p, float), normal)) for p in positions], kind="stable")
        slice_spacing = _spacing_from_positions(positions, normal)
    else:  # no geometry: InstanceNumber, then file name
        order = np.argsort([int(getattr(ds, "InstanceNumber", 0) or 0) for _, ds, _ in slices], kind="stable")
        slice_spacing = None
    slices = [slices[i] for i in order]
    pixels = np.stack([px for _, _, px in slices])
    first = slices[0][1]
    # rescale per slice (values may differ between files), then reuse the common path without a second rescale
    frames = [_rescale(px[None], ds, multi=False)[0] for _, ds, px in slices] if display else list(pixels)
    pixels = np.stack([np.asarray(f, dtype=np.float32) for f in frames]) if display else pixels
    return _dicom_finish(folder, first, pixels, False, slice_spacing, display, rescaled=True)


def _dicom_finish(path, ds, pixels, multi, slice_spacing, display, rescaled=False):
    info = {"format": "dicom", "photometric": str(getattr(ds, "PhotometricInterpretation", "")), "inverted": False}
    if display:
        if not rescaled:
            pixels = _rescale(pixels, ds, multi)
        if info["photometric"] == "MONOCHROME1":  # low values are bright: invert so that dense tissue is bright
            pixels = pixels.max() - pixels
            info["inverted"] = True
    laterality = _laterality(ds)
    if laterality:
        info["laterality"] = laterality
    if getattr(ds, "ViewPosition", None):
        info["view"] = str(ds.ViewPosition)
    row_col = _dicom_pixel_spacing(ds) or (1.0, 1.0)
    s = slice_spacing or _dicom_slice_spacing_tag(ds) or 1.0
    return pixels, (s, row_col[0], row_col[1]), info
