"""Diversity within one set: mean pairwise MS-SSIM of images and mean pairwise Dice of masks.

High values mean similar members (mode collapse shows as generated values well above the real set's). The number of
pairs grows as N²/2, so at most ``max_pairs`` pairs are used: all of them when there are fewer, otherwise a seeded
uniform random subset of the unordered pairs (:func:`index_pairs`); the report states which.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric

from ..seg.metrics import lesion_metrics

__all__ = ["MS_SSIM_WEIGHTS", "ms_ssim_settings", "index_pairs", "pairwise_ms_ssim", "pairwise_dice"]

#: Wang et al. 2003's five scale weights, MONAI's ``MultiScaleSSIMMetric`` default (finest scale first).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_settings(image_size: int, kernel_size: int = 11, kernel_sigma: float = 1.5) -> dict:
    """MS-SSIM scales and Gaussian window that MONAI accepts for ``image_size`` px images.

    MONAI's ``compute_ms_ssim`` requires ``image_size // (n_scales - 1)² > kernel_size - 1`` (5 scales with the 11 px
    window need more than 160 px). Rule: the most scales (5 down to 3) that fit with the 11 px, sigma 1.5 window;
    if even 3 do not, 3 scales with the largest odd window that fits, sigma scaled with it
    (``1.5 · k / 11``); below 12 px, fewer scales with a 3 px window. The weights are the first ``n`` (finest) of
    :data:`MS_SSIM_WEIGHTS`, renormalised to sum to 1.

    Returns:
        ``{"weights": tuple, "kernel_size": int, "kernel_sigma": float, "scales": int}``.

    Raises:
        ValueError: ``image_size`` < 3 (no window fits).
    """

    def fits(n: int, k: int) -> bool:
        return image_size // max(1, n - 1) ** 2 > k - 1

    n, k = next(((n, kernel_size) for n in (5, 4, 3) if fits(n, kernel_size)), (None, None))
    if n is None:
        k = next((k for k in range(kernel_size, 2, -2) if fits(3, k)), None)
        n = 3
        if k is None:
            n, k = next(((n, 3) for n in (2, 1) if fits(n, 3)), (None, None))
            if n is None:
                raise ValueError(f"{image_size} px images are too small for any MS-SSIM window (3 px or more)")
    w = np.asarray(MS_SSIM_WEIGHTS[:n], dtype=np.float64)
    sigma = float(kernel_sigma) if k == kernel_size else float(kernel_sigma) * k / kernel_size
    return {"weights": tuple(float(x) for x in w / w.sum()), "kernel_size": int(k), "kernel_sigma": sigma, "scales": n}


def index_pairs(n: int, max_pairs: int, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Unordered index pairs ``(i, j)``, ``i < j < n``: all of them, or ``max_pairs`` drawn without replacement.

    Returns:
        ``((P, 2) int64 array, subsampled)`` — pairs sorted lexicographically; ``subsampled`` True when not all.
    """
    i, j = np.triu_indices(int(n), k=1)
    total = i.size
    if total <= max_pairs:
        return np.stack([i, j], axis=1).astype(np.int64), False
    pick = np.sort(np.random.default_rng(seed).choice(total, int(max_pairs), replace=False))
    return np.stack([i[pick], j[pick]], axis=1).astype(np.int64), True


def _summary(values: torch.Tensor, pairs: np.ndarray, subsampled: bool, n: int) -> dict:
    return {
        "mean": float(values.mean()),
        "std": float(values.std(unbiased=False)),
        "pairs": int(len(pairs)),
        "all_pairs": int(n * (n - 1) // 2),
        "pairs_subsampled": bool(subsampled),
        "n": int(n),
    }


def pairwise_ms_ssim(
    images: torch.Tensor, max_pairs: int = 1000, seed: int = 0, settings: dict | None = None, batch_size: int = 64
) -> dict | None:
    """Mean pairwise MS-SSIM (MONAI ``MultiScaleSSIMMetric``, ``data_range`` 1) within a set of images.

    Args:
        images: (N, 1, H, W) float in [0, 1].
        max_pairs, seed: pair cap and seed (:func:`index_pairs`).
        settings: :func:`ms_ssim_settings` output (default: computed for the smaller image side).

    Returns:
        ``{"mean", "std", "pairs", "all_pairs", "pairs_subsampled", "n", "settings"}``, or ``None`` when N < 2.
    """
    images = torch.as_tensor(images).float()
    n = images.shape[0]
    if n < 2:
        return None
    settings = settings or ms_ssim_settings(min(images.shape[-2:]))
    metric = MultiScaleSSIMMetric(
        spatial_dims=2,
        data_range=1.0,
        kernel_size=settings["kernel_size"],
        kernel_sigma=settings["kernel_sigma"],
        weights=settings["weights"],
        reduction="none",
    )
    pairs, subsampled = index_pairs(n, max_pairs, seed)
    vals = []
    for s in range(0, len(pairs), batch_size):
        p = torch.as_tensor(pairs[s : s + batch_size])
        vals.append(metric(images[p[:, 0]], images[p[:, 1]]).reshape(-1))
    return {**_summary(torch.cat(vals).double(), pairs, subsampled, n), "settings": settings}


def pairwise_dice(masks: torch.Tensor, max_pairs: int = 1000, seed: int = 0) -> dict | None:
    """Mean pairwise Dice within a set of binary masks (``scripts.seg.metrics.lesion_metrics``: two empty masks
    count as Dice 1, one empty and one not as 0).

    Args:
        masks: (N, 1, H, W), values > 0.5 = lesion.

    Returns:
        As :func:`pairwise_ms_ssim` without ``settings``, or ``None`` when N < 2.
    """
    masks = torch.as_tensor(masks).float()
    n = masks.shape[0]
    if n < 2:
        return None
    pairs, subsampled = index_pairs(n, max_pairs, seed)
    p = torch.as_tensor(pairs)
    dice = lesion_metrics(masks[p[:, 0]], masks[p[:, 1]])["dice"]
    return _summary(dice.double(), pairs, subsampled, n)
