"""Generated PIG pairs as extra *training* items for the segmentation network, and the count the loader sees.

A PIG inference folder holds ``manifest.csv`` (``id, image, label, ...``, paths relative to the folder),
``<id>_image.nii.gz`` (float32 in [0, 1]) and ``<id>_label.nii.gz`` (uint8 {0, 1}); see ``scripts.common.writer``.
The real prepared slices are in [-1, 1], so synthetic items carry ``"synthetic": 1`` and
:class:`SyntheticToRealRanged` maps their image with ``2 x - 1``. Synthetic items are only ever added to the training
list (``seg_train.json``: ``train#dataset#data``), never to the inner validation set or the held-out fold.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Hashable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
from ignite.engine import Engine, Events
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage

from ..common.value_range import unit_to_image
from ..common.writer import read_manifest

__all__ = [
    "SYNTHETIC_KEY",
    "SYNTHETIC_HINT",
    "quality_gate",
    "SyntheticItems",
    "synthetic_items",
    "SyntheticToRealRanged",
    "DataCountLogger",
]

logger = logging.getLogger(__name__)

#: item key that marks a generated pair (1) as opposed to a real slice (absent or 0).
SYNTHETIC_KEY = "synthetic"
#: appended to the message when ``synthetic_dir`` holds no manifest.
SYNTHETIC_HINT = "synthetic_dir must be a PIG inference output folder"


def _mask_shape(label_path: str) -> tuple[int, int]:
    """(lesion pixels, 8-connected components) of a {0, 1} label file: the counts of
    ``scripts.evaluation.mask_stats``, computed here so that seg/ does not depend on the evaluation package."""
    mask = np.asarray(nib.load(label_path).dataobj) > 0
    return int(mask.sum()), int(ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))[1])


def quality_gate(rows: list[dict], max_components: int, real_items: list[dict]) -> tuple[list[dict], dict]:
    """Keep the generated pairs whose mask looks like a real one: not empty, at most ``max_components``
    8-connected components, and a lesion area within [min, max] of the real training masks' areas.

    Args:
        rows: manifest rows (``read_manifest``: absolute ``label`` paths), in manifest order.
        max_components: the most components a kept mask may have (>= 1).
        real_items: the real training items (``label`` paths of prepared {0, 1} masks) that give the area range.

    Returns:
        ``(kept rows in order, report)``; the report holds ``listed``, ``kept``, ``dropped_empty``,
        ``dropped_components``, ``dropped_area``, ``max_components`` and ``area_range_px`` (each dropped pair is
        counted under its first failed rule, in that order).

    Raises:
        ValueError: ``max_components`` < 1, or no real item to take the area range from.
    """
    if int(max_components) < 1:
        raise ValueError(f"synthetic_max_components must be >= 1, got {max_components}")
    areas = [_mask_shape(it["label"])[0] for it in real_items]
    areas = [a for a in areas if a > 0]
    if not areas:
        raise ValueError("the synthetic quality gate needs real training masks with a lesion, for its area range")
    lo, hi = min(areas), max(areas)
    report = {"listed": len(rows), "kept": 0, "dropped_empty": 0, "dropped_components": 0, "dropped_area": 0,
              "max_components": int(max_components), "area_range_px": [lo, hi]}  # fmt: skip
    kept = []
    for row in rows:
        area, components = _mask_shape(row["label"])
        if area == 0:
            report["dropped_empty"] += 1
        elif components > int(max_components):
            report["dropped_components"] += 1
        elif not lo <= area <= hi:
            report["dropped_area"] += 1
        else:
            kept.append(row)
    report["kept"] = len(kept)
    return kept, report


class SyntheticItems(list):
    """The list :func:`synthetic_items` returns, with the quality gate's report (``gate_report``; ``None`` when the
    gate is off) for the run record."""

    gate_report: dict | None = None


def synthetic_items(
    synthetic_dir: str | None,
    num_synthetic: int | None = None,
    synthetic_ratio: float | None = None,
    num_real: int = 0,
    image_size: int | None = None,
    max_components: int | None = None,
    real_items: list[dict] | None = None,
    use_real: bool = True,
) -> SyntheticItems:
    """The generated pairs to add to the training set.

    The first ``n`` manifest rows are used (so smaller sets are subsets of larger ones), with ``n = num_synthetic``,
    or ``round(synthetic_ratio × num_real)``, or every row when both are ``None``. With ``max_components`` set, the
    :func:`quality_gate` runs first and the ``n`` are taken from the pairs it keeps; its counts are logged.

    Args:
        synthetic_dir: PIG inference output folder; ``None``/``""`` → no synthetic data.
        num_synthetic: number of pairs (≥ 0).
        synthetic_ratio: pairs per real training item (≥ 0), e.g. 1.0 doubles the training set.
        num_real: the number of real training items (for ``synthetic_ratio``).
        image_size: when given, every synthetic slice must be ``(image_size, image_size)`` (checked from headers).
        max_components: turns the quality gate on (``None``: off, every listed pair may be used).
        real_items: the real training items, for the gate's area range.
        use_real: whether the real training items are trained on too (``use_real_train``); ``False`` (synthetic
            only) needs at least one pair.

    Returns:
        Items ``{"image", "label" (absolute paths), "synthetic": 1, "case_id": id, "patient_id": "synthetic"}``.

    Raises:
        ValueError: both counts given, a count without ``synthetic_dir``, a negative count, more pairs requested than
            the manifest lists (or than the quality gate kept), a slice of the wrong size, a bad gate setting, a
            manifest path outside ``synthetic_dir``, or a folder of image-only samples (empty ``label``: nothing to
            segment), or no pair at all with ``use_real`` off (nothing to train on).
        FileNotFoundError: no folder, no ``manifest.csv`` or a listed file missing
            (``scripts.common.writer.read_manifest``).
    """
    if num_synthetic is not None and synthetic_ratio is not None:
        raise ValueError("give num_synthetic or synthetic_ratio, not both")
    if not synthetic_dir:
        if num_synthetic or synthetic_ratio:
            raise ValueError("num_synthetic/synthetic_ratio need synthetic_dir (a PIG inference output folder)")
        if not use_real:
            raise ValueError("use_real_train is false but no synthetic_dir is given: nothing to train on")
        return SyntheticItems()
    rows = read_manifest(synthetic_dir, hint=SYNTHETIC_HINT)
    if any(not row["label"] for row in rows):
        raise ValueError(
            f"{synthetic_dir}: manifest rows without a label file: this folder holds image-only samples (e.g. the "
            "DDPM/DDIM baseline), but segmentation training needs (image, mask) pairs; use a PIG or a "
            "mask-conditional baseline (concat, controlnet) output folder"
        )
    if num_synthetic is not None:
        n = int(num_synthetic)
    elif synthetic_ratio is not None:
        n = int(round(float(synthetic_ratio) * num_real))
    else:
        n = None  # every pair (that passes the gate)
    listed = len(rows)
    if n is not None and n < 0:
        raise ValueError(f"the number of synthetic pairs must be >= 0, got {n}")
    if n is not None and n > len(rows):
        raise ValueError(f"{synthetic_dir}: {n} synthetic pairs requested, the manifest lists only {len(rows)}")
    report = None
    if max_components is not None:
        rows, report = quality_gate(rows, max_components, real_items or [])
        logger.info(
            "%s: synthetic quality gate kept %d of %d pairs (dropped: %d empty, %d with more than %d components, "
            "%d with an area outside the real %d-%d px)", synthetic_dir, report["kept"], report["listed"],
            report["dropped_empty"], report["dropped_components"], report["max_components"], report["dropped_area"],
            *report["area_range_px"],
        )  # fmt: skip
        if n is not None and n > len(rows):
            raise ValueError(
                f"{synthetic_dir}: {n} synthetic pairs requested, the quality gate kept only {len(rows)} of "
                f"{report['listed']}; generate more pairs, ask for fewer, or loosen synthetic_max_components"
            )
    items = SyntheticItems()
    items.gate_report = report
    for row in rows[: len(rows) if n is None else n]:
        if image_size is not None:
            shape = tuple(nib.load(row["image"]).shape)
            if shape != (image_size, image_size):
                raise ValueError(f"{row['image']}: synthetic slice of shape {shape}, expected {image_size}² pixels")
        cid = row.get("id") or Path(row["image"]).name
        items.append(
            {"image": row["image"], "label": row["label"], SYNTHETIC_KEY: 1, "case_id": cid, "patient_id": "synthetic"}
        )
    if not use_real and not items:
        raise ValueError(f"{synthetic_dir}: use_real_train is false and 0 synthetic pairs were selected: nothing to "
                         "train on")
    logger.info("%d synthetic pair(s) from %s (%d listed)", len(items), synthetic_dir, listed)
    return items


class SyntheticToRealRanged(MapTransform):
    """Map the image of a synthetic item from PIG's [0, 1] to the real slices' [-1, 1] (``2 x - 1``).

    Items without a truthy ``flag_key`` (real slices) pass unchanged. Run it after loading, before any intensity
    augmentation.

    Args:
        keys: image key(s) to map, e.g. ``"image"`` (never the label).
        flag_key: item key marking synthetic items.
    """

    def __init__(self, keys: KeysCollection, flag_key: str = SYNTHETIC_KEY, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.flag_key = flag_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if d.get(self.flag_key):
            for key in self.key_iterator(d):
                d[key] = unit_to_image(d[key])
        return d


def _counts(dataset) -> dict:
    items = list(getattr(dataset, "data", []) or [])
    synthetic = sum(1 for it in items if isinstance(it, Mapping) and it.get(SYNTHETIC_KEY))
    patients = {str(it["patient_id"]) for it in items if isinstance(it, Mapping) and "patient_id" in it}
    patients.discard("synthetic")
    return {"real": len(items) - synthetic, "synthetic": synthetic, "total": len(items), "patients": sorted(patients)}


class DataCountLogger:
    """Ignite handler: when training starts, log the real and synthetic item counts of the loaders' datasets.

    Counts come from the datasets the engines actually iterate (``engine.data_loader.dataset.data``), so they hold
    whatever ``train#dataset#data`` finally was (CLI overrides, MONAI Label's lists included). Also writes them to
    ``<summary_dir>/seg_data.json`` when ``summary_dir`` is given.

    Args:
        val_loader: the validation loader, to report its counts too (optional).
        summary_dir: folder for ``seg_data.json`` (optional).
    """

    def __init__(self, val_loader=None, summary_dir: str | None = None) -> None:
        self.val_loader = val_loader
        self.summary_dir = summary_dir

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        summary = {"train": _counts(engine.data_loader.dataset)}
        if self.val_loader is not None:
            summary["validation"] = _counts(self.val_loader.dataset)
        t = summary["train"]
        logger.info("training set as loaded: %d real + %d synthetic = %d items", t["real"], t["synthetic"], t["total"])
        if "validation" in summary:
            v = summary["validation"]
            logger.info("validation set as loaded: %d real + %d synthetic items", v["real"], v["synthetic"])
            if v["synthetic"]:
                raise RuntimeError("synthetic items in the validation set: they belong to the training set only")
        if self.summary_dir:
            os.makedirs(self.summary_dir, exist_ok=True)
            path = os.path.join(self.summary_dir, "seg_data.json")
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=1)
            os.replace(path + ".tmp", path)
