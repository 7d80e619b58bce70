"""Which slices of a DBT volume become training items: the lesion slices, their neighbours, lesion-free extras.

The paper does not say how its 8,723 mass slices were picked from the volumes; this rule is the bundle's.
"""

from __future__ import annotations

import numpy as np

from .arrays import as_rng

__all__ = ["select_lesion_slices"]


def select_lesion_slices(
    label: np.ndarray,
    min_lesion_area: int,
    neighbour_slices: int = 0,
    lesion_free_fraction: float = 0.0,
    rng: np.random.Generator | int | None = None,
) -> list[int]:
    """Indices of the slices to keep from a volume's lesion mask.

    Kept: slices whose lesion area is ≥ ``min_lesion_area`` pixels; their ``±neighbour_slices`` neighbours (clipped to
    the volume, whatever their lesion area); and ``round(lesion_free_fraction × n_lesion)`` slices chosen at random
    (``rng``) among those without any lesion pixel (fewer if the volume has fewer). The paper does not say how its
    8,723 mass slices were picked; this rule is the bundle's.

    Args:
        label: ``(S, H, W)`` mask, nonzero = lesion.
        min_lesion_area: minimum lesion pixels for a slice to count as a lesion slice (≥ 1 is used).
        neighbour_slices: ``k ≥ 0`` neighbours kept on each side of every lesion slice.
        lesion_free_fraction: lesion-free slices to add, as a fraction of the number of lesion slices.
        rng: numpy Generator or seed for the lesion-free draw.

    Returns:
        Sorted list of unique slice indices (empty when no slice reaches ``min_lesion_area``).

    Raises:
        ValueError: ``label`` is not 3-D or an argument is negative.
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise ValueError(f"label must be (S, H, W), got shape {label.shape}")
    if neighbour_slices < 0 or lesion_free_fraction < 0:
        raise ValueError("neighbour_slices and lesion_free_fraction must be ≥ 0")
    area = (label > 0).reshape(label.shape[0], -1).sum(axis=1)
    lesion = np.flatnonzero(area >= max(int(min_lesion_area), 1))
    keep = set()
    for s in lesion:
        keep.update(range(max(0, s - neighbour_slices), min(label.shape[0], s + neighbour_slices + 1)))
    n_free = int(round(lesion_free_fraction * lesion.size))
    free = np.flatnonzero(area == 0)
    free = free[~np.isin(free, list(keep))]
    if n_free and free.size:
        keep.update(as_rng(rng).choice(free, size=min(n_free, free.size), replace=False).tolist())
    return sorted(int(s) for s in keep)
