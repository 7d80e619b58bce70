"""The bundle's value-range convention, in one place: what the networks see and what is written to disk.

* **Image** (DBT slice ``y0``): [-1, 1] in the diffusion and segmentation networks (PIG paper, "Data": intensities
  linearly scaled to [-1, 1]); [0, 1] in generated output files and in the evaluation's feature extractors.
* **Mask** (lesion ``x0``): {-1, +1} in the diffusion networks (background -1, lesion +1: the paper's ``x0``);
  {0, 1} on disk (prepared slices, generated labels) and in the segmentation networks' targets.

Every function takes numpy arrays or torch tensors (MONAI ``MetaTensor`` included) and returns the same kind, with the
input's shape; the torch paths run on the input's device.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

__all__ = [
    "image_to_unit",
    "unit_to_image",
    "mask_to_signed",
    "signed_to_mask",
    "MaskToSigned",
    "MaskToSignedd",
]

Array = np.ndarray | torch.Tensor


def image_to_unit(image: Array) -> Array:
    """Slice from the networks' [-1, 1] to the files' [0, 1]: ``(clip(x, -1, 1) + 1) / 2``.

    Args:
        image: any shape, float; values outside [-1, 1] (an unclipped x̂0, resampling overshoot) are clipped first.

    Returns:
        Same kind, shape and dtype as ``image`` (float), values in [0, 1].
    """
    if isinstance(image, torch.Tensor):
        return (image.clamp(-1, 1) + 1) / 2
    return (np.clip(image, -1.0, 1.0) + 1.0) / 2.0


def unit_to_image(image: Array) -> Array:
    """Slice from the files' [0, 1] to the networks' [-1, 1]: ``2 x - 1`` (no clipping).

    Args:
        image: any shape, float, nominally in [0, 1] (generated slices, extractor inputs).

    Returns:
        Same kind, shape and dtype as ``image``.
    """
    return image * 2.0 - 1.0


def mask_to_signed(mask: Array) -> Array:
    """Mask from {0, 1} to PIG's {-1, +1} (background -1, lesion +1), float32.

    Values > 0.5 count as lesion, so a mask resampled to [0, 1] floats is binarised too; NaN compares False and so
    becomes background.

    Args:
        mask: any shape and real dtype.

    Returns:
        float32 of the same kind and shape, values in {-1.0, +1.0}.
    """
    if isinstance(mask, torch.Tensor):
        one = torch.ones((), dtype=torch.float32, device=mask.device)
        return torch.where(mask > 0.5, one, -one)
    return np.where(np.asarray(mask) > 0.5, 1.0, -1.0).astype(np.float32)


def signed_to_mask(x0: Array) -> Array:
    """Mask estimate in PIG's {-1, +1} space (x̂0, or its binarised condition) to a {0, 1} uint8 mask.

    Threshold at 0, the midpoint of the {-1, +1} convention (strict ``>``: an exact 0 is background), so an
    all-background estimate gives an empty mask.

    Args:
        x0: any shape, real values (nominally in [-1, 1]).

    Returns:
        uint8 of the same kind and shape, values in {0, 1}.
    """
    if isinstance(x0, torch.Tensor):
        return (x0.float() > 0).to(torch.uint8)
    return (np.asarray(x0, dtype=np.float64) > 0).astype(np.uint8)


class MaskToSigned(Transform):
    """Array transform of :func:`mask_to_signed` ({0, 1} → {-1, +1}, float32, same shape and kind)."""

    def __call__(self, img: Array) -> Array:
        return mask_to_signed(img)


class MaskToSignedd(MapTransform):
    """Dictionary twin of :class:`MaskToSigned` (the diffusion training pipelines map ``label`` with it).

    Args:
        keys: mask keys to map (e.g. ``"label"``).
        allow_missing_keys: as MONAI ``MapTransform``.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Array]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = mask_to_signed(d[key])
        return d
