"""Read image volumes and lesion masks from disk into ``(S, H, W)`` arrays and :class:`Case` records.

Axis convention (the one :class:`~scripts.data.case.Case` fixes): axis 0 runs through the slices (DBT
reconstruction planes), axes 1 and 2 are the in-plane rows and columns; spacing is ``(slice, row, column)`` in mm.

Formats:
    * NIfTI (``.nii``, ``.nii.gz``, nibabel): a 3-D ``(X, Y, Z)`` volume becomes ``(S=Z, H=X, W=Y)``; 2-D: ``S = 1``.
    * NRRD / MetaImage (``.nrrd``, ``.mha``, ``.mhd``, ITK): ITK arrays are ``(Z, Y, X)`` → ``(S=Z, H=Y, W=X)``.
    * PNG / JPEG (Pillow): ``(H, W)`` → ``S = 1``; colour is converted to gray (ITU-R 601 luma); 8/16-bit kept.
    * DICOM (pydicom, :mod:`scripts.data.dicom`): a folder of single-frame ``.dcm`` files forming one series, or
      one (enhanced) multi-frame file whose frames become the slices (``S = NumberOfFrames``).

Every problem raises :class:`~scripts.data.case.DataError` with the offending file in the message.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from .case import Case, DataError
from .dicom import DICOM_EXTENSIONS, read_dicom_file, read_dicom_series

__all__ = [
    "IMAGE_EXTENSIONS",
    "SHW_TO_NIFTI",
    "implied_affine_ras",
    "itk_pixel_spacing",
    "split_extension",
    "read_array",
    "read_image",
    "read_mask",
    "check_mask",
    "check_pair",
    "read_case",
]

logger = logging.getLogger(__name__)

NIFTI_EXTENSIONS = (".nii.gz", ".nii")
ITK_EXTENSIONS = (".nrrd", ".mha", ".mhd")
PIL_EXTENSIONS = (".png", ".jpg", ".jpeg")
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
#: every file extension the readers accept (a DICOM series is a folder of ``.dcm`` files).
IMAGE_EXTENSIONS = NIFTI_EXTENSIONS + ITK_EXTENSIONS + PIL_EXTENSIONS + DICOM_EXTENSIONS


def split_extension(path: str | Path) -> tuple[str, str]:
    """Split ``path``'s file name into ``(stem, extension)``, knowing the double extension ``.nii.gz``.

    The extension is lower-cased; a name without a known extension returns ``(name, "")``.
    """
    name = Path(path).name
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)], ext
    return name, ""


def _finish(array: np.ndarray, spacing, path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Check a read array is a finite ``(S, H, W)`` volume; floats become float32."""
    if array.ndim != 3 or min(array.shape) < 1:
        raise DataError(f"{path}: expected a 2-D or 3-D image, got array of shape {array.shape}")
    if array.dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
        if not np.isfinite(array).all():
            n_bad = int(array.size - np.isfinite(array).sum())
            raise DataError(
                f"{path}: file contains NaN or Inf pixel values ({n_bad} of {array.size} pixels); "
                "replace them (e.g. by the background value) before preparing the data"
            )
    elif array.dtype.kind == "b":
        array = array.astype(np.uint8)
    elif array.dtype.kind not in "ui":
        raise DataError(f"{path}: unsupported pixel type {array.dtype}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise DataError(f"{path}: invalid voxel spacing {spacing}")
    return np.ascontiguousarray(array), spacing


# --------------------------------------------------------------------------- NIfTI
#: the project's ``(s, h, w, 1)`` index as NIfTI's ``(x, y, z, 1)`` voxel: ``x = h``, ``y = w``, ``z = s`` (a NIfTI
#: affine times this matrix is an ``affine_ras``; its transpose maps back).
SHW_TO_NIFTI = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)

def _read_nifti(path: Path) -> tuple[np.ndarray, tuple, dict]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)  # stored dtype (scaled to float only when scl_slope is set)
    except Exception as err:  # nibabel raises many types for truncated/corrupt files
        raise DataError(f"{path}: cannot read NIfTI file (truncated or corrupt?): {type(err).__name__}: {err}") from err
    zooms = tuple(float(z) for z in img.header.get_zooms())
    while data.ndim > 3 and data.shape[-1] == 1:  # trailing singleton dims (e.g. (X, Y, Z, 1)) carry nothing
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise DataError(
            f"{path}: expected a 2-D or 3-D NIfTI image, got shape {data.shape}; save one gray 3-D volume (or 2-D "
            "slice) per case, not a 4-D series"
        )
    zooms = (zooms + (1.0, 1.0, 1.0))[:3]
    # (X, Y, Z) -> (S=Z, H=X, W=Y); the affine maps (x, y, z) = (h, w, s) indices to RAS mm.
    array = np.transpose(data, (2, 0, 1))
    affine_shw = np.asarray(img.affine, dtype=np.float64) @ SHW_TO_NIFTI
    return array, (zooms[2], zooms[0], zooms[1]), {"format": "nifti", "affine_ras": affine_shw}


# --------------------------------------------------------------------------- ITK
def _itk_reason(err: Exception) -> str:
    """ITK's multi-line exception text without the C++ source location: its last two informative lines."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if not re.search(r"\.(cxx|hxx|h):\d+:?$", line)]
    return f"{type(err).__name__}: " + " ".join(lines[-2:])


def _read_itk(path: Path) -> tuple[np.ndarray, tuple, dict]:
    import itk

    try:
        img = itk.imread(str(path))
        data = np.asarray(itk.array_from_image(img))
    except Exception as err:
        raise DataError(f"{path}: cannot read image with ITK (truncated or corrupt file?): {_itk_reason(err)}") from err
    ndim = img.GetImageDimension()
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{path}: expected a scalar (gray) image, got {img.GetNumberOfComponentsPerPixel()} components")
    if ndim == 2:
        data = data[None]
    if data.ndim != 3 or ndim not in (2, 3):
        raise DataError(
            f"{path}: expected a 2-D or 3-D image, got {ndim}-D of shape {data.shape}; save one gray 3-D volume (or "
            "2-D slice) per case"
        )
    spacing_xyz = [float(s) for s in img.GetSpacing()] + [1.0] * (3 - ndim)
    origin = [float(o) for o in img.GetOrigin()] + [0.0] * (3 - ndim)
    direction = np.eye(3)
    direction[:ndim, :ndim] = np.asarray(itk.array_from_matrix(img.GetDirection()), dtype=np.float64)
    # index (i, j, k) = (x, y, z) = (w, h, s) -> LPS mm; convert to an (s, h, w) -> RAS affine like NIfTI's.
    affine_xyz = np.eye(4)
    affine_xyz[:3, :3] = direction @ np.diag(spacing_xyz)
    affine_xyz[:3, 3] = origin
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0  # (s, h, w, 1) -> (x, y, z, 1)
    info = {"format": "itk", "affine_ras": lps_to_ras @ affine_xyz @ perm}
    return data, (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]), info


# --------------------------------------------------------------------------- PNG / JPEG
def implied_affine_ras(spacing) -> np.ndarray:
    """The geometry ITK, and so 3D Slicer, gives a file that has none (PNG, JPEG): origin 0, identity direction in
    LPS, ``spacing``. Results written with it open on top of the file in Slicer.

    Args:
        spacing: ``(slice, row, column)`` mm.

    Returns:
        ``(4, 4)`` index ``(s, h, w, 1)`` → RAS mm: ``(-w·column, -h·row, s·slice)``.
    """
    s, r, c = (float(v) for v in spacing)
    return np.array([[0, 0, -c, 0], [0, -r, 0, 0], [s, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def itk_pixel_spacing(path: str | Path) -> tuple[float, float]:
    """``(row, column)`` mm per pixel that ITK, and so 3D Slicer, reads from a PNG/JPEG header: JPEG's JFIF density
    (e.g. 100 dpi → 0.254 mm), 1 mm when the header gives none (ITK ignores PNG's pHYs). Header only, no decoding.

    Raises:
        nothing: ``(1.0, 1.0)`` when ITK cannot read the header.
    """
    try:
        import itk

        io = itk.ImageIOFactory.CreateImageIO(str(path), itk.CommonEnums.IOFileMode_ReadMode)
        io.SetFileName(str(path))
        io.ReadImageInformation()
        return float(io.GetSpacing(1)), float(io.GetSpacing(0))
    except Exception:  # noqa: BLE001 - geometry for display only; the pixels were read by Pillow
        return 1.0, 1.0


def _read_pil(path: Path) -> tuple[np.ndarray, tuple, dict]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # decodes now so that truncated files fail here
            mode = img.mode
            if mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr", "PA"):
                img = img.convert("L")
            data = np.array(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DataError(
            f"{path}: cannot read image with Pillow (truncated or corrupt?): {type(err).__name__}: {err}"
        ) from err
    if data.ndim != 2:
        raise DataError(f"{path}: expected a 2-D gray image, got shape {data.shape} (mode {mode})")
    lossy = path.name.lower().endswith(LOSSY_EXTENSIONS)
    return data[None], (1.0, 1.0, 1.0), {"format": "pil", "mode": mode, "lossy": lossy}


# --------------------------------------------------------------------------- DICOM
# --------------------------------------------------------------------------- public API
def read_array(path: str | Path, *, display: bool = True) -> tuple[np.ndarray, tuple[float, float, float], dict]:
    """Read one image (file, or folder holding a single-frame DICOM series) as an ``(S, H, W)`` array.

    Args:
        path: ``.nii``/``.nii.gz``/``.nrrd``/``.mha``/``.mhd``/``.png``/``.jpg``/``.jpeg``/``.dcm`` file, or a folder
            of ``.dcm`` files forming one series (sorted by ``ImagePositionPatient`` along the slice normal, else by
            ``InstanceNumber``).
        display: DICOM only: apply Rescale Slope/Intercept and invert ``MONOCHROME1`` (``max - value``) so that
            dense tissue is bright. Pass ``False`` for masks, whose stored values are the labels.

    Returns:
        ``(array, spacing, info)``: ``array`` is ``(S, H, W)`` in the stored integer dtype, or float32 for float
        data and rescaled DICOM; ``spacing`` is ``(slice, row, column)`` in mm (``1.0`` where the file gives none);
        ``info`` holds ``"format"`` (``nifti``/``itk``/``pil``/``dicom``), ``"affine_ras"`` (4×4, ``(s, h, w)``
        index → RAS mm; NIfTI/ITK only), ``"lossy"`` (JPEG), and for DICOM ``"photometric"``, ``"inverted"``,
        ``"laterality"`` (``"L"``/``"R"`` when tagged) and ``"view"``.

    Raises:
        DataError: missing file, unsupported extension, unreadable/truncated/corrupt file, data that is not 2-D or
            3-D (e.g. 4-D or RGB volumes), NaN/Inf pixels, invalid spacing. The message names ``path``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        array, spacing, info = read_dicom_series(path, display)
    else:
        _, ext = split_extension(path)
        if ext in NIFTI_EXTENSIONS:
            array, spacing, info = _read_nifti(path)
        elif ext in ITK_EXTENSIONS:
            array, spacing, info = _read_itk(path)
        elif ext in PIL_EXTENSIONS:
            array, spacing, info = _read_pil(path)
        elif ext in DICOM_EXTENSIONS:
            array, spacing, info = read_dicom_file(path, display)
        else:
            raise DataError(f"{path}: unsupported file type; expected one of {', '.join(IMAGE_EXTENSIONS)}")
    info.setdefault("lossy", False)
    array, spacing = _finish(np.asarray(array), spacing, path)
    return array, spacing, info


def read_image(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float], dict]:
    """:func:`read_array` with the array cast to float32 ``(S, H, W)`` (raw intensities, any range)."""
    array, spacing, info = read_array(path)
    return array.astype(np.float32, copy=False), spacing, info


def check_mask(array: np.ndarray, path: str | Path, lossy: bool = False) -> np.ndarray:
    """Validate a lesion mask and return it as uint8 in {0, 1}, same shape.

    Lossless masks must hold only {0, 1} or only {0, 255}. Lossy (JPEG) masks carry compression noise, so they are
    thresholded at half their maximum (``value > max / 2``) with a warning. An all-zero mask is accepted here: it
    is a lesion-free case, and the slice selection decides what to keep.

    Args:
        array: mask of any shape and integer/float/bool dtype.
        path: file the mask came from (for messages).
        lossy: True when the mask came from a lossy format (JPEG).

    Raises:
        DataError: a mask with NaN or Inf values (lossy or not); a lossless mask with values outside {0, 1} /
            {0, 255} (the message lists the values found).
    """
    array = np.asarray(array)
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        # NaN compares False with every threshold: a lossy NaN mask would silently become lesion-free.
        raise DataError(f"{path}: mask contains NaN or Inf values; save it as {{0, 1}} or {{0, 255}} integers")
    if array.dtype.kind not in "uif":
        raise DataError(f"{path}: unsupported mask pixel type {array.dtype}")
    if lossy:
        peak = float(array.max()) if array.size else 0.0
        if peak <= 0:
            return np.zeros(array.shape, np.uint8)
        binary = (array > peak / 2).astype(np.uint8)
        logger.warning("%s: lossy (JPEG) mask thresholded at %g (half its maximum)", path, peak / 2)  # once
        return binary
    values = np.unique(array)
    if set(values.tolist()) <= {0, 1}:
        return array.astype(np.uint8)
    if set(values.tolist()) <= {0, 255}:
        return (array == 255).astype(np.uint8)
    shown = ", ".join(f"{v:g}" for v in values[:10].tolist()) + (", ..." if values.size > 10 else "")
    raise DataError(
        f"{path}: mask must hold only {{0, 1}} or {{0, 255}}, found values {shown}; binarise it (lesion = 1 or 255) "
        "and save it in a lossless format"
    )


def read_mask(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float], dict]:
    """Read a lesion mask as uint8 ``(S, H, W)`` in {0, 1} (see :func:`check_mask`); same return as :func:`read_array`.

    DICOM masks are read without rescale or ``MONOCHROME1`` inversion (their stored values are the labels); palette
    PNGs by their palette indices (the labels, whatever colours the palette shows); colour (RGB...) masks are refused
    unless gray, with the file's own colours in the message.

    Raises:
        DataError: as :func:`read_array` and :func:`check_mask`; a colour mask (names its colours).
    """
    array, spacing, info = read_array(path, display=False)
    mode = info.get("mode")
    if info.get("format") == "pil" and mode in ("P", "PA"):
        # a palette mask stores its labels as palette indices; the gray conversion would give the colours' luma
        array = _palette_indices(Path(path))
    elif info.get("format") == "pil" and mode in _COLOUR_MODES:
        colours = _colours(Path(path))
        if len(colours) > 2 or any(len(set(c)) > 1 for c in colours):  # not a gray image saved as colour
            shown = ", ".join(str(tuple(c)) for c in colours[:5]) + (", ..." if len(colours) > 5 else "")
            raise DataError(
                f"{path}: a colour ({mode}) mask with colours {shown}; save the lesion as 255 (or 1) on 0 in a gray "
                "(mode L) lossless PNG, e.g. PIL: Image.fromarray((np.array(img)[..., 0] > 0).astype('uint8') * 255)"
            )
    return check_mask(array, path, lossy=bool(info.get("lossy"))), spacing, info


_COLOUR_MODES = ("RGB", "RGBA", "CMYK", "YCbCr", "LA")


def _palette_indices(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.array(img.convert("P") if img.mode == "PA" else img)[None]


def _colours(path: Path) -> list:
    from PIL import Image

    with Image.open(path) as img:
        rgb = np.array(img.convert("RGB")).reshape(-1, 3)
    return np.unique(rgb, axis=0).tolist()


def check_pair(
    image_path,
    image_shape: tuple,
    image_spacing: tuple,
    image_info: dict,
    mask_path,
    mask_shape: tuple,
    mask_spacing: tuple,
    mask_info: dict,
    rtol: float = 1e-3,
) -> None:
    """Check that an image and its mask lie on the same voxel grid.

    Checks: equal ``(S, H, W)`` shapes; spacing equal within ``rtol`` (relative); and, when both files carry an
    affine (NIfTI/ITK, compared in RAS), equal direction cosines (within 1e-3) and origins (within half a voxel).
    A PNG/JPEG image has no geometry of its own (read at 1 mm here, at its header's dpi by ITK and Slicer), so a
    mask of its shape is on its grid whatever spacing the mask file states (e.g. a label drawn in Slicer).

    Raises:
        DataError: naming both files and the mismatching shapes, spacings or orientations, or a spacing that is not
            three finite positive numbers.
    """
    pair = f"image {image_path} and mask {mask_path}"
    if tuple(image_shape) != tuple(mask_shape):
        raise DataError(
            f"{pair}: shapes differ, image {tuple(image_shape)} vs mask {tuple(mask_shape)}; the mask must be drawn "
            "on the image's voxel grid (resample it onto the image)"
        )
    if image_info.get("format") == "pil":
        return
    for what, spacing in (("image", image_spacing), ("mask", mask_spacing)):
        values = np.asarray(spacing, dtype=np.float64).ravel()
        if values.size != 3 or not (np.isfinite(values).all() and (values > 0).all()):
            raise DataError(f"{pair}: invalid {what} spacing {tuple(np.ravel(spacing))}; expected 3 positive mm values")
    if not np.allclose(image_spacing, mask_spacing, rtol=rtol, atol=0):
        raise DataError(
            f"{pair}: spacing differs, image {tuple(image_spacing)} mm vs mask {tuple(mask_spacing)} mm; "
            "resample the mask onto the image grid (or fix the header of the wrong file)"
        )
    a, b = image_info.get("affine_ras"), mask_info.get("affine_ras")
    if a is None or b is None:
        return
    a, b = np.asarray(a, float), np.asarray(b, float)
    dir_a = a[:3, :3] / np.linalg.norm(a[:3, :3], axis=0, keepdims=True)
    dir_b = b[:3, :3] / np.linalg.norm(b[:3, :3], axis=0, keepdims=True)
    if not np.allclose(dir_a, dir_b, atol=1e-3):
        raise DataError(
            f"{pair}: orientation differs (direction cosines {dir_a.round(3).tolist()} vs {dir_b.round(3).tolist()}); "
            "reorient the mask to the image (e.g. with the same tool that wrote the image)"
        )
    if np.abs(a[:3, 3] - b[:3, 3]).max() > 0.5 * min(image_spacing):
        raise DataError(
            f"{pair}: origin differs ({a[:3, 3].round(3).tolist()} vs {b[:3, 3].round(3).tolist()} mm); "
            "resample the mask onto the image grid"
        )


def read_case(image_path, mask_path, case_id: str, patient_id: str, meta: dict | None = None) -> Case:
    """Read an image and its mask into a :class:`Case` (raw float32 intensities, uint8 {0, 1} mask).

    ``breast_side`` is left ``None`` (intensity detection decides later); a DICOM ``ImageLaterality`` is kept in
    ``meta["laterality"]`` only, since which image side the breast lies on depends on the display convention.

    Raises:
        DataError: from :func:`read_image`, :func:`read_mask` or :func:`check_pair`.
    """
    image, spacing, image_info = read_image(image_path)
    mask, mask_spacing, mask_info = read_mask(mask_path)
    check_pair(image_path, image.shape, spacing, image_info, mask_path, mask.shape, mask_spacing, mask_info)
    extra = dict(meta or {})
    for key in ("laterality", "view"):
        if key in image_info:
            extra[key] = image_info[key]
    return Case(
        case_id=case_id,
        patient_id=patient_id,
        image=image,
        label=mask,
        spacing=spacing,
        breast_side=None,
        source=f"{image_path} + {mask_path}",
        lossy_mask=bool(mask_info.get("lossy")),
        meta=extra,
    )
