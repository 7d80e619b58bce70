"""Lesion-mask statistics and their real-vs-generated distribution distances.

Per mask: lesion area (pixels, and mm² from the pixel spacing), number of 8-connected components
(``scipy.ndimage.label``; :mod:`.pair_stats` uses these) and the eccentricity of the largest component. Per set:
mean and std; between sets: the 1-D Wasserstein distance of each statistic (``scipy.stats.wasserstein_distance``,
in the statistic's own unit — px, mm², components, or unitless for eccentricity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.stats import wasserstein_distance

__all__ = ["STATISTICS", "eccentricity", "mask_statistics", "compare_mask_statistics"]

#: statistic → unit, in report order.
STATISTICS = {"area_px": "px", "area_mm2": "mm²", "components": "count", "eccentricity": "1"}

_EIGHT = np.ones((3, 3), dtype=bool)


def eccentricity(mask: np.ndarray) -> float:
    """Eccentricity of a 2-D region from its second central moments (the definition of scikit-image's
    ``regionprops(...).eccentricity``): ``sqrt(1 - l2 / l1)``, ``l1 ≥ l2`` the eigenvalues of the pixel coordinates'
    covariance (population, i.e. ``mu_pq / mu_00``). 0 for a disc, → 1 for a line; a filled ellipse with semi-axes
    ``a ≥ b`` gives ``sqrt(1 - b²/a²)`` up to pixelation.

    Args:
        mask: (H, W), non-zero = region.

    Returns:
        Value in [0, 1]; 0 for a single pixel (l1 = 0, as regionprops); NaN for an empty mask.
    """
    rows, cols = np.nonzero(np.asarray(mask))
    if rows.size == 0:
        return float("nan")
    cov = np.cov(np.stack([rows, cols]).astype(np.float64), bias=True)
    l2, l1 = np.linalg.eigvalsh(cov)  # ascending
    if l1 <= 0:
        return 0.0
    return float(np.sqrt(max(0.0, 1.0 - max(l2, 0.0) / l1)))


def mask_statistics(mask: np.ndarray, spacing_mm: Sequence[float] | None = None) -> dict:
    """Statistics of one lesion mask.

    Args:
        mask: (H, W), non-zero = lesion.
        spacing_mm: (row, column) pixel spacing in mm, or None when unknown.

    Returns:
        ``{"area_px": int, "area_mm2": float | None, "components": int (8-connected),
        "eccentricity": float (largest component; NaN if empty)}``.
    """
    mask = np.asarray(mask) > 0
    labels, count = ndimage.label(mask, structure=_EIGHT)
    if count:
        sizes = np.bincount(labels.ravel())[1:]
        ecc = eccentricity(labels == (int(np.argmax(sizes)) + 1))
    else:
        ecc = float("nan")
    area = int(mask.sum())
    mm2 = None if spacing_mm is None else float(area * float(spacing_mm[0]) * float(spacing_mm[1]))
    return {"area_px": area, "area_mm2": mm2, "components": int(count), "eccentricity": ecc}


def _values(stats: list[dict], key: str) -> np.ndarray:
    vals = np.array([s[key] for s in stats if s.get(key) is not None], dtype=np.float64)
    return vals[np.isfinite(vals)]


def compare_mask_statistics(real: list[dict], generated: list[dict]) -> dict:
    """Per statistic: mean/std/count on each side and the Wasserstein distance between the two distributions.

    Empty masks have no eccentricity and are left out of it (``n`` says how many values were used); ``area_mm2`` is
    left out on a side whose spacing is unknown. A statistic with no value on one side gets ``None`` there and no
    distance. ``empty_mask_fraction`` is reported per side.

    Returns:
        ``{stat: {"unit", "real": {"mean", "std", "n"}, "generated": {...}, "wasserstein": float | None}, ...,
        "empty_mask_fraction": {"real": float, "generated": float}}``.
    """
    out: dict = {}
    for key, unit in STATISTICS.items():
        entry: dict = {"unit": unit}
        sides = {"real": _values(real, key), "generated": _values(generated, key)}
        for side, vals in sides.items():
            entry[side] = (
                {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(vals.size)} if vals.size else None
            )
        both = all(v.size for v in sides.values())
        entry["wasserstein"] = float(wasserstein_distance(sides["real"], sides["generated"])) if both else None
        out[key] = entry
    out["empty_mask_fraction"] = {
        side: (float(np.mean([s["area_px"] == 0 for s in stats])) if stats else None)
        for side, stats in (("real", real), ("generated", generated))
    }
    return out
