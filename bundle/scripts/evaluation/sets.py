"""The one loader of pair sets for evaluation: prepared real slices and generated output folders, in memory.

Real set: a split of the prepared datalist (``scripts.data.prepare.prepare_dataset``; the same ``dataset_dir`` /
``image_size`` / ``crop_mode`` pipeline as training), slices mapped from [-1, 1] to [0, 1]. Generated set: the pairs
listed in ``<generated_dir>/manifest.csv`` (``scripts.common.writer.read_manifest``), slices in [0, 1], masks {0, 1},
pixel spacing from the NIfTI header. A folder of an image-only generator (DDPM/DDIM baselines: every manifest
``label`` empty) gives a set without masks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
import torch

from ..common.value_range import image_to_unit
from ..common.writer import read_manifest
from ..seg.folds import patient_folds

__all__ = ["GENERATED_HINT", "REAL_SPLITS", "PairSet", "load_real_set", "load_generated_set", "split_halves"]

#: appended to the message when a generated folder holds no manifest.
GENERATED_HINT = "expected a PIG inference output folder"


class PairSet:
    """A set of (slice, mask) pairs in memory.

    Attributes:
        images: (N, 1, H, W) float32 in [0, 1].
        masks: (N, 1, H, W) float32 in {0, 1}, or None for an image-only set (``masks=None``).
        spacings: N (row_mm, col_mm) pixel spacings, or None where unknown.
        patients: N patient ids (generated pairs: their manifest id).
        description: where the set came from (reported).
    """

    def __init__(self, images, masks, spacings, patients, description: dict) -> None:
        self.images = torch.as_tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)
        self.masks = (
            None if masks is None else torch.as_tensor((np.asarray(masks) > 0.5).astype(np.float32)).unsqueeze(1)
        )
        self.spacings = list(spacings)
        self.patients = [str(p) for p in patients]
        self.description = description

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: Sequence[int]) -> PairSet:
        """The pairs at ``index`` (same description)."""
        idx = list(index)
        out = PairSet.__new__(PairSet)
        out.images, out.masks = self.images[idx], None if self.masks is None else self.masks[idx]
        out.spacings = [self.spacings[i] for i in idx]
        out.patients = [self.patients[i] for i in idx]
        out.description = self.description
        return out


#: the real reference a generated set is compared with.
REAL_SPLITS = ("train", "validation", "all")


def _limit(n: int, max_images: int | None) -> int:
    return n if max_images is None else min(n, int(max_images))


def load_real_set(datalist: dict, split: str = "train", max_images: int | None = None) -> PairSet:
    """The prepared real slices of ``datalist[split]`` (first ``max_images``), slices mapped [-1, 1] → [0, 1].

    Args:
        datalist: ``prepare_dataset``'s output, or ``scripts.data.prepare.read_datalist`` of a ``datalist.json``
            (absolute ``image`` / ``label`` paths).
        split: ``"train"`` (what the generator learned from), ``"validation"`` or ``"all"`` (both, training items
            first).
        max_images: use at most this many items (None: all).

    Raises:
        ValueError: an unknown split, or the split is empty.
    """
    if split not in REAL_SPLITS:
        raise ValueError(f"real_split must be one of {REAL_SPLITS}, got {split!r}")
    pool = [it for name in (("train", "validation") if split == "all" else (split,)) for it in datalist.get(name) or []]
    items = pool[: _limit(len(pool), max_images)]
    if not items:
        raise ValueError(f"the real datalist has no '{split}' items to compare with")
    images, masks = [], []
    for it in items:
        img = np.asarray(nib.load(it["image"]).get_fdata(), dtype=np.float32)
        images.append(image_to_unit(img))  # windowing gives exactly [-1, 1]; the clip only catches rounding
        masks.append(np.asarray(nib.load(it["label"]).get_fdata()))
    desc = {
        "kind": "real",
        "split": split,
        "cache": datalist.get("cache"),
        "format": (datalist.get("params") or {}).get("format"),
        "n": len(items),
        "patients": len({str(it.get("patient_id")) for it in items}),
    }
    return PairSet(images, masks, [it.get("spacing_mm") for it in items], [it.get("patient_id") for it in items], desc)


def load_generated_set(generated_dir: str, image_size: int | None = None, max_images: int | None = None) -> PairSet:
    """The generated pairs of ``generated_dir`` through its ``manifest.csv`` (first ``max_images`` rows).

    An image-only folder (every ``label`` empty, as the DDPM/DDIM baselines write it) gives a set with
    ``masks=None`` and ``description["image_only"] = True``.

    Raises:
        FileNotFoundError / ValueError: see ``scripts.common.writer.read_manifest``; also an unset folder, an empty
            manifest, a slice that is not ``(image_size, image_size)`` or not in [0, 1], or a manifest that mixes
            rows with and without a label file (neither a pair set nor an image-only set).
    """
    if not generated_dir:
        raise ValueError("generated_dir is not set: pass --generated_dir <PIG inference output folder>")
    rows = read_manifest(generated_dir, hint=GENERATED_HINT)
    rows = rows[: _limit(len(rows), max_images)]
    if not rows:
        raise ValueError(f"{generated_dir}/manifest.csv lists no pairs")
    with_label = [bool(row["label"]) for row in rows]
    if any(with_label) and not all(with_label):
        raise ValueError(
            f"{generated_dir}/manifest.csv: {with_label.count(False)} of {len(rows)} rows have no label file; a folder "
            "must hold either (image, mask) pairs or image-only samples, not both"
        )
    image_only = not any(with_label)
    images, masks, spacings = [], [], []
    for row in rows:
        nii = nib.load(row["image"])
        img = np.asarray(nii.get_fdata(), dtype=np.float32)
        if image_size is not None and img.shape != (image_size, image_size):
            raise ValueError(f"{row['image']}: generated slice of shape {img.shape}, expected {image_size}² pixels")
        if not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
            raise ValueError(f"{row['image']}: generated slice values outside [0, 1]")
        images.append(img)
        if not image_only:
            masks.append(np.asarray(nib.load(row["label"]).get_fdata()))
        spacings.append([float(z) for z in nii.header.get_zooms()[:2]])
    desc = {"kind": "generated", "dir": os.path.abspath(generated_dir), "n": len(rows), "image_only": image_only}
    return PairSet(
        images, None if image_only else masks, spacings, [row.get("id", str(i)) for i, row in enumerate(rows)], desc
    )


def split_halves(patients: Sequence[str], seed: int = 0) -> tuple[list[int], list[int], str]:
    """Split item indices into two halves for the real-vs-real control.

    Patient-wise when there are at least 2 patients (``scripts.seg.folds.patient_folds`` with 2 folds and ``seed``,
    so no patient is in both halves — slices of one patient look alike and would flatter the control), otherwise a
    seeded item-wise split.

    Returns:
        ``(indices of half A, indices of half B, "patient-wise" | "item-wise")``.
    """
    ids = sorted({str(p) for p in patients})
    if len(ids) >= 2:
        folds = patient_folds(ids, num_folds=2, seed=seed)
        in_a = set(folds[0])
        a = [i for i, p in enumerate(patients) if str(p) in in_a]
        b = [i for i, p in enumerate(patients) if str(p) not in in_a]
        return a, b, "patient-wise"
    order = np.random.default_rng(seed).permutation(len(patients)).tolist()
    half = len(order) // 2
    return sorted(order[:half]), sorted(order[half:]), "item-wise"
