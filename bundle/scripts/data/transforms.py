"""DBT slice transforms: lesion-slice selection, laterality, breast crop, percentile window, square crops.

Arrays are numpy; 2-D slices are ``(H, W)``, volumes ``(S, H, W)``; the spatial axes are always the last two, so a
leading slice or channel axis is carried along. Each operation exists as an array transform and as a dictionary
twin (MONAI style, e.g. ``ScaleIntensityRange`` / ``ScaleIntensityRanged``) that only maps keys onto it.

Source: PIG (Zhang et al., MICCAI 2025, arXiv:2507.14833), "Data": the blank background is cropped away, slices
are resized to 512×512 and intensities linearly scaled to [-1, 1]; the mask ``x0`` lies in {-1, +1}. How slices were
picked from the volumes, the percentiles and the laterality handling are not stated in the paper: they are this
bundle's choices, documented on each function.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import BorderPad, MapTransform, Resize, ScaleIntensityRange, Transform
from monai.utils import convert_to_numpy
from scipy import ndimage

from .case import DataError

__all__ = [
    "select_lesion_slices",
    "otsu_threshold",
    "breast_mask",
    "detect_breast_side",
    "lesion_bbox",
    "breast_bbox",
    "mask_to_signed",
    "square_slice",
    "patch_window",
    "lesion_patch",
    "background_patch",
    "NormalizeLaterality",
    "NormalizeLateralityd",
    "CropBreastRegion",
    "CropBreastRegiond",
    "PercentileWindow",
    "PercentileWindowd",
    "MaskToSigned",
    "MaskToSignedd",
]

Box = tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open, in pixels


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_finite(array: np.ndarray, what: str = "image") -> None:
    """Raise DataError when a float ``array`` holds NaN or Inf.

    NaN compares False with every threshold and Inf swallows every histogram bin, so without this check the Otsu
    threshold, the percentile window and the resize would return silently wrong (or NaN) results.
    """
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise DataError(f"{what} contains NaN or Inf values ({int(array.size - np.isfinite(array).sum())} pixels)")


def _as_float32(array, what: str = "image") -> np.ndarray:
    """``array`` as float32 after :func:`_check_finite`; DataError when finite values overflow float32 (> 3.4e38)."""
    array = np.asarray(array)
    _check_finite(array, what)
    with np.errstate(over="ignore"):  # overflow is reported below as a DataError, not as a RuntimeWarning
        out = array.astype(np.float32)
    if not np.isfinite(out).all():
        raise DataError(f"{what} has values beyond the float32 range (±3.4e38); rescale it first")
    return out


def _check_pair_2d(image: np.ndarray, label: np.ndarray, image_size: int) -> None:
    """Shared argument checks of the square-output functions (ValueError: wrong shapes or ``image_size < 1``)."""
    if image.ndim != 2 or label.shape != image.shape or min(image.shape) < 1:
        raise ValueError(f"expected non-empty (H, W) image and mask of one shape, got {image.shape}, {label.shape}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be ≥ 1, got {image_size}")


# --------------------------------------------------------------------------- slice selection
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
        keep.update(_rng(rng).choice(free, size=min(n_free, free.size), replace=False).tolist())
    return sorted(int(s) for s in keep)


# --------------------------------------------------------------------------- breast foreground
def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (maximum between-class variance) of ``values`` from a ``bins``-bin histogram.

    Returns the upper edge of the best bin, so ``values > t`` is the bright class; for constant input, that value.
    The result lies in ``[min(values), max(values)]``.

    Args:
        values: array of any shape and real dtype (bool, integers, floats); flattened.
        bins: histogram bins (≥ 2: a split needs two bins).

    Raises:
        ValueError: empty ``values``, ``bins < 2``, or a value range too large for float64 (``max - min`` = Inf).
        DataError: NaN or Inf values.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("otsu_threshold needs at least one value, got an empty array")
    if int(bins) < 2:
        raise ValueError(f"otsu_threshold needs bins ≥ 2 (one split between two bins), got {bins}")
    _check_finite(values, "otsu_threshold input")
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    if not np.isfinite(hi - lo):
        raise ValueError(f"value range [{lo:g}, {hi:g}] overflows float64; rescale the image first")
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    weight = np.cumsum(hist).astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    cum_mean = np.cumsum(hist * centres)
    total, total_mean = weight[-1], cum_mean[-1]
    w0, w1 = weight[:-1], total - weight[:-1]
    valid = (w0 > 0) & (w1 > 0)
    between = np.zeros_like(w0)
    m0 = cum_mean[:-1][valid] / w0[valid]
    m1 = (total_mean - cum_mean[:-1][valid]) / w1[valid]
    between[valid] = w0[valid] * w1[valid] * (m0 - m1) ** 2
    return float(edges[1 + int(np.argmax(between))])


def _foreground(image: np.ndarray) -> np.ndarray:
    """Pixels above the Otsu threshold of ``log1p(image - min)``.

    The log makes the dark-background/tissue gap the dominant split; on linear values a large bright lesion or dense
    tissue can win it and the "breast" shrinks to that region.
    """
    logged = np.log1p(np.asarray(image, dtype=np.float64) - float(np.min(image)))
    return logged > otsu_threshold(logged)


def breast_mask(image: np.ndarray) -> np.ndarray:
    """Breast foreground of a slice: Otsu threshold (on log intensities), largest connected component, holes filled.

    Args:
        image: ``(H, W)`` slice, any intensity range (bright = tissue).

    Returns:
        ``(H, W)`` bool mask; all False for a constant image.

    Raises:
        ValueError: ``image`` is not 2-D or is empty.
        DataError: NaN or Inf pixels.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty (H, W) slice, got shape {image.shape}")
    _check_finite(image)
    if float(image.max()) <= float(image.min()):
        return np.zeros(image.shape, bool)
    fg = _foreground(image)
    labels, n = ndimage.label(fg)
    if n > 1:
        sizes = ndimage.sum_labels(fg, labels, index=np.arange(1, n + 1))
        fg = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(fg)


def detect_breast_side(image: np.ndarray) -> str:
    """Image side on which the breast lies: the half of the columns holding more foreground pixels.

    Foreground is the Otsu-thresholded slice (:func:`breast_mask` without the component step; a small bright marker
    on the other side counts only by its area). Ties (e.g. a constant image) give ``"left"``.

    Args:
        image: ``(H, W)`` slice (bright = tissue), or ``(..., H, W)`` stack such as an ``(S, H, W)`` volume (the
            mean over the leading axes is used).

    Returns:
        ``"left"`` (breast at low column indices) or ``"right"``.

    Raises:
        ValueError: fewer than 2 dimensions or an empty array.
        DataError: NaN or Inf pixels.
    """
    image = np.asarray(image)
    if image.ndim < 2 or image.size == 0:
        raise ValueError(f"expected a non-empty (..., H, W) array, got shape {image.shape}")
    image = _as_float32(image).reshape(-1, *image.shape[-2:]).mean(axis=0)  # (H, W) mean projection
    if float(image.max()) <= float(image.min()):
        return "left"
    fg = _foreground(image)
    half = image.shape[-1] // 2
    left, right = fg[:, :half].sum(), fg[:, image.shape[-1] - half :].sum()
    return "right" if right > left else "left"


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
        side_key: dictionary entry with the known side (``"left"``/``"right"``/``None``); missing → detection.
    """

    def __init__(
        self, keys: KeysCollection, source_key: str = "image", side_key: str = "breast_side", allow_missing_keys=False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key, self.side_key = source_key, side_key
        self.op = NormalizeLaterality()

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict:
        d = dict(data)
        flip = self.op.needs_flip(d[self.source_key], d.get(self.side_key))
        for key in self.key_iterator(d):
            d[key] = self.op.flip(d[key], flip)
        d["flipped"] = flip
        return d


# --------------------------------------------------------------------------- boxes and crops
def lesion_bbox(label: np.ndarray) -> Box | None:
    """Bounding box ``(r0, r1, c0, c1)`` (half-open, pixels) of the nonzero pixels of an ``(H, W)`` mask, or None."""
    rows, cols = np.nonzero(np.asarray(label) > 0)
    if rows.size == 0:
        return None
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


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


# --------------------------------------------------------------------------- intensities
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
        img = _as_float32(img)
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


def mask_to_signed(mask) -> np.ndarray:
    """{0, 1} mask → float32 {-1, +1} (background -1, lesion +1): the ``x0`` convention of PIG. Any shape.

    Values > 0.5 count as lesion, so a mask that was already resized to [0, 1] floats is binarised too; NaN
    compares False and so becomes background (-1). Accepts numpy arrays and torch tensors; returns numpy.
    """
    return np.where(convert_to_numpy(mask) > 0.5, 1.0, -1.0).astype(np.float32)


class MaskToSigned(Transform):
    """Array transform of :func:`mask_to_signed` ({0, 1} → {-1, +1}, float32, same shape)."""

    def __call__(self, img):
        return mask_to_signed(img)


class MaskToSignedd(MapTransform):
    """Dictionary twin of :class:`MaskToSigned`."""

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = mask_to_signed(d[key])
        return d


# --------------------------------------------------------------------------- square outputs
def _resize(image: np.ndarray, label: np.ndarray, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``(h, w)`` image and mask to ``(image_size, image_size)``.

    Image: Gaussian anti-aliasing when shrinking, then bilinear. Mask: area averaging, then ``≥ 0.5`` (a lesion
    thinner than about one output pixel can vanish; callers check).
    """
    size = (image_size, image_size)
    image = _as_float32(image)
    # anti-aliasing as in skimage/MONAI (sigma = (scale - 1) / 2), but with edge-replicating borders: MONAI's
    # zero-padded Gaussian would lift the -1 background at the borders towards 0 (a bright frame).
    sigma = [max((n / image_size - 1) / 2, 0.0) for n in image.shape]
    if any(sigma):
        image = ndimage.gaussian_filter(image, sigma, mode="nearest")
    img = Resize(size, mode="bilinear", anti_aliasing=False)(image[None])
    lab = Resize(size, mode="area")(label[None].astype(np.float32))
    img = np.clip(convert_to_numpy(img, dtype=np.float32)[0], -1.0, 1.0)
    return img, (convert_to_numpy(lab)[0] >= 0.5).astype(np.uint8)


def square_slice(
    image: np.ndarray, label: np.ndarray, image_size: int, spacing: Sequence[float] = (1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Crop mode ``"slice"``: pad the (breast-cropped) slice to a square, then resize it to ``image_size``.

    Padding (image -1 = windowed background, mask 0) keeps the aspect ratio; the paper simply resizes to 512×512,
    which stretches the breast. Rows are padded on both sides, columns only on the right, so a breast normalised to
    the left (:class:`NormalizeLaterality`) keeps its chest wall at column 0.

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
    _check_pair_2d(image, label, image_size)
    h, w = image.shape
    side = max(h, w)
    border = [(side - h) // 2, side - h - (side - h) // 2, 0, side - w]  # top, bottom, left, right
    image = convert_to_numpy(BorderPad(border, mode="constant", value=-1.0)(image[None].astype(np.float32)))[0]
    label = convert_to_numpy(BorderPad(border, mode="constant", value=0)(label[None].astype(np.float32)))[0]
    img, lab = _resize(image, label, image_size)
    scale = side / image_size
    return img, lab, (float(spacing[0]) * scale, float(spacing[1]) * scale)


def _crop_square(array: np.ndarray, r0: int, c0: int, side: int, pad_value: float) -> np.ndarray:
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
    rng = _rng(rng)
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
    _check_pair_2d(image, label, image_size)
    box = box or lesion_bbox(label)
    if box is None:
        raise ValueError("lesion_patch needs a lesion (or a box); use background_patch for lesion-free slices")
    r0, c0, side = patch_window(box, context_factor, jitter, min_patch_size, rng)
    return _square_window(image, label, image_size, spacing, r0, c0, side)


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
    _check_pair_2d(image, label, image_size)
    if int(side) < 1:
        raise ValueError(f"side must be ≥ 1, got {side}")
    fg = breast_mask(image)
    rows, cols = np.nonzero(fg) if fg.any() else np.indices(image.shape).reshape(2, -1)
    i = int(_rng(rng).integers(rows.size))
    r0, c0 = int(rows[i]) - side // 2, int(cols[i]) - side // 2
    return _square_window(image, label, image_size, spacing, r0, c0, side)


def _square_window(image, label, image_size, spacing, r0, c0, side):
    img = _crop_square(np.asarray(image, np.float32), r0, c0, side, -1.0)
    lab = _crop_square(np.asarray(label, np.float32), r0, c0, side, 0.0)
    img, lab = _resize(img, lab, image_size)
    scale = side / image_size
    return img, lab, (float(spacing[0]) * scale, float(spacing[1]) * scale)
