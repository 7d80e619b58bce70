"""DICOM images as ``(S, H, W)`` arrays: one (enhanced) multi-frame file, or a folder of single-frame files of one
series; and their source datasets (for DICOM SEG objects that reference them).

MONAI's ``PydicomReader`` puts the frames of a multi-frame object on another axis and ignores the functional
groups, hence this reader (pydicom): the frames become the slices (``S = NumberOfFrames``, in file order).
Enhanced objects (DBT: Breast Tomosynthesis Image Storage, 1.2.840.10008.5.1.4.1.1.13.1.3) carry their per-frame
attributes in the Per-Frame (5200,9230) or Shared (5200,9229) Functional Groups Sequence (PS3.3 C.7.6.16); every
attribute below is looked up there first (per-frame item, then shared item), then at the top level (classic files).

Display pipeline (``display=True``, images; masks keep their stored values), PS3.3 C.11 / PS3.4 N.2.1:

1. modality LUT (PS3.3 C.11.1): Rescale Slope (0028,1053) / Intercept (0028,1052) per frame from the Pixel Value
   Transformation Sequence (0028,9145), else top level (or a Modality LUT Sequence (0028,3000), pydicom
   ``apply_modality_lut``); a series is rescaled file by file.
2. VOI LUT (PS3.3 C.11.2) per frame: the first Window Center (0028,1050) / Width (0028,1051) with VOI LUT Function
   (0028,1056) ``LINEAR`` / ``LINEAR_EXACT`` / ``SIGMOID`` (C.11.2.1.2, C.11.2.1.3) from the Frame VOI LUT Sequence
   (0028,9132), else the top level; or a VOI LUT Sequence (0028,3010) table (preferred over a window when both are
   given, as pydicom does). pydicom ``apply_windowing`` / ``apply_voi``. See :func:`read_dicom_file` for the output
   range and the all-or-nothing rule.
3. ``MONOCHROME1`` (low values bright) is inverted so that dense tissue is bright.

Geometry: spacing ``(slice, row, column)`` mm and, when Image Orientation (0020,0037) and Image Position (Patient)
(0020,0032) are given, ``info["affine_ras"]`` (index ``(s, h, w, 1)`` → RAS mm, as the NIfTI/ITK readers give).
Single-frame series are ordered by ``ImagePositionPatient`` along the slice normal, else by Instance Number
(0020,0013), then file name. Every problem raises :class:`~scripts.data.case.DataError` naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .case import DataError

__all__ = [
    "DICOM_EXTENSIONS",
    "read_dicom_file",
    "read_dicom_series",
    "read_dicom_datasets",
    "dicom_affine_ras",
    "dicom_patient_id",
]

logger = logging.getLogger(__name__)

DICOM_EXTENSIONS = (".dcm",)
#: DICOM patient coordinates (LPS: +x left, +y posterior, +z head) → RAS, the NIfTI/ITK readers' convention.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _first(seq_owner, *names):
    """Walk ``owner.Name1[0].Name2[0]...``; ``None`` when any step is missing or empty."""
    item = seq_owner
    for name in names:
        value = getattr(item, name, None) if item is not None else None
        if value is None or (isinstance(value, str) and not value.strip()):
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


def _first_value(value):
    """The first of a multi-valued element (VM > 1: pydicom ``MultiValue``), else the value itself."""
    if isinstance(value, (str, bytes)):
        return value
    try:
        return value[0]
    except (TypeError, IndexError):
        return value


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
        if value is not None and value != "" and float(value) > 0:
            return abs(float(value))
    return None


def _orientation(ds, frame: int | None = 0):
    """Image Orientation (Patient) (0020,0037): functional groups of ``frame``, else top level; ``None``."""
    value = _functional(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    if value is None:
        value = getattr(ds, "ImageOrientationPatient", None)
    return value if value is not None and len(value) == 6 else None


def _position(ds, frame: int | None):
    """Image Position (Patient) (0020,0032) of ``frame``: functional groups, else top level; ``None``."""
    value = _functional(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    if value is None:
        value = getattr(ds, "ImagePositionPatient", None)
    return value if value is not None and len(value) == 3 else None


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


def dicom_affine_ras(positions: list, orientation, row_col_spacing: tuple, slice_spacing: float) -> np.ndarray | None:
    """The ``(s, h, w, 1)`` index → RAS mm affine (4×4 float64) of DICOM slices in array order.

    PS3.3 C.7.6.2.1.1: the first three values of Image Orientation (Patient) (0020,0037) are the direction of
    increasing COLUMN index (along a row), the last three that of increasing ROW index; Pixel Spacing (0028,0030) is
    ``(between rows, between columns)``. So ``w`` moves by ``column spacing × IOP[:3]``, ``h`` by
    ``row spacing × IOP[3:]``, and ``s`` by ``(IPP[last] - IPP[first]) / (S - 1)`` (the mean step of the slices in
    array order, so its sign follows the data), or ``slice_spacing × (IOP[:3] × IOP[3:])`` for one slice or
    coincident positions. Origin: ``IPP`` of slice 0. LPS is then mapped to RAS (``diag(-1, -1, 1)``).

    Args:
        positions: ``ImagePositionPatient`` (3 mm values, LPS) of every slice, in array order.
        orientation: the 6 direction cosines of ``ImageOrientationPatient``.
        row_col_spacing: ``(row spacing, column spacing)`` mm.
        slice_spacing: mm, used only when the positions give no step.

    Returns:
        The affine, or ``None`` when a position or the orientation is missing or degenerate.
    """
    normal = _slice_normal(orientation)
    if normal is None or not positions or any(p is None for p in positions):
        return None
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    pos = np.asarray(positions, float)
    step = (pos[-1] - pos[0]) / (len(pos) - 1) if len(pos) > 1 else np.zeros(3)
    if np.linalg.norm(step) < 1e-6:
        step = normal / np.linalg.norm(normal) * float(slice_spacing)
    lps = np.eye(4)
    lps[:3, 0] = step
    lps[:3, 1] = col_dir * float(row_col_spacing[0])  # h: down the rows, between-rows spacing
    lps[:3, 2] = row_dir * float(row_col_spacing[1])  # w: along a row, between-columns spacing
    lps[:3, 3] = pos[0]
    ras = np.eye(4)
    ras[:3] = LPS_TO_RAS @ lps[:3]
    return ras


# --------------------------------------------------------------------------- modality and VOI LUTs
def _rescale(frame_px: np.ndarray, ds, frame: int | None) -> np.ndarray:
    """Modality LUT of one frame (PS3.3 C.11.1): functional-group Rescale Slope/Intercept, else top level."""
    from pydicom.pixels import apply_modality_lut

    item = _functional(ds, frame, "PixelValueTransformationSequence")
    if item is not None and ("RescaleSlope" in item or "RescaleIntercept" in item):
        slope, intercept = getattr(item, "RescaleSlope", 1.0), getattr(item, "RescaleIntercept", 0.0)
    elif ds.get("ModalityLUTSequence"):
        return np.asarray(apply_modality_lut(frame_px, ds), dtype=np.float32)
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope, intercept = ds.get("RescaleSlope", 1.0), ds.get("RescaleIntercept", 0.0)
    else:
        return frame_px.astype(np.float32)
    slope = 1.0 if slope in (None, "") else float(slope)
    intercept = 0.0 if intercept in (None, "") else float(intercept)
    return frame_px.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _stored_range(ds) -> tuple[float, float]:
    """Output range of a window: the stored-value range (Bits Stored (0028,0101), Pixel Representation (0028,0103)),
    or ``[0, 2^n - 1]`` of a Modality LUT's ``n`` bits (PS3.3 C.11.1.1.1), as pydicom ``apply_windowing`` uses."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", None) or ds.get("BitsAllocated", None) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 0:
        return 0.0, float(2**bits - 1)
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)


def _voi_source(ds, frame: int | None):
    """Where the VOI LUT of ``frame`` is: the Frame VOI LUT item (0028,9132), else the dataset itself (top level)."""
    item = _functional(ds, frame, "FrameVOILUTSequence")
    if item is not None and (item.get("WindowCenter") is not None or item.get("VOILUTSequence")):
        return item
    return ds


def _voi_spec(ds, frame: int | None):
    """``("lut", item)``, ``("window", (centre, width, function))`` or ``None`` for one frame (first values)."""
    src = _voi_source(ds, frame)
    lut = src.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None:
        return "lut", lut[0]
    centre, width = src.get("WindowCenter"), src.get("WindowWidth")
    if centre is None or width is None or centre == "" or width == "":
        return None
    function = str(src.get("VOILUTFunction", None) or "LINEAR").upper()
    return "window", (float(_first_value(centre)), float(_first_value(width)), function)  # several: the first


def _apply_voi(values: np.ndarray, ds, spec) -> tuple[np.ndarray, tuple[float, float]]:
    """One frame's modality output through its VOI LUT (pydicom); returns ``(float32 frame, (ymin, ymax))``."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_voi, apply_windowing

    kind, value = spec
    voi = Dataset()  # the minimal dataset pydicom reads; no rescale tags: the window's range is the stored one
    voi.PhotometricInterpretation = "MONOCHROME2"
    if kind == "window":
        y_range = _stored_range(ds)
        voi.BitsStored = int(ds.get("BitsStored", None) or ds.get("BitsAllocated", None) or 16)
        voi.PixelRepresentation = int(ds.get("PixelRepresentation", 0) or 0)
        if ds.get("ModalityLUTSequence"):
            voi.ModalityLUTSequence = ds.ModalityLUTSequence
        voi.WindowCenter, voi.WindowWidth, voi.VOILUTFunction = value
        out = apply_windowing(values.astype(np.float64), voi)
        return out.astype(np.float32), y_range
    descriptor = [int(v) for v in value.LUTDescriptor]
    entries, first_map = descriptor[0] or 2**16, descriptor[1]
    if getattr(ds, "file_meta", None) is not None:
        voi.file_meta = ds.file_meta  # endianness of OW LUT Data
    voi.VOILUTSequence = [value]
    # the table is indexed by integers: clip first (pydicom's uint index would wrap beyond 2^16)
    index = np.clip(np.rint(values), first_map, first_map + entries - 1).astype(np.int64)
    out = apply_voi(index, voi)
    return out.astype(np.float32), (0.0, float(2 ** descriptor[2] - 1))


def _display(path, pixels: np.ndarray, sources: list) -> tuple[np.ndarray, dict]:
    """Modality LUT, VOI LUT and ``MONOCHROME1`` inversion, frame by frame; ``sources[i] = (dataset, frame index or
    None)`` says where frame ``i``'s attributes are. Returns ``(float32 (S, H, W), info)``."""
    try:
        frames = [_rescale(pixels[i], ds, frame) for i, (ds, frame) in enumerate(sources)]
    except (ValueError, TypeError) as err:
        raise DataError(f"{path}: invalid Rescale Slope/Intercept (0028,1053)/(0028,1052): {err}") from err
    info: dict = {"voi": None, "voi_windows": []}
    ranges: list = [None] * len(frames)
    try:
        specs = [_voi_spec(ds, frame) for ds, frame in sources]
    except (ValueError, TypeError) as err:  # e.g. a Window Center that is no number
        logger.warning("%s: invalid VOI LUT (%s); none is applied (modality values kept)", path, err)
        specs = [None] * len(frames)
    if any(s is not None for s in specs):
        # all or nothing: windowing only some frames would put the slices of one volume on different scales
        if any(s is None for s in specs):
            logger.warning("%s: VOI LUT on only some frames; none is applied (modality values kept)", path)
        else:
            try:
                done = [_apply_voi(f, ds, s) for f, (ds, _), s in zip(frames, sources, specs, strict=True)]
            except (ValueError, TypeError, NotImplementedError, AttributeError, KeyError) as err:
                # e.g. Window Width 0 or an unknown VOI LUT Function: keep modality values rather than reject
                logger.warning("%s: invalid VOI LUT (%s); none is applied (modality values kept)", path, err)
            else:
                frames, ranges = [d[0] for d in done], [d[1] for d in done]
                kinds = {s[0] for s in specs}
                info["voi"] = "lut" if "lut" in kinds else "window"
                info["voi_windows"] = [tuple(s[1]) if s[0] == "window" else None for s in specs]
                info["voi_range"] = (min(r[0] for r in ranges), max(r[1] for r in ranges))
    out = np.stack(frames).astype(np.float32, copy=False)
    photometric = str(getattr(sources[0][0], "PhotometricInterpretation", ""))
    info["inverted"] = photometric == "MONOCHROME1"
    if info["inverted"]:  # low values are bright: invert so that dense tissue is bright
        if info["voi"] is not None:  # within each frame's VOI output range: [ymin, ymax] stays [ymin, ymax]
            for i, (y_min, y_max) in enumerate(ranges):
                out[i] = np.float32(y_max + y_min) - out[i]
        else:  # no VOI output range: mirror at the data maximum (min becomes max - min, max 0)
            out = out.max() - out
    return out, info


# --------------------------------------------------------------------------- files and series
def _laterality(ds) -> str | None:
    for value in (
        getattr(ds, "ImageLaterality", None),
        getattr(ds, "Laterality", None),
        _functional(ds, 0, "FrameAnatomySequence", "FrameLaterality"),
    ):
        if value and str(value).upper() in ("L", "R"):
            return str(value).upper()
    return None


def _dcmread(path: Path, pixels: bool = True):
    import pydicom

    ds = None
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=not pixels)
        array = np.asarray(ds.pixel_array) if pixels else None
    except Exception as err:  # pydicom raises InvalidDicomError, AttributeError, ValueError, ... for bad files
        what = "pixel data" if pixels else "header"
        reason = f"{type(err).__name__}: {err}"
        if "missing dependencies" in str(err):  # pydicom found no installed decoder: the file may be fine
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            name = getattr(syntax, "name", None) or "its transfer syntax"
            needs = " ".join(line.strip() for line in str(err).splitlines()[1:]) or "a pydicom pixel-data plugin"
            raise DataError(
                f"{path}: no decoder installed for its compressed pixel data ({name}); install it: {needs} "
                "(e.g. pip install pylibjpeg pylibjpeg-openjpeg)"
            ) from err
        raise DataError(f"{path}: cannot read DICOM {what} (truncated or corrupt?): {reason}") from err
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise DataError(f"{path}: expected a gray DICOM image, got SamplesPerPixel={ds.SamplesPerPixel}")
    return ds, array


def _series_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(DICOM_EXTENSIONS))
    if not files:
        raise DataError(f"{folder}: no .dcm files in the DICOM series folder")
    return files


def _series_order(folder: Path, datasets: list) -> tuple[list[int], float | None]:
    """Slice order of a single-frame series (by ``ImagePositionPatient`` along the first file's normal, else by
    ``InstanceNumber``; ties keep file-name order) and the slice spacing from the positions (``None``).

    Raises:
        DataError: files of several series (Series Instance UID (0020,000E)).
    """
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        raise DataError(f"{folder}: .dcm files belong to {len(series)} different series; expected one")
    normal = _slice_normal(_orientation(datasets[0], None))
    positions = [_position(ds, None) for ds in datasets]
    if normal is not None and all(p is not None for p in positions):
        order = np.argsort([float(np.dot(np.asarray(p, float), normal)) for p in positions], kind="stable")
        return [int(i) for i in order], _spacing_from_positions(positions, normal)
    order = np.argsort([int(getattr(ds, "InstanceNumber", 0) or 0) for ds in datasets], kind="stable")
    return [int(i) for i in order], None


def _finish(path, ds, pixels, sources, positions, orientation, slice_spacing, display):
    """Common end of both readers: display transforms, spacing, affine and the tags ``info`` reports."""
    info = {"format": "dicom", "photometric": str(getattr(ds, "PhotometricInterpretation", "")), "inverted": False}
    if display:
        pixels, display_info = _display(path, pixels, sources)
        info.update(display_info)
    laterality = _laterality(ds)
    if laterality:
        info["laterality"] = laterality
    if getattr(ds, "ViewPosition", None):
        info["view"] = str(ds.ViewPosition)
    row_col = _dicom_pixel_spacing(ds) or (1.0, 1.0)
    s = slice_spacing or _dicom_slice_spacing_tag(ds) or 1.0
    affine = dicom_affine_ras(positions, orientation, row_col, s)
    if affine is not None:
        info["affine_ras"] = affine
    return pixels, (s, row_col[0], row_col[1]), info


def read_dicom_file(path: Path, display: bool = True) -> tuple[np.ndarray, tuple, dict]:
    """One DICOM file (single- or multi-frame) as ``(array (S, H, W), (slice, row, column) spacing mm, info)``.

    Frames are the slices, in file order (``S`` = Number of Frames (0028,0008), 1 for a classic file).

    ``display=True`` (images): per frame, the modality LUT, then the VOI LUT, then ``MONOCHROME1`` inversion (see the
    module docstring); the result is float32. A window maps to ``[ymin, ymax]`` = the stored-value range
    (``[0, 2^BitsStored - 1]`` unsigned, ``[-2^(BitsStored-1), 2^(BitsStored-1) - 1]`` signed; PS3.3 leaves the
    output range to the application, and a common one keeps frames with different rescales on one scale); a VOI
    LUT table maps to ``[0, 2^n - 1]`` (``n``: its LUT Descriptor's third value). The VOI LUT is applied only when
    every frame has a valid one (none, partial or invalid, e.g. Window Width 0: modality values are kept and a
    warning is logged). ``MONOCHROME1`` is inverted as ``ymax + ymin - value`` after a VOI LUT (range kept), else
    as ``max - value``. ``display=False`` (masks): stored values, unchanged dtype.

    ``info``: ``format`` (``"dicom"``), ``photometric``, ``inverted``, ``affine_ras`` (4×4, index ``(s, h, w, 1)`` →
    RAS mm, see :func:`dicom_affine_ras`; only with orientation and positions), ``laterality`` (``"L"``/``"R"``
    from Image Laterality (0020,0062), Laterality (0020,0060) or Frame Laterality (0020,9072)), ``view`` (View
    Position (0018,5101)); with ``display``: ``voi`` (``"window"``, ``"lut"`` or ``None``), ``voi_windows`` (per
    frame ``(centre, width, function)``, ``None`` for a table frame; ``[]`` without VOI) and ``voi_range``
    (``(ymin, ymax)``, with VOI only). Spacing: rows/columns from Pixel Spacing (0028,0030) (top level or Pixel
    Measures), else Imager Pixel Spacing (0018,1164), else 1; slices from the frame positions, else Spacing Between
    Slices (0018,0088), else Slice Thickness (0018,0050), else 1.

    Raises:
        DataError: unreadable file, colour data, or pixel data that does not match ``NumberOfFrames``.
    """
    ds, pixels = _dcmread(path)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if n_frames == 1 and pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or pixels.shape[0] != n_frames:
        raise DataError(f"{path}: pixel data of shape {pixels.shape} does not match NumberOfFrames={n_frames}")
    positions = [_position(ds, f) for f in range(n_frames)]
    orientation = _orientation(ds, 0)
    slice_spacing = _spacing_from_positions(positions, _slice_normal(orientation)) if n_frames > 1 else None
    sources = [(ds, f) for f in range(n_frames)]
    return _finish(path, ds, pixels, sources, positions, orientation, slice_spacing, display)


def read_dicom_series(folder: Path, display: bool = True) -> tuple[np.ndarray, tuple, dict]:
    """A folder of single-frame ``.dcm`` files of one series as one volume; same return as :func:`read_dicom_file`.

    Slices are ordered as :func:`read_dicom_datasets` returns them; each file gets its own rescale and VOI LUT
    (classic files carry them per file); the affine uses the first file's orientation (omitted when the files'
    orientations differ by more than 1e-3).

    Raises:
        DataError: no ``.dcm`` file, an unreadable file, files of several series, or slices of different sizes.
    """
    files = _series_files(folder)
    if len(files) == 1:
        return read_dicom_file(files[0], display)
    slices = [(f, *_dcmread(f)) for f in files]
    shapes = {px.shape for _, _, px in slices}
    if len(shapes) > 1 or any(len(s) != 2 for s in shapes):
        raise DataError(f"{folder}: expected single-frame slices of one size, got pixel shapes {sorted(shapes)}")
    order, slice_spacing = _series_order(folder, [ds for _, ds, _ in slices])
    slices = [slices[i] for i in order]
    datasets = [ds for _, ds, _ in slices]
    pixels = np.stack([px for _, _, px in slices])
    orientation = _orientation(datasets[0], None)
    others = [_orientation(ds, None) for ds in datasets[1:]]
    if orientation is not None and any(o is None or not np.allclose(o, orientation, atol=1e-3) for o in others):
        orientation = None  # not one volume geometrically: no affine rather than a wrong one
    positions = [_position(ds, None) for ds in datasets]
    sources = [(ds, None) for ds in datasets]
    return _finish(folder, datasets[0], pixels, sources, positions, orientation, slice_spacing, display)


def read_dicom_datasets(path: str | Path) -> list:
    """The source ``pydicom.Dataset`` objects of a DICOM image, in the slice order of ``read_array(path)``.

    One item for a file (a multi-frame object's frames are its slices, in frame order); for a folder of single-frame
    files, the files sorted as :func:`read_dicom_series` sorts them. Read with pydicom ``dcmread(...,
    stop_before_pixels=True)``: the Pixel Data (7FE0,0010) is dropped (a DICOM SEG needs only the header: UIDs,
    frame of reference, geometry, functional groups; highdicom accepts such datasets); ``ds.filename`` is the file.

    Raises:
        DataError: missing path, an unreadable file or no ``.dcm`` file (the message names it), files of several
            series.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    files = _series_files(path) if path.is_dir() else [path]
    datasets = [_dcmread(f, pixels=False)[0] for f in files]
    if len(datasets) == 1:
        return datasets
    order, _ = _series_order(path, datasets)
    return [datasets[i] for i in order]


def dicom_patient_id(path: str | Path) -> str | None:
    """Patient ID (0010,0020) of a DICOM image (file or series folder); ``None`` when absent or empty.

    The value is identifying: pseudonymise it (:func:`scripts.data.pseudonym.pseudonymise`) before it goes anywhere.

    Raises:
        DataError: as :func:`read_dicom_datasets`, or files of one series with different Patient IDs (the message
            names the folder and the count, never the IDs).
    """
    ids = {str(getattr(ds, "PatientID", "") or "").strip() for ds in read_dicom_datasets(path)}
    if len(ids) > 1:
        raise DataError(f"{path}: the .dcm files hold {len(ids)} different Patient IDs (0010,0020); expected one")
    value = ids.pop()
    return value or None
