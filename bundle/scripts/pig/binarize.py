"""Binarisation of the guider's clean-mask estimate x̂0 before it conditions the generator.

Authors' code (PIG, MICCAI 2025), described in ``shared/reference/pig_method.md``, sampling step 2: 5x5 average
pooling with stride 1 and padding 2, then a per-sample threshold at ``0.75 * max + 0.25 * min`` of the pooled map,
mapped to {-1, +1}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["binarize_mask"]


def binarize_mask(x0_hat: torch.Tensor, kernel_size: int = 5, max_weight: float = 0.75) -> torch.Tensor:
    """Smooth and threshold a clean-mask estimate into a {-1, +1} mask, per sample.

    ``pooled = avg_pool2d(x0_hat, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=False)``;
    ``thr = max_weight * max(pooled) + (1 - max_weight) * min(pooled)`` over each sample's channels and pixels;
    output ``+1`` where ``pooled > thr`` and ``-1`` elsewhere.

    Conventions (the paper leaves them open):

    * padded pixels are not counted in the border means (``count_include_pad=False``). With ``torch.nn.AvgPool2d``'s
      default zero padding an all-background estimate (-1 everywhere) pools to values near 0 along the border, which
      then pass the threshold and become a frame of "lesion"; excluding the padding keeps a constant map constant.
    * a pixel exactly at the threshold is background (strict ``>``), so a constant map (max = min) gives an
      all-background mask rather than an all-lesion one.

    Args:
        x0_hat: (B, 1, H, W) clean-mask estimate, nominally in [-1, 1] (any real values accepted).
        kernel_size: odd pooling window (5 in the authors' code); the output keeps H x W.
        max_weight: weight of the max in the threshold (0.75 in the authors' code), in [0, 1].

    Returns:
        (B, 1, H, W) tensor of -1.0 / +1.0, dtype of ``x0_hat``.

    Raises:
        ValueError: ``x0_hat`` not 4-D, even ``kernel_size``, or ``max_weight`` outside [0, 1].
    """
    if x0_hat.ndim != 4:
        raise ValueError(f"x0_hat must be (B, C, H, W), got shape {tuple(x0_hat.shape)}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if not 0.0 <= max_weight <= 1.0:
        raise ValueError(f"max_weight must be in [0, 1], got {max_weight}")
    pooled = F.avg_pool2d(x0_hat, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=False)
    flat = pooled.flatten(1)
    vmax = flat.amax(dim=1).view(-1, 1, 1, 1)
    vmin = flat.amin(dim=1).view(-1, 1, 1, 1)
    threshold = max_weight * vmax + (1.0 - max_weight) * vmin
    one = torch.ones((), dtype=x0_hat.dtype, device=x0_hat.device)
    return torch.where(pooled > threshold, one, -one)
