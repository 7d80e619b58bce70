"""Crops of a slice: the breast box, and the square output windows (whole slice or lesion-centred patch) resized to
``image_size``.

Every square output is a window ``(r0, c0, side)`` of the breast-cropped slice (it may extend beyond the slice:
image padding -1, mask padding 0) resized to ``image_size`` px, so an output pixel ``(i, j)`` comes from the
cropped-slice position ``(r0 + (i + 0.5) s - 0.5, c0 + (j + 0.5) s - 0.5)`` with ``s = side / image_size``.
:func:`square_outputs` returns the window with every output so that the pipeline can record it.

Source: PIG (Zhang et al., MICCAI 2025, arXiv:2507.14833), "Data": the blank background is cropped away, slices
are resized to 512×512 and intensities linearly scaled to [-1, 1]. How slices were picked, the percentiles and the
laterality handling are not stated in the paper: they are this bundle's choices, documented on each function.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize, Transform
from monai.utils import convert_to_numpy
from scipy import ndimage

from .arrays import Box, as_float32, as_rng, check_pair_2d
from .foreground import breast_mask

__all__ = [
    "CROP_MODES",
    "lesion_bbox",
    "breast_bbox",
    "CropBreastRegion",
    "CropBreastRegiond",
    "slice_window",
    "crop_square",
    "patch_window",
    "background_window",
    "square_window",
    "resize_image",
    "square_slice",
    "lesion_patch",
    "background_patch",
    "square_outputs",
]

CROP_MODES = ("slice", "patch")


def lesion_bbox(label: np.ndarray) -> Box | None:
    """Bounding box ``(r0, r1, c0, c1)`` (half-open, pixels) of the nonzero pixels of an ``(H, W)`` mask, or None."""
    nonzero = np.asarray(label) > 0
    rows, cols = np.flatnonzero(nonzero.any(axis=1)), np.flatnonzero(nonzero.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def breast_bbox(image: np.ndarray, label: np.ndarray | None = None, margin: int = 4) -> Box:
    """Bounding box of the breast in a slice, grown by ``margin`` pixels and united with the lesion's box.

    Args:
        image: ``(H, W)`` slice (bright = tissue).
        label: optional ``(H, W)`` lesion mask; its box is always inside the result, so the lesion is never cut.
        margin: pixels added on every side (clipped to the image).

    Returns:
        ``(r0, r1, c0, c1)``, half-open pixel indices; the whole image when no foreground is found.
    """
    h, w = np.shape(image)
    box = lesion_bbox(breast_mask(image)) or (0, h, 0, w)
    r0, r1, c0, c1 = box[0] - margin, box[1] + margin, box[2] - margin, box[3] + margin
    lesion = lesion_bbox(label) if label is not None else None
    if lesion is not None:
        r0, r1, c0, c1 = min(r0, lesion[0]), max(r1, lesion[1]), min(c0, lesion[2]), max(c1, lesion[3])
    return max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)


class CropBreastRegion(Transform):
    """Crop the blank background around the breast (:func:`breast_bbox`): Otsu threshold, largest component, margin.

    Source: PIG "Data": "blank background cropped away" (method unstated; Otsu + largest component is ours).

    Args:
        margin: pixels kept around the breast box.
    """

    def __init__(self, margin: int = 4) -> None:
        self.margin = margin

    def compute_bbox(self, image: np.ndarray, label: np.ndarray | None = None) -> Box:
        """See :func:`breast_bbox`; ``image`` is ``(H, W)``."""
        return breast_bbox(image, label, self.margin)

    @staticmethod
    def crop(array: np.ndarray, box: Box) -> np.ndarray:
        """``array[..., r0:r1, c0:c1]``; spacing is unchanged by a crop."""
        return array[..., box[0] : box[1], box[2] : box[3]]

    def __call__(self, img: np.ndarray, label: np.ndarray | None = None) -> np.ndarray:
        """Cropped ``(h, w)`` view of the ``(H, W)`` slice ``img`` (the box also covers ``label``'s lesion)."""
        return self.crop(img, self.compute_bbox(img, label))


class CropBreastRegiond(MapTransform):
    """Dictionary twin of :class:`CropBreastRegion`: the box from ``source_key`` (united with ``label_key``'s lesion)
    crops all ``keys``; it is stored as ``"crop_bbox"`` ``(r0, r1, c0, c1)``."""

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str = "image",
        label_key: str | None = "label",
        margin: int = 4,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key, self.label_key = source_key, label_key
        self.op = CropBreastRegion(margin)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict:
        d = dict(data)
        box = self.op.compute_bbox(d[self.source_key], d.get(self.label_key) if self.label_key else None)
        for key in self.key_iterator(d):
            d[key] = self.op.crop(d[key], box)
        d["crop_bbox"] = box
        return d


def resize_image(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize an ``(h, w)`` slice in [-1, 1] to ``shape`` = ``(rows, cols)``: Gaussian anti-aliasing along each axis
    that shrinks, then bilinear (pixel centres aligned, ``align_corners=False``), clipped to [-1, 1].

    Returns:
        float32 ``(rows, cols)`` in [-1, 1].
    """
    image = as_float32(image)
    # anti-aliasing as in skimage/MONAI (sigma = (scale - 1) / 2), but with edge-replicating borders: MONAI's
    # zero-padded Gaussian would lift the -1 background at the borders towards 0 (a bright frame).
    sigma = [max((n / int(m) - 1) / 2, 0.0) for n, m in zip(image.shape, shape, strict=True)]
    if any(sigma):
        image = ndimage.gaussian_filter(image, sigma, mode="nearest")
    img = Resize(tuple(int(m) for m in shape), mode="bilinear", anti_aliasing=False)(image[None])
    return np.clip(convert_to_numpy(img, dtype=np.float32)[0], -1.0, 1.0)


def _resize(image: np.ndarray, label: np.ndarray, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``(h, w)`` image and mask to ``(image_size, image_size)``.

    Image: :func:`resize_image`. Mask: area averaging, then ``≥ 0.5`` (a lesion thinner than about one output pixel
    can vanish; callers check).
    """
    size = (image_size, image_size)
    lab = Resize(size, mode="area")(label[None].astype(np.float32))
    return resize_image(image, size), (convert_to_numpy(lab)[0] >= 0.5).astype(np.uint8)


def square_slice(
    image: np.ndarray, label: np.ndarray, image_size: int, spacing: Sequence[float] = (1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Crop mode ``"slice"``: pad the (breast-cropped) slice to a square, then resize it to ``image_size``.

    Padding (image -1 = windowed background, mask 0) keeps the aspect ratio; the paper simply resizes to 512×512,
    which stretches the breast. Rows are padded on both sides, columns only on the right, so a breast normalised to
    the left (:class:`~scripts.data.laterality.NormalizeLaterality`) keeps its chest wall at column 0.

    Args:
        image: ``(h, w)`` float slice in [-1, 1].
        label: ``(h, w)`` mask in {0, 1}.
        image_size: output side ``n`` in pixels.
        spacing: input ``(row, column)`` pixel spacing in mm.

    Returns:
        ``(image (n, n) float32 in [-1, 1], label (n, n) uint8 in {0, 1}, (row_mm, col_mm))``; output spacing is
        ``spacing × side / n``, where ``side = max(h, w)`` (anisotropic input spacing stays anisotropic).

    Raises:
        ValueError: ``image``/``label`` not 2-D of one non-empty shape, or ``image_size < 1``.
        DataError: NaN or Inf pixels.
    """
    image, label = np.asarray(image), np.asarray(label)
    check_pair_2d(image, label, image_size)
    return square_window(image, label, slice_window(*image.shape), image_size, spacing)


def slice_window(height: int, width: int) -> tuple[int, int, int]:
    """Crop mode ``"slice"``'s window of an ``(height, width)`` slice: the square of side ``max(height, width)``,
    rows centred (padding split top/bottom), columns from 0 (padding on the right only, chest wall kept at column 0).

    Returns:
        ``(r0, c0, side)`` = ``(-((side - height) // 2), 0, side)``.
    """
    side = max(int(height), int(width))
    return -((side - int(height)) // 2), 0, side


def crop_square(array: np.ndarray, r0: int, c0: int, side: int, pad_value: float) -> np.ndarray:
    """``array[r0:r0+side, c0:c0+side]`` of an ``(H, W)`` array, padded with ``pad_value`` where it leaves the image."""
    h, w = array.shape
    out = np.full((side, side), pad_value, dtype=np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r0 + side, h), max(c0, 0), min(c0 + side, w)
    if sr1 > sr0 and sc1 > sc0:
        out[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = array[sr0:sr1, sc0:sc1]
    return out


def patch_window(
    box: Box,
    context_factor: float = 2.0,
    jitter: float = 0.1,
    min_patch_size: int = 64,
    rng: np.random.Generator | int | None = None,
) -> tuple[int, int, int]:
    """Square window around a lesion box: side ``max(context_factor × max(box h, w), min_patch_size)``.

    The centre is shifted by up to ``jitter × side`` per axis (uniform, ``rng``), but never so far that the lesion
    box leaves the window.

    Returns:
        ``(r0, c0, side)`` in pixels; the window may extend beyond the image (callers pad).
    """
    rng = as_rng(rng)
    h, w = box[1] - box[0], box[3] - box[2]
    side = int(max(round(context_factor * max(h, w)), min_patch_size, max(h, w)))
    origin = []
    for lo, extent in ((box[0], h), (box[2], w)):
        slack = min(jitter * side, (side - extent) / 2)
        shift = rng.uniform(-slack, slack) if slack > 0 else 0.0
        start = int(np.floor(lo + extent / 2 + shift - side / 2))
        start = min(max(start, lo + extent - side), lo)  # lesion fully inside despite rounding
        origin.append(start)
    return origin[0], origin[1], side


def lesion_patch(
    image: np.ndarray,
    label: np.ndarray,
    image_size: int,
    spacing: Sequence[float] = (1.0, 1.0),
    box: Box | None = None,
    context_factor: float = 2.0,
    jitter: float = 0.1,
    min_patch_size: int = 64,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Crop mode ``"patch"``: a lesion-centred square window (:func:`patch_window`) resized to ``image_size``.

    Args:
        image: ``(H, W)`` float slice in [-1, 1] (padding uses -1).
        label: ``(H, W)`` mask in {0, 1} (padding uses 0).
        image_size: output side ``n`` in pixels.
        spacing: input ``(row, column)`` spacing in mm.
        box: lesion box to centre on (e.g. one connected component); default: the box of all lesion pixels.
        context_factor, jitter, min_patch_size, rng: see :func:`patch_window`.

    Returns:
        ``(image (n, n) float32 in [-1, 1], label (n, n) uint8 {0, 1}, (row_mm, col_mm) = spacing × side / n)``.

    Raises:
        ValueError: no lesion pixel and no ``box``; ``image``/``label`` not 2-D of one non-empty shape;
            ``image_size < 1``.
        DataError: NaN or Inf pixels.
    """
    image, label = np.asarray(image), np.asarray(label)
    check_pair_2d(image, label, image_size)
    box = box or lesion_bbox(label)
    if box is None:
        raise ValueError("lesion_patch needs a lesion (or a box); use background_patch for lesion-free slices")
    window = patch_window(box, context_factor, jitter, min_patch_size, rng)
    return square_window(image, label, window, image_size, spacing)


def background_patch(
    image: np.ndarray,
    label: np.ndarray,
    image_size: int,
    spacing: Sequence[float] = (1.0, 1.0),
    side: int = 64,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Crop mode ``"patch"`` for lesion-free slices: a ``side``-pixel square centred on a random breast pixel.

    Same arguments and returns as :func:`lesion_patch` (``side`` ≥ 1 is the window side in input pixels); the centre
    is drawn (``rng``) from :func:`breast_mask`, or from the whole image if the mask is empty.

    Raises:
        ValueError: ``image``/``label`` not 2-D of one non-empty shape, ``image_size < 1`` or ``side < 1``.
        DataError: NaN or Inf pixels.
    """
    image, label = np.asarray(image), np.asarray(label)
    check_pair_2d(image, label, image_size)
    return square_window(image, label, background_window(image, side, rng), image_size, spacing)


def background_window(image: np.ndarray, side: int = 64, rng: np.random.Generator | int | None = None):
    """A ``side``-pixel square window centred on a random breast pixel of ``image`` (``(H, W)``), drawn with ``rng``
    from :func:`breast_mask` (from the whole image when the mask is empty).

    Returns:
        ``(r0, c0, side)``; the window may extend beyond the image.

    Raises:
        ValueError: ``side < 1``.
    """
    if int(side) < 1:
        raise ValueError(f"side must be ≥ 1, got {side}")
    fg = breast_mask(image)
    rows, cols = np.nonzero(fg) if fg.any() else np.indices(image.shape).reshape(2, -1)
    i = int(as_rng(rng).integers(rows.size))
    return int(rows[i]) - side // 2, int(cols[i]) - side // 2, int(side)


def square_window(
    image: np.ndarray,
    label: np.ndarray,
    window: tuple[int, int, int],
    image_size: int,
    spacing: Sequence[float] = (1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The square ``window = (r0, c0, side)`` of an ``(H, W)`` slice and mask, padded where it leaves the slice
    (image -1 = windowed background, mask 0) and resized to ``image_size`` (:func:`_resize`).

    Returns:
        ``(image (n, n) float32 in [-1, 1], label (n, n) uint8 {0, 1}, (row_mm, col_mm) = spacing × side / n)``.
    """
    r0, c0, side = window
    img = crop_square(np.asarray(image, np.float32), r0, c0, side, -1.0)
    lab = crop_square(np.asarray(label, np.float32), r0, c0, side, 0.0)
    img, lab = _resize(img, lab, image_size)
    scale = side / image_size
    return img, lab, (float(spacing[0]) * scale, float(spacing[1]) * scale)


def square_outputs(
    image: np.ndarray,
    label: np.ndarray,
    image_size: int,
    spacing: Sequence[float] = (1.0, 1.0),
    crop_mode: str = "slice",
    patches_per_lesion: int = 1,
    context_factor: float = 2.0,
    jitter: float = 0.1,
    min_patch_size: int = 64,
    rng: np.random.Generator | int | None = None,
    min_component_area: int = 1,
) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[int, int, int]]]:
    """Every square output of one windowed, breast-cropped slice, with the window it was cut from.

    ``crop_mode="slice"``: one output, :func:`slice_window`. ``"patch"``: ``patches_per_lesion`` lesion-centred
    windows (:func:`patch_window`) per lesion component (``scipy.ndimage.label``, 4-connected) of at least
    ``min_component_area`` pixels (smaller ones, e.g. JPEG specks, get no window of their own), or, on a lesion-free
    slice, ``patches_per_lesion`` random breast windows of ``min_patch_size`` px (:func:`background_window`).

    Args:
        image: ``(H, W)`` float slice in [-1, 1]; label: ``(H, W)`` mask in {0, 1}.
        image_size: output side ``n``; spacing: input ``(row, column)`` spacing in mm.
        crop_mode: one of :data:`CROP_MODES`.
        patches_per_lesion, context_factor, jitter, min_patch_size, rng: patch mode (see :func:`patch_window`).

    Returns:
        ``[(image (n, n), label (n, n), output spacing, window (r0, c0, side)), ...]``.

    Raises:
        ValueError: unknown ``crop_mode``; see :func:`square_window`.
    """
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
    image, label = np.asarray(image), np.asarray(label)
    check_pair_2d(image, label, image_size)
    if crop_mode == "slice":
        windows = [slice_window(*image.shape)]
    elif label.any():
        components, n = ndimage.label(label > 0)
        areas = np.bincount(components.ravel(), minlength=n + 1)[1:]
        windows = [
            patch_window((box[0].start, box[0].stop, box[1].start, box[1].stop), context_factor, jitter,
                         min_patch_size, rng)
            for box, area in zip(ndimage.find_objects(components)[:n], areas, strict=True)
            if area >= min_component_area
            for _ in range(patches_per_lesion)
        ]  # fmt: skip
    else:
        windows = [background_window(image, min_patch_size, rng) for _ in range(patches_per_lesion)]
    return [(*square_window(image, label, w, image_size, spacing), w) for w in windows]
