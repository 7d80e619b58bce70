"""Array checks shared by the slice transforms: finite values, float32 range, 2-D pairs, seeded generators."""

from __future__ import annotations

import numpy as np

from .case import DataError

__all__ = ["Box", "as_rng", "check_finite", "as_float32", "check_pair_2d"]

Box = tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open, in pixels


def as_rng(rng) -> np.random.Generator:
    """``rng`` itself when it is a numpy ``Generator``, else ``numpy.random.default_rng(rng)`` (a seed or None)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def check_finite(array: np.ndarray, what: str = "image") -> None:
    """Raise DataError when a float ``array`` holds NaN or Inf.

    NaN compares False with every threshold and Inf swallows every histogram bin, so without this check the Otsu
    threshold, the percentile window and the resize would return silently wrong (or NaN) results.
    """
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise DataError(f"{what} contains NaN or Inf values ({int(array.size - np.isfinite(array).sum())} pixels)")


def as_float32(array, what: str = "image") -> np.ndarray:
    """``array`` as float32 after :func:`check_finite`; DataError when finite values overflow float32 (> 3.4e38)."""
    array = np.asarray(array)
    check_finite(array, what)
    with np.errstate(over="ignore"):  # overflow is reported below as a DataError, not as a RuntimeWarning
        out = array.astype(np.float32)
    if not np.isfinite(out).all():
        raise DataError(f"{what} has values beyond the float32 range (±3.4e38); rescale it first")
    return out


def check_pair_2d(image: np.ndarray, label: np.ndarray, image_size: int) -> None:
    """Argument checks of the square-output functions (ValueError: wrong shapes or ``image_size < 1``)."""
    if image.ndim != 2 or label.shape != image.shape or min(image.shape) < 1:
        raise ValueError(f"expected non-empty (H, W) image and mask of one shape, got {image.shape}, {label.shape}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be ≥ 1, got {image_size}")
