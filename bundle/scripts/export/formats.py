"""What the exporters share: the output format names, the mass segment's terminology, the atomic no-overwrite write.

Axis convention (as :mod:`scripts.data.readers`): masks and images are ``(S, H, W)`` (slices, rows, columns); a 2-D
result is ``(1, H, W)``. An ``affine_ras`` is a 4×4 float64 matrix mapping the index ``(s, h, w, 1)`` to RAS mm.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "OUTPUT_FORMATS",
    "SegmentInfo",
    "MASS_SEGMENT",
    "check_output_formats",
    "check_mask",
    "bundle_version",
    "write_new_file",
]

#: result formats of a generated mask: NIfTI, 3D Slicer segmentation (``.seg.nrrd``), DICOM SEG.
OUTPUT_FORMATS = ("nifti", "seg.nrrd", "dicom_seg")


@dataclass(frozen=True)
class SegmentInfo:
    """One segment's identity, written the same way into ``.seg.nrrd`` and DICOM SEG.

    Codes are ``(coding scheme designator, code value, code meaning)`` triplets (DICOM PS3.3 Code Sequence Macro);
    ``color`` is RGB in [0, 1].
    """

    name: str
    label_value: int
    category: tuple[str, str, str]
    type: tuple[str, str, str]
    color: tuple[float, float, float]


#: the lesion segment: SNOMED CT 4147007 "Mass" in category 49755003 "Morphologically abnormal structure"
#: (DICOM CID 7150 / CID 7151, the codes highdicom's ``codes.SCT.Mass`` and 3D Slicer's terminology use).
MASS_SEGMENT = SegmentInfo(
    name="mass",
    label_value=1,
    category=("SCT", "49755003", "Morphologically abnormal structure"),
    type=("SCT", "4147007", "Mass"),
    color=(0.85, 0.2, 0.2),
)


def check_output_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise a format selection to a tuple of :data:`OUTPUT_FORMATS` names.

    Args:
        formats: a comma-separated string (``"nifti,seg.nrrd"``) or a list of names; case and surrounding spaces
            are ignored, repeats are dropped (first occurrence keeps its place).

    Raises:
        ValueError: an unknown name (the message names it and the accepted ones), a non-string item, or an empty
            selection.
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    accepted = ", ".join(OUTPUT_FORMATS)
    chosen: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"output format {item!r} is not a name; accepted: {accepted}")
        name = item.strip().lower()
        if not name:
            continue
        if name not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {item.strip()!r}; accepted: {accepted}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"no output format given; accepted: {accepted}")
    return tuple(chosen)


def check_mask(mask, what: str) -> np.ndarray:
    """A binary ``(S, H, W)`` mask as contiguous uint8 {0, 1}.

    Args:
        mask: array-like of shape ``(S, H, W)`` (``(1, H, W)`` for a 2-D result), bool or numbers in {0, 1}.
        what: the target file, named in errors.

    Raises:
        ValueError: wrong number of dimensions, an empty axis, or values outside {0, 1}; the message names ``what``.
    """
    array = np.asarray(mask)
    if array.ndim != 3 or min(array.shape) < 1:
        raise ValueError(f"{what}: mask must be (S, H, W) ((1, H, W) for a 2-D result), got shape {array.shape}")
    if array.dtype.kind == "b":
        return np.ascontiguousarray(array, dtype=np.uint8)
    if array.dtype.kind not in "uif" or not np.isin(array, (0, 1)).all():
        values = np.unique(array)[:6].tolist() if array.dtype.kind in "uif" else array.dtype
        raise ValueError(f"{what}: mask must hold only 0 and 1, found {values}")
    return np.ascontiguousarray(array, dtype=np.uint8)


def bundle_version() -> str:
    """The generator bundle's version (``configs/metadata.json``), recorded as the software version of exports;
    ``"unknown"`` when the file is not beside the scripts (e.g. the package copied elsewhere)."""
    meta = Path(__file__).resolve().parents[2] / "configs" / "metadata.json"
    try:
        return str(json.loads(meta.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def write_new_file(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Create ``path`` atomically and never over an existing file.

    ``write(tmp)`` writes the content to a temporary file in the same folder whose name ends like ``path`` (writers
    such as pynrrd choose the layout by extension); the file then appears under ``path`` by ``os.link``, which fails
    instead of replacing a file that appeared meanwhile. Where the file system has no hard links, ``os.replace`` is
    used after a last existence check. The temporary file is removed in every case.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``path`` exists (before or after the write); the message names it.
        OSError: the folder cannot be created or written. Any error of ``write`` propagates; nothing is left behind.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"refusing to overwrite {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith((".seg.nrrd", ".nii.gz")) else path.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(f"refusing to overwrite {path} (it appeared while writing)") from None
        except OSError:  # no hard links (some network / FAT file systems)
            if path.exists():
                raise FileExistsError(f"refusing to overwrite {path} (it appeared while writing)") from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
