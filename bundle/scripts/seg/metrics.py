"""Lesion-class Dice, IoU, precision and recall per image, with the empty-mask conventions made explicit.

Inputs are binary lesion masks ``(B, 1, H, W)`` (values {0, 1}, any numeric or bool dtype; values > 0.5 count as
lesion) or two-channel one-hot ``(B, 2, H, W)`` (channel 1 = lesion). Every metric is computed **per image**; the
reported value is the mean over images.

Conventions (TP, FP, FN counted in pixels of one image):

=============================  ======  =====  =========  ======
case                           Dice    IoU    precision  recall
=============================  ======  =====  =========  ======
GT empty, prediction empty     1       1      1          1
GT empty, prediction not       0       0      0          1
GT not empty, prediction empty 0       0      0          0
both non-empty                 2TP/(2TP+FP+FN)  TP/(TP+FP+FN)  TP/(TP+FP)  TP/(TP+FN)
=============================  ======  =====  =========  ======

A false positive on a lesion-free slice therefore counts against the model (Dice = IoU = precision = 0; recall = 1
as there was nothing to miss), whereas MONAI's ``DiceMetric``/``MeanIoU`` default ``ignore_empty=True`` turns that
case into NaN and drops it from the mean. Dice and IoU come from MONAI's ``compute_dice``/``compute_iou`` with
``ignore_empty=False`` (which implement the first three rows); precision and recall from int64 pixel counts of
their own, because MONAI's ``ConfusionMatrixMetric`` returns NaN for 0/0 and its ``get_confusion_matrix`` returns
float32 counts, inexact above 2^24 pixels per image.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Sequence

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric, compute_dice, compute_iou
from monai.metrics.utils import do_metric_reduction

__all__ = ["METRICS", "lesion_mask", "lesion_metrics", "LesionMetric", "LesionMetricHandler", "save_metrics"]

logger = logging.getLogger(__name__)

METRICS = ("dice", "iou", "precision", "recall")


def lesion_mask(x: torch.Tensor) -> torch.Tensor:
    """The lesion channel of ``(B, 1, H, W)`` binary or ``(B, 2, H, W)`` one-hot masks as a float64 ``(B, 1, H, W)``.

    float64 because MONAI's IoU sums the masks in their dtype, and float32 sums stop being exact integers above 2^24
    pixels per image; float64 sums are exact to 2^53.

    Raises:
        ValueError: not 4-D or more than 2 channels.
    """
    x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[1] not in (1, 2):
        raise ValueError(f"expected a (B, 1, H, W) binary or (B, 2, H, W) one-hot mask, got shape {tuple(x.shape)}")
    if x.shape[1] == 2:
        x = x[:, 1:]
    return (x.double() > 0.5).double()


def lesion_metrics(y_pred: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image lesion Dice, IoU, precision and recall (conventions in the module docstring).

    Args:
        y_pred: predicted masks, (B, 1, H, W) binary or (B, 2, H, W) one-hot.
        y: ground-truth masks, same layout and spatial size.

    Returns:
        ``{"dice", "iou", "precision", "recall"}`` → float64 tensors of shape (B,), values in [0, 1], never NaN.
        Precision and recall come from int64 pixel counts, IoU from float64 sums (both exact for any image size);
        Dice is MONAI's, computed in float32 (relative error ≤ ~1e-7).

    Raises:
        ValueError: bad shapes (see :func:`lesion_mask`) or ``y_pred`` and ``y`` of different sizes.
    """
    p, g = lesion_mask(y_pred), lesion_mask(y)
    if p.shape != g.shape:
        raise ValueError(f"y_pred and y differ in shape: {tuple(p.shape)} vs {tuple(g.shape)}")
    dice = compute_dice(p, g, include_background=True, ignore_empty=False)[:, 0]
    iou = compute_iou(p, g, include_background=True, ignore_empty=False)[:, 0]
    # int64 counts, not MONAI's get_confusion_matrix: it returns float32 counts, which round above 2^24 pixels
    # (one false positive among 2^24 + 1 true ones scored a precision of 1.0)
    pb, gb = p[:, 0].bool(), g[:, 0].bool()
    tp, fp, fn = ((a & b).sum(dim=(1, 2)) for a, b in ((pb, gb), (pb, ~gb), (~pb, gb)))
    gt_empty, pred_empty = (tp + fn) == 0, (tp + fp) == 0
    # 0/0 cases: precision is 1 only when there was nothing to find and nothing was claimed; recall 1 when no GT.
    tp64 = tp.double()  # int64 / int64 divides in torch's default float32
    precision = torch.where(pred_empty, gt_empty.double(), tp64 / (tp + fp).clamp_min(1))
    recall = torch.where(gt_empty, torch.ones_like(tp64), tp64 / (tp + fn).clamp_min(1))
    return {"dice": dice.double(), "iou": iou.double(), "precision": precision, "recall": recall}


class LesionMetric(CumulativeIterationMetric):
    """One of :data:`METRICS`, per image, accumulated over iterations (a MONAI ``CumulativeIterationMetric``).

    ``__call__(y_pred, y)`` takes batches ``(B, C, H, W)`` or lists of ``(C, H, W)`` (decollated), C ∈ {1, 2}, and
    buffers the per-image values ``(B, 1)``; :meth:`aggregate` returns their mean (a 0-d tensor).

    Args:
        metric_name: ``"dice"``, ``"iou"``, ``"precision"`` or ``"recall"``.
        reduction: MONAI reduction of the buffered ``(N, 1)`` values, default ``"mean"``.

    Raises:
        ValueError: unknown ``metric_name``.
    """

    def __init__(self, metric_name: str = "dice", reduction: str = "mean") -> None:
        super().__init__()
        if metric_name not in METRICS:
            raise ValueError(f"metric_name must be one of {METRICS}, got {metric_name!r}")
        self.metric_name = metric_name
        self.reduction = reduction

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return lesion_metrics(y_pred, y)[self.metric_name].unsqueeze(1)

    def aggregate(self, reduction: str | None = None) -> torch.Tensor:
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor")
        f, _ = do_metric_reduction(data, reduction or self.reduction)
        return f


class LesionMetricHandler(IgniteMetricHandler):
    """Ignite handler of :class:`LesionMetric` for MONAI engines (``key_val_metric`` / ``additional_metrics``).

    Per-image values go to ``engine.state.metric_details[<name>]`` (``save_details``) for ``MetricsSaver`` and
    :func:`save_metrics`.

    Args:
        metric_name: one of :data:`METRICS`.
        output_transform: engine output → ``(y_pred, y)``, e.g. ``from_engine(["pred", "label"])``.
        save_details: keep the per-image values.
    """

    def __init__(
        self, metric_name: str = "dice", output_transform: Callable = lambda x: x, save_details: bool = True
    ) -> None:
        super().__init__(
            metric_fn=LesionMetric(metric_name), output_transform=output_transform, save_details=save_details
        )


def save_metrics(engine, images: Sequence, output_dir: str, prefix: str = "val_", extra: dict | None = None) -> dict:
    """Log and write ``<output_dir>/metrics.json`` and ``metrics_per_image.csv`` after an evaluator run.

    Args:
        engine: the MONAI evaluator, run once with ``LesionMetricHandler``s named ``<prefix><metric>`` and an
            unshuffled loader over ``images`` (single process), so per-image values follow ``images``' order.
        images: the evaluated datalist items (dicts with ``image``) or paths, in loader order.
        output_dir: destination folder (created).
        prefix: metric name prefix in the engine (``val_dice`` ...).
        extra: more fields for ``metrics.json`` (fold, checkpoint ...).

    Returns:
        The ``metrics.json`` content: ``{"mean": {metric: value}, "num_images": N, "per_image": [{"image", metric:
        value, ...}], **extra}``.

    Raises:
        ValueError: the engine holds no per-image values for a metric, or their number differs from ``images``.
    """
    names = [it["image"] if isinstance(it, dict) else str(it) for it in images]
    details = getattr(engine.state, "metric_details", {}) or {}
    columns = {}
    for m in METRICS:
        key = f"{prefix}{m}"
        if key not in details:
            raise ValueError(f"evaluator has no per-image values for {key!r} (LesionMetricHandler save_details)")
        values = torch.as_tensor(details[key]).reshape(-1).tolist()
        if len(values) != len(names):
            raise ValueError(f"{key}: {len(values)} per-image values for {len(names)} images")
        columns[m] = values
    n = len(names)
    mean = {m: (sum(v) / n if n else float("nan")) for m, v in columns.items()}
    per_image = [{"image": names[i], **{m: columns[m][i] for m in METRICS}} for i in range(n)]
    result = {"mean": mean, "num_images": n, **(extra or {}), "per_image": per_image}
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(output_dir, "metrics_per_image.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", *METRICS])
        w.writerows([row["image"], *(f"{row[m]:.6f}" for m in METRICS)] for row in per_image)
        w.writerow(["mean", *(f"{mean[m]:.6f}" for m in METRICS)])
    logger.info(
        "lesion metrics over %d image(s): %s (written to %s)",
        n, ", ".join(f"{m} {mean[m]:.4f}" for m in METRICS), output_dir,
    )  # fmt: skip
    return result
