"""Laterality: flip slices and volumes so that the breast lies on the left (chest wall at column 0).

The paper does not mention laterality; aligning all breasts to one side lets the generator learn one layout instead of
two mirror images. The flip is recorded (``"flipped"``) so that outputs can be mapped back to the source image.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from .foreground import breast_side_votes, detect_breast_side

__all__ = ["NormalizeLaterality", "NormalizeLateralityd"]

logger = logging.getLogger(__name__)


def _clear_side(image: np.ndarray) -> str | None:
    """The side with at least twice the other side's foreground (:func:`breast_side_votes`), else ``None`` (no clear
    answer: a recorded side then stands). Images the detection cannot read (e.g. beyond float32) give ``None``."""
    from .case import DataError

    try:
        left, right = breast_side_votes(image)
    except DataError:
        return None
    if right > 2 * left:
        return "right"
    if left > 2 * right:
        return "left"
    return None


class NormalizeLaterality(Transform):
    """Flip a slice/volume left-right (last axis) so that the breast lies on the LEFT (chest wall at column 0).

    The paper does not mention laterality; aligning all breasts to one side lets the generator learn one layout
    instead of two mirror images.

    Args:
        side: default breast side (``"left"``/``"right"``) of the inputs; ``None`` detects it per call
            (:func:`detect_breast_side`).
    """

    def __init__(self, side: str | None = None) -> None:
        self.side = side

    def needs_flip(self, image: np.ndarray, side: str | None = None) -> bool:
        """True when ``image`` (``(..., H, W)``) must be flipped; ``side`` overrides detection.

        Raises:
            ValueError: ``side`` not in ``("left", "right", None)``; see also :func:`detect_breast_side`.
        """
        side = side or self.side or detect_breast_side(image)
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left', 'right' or None, got {side!r}")
        return side == "right"

    @staticmethod
    def flip(array: np.ndarray, flip: bool) -> np.ndarray:
        """Columns (last axis) reversed when ``flip``; shape and dtype kept."""
        return np.ascontiguousarray(array[..., ::-1]) if flip else array

    def __call__(self, img: np.ndarray, side: str | None = None) -> np.ndarray:
        """Flipped ``img`` (any ``(..., H, W)``) if its breast lies on the right, else ``img``."""
        return self.flip(img, self.needs_flip(img, side))


class NormalizeLateralityd(MapTransform):
    """Dictionary twin of :class:`NormalizeLaterality`: one decision (from ``source_key`` or ``side_key``) flips all
    ``keys`` together, so image and mask stay aligned. Adds ``"flipped"`` (bool) to the dictionary.

    Args:
        keys: arrays to flip (e.g. ``("image", "label")``).
        source_key: array used for detection.
        side_key: dictionary entry with the recorded side (``"left"``/``"right"``/``None``); missing → detection. A
            recorded side that the pixels clearly contradict (twice the foreground on the other half) is logged
            (naming ``d["source"]``) and the pixels' side used.
    """

    def __init__(
        self, keys: KeysCollection, source_key: str = "image", side_key: str = "breast_side", allow_missing_keys=False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key, self.side_key = source_key, side_key
        self.op = NormalizeLaterality()

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict:
        d = dict(data)
        side = d.get(self.side_key)
        if side is not None:
            detected = _clear_side(d[self.source_key])
            if detected is not None and detected != side:
                # e.g. a Duke View that says right on an image whose breast lies on the left: flipping by the record
                # would put the chest wall on the right, where the network never saw it
                logger.warning(
                    "%s: the recorded breast side %r disagrees with the pixels (breast on the %s of the image); "
                    "using the pixels' side, so that the chest wall lands at column 0",
                    d.get("source") or "image", side, detected,
                )  # fmt: skip
                side = detected
        flip = self.op.needs_flip(d[self.source_key], side)
        for key in self.key_iterator(d):
            d[key] = self.op.flip(d[key], flip)
        d["flipped"] = flip
        return d
