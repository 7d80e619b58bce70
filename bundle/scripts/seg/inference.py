"""The ``seg_inference.json`` workflow's inputs, settings and outputs: raw files in, masks on each file's own grid out.

The network input and its inverse are :mod:`scripts.data.source`'s; this module lists the inputs, reads the
preprocessing the segmenter was trained with, and writes each mask in the chosen formats (NIfTI, ``.seg.nrrd``,
DICOM SEG; :mod:`scripts.export`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from scripts.common.runinfo import read_dataset_summary
from scripts.data.dicom import DICOM_EXTENSIONS, read_dicom_datasets
from scripts.data.readers import IMAGE_EXTENSIONS, split_extension
from scripts.export.dicom_seg import write_dicom_seg  # highdicom is imported only when a SEG is written
from scripts.export.formats import check_output_formats
from scripts.export.nifti import grid_affine, write_nifti_mask
from scripts.export.seg_nrrd import write_seg_nrrd

__all__ = [
    "SEG_SUMMARY",
    "list_inputs",
    "output_paths",
    "check_outputs",
    "check_training_settings",
    "training_settings",
    "SaveSourceMaskd",
]

logger = logging.getLogger(__name__)

#: the file in ``ckpt_dir`` where segmentation training records its data preparation (``write_dataset_summary``).
SEG_SUMMARY = "seg_preparation.json"

#: file name endings of each output format, after ``<input stem>_<postfix>``.
_SUFFIXES = {"nifti": ".nii.gz", "seg.nrrd": ".seg.nrrd", "dicom_seg": "_seg.dcm"}


def _is_dicom_series(path: Path) -> bool:
    return path.is_dir() and any(p.name.lower().endswith(DICOM_EXTENSIONS) for p in path.iterdir())


def list_inputs(input_dir: str | None = None, datalist: str | Sequence | None = None) -> list[dict]:
    """The images to segment, as ``[{"image": path}, ...]``.

    Args:
        input_dir: folder of images in any format ``read_array`` accepts (NIfTI, NRRD/MHA, PNG/JPEG, DICOM files;
            sub-folders of ``.dcm`` files are DICOM series); not searched further. When it holds ``*_image.nii.gz``
            files (a prepared-slice cache folder or a generated-pair folder) only those are taken, so the
            ``*_label`` masks beside them are not segmented.
        datalist: instead of ``input_dir``: a list of items / paths, or a JSON file holding such a list or a dict
            with a ``"test"``, ``"validation"`` or ``"training"`` list; relative paths are relative to the JSON file.
            An item may carry ``"breast_side"`` (``"left"``/``"right"``) to override the side detection.

    Returns:
        Items sorted by path (for a folder) or in list order.

    Raises:
        FileNotFoundError: a missing folder, JSON file or listed image.
        ValueError: neither input given, or no image found.
    """
    if datalist:
        base = None
        if isinstance(datalist, str):
            base = Path(datalist).resolve().parent
            with open(datalist, encoding="utf-8") as f:
                datalist = json.load(f)
            if isinstance(datalist, dict):
                key = next((k for k in ("test", "validation", "training") if k in datalist), None)
                if key is None:
                    raise ValueError("datalist JSON must be a list or hold a 'test'/'validation'/'training' list")
                datalist = datalist[key]
        items = []
        for it in datalist:
            path = it["image"] if isinstance(it, dict) else str(it)
            if base is not None and not os.path.isabs(path):
                path = str(base / path)
            if not os.path.exists(path):
                raise FileNotFoundError(f"input image {path} not found")
            item = {"image": path}
            if isinstance(it, dict) and it.get("breast_side"):
                item["breast_side"] = it["breast_side"]
            items.append(item)
    else:
        if not input_dir:
            raise ValueError("give input_dir (a folder of images) or datalist")
        root = Path(input_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: input folder not found")
        entries = [
            p
            for p in sorted(root.iterdir())
            if not p.name.startswith(".")
            and ((p.is_file() and split_extension(p)[1] in IMAGE_EXTENSIONS) or _is_dicom_series(p))
        ]
        paired = [p for p in entries if p.name.endswith(("_image.nii.gz", "_image.nii"))]
        items = [{"image": str(p)} for p in (paired or entries)]
    if not items:
        raise ValueError(
            f"no image found in {input_dir or 'the datalist'} (accepted: {', '.join(IMAGE_EXTENSIONS)}, or folders "
            "of .dcm files)"
        )
    logger.info("%d image(s) to segment", len(items))
    return items


def _is_dicom(image: str) -> bool:
    return image.lower().endswith(DICOM_EXTENSIONS) or _is_dicom_series(Path(image))


def output_paths(image: str, output_dir: str, formats: str | Sequence[str], postfix: str = "pred") -> dict[str, str]:
    """``{format: path}`` of the results for input ``image``: ``<output_dir>/<stem>_<postfix><suffix>`` with
    ``.nii.gz``, ``.seg.nrrd`` or ``_seg.dcm`` (``stem``: the file name without its image extension, or the folder
    name of a DICOM series). A DICOM SEG is made only for DICOM sources (it references the source's instances).

    Raises:
        ValueError: an unknown format (:func:`~scripts.export.formats.check_output_formats`), or none of the
            formats applies to ``image`` (only ``dicom_seg`` for a non-DICOM file).
    """
    stem = Path(image).name if os.path.isdir(image) else split_extension(image)[0]
    chosen = [f for f in check_output_formats(formats) if f != "dicom_seg" or _is_dicom(image)]
    if not chosen:
        raise ValueError(f"{image}: a DICOM SEG needs a DICOM source image; add nifti or seg.nrrd to --output_formats")
    return {fmt: os.path.join(output_dir, f"{stem}_{postfix}{_SUFFIXES[fmt]}") for fmt in chosen}


def check_outputs(items: Sequence[dict], output_dir: str, formats: str | Sequence[str]) -> list[str]:
    """Refuse before anything is written if a target exists or two inputs map to one target.

    Returns:
        Every target path, in item order.

    Raises:
        FileExistsError: names the first existing target.
        ValueError: names two inputs with the same target; see :func:`output_paths`.
    """
    targets, seen = [], {}
    for it in items:
        for target in output_paths(str(it["image"]), output_dir, formats).values():
            if target in seen:
                raise ValueError(f"{it['image']} and {seen[target]} would both be written to {target}")
            seen[target] = it["image"]
            if os.path.exists(target):
                raise FileExistsError(
                    f"refusing to overwrite {target}: choose a new --output_dir or move the old outputs"
                )
            targets.append(target)
    if "dicom_seg" in check_output_formats(formats):
        skipped = sum(not _is_dicom(str(it["image"])) for it in items)
        if skipped:
            logger.warning("%d non-DICOM input(s) get no DICOM SEG (it references a DICOM source)", skipped)
    return targets


def check_training_settings(ckpt_dir: str, image_size: int, crop_mode: str) -> None:
    """Refuse to score a segmenter on slices prepared otherwise than its training slices.

    Fold evaluation prepares the data with the configured ``image_size`` and ``crop_mode``; a 128-px model scored on
    512-px slices gives a wrong (low) Dice without any error. Compared with ``<ckpt_dir>/seg_preparation.json``;
    nothing is checked without a record.

    Raises:
        ValueError: names both settings and the options to pass.
    """
    summary = read_dataset_summary(ckpt_dir, SEG_SUMMARY)
    params = (summary or {}).get("params") or {}
    trained = {k: params.get(k) for k in ("image_size", "crop_mode") if params.get(k) is not None}
    configured = {"image_size": int(image_size), "crop_mode": crop_mode}
    differ = {k: (v, configured[k]) for k, v in trained.items() if v != configured[k]}
    if differ:
        fix = " ".join(f"--{k} {v}" for k, v in trained.items())
        raise ValueError(
            f"{os.path.join(ckpt_dir, SEG_SUMMARY)}: the model was trained with "
            + ", ".join(f"{k} {t}" for k, (t, _) in differ.items())
            + ", this run prepares "
            + ", ".join(f"{k} {c}" for k, (_, c) in differ.items())
            + f": pass {fix} (the training's)"
        )


def training_settings(ckpt_dir: str, image_size: int, crop_mode: str, window_percentiles: Sequence[float]) -> dict:
    """The preprocessing the segmenter in ``ckpt_dir`` was trained with, from ``<ckpt_dir>/seg_preparation.json``.

    Raw inputs must go through the same crop, window and size as the training slices, so the recorded values win
    over the configured ones (a difference is logged); without a record (weights trained elsewhere) the configured
    ``image_size``, ``crop_mode`` and ``window_percentiles`` are used, and patch mode then assumes 1 mm per network
    pixel... unless a ``spacing_mm`` is recorded.

    Returns:
        ``{"image_size", "crop_mode", "window_percentiles", "spacing_mm"}`` (``spacing_mm``: ``[row, column]`` mm
        per network pixel, the median of the training items; ``None`` when unknown).

    Raises:
        ValueError: patch mode with no recorded spacing (the physical scale of a sliding window is unknown).
    """
    configured = {
        "image_size": int(image_size),
        "crop_mode": crop_mode,
        "window_percentiles": [float(p) for p in window_percentiles],
        "spacing_mm": None,
    }
    summary = read_dataset_summary(ckpt_dir, SEG_SUMMARY)
    if summary is None:
        logger.warning(
            "%s: no %s (training record); using the configured image_size %d, crop_mode %r, window %s",
            ckpt_dir, SEG_SUMMARY, image_size, crop_mode, configured["window_percentiles"],
        )  # fmt: skip
        settings = configured
    else:
        params = summary.get("params") or {}
        settings = {
            "image_size": int(params.get("image_size", image_size)),
            "crop_mode": params.get("crop_mode", crop_mode),
            "window_percentiles": [float(p) for p in params.get("window_percentiles", window_percentiles)],
            "spacing_mm": summary.get("spacing_mm"),
        }
        changed = {k: (configured[k], v) for k, v in settings.items() if k != "spacing_mm" and configured[k] != v}
        if changed:
            logger.info("using the training's preprocessing from %s: %s", SEG_SUMMARY, changed)
    counts = (summary or {}).get("counts") or {}
    if settings["crop_mode"] == "patch" and counts.get("lesion_items") and not counts.get("lesion_free_items"):
        # every window it saw held a lesion: slid over a whole image it finds one in every window
        logger.warning(
            "%s: this patch-mode segmenter was trained on lesion-centred windows only (no lesion-free ones): on whole "
            "images it marks lesions all over, background included; use a slice-mode model for raw images, or train "
            "with lesion_free_fraction > 0 on data that has lesion-free slices",
            ckpt_dir,
        )
    if settings["crop_mode"] == "patch" and not settings["spacing_mm"]:
        raise ValueError(
            f"{ckpt_dir}: a patch-mode segmenter needs the training pixel spacing ({SEG_SUMMARY}, written by "
            "seg_train.json) to slide its window at the right physical scale"
        )
    return settings


class SaveSourceMaskd(MapTransform):
    """Write ``d[key]`` (a uint8 ``(S, H, W)`` mask on the source grid, :class:`~scripts.data.source.RestoreSourced`)
    next to nothing of the input: to ``output_dir`` in every chosen format (:func:`output_paths`).

    * ``nifti``: uint8 NIfTI with the source's affine (:func:`~scripts.export.nifti.write_nifti_mask`);
    * ``seg.nrrd``: a 3D Slicer segmentation with one segment "mass" (:func:`~scripts.export.seg_nrrd.write_seg_nrrd`);
    * ``dicom_seg``: a DICOM SEG referencing the source image (:func:`~scripts.export.dicom_seg.write_dicom_seg`).

    Files without geometry (PNG/JPEG) get their spacing only (:func:`~scripts.export.nifti.grid_affine`). Sets
    ``d["written"]`` to the list of paths.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        output_formats: str | Sequence[str] = "nifti",
        geometry_key: str = "geometry",
        postfix: str = "pred",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir, self.geometry_key, self.postfix = output_dir, geometry_key, postfix
        self.formats = check_output_formats(output_formats)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        record = json.loads(d[self.geometry_key])
        affine = None if record.get("affine_ras") is None else np.asarray(record["affine_ras"], float)
        written = []
        for key in self.key_iterator(d):
            mask = np.asarray(d[key], dtype=np.uint8)
            for fmt, path in output_paths(record["path"], self.output_dir, self.formats, self.postfix).items():
                if fmt == "nifti":
                    write_nifti_mask(mask, affine, record["spacing"], path)
                elif fmt == "seg.nrrd":
                    write_seg_nrrd(mask, grid_affine(affine, record["spacing"]), path)
                else:
                    write_dicom_seg(mask, read_dicom_datasets(record["path"]), path)
                written.append(path)
        d["written"] = written
        return d
