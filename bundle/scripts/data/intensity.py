"""Intensity window: percentiles inside the breast mapped linearly to [-1, 1].

Source: PIG (Zhang et al., MICCAI 2025, arXiv:2507.14833), "Data": the blank background is cropped away, slices
are resized to 512×512 and intensities linearly scaled to [-1, 1]. How slices were picked, the percentiles and the
laterality handling are not stated in the paper: they are this bundle's choices, documented on each function.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, ScaleIntensityRange, Transform
from monai.utils import convert_to_numpy

from .arrays import as_float32
from .case import DataError
from .foreground import breast_mask

__all__ = ["PercentileWindow", "PercentileWindowd"]


class PercentileWindow(Transform):
    """Window intensities at two percentiles and map them linearly to [-1, 1], clipped.

    The percentiles are taken inside the breast (:func:`breast_mask`) when ``breast_only`` (so the blank background
    does not pull the lower bound down), else over the whole image. Source: PIG "Data": intensities "linearly scaled
    to [-1, 1]"; percentiles instead of min/max are ours (robust to bright markers and dead pixels).

    Args:
        lower, upper: percentiles in [0, 100], ``lower < upper`` (default 0.5, 99.5).
        breast_only: compute the percentiles inside the breast mask (falls back to the whole image if it is empty).

    Returns (``__call__``): float32 array of the input's shape with values in [-1, 1].

    Raises:
        DataError: the window is empty (constant image, or constant breast region), or NaN/Inf pixels.
        ValueError: percentiles out of order or outside [0, 100]; an empty image.
    """

    def __init__(self, lower: float = 0.5, upper: float = 99.5, breast_only: bool = True) -> None:
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"need 0 ≤ lower < upper ≤ 100, got {lower}, {upper}")
        self.lower, self.upper, self.breast_only = lower, upper, breast_only

    def window(self, img: np.ndarray, region: np.ndarray | None = None) -> tuple[float, float]:
        """``(low, high)`` intensity percentiles of ``img`` (``(H, W)``) within ``region`` (bool, optional)."""
        img = np.asarray(img)
        if img.size == 0:
            raise ValueError("PercentileWindow got an empty image")
        img = as_float32(img)
        if region is None and self.breast_only and img.ndim == 2:
            region = breast_mask(img)
        values = img[region] if region is not None and region.any() else img
        low, high = np.percentile(values, [self.lower, self.upper])
        if not high > low:
            raise DataError(f"percentile window [{low:g}, {high:g}] is empty: the image (region) is constant")
        return float(low), float(high)

    def __call__(self, img: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
        """float32 array of ``img``'s shape with values in [-1, 1]."""
        low, high = self.window(img, region)
        out = ScaleIntensityRange(low, high, -1.0, 1.0, clip=True, dtype=np.float32)(np.asarray(img, np.float32))
        return convert_to_numpy(out, dtype=np.float32)


class PercentileWindowd(MapTransform):
    """Dictionary twin of :class:`PercentileWindow` (each key windowed on its own percentiles)."""

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 0.5,
        upper: float = 99.5,
        breast_only: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = PercentileWindow(lower, upper, breast_only)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d
