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
from ignite.engine import Engine, Events
from monai.config import KeysCollection
from monai.transforms import MapTransform

from ..common.value_range import unit_to_image
from ..common.writer import read_manifest

__all__ = ["SYNTHETIC_KEY", "SYNTHETIC_HINT", "synthetic_items", "SyntheticToRealRanged", "DataCountLogger"]

logger = logging.getLogger(__name__)

#: item key that marks a generated pair (1) as opposed to a real slice (absent or 0).
SYNTHETIC_KEY = "synthetic"
#: appended to the message when ``synthetic_dir`` holds no manifest.
SYNTHETIC_HINT = "synthetic_dir must be a PIG inference output folder"


def synthetic_items(
    synthetic_dir: str | None,
    num_synthetic: int | None = None,
    synthetic_ratio: float | None = None,
    num_real: int = 0,
    image_size: int | None = None,
) -> list[dict]:
    """The generated pairs to add to the training set.

    The first ``n`` manifest rows are used (so smaller sets are subsets of larger ones), with ``n = num_synthetic``,
    or ``round(synthetic_ratio × num_real)``, or every row when both are ``None``.

    Args:
        synthetic_dir: PIG inference output folder; ``None``/``""`` → no synthetic data.
        num_synthetic: number of pairs (≥ 0).
        synthetic_ratio: pairs per real training item (≥ 0), e.g. 1.0 doubles the training set.
        num_real: the number of real training items (for ``synthetic_ratio``).
        image_size: when given, every synthetic slice must be ``(image_size, image_size)`` (checked from headers).

    Returns:
        Items ``{"image", "label" (absolute paths), "synthetic": 1, "case_id": id, "patient_id": "synthetic"}``.

    Raises:
        ValueError: both counts given, a count without ``synthetic_dir``, a negative count, more pairs requested than
            the manifest lists, a slice of the wrong size, a manifest path outside ``synthetic_dir``, or a folder of
            image-only samples (empty ``label``: nothing to segment).
        FileNotFoundError: no folder, no ``manifest.csv`` or a listed file missing
            (``scripts.common.writer.read_manifest``).
    """
    if num_synthetic is not None and synthetic_ratio is not None:
        raise ValueError("give num_synthetic or synthetic_ratio, not both")
    if not synthetic_dir:
        if num_synthetic or synthetic_ratio:
            raise ValueError("num_synthetic/synthetic_ratio need synthetic_dir (a PIG inference output folder)")
        return []
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
        n = len(rows)
    if n < 0:
        raise ValueError(f"the number of synthetic pairs must be >= 0, got {n}")
    if n > len(rows):
        raise ValueError(f"{synthetic_dir}: {n} synthetic pairs requested, the manifest lists only {len(rows)}")
    items = []
    for row in rows[:n]:
        if image_size is not None:
            shape = tuple(nib.load(row["image"]).shape)
            if shape != (image_size, image_size):
                raise ValueError(f"{row['image']}: synthetic slice of shape {shape}, expected {image_size}² pixels")
        cid = row.get("id") or Path(row["image"]).name
        items.append(
            {"image": row["image"], "label": row["label"], SYNTHETIC_KEY: 1, "case_id": cid, "patient_id": "synthetic"}
        )
    logger.info("%d synthetic pair(s) from %s (%d listed)", len(items), synthetic_dir, len(rows))
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
