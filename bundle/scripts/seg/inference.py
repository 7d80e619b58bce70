"""Inputs and output names of the ``seg_inference.json`` workflow (the masks themselves are written by SaveImaged)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from monai.data import FolderLayoutBase

__all__ = ["list_inputs", "check_outputs"]

logger = logging.getLogger(__name__)


def list_inputs(input_dir: str | None = None, datalist: str | Sequence | None = None) -> list[dict]:
    """The slices to segment, as ``[{"image": path}, ...]``.

    Args:
        input_dir: folder of 2-D NIfTI slices (``.nii``/``.nii.gz``, not searched recursively). When it holds
            ``*_image.nii.gz`` files (a prepared-slice cache folder or a PIG output folder) only those are taken,
            so the ``*_label`` masks beside them are not segmented.
        datalist: instead of ``input_dir``: a list of items / paths, or a JSON file holding such a list or a dict
            with a ``"test"``, ``"validation"`` or ``"training"`` list; relative paths are relative to the JSON file.

    Returns:
        Items sorted by path (for a folder) or in list order.

    Raises:
        FileNotFoundError: a missing folder, JSON file or listed image.
        ValueError: neither input given, or no NIfTI file found.
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
            if not os.path.isfile(path):
                raise FileNotFoundError(f"input image {path} not found")
            items.append({"image": path})
    else:
        if not input_dir:
            raise ValueError("give input_dir (a folder of 2-D NIfTI slices) or datalist")
        root = Path(input_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: input folder not found")
        files = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith((".nii", ".nii.gz")))
        paired = [p for p in files if p.name.endswith(("_image.nii.gz", "_image.nii"))]
        items = [{"image": str(p)} for p in (paired or files)]
    if not items:
        raise ValueError(f"no NIfTI slice found in {input_dir or 'the datalist'}")
    logger.info("%d slice(s) to segment", len(items))
    return items


def check_outputs(items: Sequence[dict], folder_layout: FolderLayoutBase) -> list[str]:
    """Refuse before anything is written if a target mask exists or two inputs map to the same target.

    Targets are named exactly as ``SaveImaged`` names them with the same ``folder_layout``
    (``<output_dir>/<input stem>_<postfix><ext>``).

    Returns:
        The target paths, in item order.

    Raises:
        FileExistsError: names the first existing target.
        ValueError: names two inputs with the same target.
    """
    targets, seen = [], {}
    for it in items:
        target = folder_layout.filename(subject=str(it["image"]))
        if target in seen:
            raise ValueError(f"{it['image']} and {seen[target]} would both be written to {target}")
        seen[target] = it["image"]
        if os.path.exists(target):
            raise FileExistsError(f"refusing to overwrite {target}: choose a new --output_dir or move the old outputs")
        targets.append(target)
    return targets
