"""Writing generated (image, mask) pairs and their manifest without ever overwriting a file."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

__all__ = ["MANIFEST_FIELDS", "pair_paths", "check_free", "write_pair", "write_manifest", "read_manifest"]

logger = logging.getLogger(__name__)

MANIFEST_FIELDS = ("id", "image", "label", "seed", "sample_index", "lesion_area_px", "guider", "generator")


def pair_paths(output_dir: str, sample_id: str) -> tuple[str, str]:
    """``(<output_dir>/<id>_image.nii.gz, <output_dir>/<id>_label.nii.gz)``."""
    return (
        os.path.join(output_dir, f"{sample_id}_image.nii.gz"),
        os.path.join(output_dir, f"{sample_id}_label.nii.gz"),
    )


def check_free(paths: Sequence[str]) -> None:
    """Refuse before anything is written if any target exists or the folder is not writable.

    Raises:
        FileExistsError: names the first existing file.
        PermissionError: the output folder cannot be written.
    """
    for p in paths:
        if os.path.exists(p):
            msg = f"refusing to overwrite {p}: choose a new --output_dir or move the old outputs"
            logger.error(msg)  # MONAI wraps the exception in a long traceback; say it plainly first
            raise FileExistsError(msg)
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"output folder {folder} is not writable")


def _affine(spacing_mm: Sequence[float]) -> np.ndarray:
    return np.diag([float(spacing_mm[0]), float(spacing_mm[1]), 1.0, 1.0])


def write_pair(
    image: torch.Tensor,
    label: torch.Tensor | None,
    image_path: str,
    label_path: str | None,
    spacing_mm: Sequence[float],
) -> None:
    """Write one pair as 2-D NIfTI with nibabel (no resampling), the same affine for both.

    Args:
        image: (1, H, W) or (H, W) generated slice, float in [0, 1]; written as float32.
        label: (1, H, W) or (H, W) mask in {0, 1}; written as uint8. ``None`` for image-only generators (the DDPM /
            DDIM baselines): then only the image is written and ``label_path`` is ignored.
        image_path, label_path: target files (``.nii.gz``), must not exist (see ``check_free``).
        spacing_mm: (row, column) pixel spacing in mm, stored in the affine.
    """
    affine = _affine(spacing_mm)
    arrays = [(image, image_path, np.float32)] + ([] if label is None else [(label, label_path, np.uint8)])
    for arr, path, dtype in arrays:
        data = torch.as_tensor(arr).detach().cpu().reshape(arr.shape[-2:]).numpy().astype(dtype)
        img = nib.Nifti1Image(data, affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, path)


def write_manifest(path: str, rows: list[dict], fields: Sequence[str] = MANIFEST_FIELDS) -> None:
    """Write ``manifest.csv`` (columns ``fields``, PIG's ``MANIFEST_FIELDS`` by default; paths relative to its
    folder); refuses to overwrite. Baselines pass ``MANIFEST_FIELDS`` plus their own columns, so PIG's columns keep
    their names and order for every generator."""
    if os.path.exists(path):
        raise FileExistsError(f"refusing to overwrite {path}")
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def read_manifest(folder: str, hint: str = "expected a PIG inference output folder") -> list[dict]:
    """Rows of ``<folder>/manifest.csv`` with absolute, resolved ``image``/``label`` paths, in file order.

    The one reader of generated-pair manifests (segmentation's synthetic pairs, ``pair_stats``): a manifest may only
    describe files inside its own folder, so a tampered or hand-edited manifest cannot make a run read (or, via
    ``synthetic_dir``, train on) files elsewhere.

    Args:
        folder: the folder holding ``manifest.csv`` (written by :func:`write_manifest`, paths relative to it).
        hint: appended to the missing-manifest message.

    Returns:
        One dict per row (all columns as strings), ``image`` and ``label`` replaced by absolute paths; an empty
        ``label`` (a sample of an image-only generator, see ``scripts.baselines``) stays ``""``.

    Raises:
        FileNotFoundError: no folder, no ``manifest.csv`` or a listed file missing (line number given).
        ValueError: missing ``image``/``label`` columns, or a path that leaves ``folder`` (absolute elsewhere, ``..``,
            or a symlink pointing out); the message says ``points outside`` and gives the line.
    """
    root = Path(folder).resolve()
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no manifest.csv; {hint}")
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"image", "label"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{manifest}: needs 'image' and 'label' columns, has {reader.fieldnames}")
        rows = list(reader)
    out = []
    for n, row in enumerate(rows, start=2):  # line numbers as a text editor shows them (header = 1)
        for key in ("image", "label"):
            if key == "label" and not row[key]:
                continue  # image-only generators (DDPM/DDIM baselines) write no mask; callers that need one refuse
            path = (root / row[key]).resolve()  # resolve() follows symlinks: a link inside pointing out is caught
            if not path.is_relative_to(root):
                raise ValueError(
                    f"{manifest}, line {n}: {key} path {row[key]!r} points outside {root}; refusing to read it"
                )
            if not path.is_file():
                raise FileNotFoundError(f"{manifest}, line {n}: {key} file {path} not found")
            row[key] = str(path)
        out.append(row)
    return out
