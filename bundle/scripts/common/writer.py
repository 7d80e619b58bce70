"""Output folders of generated (image, mask) pairs: files, ``manifest.csv``, and the one reader of such manifests.

Every generator (PIG and the baselines) writes through :func:`write_samples`; nothing here ever overwrites a file.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from . import distributed
from .checkpoint import file_sha256

__all__ = [
    "MANIFEST_FIELDS",
    "pair_paths",
    "check_free",
    "write_pair",
    "write_manifest",
    "read_manifest",
    "checkpoint_column",
    "extra_paths",
    "write_samples",
]

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


def checkpoint_column(path: str) -> str:
    """Manifest entry for a weight file: ``<file name>:sha256=<first 16 hex digits of its SHA-256>``."""
    return f"{os.path.basename(path)}:sha256={file_sha256(path)[:16]}"


def extra_paths(output_dir: str, sample_id: str, formats: Sequence[str]) -> dict[str, str | tuple[str, str]]:
    """The files of a pair's extra formats: ``seg.nrrd`` → ``<id>_label.seg.nrrd``; ``dicom_seg`` →
    ``(<id>_image.dcm, <id>_label_seg.dcm)``; ``nifti`` has none here (:func:`pair_paths`)."""
    out: dict = {}
    if "seg.nrrd" in formats:
        out["seg.nrrd"] = os.path.join(output_dir, f"{sample_id}_label.seg.nrrd")
    if "dicom_seg" in formats:
        out["dicom_image"] = os.path.join(output_dir, f"{sample_id}_image.dcm")
        out["dicom_seg"] = os.path.join(output_dir, f"{sample_id}_label_seg.dcm")
    return out


def _synthetic_series() -> dict:
    """One study and series for the DICOM images of one run (a PACS shows them together)."""
    from pydicom.uid import generate_uid

    return {"study_instance_uid": generate_uid(), "series_instance_uid": generate_uid()}


def _write_extra(image, label, paths: Mapping[str, str], spacing_mm: Sequence[float], series: dict, index: int):
    from scripts.export.nifti import grid_affine
    from scripts.export.seg_nrrd import write_seg_nrrd
    from scripts.export.synthetic_dicom import write_synthetic_pair

    mask = torch.as_tensor(label).detach().cpu().reshape(1, *label.shape[-2:]).numpy().astype(np.uint8)
    if "seg.nrrd" in paths:  # on the grid of the NIfTI image written beside it
        write_seg_nrrd(mask, grid_affine(None, (1.0, *spacing_mm)), paths["seg.nrrd"])
    if "dicom_seg" in paths:
        pixels = torch.as_tensor(image).detach().cpu().reshape(image.shape[-2:]).numpy().astype(np.float64)
        write_synthetic_pair(
            np.clip(pixels, 0.0, 1.0), mask, spacing_mm, paths["dicom_image"], paths["dicom_seg"],
            instance_number=index + 1, **series,
        )  # fmt: skip


def write_samples(
    sample_batch: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor | None, list[dict] | None]],
    num_samples: int,
    batch_size: int,
    seed: int,
    output_dir: str,
    spacing_mm: Sequence[float] = (1.0, 1.0),
    id_prefix: str = "pig",
    columns: Mapping[str, object] | None = None,
    fields: Sequence[str] = MANIFEST_FIELDS,
    with_masks: bool = True,
    output_formats: str | Sequence[str] = ("nifti",),
) -> list[dict]:
    """Sample in batches and write every sample plus ``manifest.csv`` into ``output_dir`` (any generator).

    Ids are ``<id_prefix>-s<seed>-<index:05d>``; every target file is checked before the first write. Manifest rows:
    ``id, image, label, seed, sample_index, lesion_area_px``, then ``columns`` (the same for every row, e.g.
    checkpoint hashes) and the per-sample extras returned by ``sample_batch``. Without masks (image-only
    generators) no label file is written and ``label`` / ``lesion_area_px`` are empty strings.

    Args:
        sample_batch: ``indices -> (images, masks, extras)``: (N, 1, S, S) float images in [0, 1], (N, 1, S, S)
            uint8 {0, 1} masks or ``None``, and N per-row dicts of extra columns or ``None``.
        num_samples: number of samples (>= 1).
        batch_size: samples per ``sample_batch`` call (>= 1).
        seed: run seed, written in every row and in the ids.
        output_dir: destination folder (created if missing).
        spacing_mm: (row, column) pixel spacing for the NIfTI affine.
        id_prefix: first part of the ids (``pig``, ``ddim``, ``concat``...).
        columns: constant extra columns.
        fields: manifest columns, in order (must hold every key written).
        with_masks: whether ``sample_batch`` returns masks (decides which files are checked before writing).
        output_formats: besides the NIfTI pair (always written: the manifest and the evaluation read it),
            ``"seg.nrrd"`` adds ``<id>_label.seg.nrrd`` (a 3D Slicer segmentation on the NIfTI image's grid) and
            ``"dicom_seg"`` adds ``<id>_image.dcm`` (a Secondary Capture image marked Synthetic Data YES, one series
            per run) with ``<id>_label_seg.dcm`` (its DICOM SEG); see :mod:`scripts.export`.

    Under ``torchrun`` (``configs/multi_gpu_inference.json``) rank r samples and writes the indices r, r + W, …
    (:func:`scripts.common.distributed.rank_indices`); a sample depends on (seed, index) alone, so the files equal a
    single process's. Rank 0 checks every target first and writes the one manifest of all ranks' rows.

    Returns:
        The manifest rows (of every rank, in sample-index order).

    Raises:
        ValueError: ``num_samples`` or ``batch_size`` < 1; an unknown output format, or ``seg.nrrd`` / ``dicom_seg``
            without masks.
        FileExistsError: a target file or ``manifest.csv`` exists already (nothing is written).
    """
    from scripts.export.formats import check_output_formats

    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}")
    extra = [f for f in check_output_formats(output_formats) if f != "nifti"]
    if extra and not with_masks:
        raise ValueError(f"output formats {extra} hold masks, but this generator makes images only; use nifti")
    ids = [f"{id_prefix}-s{seed}-{i:05d}" for i in range(num_samples)]
    manifest = os.path.join(output_dir, "manifest.csv")
    targets = [p for sid in ids for p in pair_paths(output_dir, sid)[: 2 if with_masks else 1]] + [manifest]
    targets += [p for sid in ids for p in extra_paths(output_dir, sid, extra).values()]
    problem = None
    if distributed.is_main_process():  # one rank checks: the others may already be writing when a late rank looks
        try:
            check_free(targets)
        except FileExistsError as e:
            problem = str(e)
    problem = distributed.broadcast_object(problem)
    if problem:
        raise FileExistsError(problem)
    series = distributed.broadcast_object(_synthetic_series() if "dicom_seg" in extra else {})  # one series per run
    mine = distributed.rank_indices(num_samples)
    rows = []
    progress = tqdm(total=len(mine), desc=f"sampling {id_prefix} pairs", unit="pair", disable=None)  # off if no TTY
    for start in range(0, len(mine), batch_size):
        index = mine[start : start + batch_size]
        images, labels, extras = sample_batch(index)
        for k, i in enumerate(index):
            image_path, label_path = pair_paths(output_dir, ids[i])
            label = None if labels is None else labels[k]
            write_pair(images[k], label, image_path, label_path, spacing_mm)
            if extra:
                _write_extra(images[k], label, extra_paths(output_dir, ids[i], extra), spacing_mm, series, i)
            rows.append(
                {
                    "id": ids[i],
                    "image": os.path.basename(image_path),
                    "label": "" if label is None else os.path.basename(label_path),
                    "seed": seed,
                    "sample_index": i,
                    "lesion_area_px": "" if label is None else int(label.sum()),
                    **(columns or {}),
                    **(extras[k] if extras else {}),
                }
            )
        progress.update(len(index))
        share = "" if len(mine) == num_samples else f" (rank {distributed.rank()}: {len(mine)} of {num_samples})"
        logger.info(f"generated {len(rows)}/{len(mine)} samples{share}")
    progress.close()
    rows = sorted(distributed.gather_rows(rows), key=lambda r: r["sample_index"])
    if distributed.is_main_process():
        write_manifest(manifest, rows, fields)
    distributed.barrier()  # the manifest exists on every rank's return
    return rows
