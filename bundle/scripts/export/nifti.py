"""NIfTI masks on a source image's grid (nibabel), for results that must lie on top of the image they came from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from scripts.data.readers import SHW_TO_NIFTI

from .formats import check_mask, write_new_file

__all__ = ["grid_affine", "nifti_affine", "write_nifti_mask"]



def grid_affine(affine_ras: np.ndarray | None, spacing: Sequence[float]) -> np.ndarray:
    """The ``(4, 4)`` index ``(s, h, w, 1)`` → RAS mm affine of a source grid.

    Args:
        affine_ras: the source's own, as ``read_array``'s ``info["affine_ras"]`` (NIfTI, NRRD/MHA, DICOM), returned
            as is; ``None`` for files without geometry (PNG, JPEG): then NIfTI voxel ``(x, y, z) = (h, w, s)`` with
            ``diag(row, column, slice)`` mm, the axes the prepared slices are written with.
        spacing: ``(slice, row, column)`` mm (used only when ``affine_ras`` is ``None``).

    Returns:
        ``(4, 4)`` float64.
    """
    if affine_ras is not None:
        return np.asarray(affine_ras, dtype=np.float64)
    return np.diag([float(spacing[1]), float(spacing[2]), float(spacing[0]), 1.0]) @ SHW_TO_NIFTI


def nifti_affine(affine_ras: np.ndarray | None, spacing: Sequence[float]) -> np.ndarray:
    """The NIfTI affine (voxel ``(x, y, z) = (h, w, s)`` → RAS mm) of the grid :func:`grid_affine` describes."""
    return grid_affine(affine_ras, spacing) @ SHW_TO_NIFTI.T


def write_nifti_mask(mask: np.ndarray, affine_ras: np.ndarray | None, spacing: Sequence[float], path: str) -> Path:
    """Write a ``(S, H, W)`` {0, 1} mask as uint8 NIfTI on the source grid: 2-D ``(H, W)`` when ``S == 1``, else
    ``(H, W, S)``; the affine from :func:`nifti_affine`. Read back by ``scripts.data.readers.read_array`` it gives
    the same ``(S, H, W)`` array and ``affine_ras``. Written atomically, never over an existing file
    (:func:`~.formats.write_new_file`).

    Raises:
        FileExistsError: ``path`` exists.
        ValueError: ``mask`` is not ``(S, H, W)`` in {0, 1}.
    """
    mask = check_mask(mask, str(path))
    data = mask[0] if mask.shape[0] == 1 else np.transpose(mask, (1, 2, 0))
    image = nib.Nifti1Image(np.ascontiguousarray(data), nifti_affine(affine_ras, spacing))
    return write_new_file(path, lambda tmp: nib.save(image, str(tmp)))
