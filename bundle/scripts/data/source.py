"""Raw source images to network input and back: the slice pipeline's steps, recorded so that a prediction returns
to the exact grid of the file it came from.

Inference runs the training pipeline (:mod:`scripts.data.prepare`) on any file :func:`~.readers.read_array`
accepts (2-D slice, 3-D volume slice by slice, DICOM incl. DBT multi-frame):

* ``crop_mode="slice"`` (the network saw whole breasts): laterality flip of the volume
  (:class:`~.laterality.NormalizeLaterality`), then per slice the breast box (:func:`~.crops.breast_bbox`), the
  percentile window to [-1, 1] (:class:`~.intensity.PercentileWindow`), the padded square
  (:func:`~.crops.slice_window`) resized to ``image_size`` — exactly the steps of training, without the lesion box
  (unknown here). Network input ``(S, n, n)``.
* ``crop_mode="patch"`` (the network saw lesion-centred windows): flip, window per slice (percentiles inside the
  breast), and a resize of the whole slice to the training pixel spacing, so that a sliding window of
  ``image_size`` pixels sees lesions at the physical scale of training. Network input ``(S, h', w')``.

:func:`from_network` undoes every step on a foreground-probability map (resize back, threshold at 0.5, paste into
the breast box, unflip). The record is a JSON string (``"geometry"`` of the data dictionary) so that it passes
through MONAI's collate / decollate and MONAI Label's transforms unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize
from monai.utils import convert_to_numpy

from .case import DataError
from .crops import CROP_MODES, breast_bbox, crop_square, resize_image, slice_window
from .intensity import PercentileWindow
from .laterality import NormalizeLaterality
from .readers import implied_affine_ras, itk_pixel_spacing, read_array

__all__ = [
    "SOURCE_KINDS",
    "source_kind",
    "to_network",
    "from_network",
    "check_network_input",
    "LoadSourced",
    "RestoreSourced",
]

logger = logging.getLogger(__name__)

#: how an input file is treated: ``raw`` (any image: the whole pipeline), ``prepared`` (a slice of a prepared set,
#: already ``image_size`` square in [-1, 1]: used as is), ``auto`` (``prepared`` for ``*_image.nii[.gz]`` files in a
#: folder holding the prepared set's ``datalist.json``, else ``raw``).
SOURCE_KINDS = ("auto", "raw", "prepared")


def source_kind(path: str | Path, kind: str = "auto") -> str:
    """``"raw"`` or ``"prepared"`` for ``path`` under the choice ``kind`` (see :data:`SOURCE_KINDS`).

    Raises:
        ValueError: ``kind`` not in :data:`SOURCE_KINDS`.
    """
    if kind not in SOURCE_KINDS:
        raise ValueError(f"source_kind must be one of {SOURCE_KINDS}, got {kind!r}")
    if kind != "auto":
        return kind
    path = Path(path)
    prepared = path.name.endswith(("_image.nii.gz", "_image.nii")) and (path.parent / "datalist.json").is_file()
    return "prepared" if prepared else "raw"


def _resize_probability(prob: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``(h, w)`` probabilities resized to ``shape`` (bilinear, anti-aliased when shrinking), float32 in [0, 1]."""
    out = Resize(tuple(int(s) for s in shape), mode="bilinear", anti_aliasing=True)(np.asarray(prob, np.float32)[None])
    return np.clip(convert_to_numpy(out, dtype=np.float32)[0], 0.0, 1.0)


def to_network(
    volume: np.ndarray,
    spacing: Sequence[float],
    image_size: int,
    crop_mode: str = "slice",
    window_percentiles: Sequence[float] = (0.5, 99.5),
    breast_side: str | None = None,
    training_spacing_mm: Sequence[float] | None = None,
    margin: int = 4,
) -> tuple[np.ndarray, dict]:
    """A raw ``(S, H, W)`` volume as the segmentation network's input, with the record that inverts it.

    Args:
        volume: ``(S, H, W)`` raw intensities (bright = tissue), any range.
        spacing: ``(slice, row, column)`` mm of ``volume``.
        image_size: the network's training side ``n`` (pixels).
        crop_mode: the training ``crop_mode`` (:data:`~.crops.CROP_MODES`).
        window_percentiles: the training percentile window ``(lower, upper)``.
        breast_side: ``"left"``/``"right"`` when the source says so (DICOM laterality), else detected.
        training_spacing_mm: ``(row, column)`` mm per network pixel at training; patch mode only (required there).
        margin: breast-box margin in pixels (as in training, :class:`~.crops.CropBreastRegion`).

    Returns:
        ``(array, record)``: ``array`` float32 in [-1, 1], ``(S, n, n)`` in slice mode or ``(S, h', w')`` (the
        slices at the training spacing) in patch mode; ``record`` (JSON-serialisable) holds ``crop_mode``,
        ``source_shape``, ``flipped`` and per slice ``crop_bbox`` ``[r0, r1, c0, c1]``, ``window`` ``[r0, c0, side]``
        (slice mode) or the resized ``shape`` (patch mode); a constant slice (e.g. an empty DBT plane) is marked
        ``"empty"`` and given the background value -1.

    Raises:
        ValueError: ``volume`` not 3-D, unknown ``crop_mode``, or patch mode without ``training_spacing_mm``.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise ValueError(f"expected a non-empty (S, H, W) volume, got shape {volume.shape}")
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
    n = int(image_size)
    laterality = NormalizeLaterality(breast_side)
    flip = laterality.needs_flip(volume)
    volume = laterality.flip(volume, flip)
    window = PercentileWindow(*window_percentiles)
    record = {"crop_mode": crop_mode, "source_shape": [int(v) for v in volume.shape], "flipped": bool(flip)}
    h, w = volume.shape[1:]
    if crop_mode == "patch":
        if not training_spacing_mm:
            raise ValueError("patch mode needs the training pixel spacing (training_spacing_mm)")
        # network pixels per source pixel, per axis: the training spacing is the physical scale the network knows
        pairs = zip((h, w), spacing[1:], training_spacing_mm, strict=True)
        shape = [max(int(round(size * float(s) / float(t))), 1) for size, s, t in pairs]
        record["shape"] = shape
    out, slices = [], []
    for s in range(volume.shape[0]):
        img = volume[s]
        try:
            if crop_mode == "slice":
                box = breast_bbox(img, None, margin)
                crop = window(img[box[0] : box[1], box[2] : box[3]])
                r0, c0, side = slice_window(*crop.shape)
                out.append(resize_image(crop_square(crop, r0, c0, side, -1.0), (n, n)))
                slices.append({"crop_bbox": [int(v) for v in box], "window": [int(r0), int(c0), int(side)]})
            else:
                out.append(resize_image(window(img), shape))
                slices.append({})
        except DataError:  # a constant slice has no window: nothing to segment there
            out.append(np.full((n, n) if crop_mode == "slice" else shape, -1.0, np.float32))
            slices.append({"empty": True})
    record["slices"] = slices
    return np.stack(out).astype(np.float32), record


def from_network(prob: np.ndarray, record: Mapping) -> np.ndarray:
    """Map a foreground-probability map from the network's grid back to the source grid of :func:`to_network`.

    Args:
        prob: ``(S, n, n)`` (slice mode) or ``(S, h', w')`` (patch mode) lesion probabilities in [0, 1].
        record: the record :func:`to_network` returned (or its JSON text).

    Returns:
        uint8 ``(S, H, W)`` mask in {0, 1} on the source grid (``record["source_shape"]``), unflipped: probabilities
        are resized back bilinearly and thresholded at 0.5; pixels outside the breast box and empty slices are 0.

    Raises:
        ValueError: ``prob``'s slice count does not match the record.
    """
    record = json.loads(record) if isinstance(record, str) else record
    prob = np.asarray(prob, np.float32)
    S, H, W = record["source_shape"]
    if prob.ndim != 3 or prob.shape[0] != S:
        raise ValueError(f"expected ({S}, ...) probabilities for a source of shape {(S, H, W)}, got {prob.shape}")
    mask = np.zeros((S, H, W), np.uint8)
    for s, sl in enumerate(record["slices"]):
        if sl.get("empty"):
            continue
        if record["crop_mode"] == "patch":
            mask[s] = _resize_probability(prob[s], (H, W)) >= 0.5
            continue
        r0b, r1b, c0b, c1b = sl["crop_bbox"]
        r0, c0, side = sl["window"]
        square = _resize_probability(prob[s], (side, side)) >= 0.5
        h, w = r1b - r0b, c1b - c0b
        # the square's part that lies inside the crop (the rest was padding)
        sr0, sr1, sc0, sc1 = max(r0, 0), min(r0 + side, h), max(c0, 0), min(c0 + side, w)
        mask[s, r0b + sr0 : r0b + sr1, c0b + sc0 : c0b + sc1] = square[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0]
    return NormalizeLaterality.flip(mask, bool(record["flipped"]))


def check_network_input(array: np.ndarray | torch.Tensor, path: str, kind: str) -> None:
    """Refuse a network input outside the segmenter's training range, naming the file and the source it saw.

    The network was trained on slices in [-1, 1] (:mod:`scripts.common.value_range`); a generated-pair folder's
    images (``manifest.csv`` beside them) are in [0, 1] and raw files in scanner units. Raw files always pass
    through the window, so this catches files used as ``prepared`` that are not.

    Raises:
        DataError: NaN/Inf; values outside [-1, 1] (beyond 1e-3, resampling round-off); a generated-pair image
            used as ``prepared``.
    """
    x = convert_to_numpy(array, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: network input holds NaN or Inf values")
    lo, hi = float(x.min()), float(x.max())
    if kind == "prepared" and (Path(path).parent / "manifest.csv").is_file():
        raise DataError(
            f"{path}: a generated-pair image (manifest.csv beside it; values in [0, 1], saw [{lo:.3g}, {hi:.3g}]) "
            "is not a prepared slice ([-1, 1]): segment it as a raw image (--source_kind raw or auto)"
        )
    if lo < -1.001 or hi > 1.001:
        what = "a prepared slice" if kind == "prepared" else "a raw image after the window"
        hint = "; read it as a raw image (--source_kind raw)" if kind == "prepared" else ""
        raise DataError(f"{path}: {what} must lie in [-1, 1], saw [{lo:.3g}, {hi:.3g}] (scanner units?){hint}")


class LoadSourced(MapTransform):
    """Read ``d[key]`` (a path) into the network input and the record that maps predictions back.

    Sets ``d[key]`` to a float32 tensor ``(1, S, n, n)`` (slice mode, or a prepared slice) or ``(1, S, h', w')``
    (patch mode) in [-1, 1], checked by :func:`check_network_input`; ``d["geometry"]`` to the JSON record
    (:func:`to_network`'s, plus ``path``, ``kind``, ``spacing``, ``affine_ras`` (PNG/JPEG: the geometry ITK and
    Slicer give them: :func:`~.readers.implied_affine_ras` with the header's pixel spacing as ITK reads it,
    :func:`~.readers.itk_pixel_spacing`; null when unknown), ``format``); and
    ``d["source_path"]`` to the path. An item's ``"breast_side"`` (``"left"``/``"right"``), when given, replaces
    the detection of the image side.

    Args:
        keys: the image key (one).
        image_size, crop_mode, window_percentiles, training_spacing_mm, margin: as :func:`to_network`, the values
            the network was trained with.
        kind: one of :data:`SOURCE_KINDS`.

    Raises:
        DataError: unreadable file (names it, see :func:`~.readers.read_array`); a prepared slice that is not
            ``image_size`` square or outside the range.
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_size: int,
        crop_mode: str = "slice",
        window_percentiles: Sequence[float] = (0.5, 99.5),
        training_spacing_mm: Sequence[float] | None = None,
        kind: str = "auto",
        margin: int = 4,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if kind not in SOURCE_KINDS:
            raise ValueError(f"source_kind must be one of {SOURCE_KINDS}, got {kind!r}")
        self.image_size, self.crop_mode, self.kind = int(image_size), crop_mode, kind
        self.window_percentiles, self.margin = tuple(window_percentiles), margin
        self.training_spacing_mm = list(training_spacing_mm) if training_spacing_mm else None

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            kind = source_kind(path, self.kind)
            volume, spacing, info = read_array(path)
            volume = volume.astype(np.float32, copy=False)
            if kind == "prepared":
                if volume.shape[1:] != (self.image_size, self.image_size):
                    raise DataError(
                        f"{path}: a prepared slice must be {self.image_size}×{self.image_size} (the network's "
                        f"image_size), got {volume.shape[1:]}; read it as a raw image (--source_kind raw)"
                    )
                array, record = volume, {"crop_mode": "prepared", "source_shape": list(volume.shape), "slices": []}
            else:
                # the image side is detected, as training does for files (a DICOM laterality does not say on which
                # image side the breast is drawn); an item's own "breast_side" wins
                side = d.get("breast_side")
                array, record = to_network(
                    volume, spacing, self.image_size, self.crop_mode, self.window_percentiles, side,
                    self.training_spacing_mm, self.margin,
                )  # fmt: skip
            check_network_input(array, path, kind)
            affine = info.get("affine_ras")
            if affine is None and info.get("format") == "pil":  # so that the mask overlays the PNG/JPEG in Slicer
                affine = implied_affine_ras((spacing[0], *itk_pixel_spacing(path)))
            record.update(
                path=os.path.abspath(path),
                kind=kind,
                spacing=[float(s) for s in spacing],
                affine_ras=None if affine is None else np.asarray(affine, float).tolist(),
                format=info.get("format"),
            )
            d[key] = torch.as_tensor(array)[None]
            d["geometry"] = json.dumps(record)
            d["source_path"] = path
        return d


class RestoreSourced(MapTransform):
    """Turn the network output ``d[key]`` into a uint8 mask ``(S, H, W)`` on the source grid of ``d["geometry"]``.

    ``d[key]``: ``(2, S, h, w)`` class probabilities (after softmax; channel 1 = lesion) or ``(1, S, h, w)``
    lesion probabilities, on the network grid of :class:`LoadSourced`. Prepared slices come back as
    ``probability ≥ 0.5`` on their own grid.
    """

    def __init__(self, keys: KeysCollection, geometry_key: str = "geometry", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.geometry_key = geometry_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        record = json.loads(d[self.geometry_key])
        for key in self.key_iterator(d):
            prob = convert_to_numpy(d[key], dtype=np.float32)
            prob = prob[-1]  # lesion channel
            if record["crop_mode"] == "prepared":
                d[key] = (prob >= 0.5).astype(np.uint8)
            else:
                d[key] = from_network(prob, record)
        return d
