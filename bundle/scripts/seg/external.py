"""External validation: score a trained segmenter on every case of another dataset, on each image's own grid.

The ``external`` run of ``seg_evaluate.json`` (``--eval_dataset_dir B``): no folds — every case of ``B`` (any layout
``prepare_dataset`` reads, laid out as it likes) goes through the raw-image path of :mod:`scripts.data.source`
(the training's flip, breast crop, window and size, then back to the source grid), and the masks are compared with
``B``'s own reference masks. Slices are chosen as in preparation (:func:`~scripts.data.selection.select_lesion_slices`
with ``B``'s ``min_lesion_area``, ``neighbour_slices`` and ``lesion_free_fraction``): lesion slices give Dice, IoU,
precision and recall (:func:`~scripts.seg.metrics.lesion_metrics`); lesion-free slices give the false-positive rate
(the share with any predicted lesion pixel), reported apart.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable

import numpy as np
import torch

from scripts.data.prepare import discover_cases
from scripts.data.selection import select_lesion_slices
from scripts.data.source import check_network_input, from_network, to_network

from .metrics import METRICS, lesion_metrics

__all__ = ["segment_volume", "evaluate_external"]

logger = logging.getLogger(__name__)


def segment_volume(
    network: torch.nn.Module,
    inferer: Callable,
    volume: np.ndarray,
    spacing,
    settings: dict,
    device: str | torch.device = "cpu",
    breast_side: str | None = None,
    where: str = "volume",
) -> np.ndarray:
    """A uint8 ``(S, H, W)`` lesion mask of a raw ``(S, H, W)`` volume on its own grid.

    Args:
        network: the 2-D segmenter (2 classes, softmax), weights loaded.
        inferer: ``seg.json``'s ``source_inferer`` (MONAI ``SliceInferer`` over the slices).
        volume: raw intensities; spacing: ``(slice, row, column)`` mm.
        settings: :func:`scripts.seg.inference.training_settings`.
        breast_side: the known image side of the breast, else detected.
        where: named in errors.

    Raises:
        DataError: a network input outside [-1, 1] (:func:`~scripts.data.source.check_network_input`).
    """
    x, record = to_network(
        volume, spacing, settings["image_size"], settings["crop_mode"], settings["window_percentiles"], breast_side,
        settings["spacing_mm"],
    )  # fmt: skip
    check_network_input(x, where, "raw")
    network.eval()
    with torch.inference_mode():
        logits = inferer(torch.as_tensor(x, device=device)[None, None], network)
        prob = torch.softmax(logits, dim=1)[0, 1].float().cpu().numpy()
    return from_network(prob, record)


def _training_patients(ckpt_dir: str) -> set[str]:
    path = os.path.join(ckpt_dir, "folds.json")
    if not os.path.isfile(path):
        return set()
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    return {str(p) for key in ("train_patients", "validation_patients") for p in record.get(key, [])}


def evaluate_external(
    network: torch.nn.Module,
    inferer: Callable,
    eval_dataset_dir: str | None,
    settings: dict,
    output_dir: str,
    ckpt_dir: str,
    device: str | torch.device = "cpu",
    min_lesion_area: int = 10,
    neighbour_slices: int = 0,
    lesion_free_fraction: float = 0.0,
    include_architectural_distortion: bool = False,
    phantom_cases: int = 16,
    seed: int = 0,
) -> dict:
    """Score ``network`` on every case of ``eval_dataset_dir`` and write ``metrics.json`` / ``metrics_per_image.csv``.

    Args:
        network, inferer, settings, device: as :func:`segment_volume`.
        eval_dataset_dir: the external dataset (``None``/``""``: the embedded phantom, with ``phantom_cases`` and
            ``seed``).
        output_dir: where the two files go (refused if they exist: checked by the workflow first).
        ckpt_dir: the model's folder; its ``folds.json`` tells which patients trained or selected the model.
        min_lesion_area, neighbour_slices, lesion_free_fraction, include_architectural_distortion: slice choice, as
            in preparation (the lesion-free draw is seeded with ``seed``).

    Returns:
        ``{"mean": {metric: mean over lesion slices}, "num_images": lesion slices, "false_positive_rate",
        "num_lesion_free", "num_cases", "num_patients", "patients_seen_in_training", "dataset", "per_image": [...]}``;
        per-image rows: ``image``, ``patient_id``, ``slice``, ``lesion`` (bool), the four metrics (lesion slices) or
        ``false_positive`` (lesion-free slices).

    Raises:
        DataError: unreadable data (see the layout's loader).
        ValueError: no slice to score.
    """
    rng = np.random.default_rng(seed)
    seen_in_training = _training_patients(ckpt_dir)
    rows, cases, patients = [], 0, set()
    for case in discover_cases(eval_dataset_dir, include_architectural_distortion, phantom_cases, seed):
        keep = select_lesion_slices(case.label, min_lesion_area, neighbour_slices, lesion_free_fraction, rng)
        if not keep:
            continue
        cases += 1
        patients.add(str(case.patient_id))
        where = case.source or case.case_id
        mask = segment_volume(network, inferer, case.image, case.spacing, settings, device, case.breast_side, where)
        lesion = [s for s in keep if case.label[s].any()]
        if lesion:
            p = torch.as_tensor(mask[lesion] > 0)[:, None]
            g = torch.as_tensor(case.label[lesion] > 0)[:, None]
            metrics = lesion_metrics(p, g)
        for s in keep:
            row = {"image": str(where).split(" + ")[0], "patient_id": str(case.patient_id), "slice": int(s)}
            if s in lesion:
                k = lesion.index(s)
                rows.append(row | {"lesion": True} | {m: float(metrics[m][k]) for m in METRICS})
            else:
                rows.append(row | {"lesion": False, "false_positive": bool(mask[s].any())})
    lesion_rows = [r for r in rows if r["lesion"]]
    free_rows = [r for r in rows if not r["lesion"]]
    if not rows:
        where = eval_dataset_dir or "phantom"
        raise ValueError(f"{where}: no slice to score (no lesion slice of ≥ {min_lesion_area} px)")
    overlap = sorted(patients & seen_in_training)
    if overlap:
        logger.warning(
            "%d of the %d evaluated patients trained or selected this model (%s): their scores are not external",
            len(overlap), len(patients), ", ".join(overlap[:5]) + (" ..." if len(overlap) > 5 else ""),
        )  # fmt: skip
    result = {
        "mean": {m: float(np.mean([r[m] for r in lesion_rows])) if lesion_rows else None for m in METRICS},
        "num_images": len(lesion_rows),
        "false_positive_rate": float(np.mean([r["false_positive"] for r in free_rows])) if free_rows else None,
        "num_lesion_free": len(free_rows),
        "num_cases": cases,
        "num_patients": len(patients),
        "patients_seen_in_training": overlap,
        "dataset": str(eval_dataset_dir or "phantom"),
        "settings": settings,
        "per_image": rows,
    }
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "x", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(output_dir, "metrics_per_image.csv"), "x", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "patient_id", "slice", "lesion", *METRICS, "false_positive"])
        for r in rows:
            values = [f"{r[m]:.6f}" if r["lesion"] else "" for m in METRICS]
            w.writerow([r["image"], r["patient_id"], r["slice"], int(r["lesion"]), *values,
                        "" if r["lesion"] else int(r["false_positive"])])  # fmt: skip
    means = ", ".join(f"{m} {v:.4f}" for m, v in result["mean"].items() if v is not None)
    fp = result["false_positive_rate"]
    logger.info(
        "external evaluation on %s: %d lesion slice(s): %s; %d lesion-free slice(s): false-positive rate %s "
        "(written to %s)",
        result["dataset"], len(lesion_rows), means or "-", len(free_rows), "-" if fp is None else f"{fp:.4f}",
        output_dir,
    )  # fmt: skip
    return result
