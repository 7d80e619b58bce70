"""Run records: what configuration, packages, seed and data a training or inference run used."""

from __future__ import annotations

import ast
import datetime
import json
import logging
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

__all__ = ["cli_config", "record_run", "training_spacing", "write_dataset_summary"]

logger = logging.getLogger(__name__)

_PACKAGES = ("torch", "monai", "pytorch-ignite", "numpy", "nibabel", "itk-io", "pydicom", "pillow", "scipy")


def cli_config(argv: Sequence[str] | None = None) -> dict:
    """The merged config of a ``python -m monai.bundle run`` command line, with its ``--id value`` overrides.

    Reads ``--config_file`` (one file or a list) with MONAI ``ConfigParser.load_config_files`` and applies every
    other ``--key value`` pair as an override, as ``monai.bundle run`` does. Returns ``{}`` when there is no
    ``--config_file`` (e.g. a run started from Python).
    """
    from monai.bundle import ConfigParser

    args = list(sys.argv[1:] if argv is None else argv)
    pairs: dict[str, str] = {}
    i = 0
    while i < len(args):
        if args[i].startswith("--") and i + 1 < len(args):
            pairs[args[i][2:]] = args[i + 1]
            i += 2
        else:
            i += 1
    files = pairs.pop("config_file", None)
    if files is None:
        return {}
    files = ast.literal_eval(files) if files.strip().startswith("[") else files
    config = ConfigParser.load_config_files(files)
    for key in ("meta_file", "logging_file", "args_file", "init_id", "run_id", "final_id", "tracking"):
        pairs.pop(key, None)
    parser = ConfigParser(config)
    for key, value in pairs.items():
        try:
            parser[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parser[key] = value
    return parser.get()


def record_run(run_dir: str, workflow: str, seed: int, extra: dict | None = None) -> str:
    """Write ``<run_dir>/runs/<UTC time>_<workflow>.json``: merged config, overrides, versions, seed, extras.

    Returns:
        The path written (a new file each run; earlier records are kept).
    """
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = os.path.join(run_dir, "runs", f"{stamp}_{workflow}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = {
        "workflow": workflow,
        "seed": seed,
        "argv": sys.argv,
        "python": platform.python_version(),
        "packages": versions,
        "config": cli_config(),
        **(extra or {}),
    }
    with open(path, "x", encoding="utf-8") as f:
        json.dump(record, f, indent=2, default=str)
    logger.info(f"run record written to {path}")
    return path


def training_spacing(ckpt_dir: str, default: float = 1.0) -> list[float]:
    """(row, column) pixel spacing in mm of the training slices, read from ``<ckpt_dir>/dataset.json``.

    Falls back to ``[default, default]`` (1 mm) when training recorded none (e.g. JPEG inputs without spacing).
    """
    path = os.path.join(ckpt_dir, "dataset.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            spacing = json.load(f).get("spacing_mm")
        if spacing:
            return [float(s) for s in spacing]
    return [float(default), float(default)]


def write_dataset_summary(ckpt_dir: str, datalist: dict) -> str:
    """Write ``<ckpt_dir>/dataset.json``: counts, spacing, cache folder and the patients of each split."""
    summary = {
        "spacing_mm": datalist.get("spacing_mm"),
        "cache": datalist.get("cache"),
        "counts": datalist.get("counts"),
        "train_patients": sorted({d.get("patient_id") for d in datalist.get("train", [])}),
        "validation_patients": sorted({d.get("patient_id") for d in datalist.get("validation", [])}),
        "num_train_slices": len(datalist.get("train", [])),
        "num_validation_slices": len(datalist.get("validation", [])),
    }
    os.makedirs(ckpt_dir, exist_ok=True)
    path = os.path.join(ckpt_dir, "dataset.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    os.replace(tmp, path)
    return path
