"""Score masks that ``seg_inference.json`` wrote on each source's own grid against a dataset's reference masks.

The reference masks are the dataset's own, read by the loader of its layout (folder masks, the Duke table's box
ellipses, the phantom's), on the image grid, before any flip, crop or resize; so the score includes every step of
the round trip. Metrics are :func:`~scripts.seg.metrics.lesion_metrics` per slice.

Usage (from ``bundle/``)::

    python -m scripts.seg.score --dataset_dir DIR --pred_dir DIR [--folds folds.json] [--output scores.json]
    python -m scripts.seg.score --prepared CACHE/KEY --pred_dir DIR [--folds folds.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from scripts.data.prepare import discover_cases
from scripts.data.readers import read_array, split_extension

from .metrics import METRICS, lesion_metrics

__all__ = ["score_source_predictions", "score_prepared_predictions", "main"]

logger = logging.getLogger(__name__)


def _source_image(case) -> str:
    """The image file of a case (``Case.source`` is ``"<image>"`` or ``"<image> + <mask>"``)."""
    return str(case.source).split(" + ")[0]


def _summary(rows: list[dict]) -> dict:
    """``{"num_images", "mean": {metric: mean over rows}, "per_image": rows}``."""
    mean = {m: float(np.mean([r[m] for r in rows])) for m in METRICS}
    return {"num_images": len(rows), "mean": mean, "per_image": rows}


def score_source_predictions(
    dataset_dir: str | None,
    pred_dir: str,
    patients: Iterable[str] | None = None,
    postfix: str = "pred",
    include_architectural_distortion: bool = False,
) -> dict:
    """Per-slice Dice, IoU, precision and recall of ``<pred_dir>/<image stem>_<postfix>.nii.gz`` against each case's
    reference mask, on the source grid.

    Args:
        dataset_dir: the dataset the predictions were made on (any layout of ``prepare_dataset``).
        pred_dir: ``seg_inference.json``'s output folder.
        patients: score only these patients' cases (e.g. a held-out fold); ``None``: every case.
        postfix: the prediction files' postfix.
        include_architectural_distortion: Duke only, as in training.

    Returns:
        ``{"num_images", "mean": {metric: float}, "per_image": [{"image", "patient_id", "slice", metric...}]}``;
        a volume contributes every slice with a reference lesion.

    Raises:
        FileNotFoundError: a case without its prediction file (names it).
        ValueError: a prediction whose shape differs from its source's (names both), or nothing to score.
    """
    keep = None if patients is None else {str(p) for p in patients}
    rows = []
    for case in discover_cases(dataset_dir, include_architectural_distortion):
        if keep is not None and str(case.patient_id) not in keep:
            continue
        image = _source_image(case)
        stem = Path(image).name if os.path.isdir(image) else split_extension(image)[0]
        pred_path = Path(pred_dir) / f"{stem}_{postfix}.nii.gz"
        if not pred_path.is_file():
            raise FileNotFoundError(f"{pred_path}: no prediction for {image}")
        pred, _, _ = read_array(pred_path)
        if pred.shape != case.label.shape:
            raise ValueError(f"{pred_path}: shape {pred.shape} differs from its source {image} {case.label.shape}")
        slices = [s for s in range(case.label.shape[0]) if case.label[s].any()]
        p = torch.as_tensor(pred[slices] > 0)[:, None]
        g = torch.as_tensor(case.label[slices] > 0)[:, None]
        metrics = lesion_metrics(p, g)
        for k, s in enumerate(slices):
            rows.append(
                {"image": image, "patient_id": str(case.patient_id), "slice": int(s)}
                | {m: float(metrics[m][k]) for m in METRICS}
            )
    if not rows:
        raise ValueError(f"{dataset_dir}: nothing to score (no case with a lesion among the chosen patients)")
    return _summary(rows)


def score_prepared_predictions(cache_folder: str, pred_dir: str, patients: Iterable[str] | None = None) -> dict:
    """As :func:`score_source_predictions`, for predictions on a prepared set's slices (``<cache>/<key>/``, every
    item of its ``datalist.json``) against the prepared labels beside them, on the network grid.

    Raises:
        FileNotFoundError: no ``datalist.json`` in ``cache_folder`` or an item without its prediction.
        ValueError: nothing to score.
    """
    from scripts.data.prepare import read_datalist

    datalist = read_datalist(Path(cache_folder) / "datalist.json")
    keep = None if patients is None else {str(p) for p in patients}
    items = [it for it in datalist["train"] + datalist["validation"] if keep is None or it["patient_id"] in keep]
    rows = []
    for it in items:
        pred_path = Path(pred_dir) / f"{split_extension(it['image'])[0]}_pred.nii.gz"
        if not pred_path.is_file():
            raise FileNotFoundError(f"{pred_path}: no prediction for {it['image']}")
        p, g = (torch.as_tensor(read_array(f)[0] > 0)[:, None] for f in (pred_path, it["label"]))
        if not g.any():
            continue
        metrics = lesion_metrics(p, g)
        rows.append({"image": it["image"], "patient_id": it["patient_id"]} | {m: float(metrics[m][0]) for m in METRICS})
    if not rows:
        raise ValueError(f"{cache_folder}: nothing to score")
    return _summary(rows)


def main(argv: list[str] | None = None) -> dict:
    """Command line of :func:`score_source_predictions`; prints the means and writes ``--output`` (JSON, new file)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_dir", default=None, help="the dataset (none: the embedded phantom)")
    parser.add_argument("--prepared", default=None, help="instead: a prepared set's folder <cache>/<key>")
    parser.add_argument("--pred_dir", required=True, help="seg_inference.json's output folder")
    parser.add_argument("--patients", default=None, help="comma-separated patients to score (default: all)")
    parser.add_argument("--folds", default=None, help="a folds.json of seg_train.json: score its test patients")
    parser.add_argument("--output", default=None, help="JSON file to write (refuses an existing one)")
    args = parser.parse_args(argv)
    patients = args.patients.split(",") if args.patients else None
    if args.folds:
        patients = json.loads(Path(args.folds).read_text(encoding="utf-8"))["test_patients"]
    if args.prepared:
        result = score_prepared_predictions(args.prepared, args.pred_dir, patients)
    else:
        result = score_source_predictions(args.dataset_dir, args.pred_dir, patients)
    means = ", ".join(f"{m} {v:.4f}" for m, v in result["mean"].items())
    print(f"{result['num_images']} slice(s): {means}")
    if args.output:
        with open(args.output, "x", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
