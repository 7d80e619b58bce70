"""Lesion Dice / IoU / precision / recall against hand-computed values, including every empty-mask convention."""

import math

import pytest
import torch
from monai.handlers import from_engine
from monai.utils import IgniteInfo, min_version, optional_import

from scripts.seg.metrics import METRICS, LesionMetric, LesionMetricHandler, lesion_metrics, save_metrics

Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")


def masks(*rows_pairs):
    """Stack (pred rows, gt rows) 3 x 4 pictures ('1' = lesion) into (B, 1, 3, 4) float tensors."""

    def pic(rows):
        return torch.tensor([[float(c) for c in r] for r in rows]).reshape(1, 3, 4)

    preds = torch.stack([pic(p) for p, _ in rows_pairs])
    gts = torch.stack([pic(g) for _, g in rows_pairs])
    return preds, gts


EMPTY = ("0000", "0000", "0000")
# pred: 3 pixels in row 0 (cols 0-2); gt: 4 pixels (row 0 cols 1-3, row 1 col 1) -> TP 2, FP 1, FN 2
PRED = ("1110", "0000", "0000")
GT = ("0111", "0100", "0000")

CASES = {
    # name: (pred, gt, dice, iou, precision, recall)
    "overlap": (PRED, GT, 4 / 7, 2 / 5, 2 / 3, 2 / 4),
    "both_empty": (EMPTY, EMPTY, 1.0, 1.0, 1.0, 1.0),
    "false_positive_on_empty_gt": (PRED, EMPTY, 0.0, 0.0, 0.0, 1.0),
    "empty_prediction": (EMPTY, GT, 0.0, 0.0, 0.0, 0.0),
    "disjoint": (("1000", "0000", "0000"), ("0000", "0000", "0001"), 0.0, 0.0, 0.0, 0.0),
    "perfect": (GT, GT, 1.0, 1.0, 1.0, 1.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_per_image_values_and_conventions(case):
    pred, gt, *expected = CASES[case]
    p, g = masks((pred, gt))
    got = lesion_metrics(p, g)
    for name, value in zip(METRICS, expected, strict=True):
        assert got[name].shape == (1,)
        assert got[name].item() == pytest.approx(value, abs=1e-6), f"{case}: {name}"


def test_batch_is_per_image_and_mean_counts_false_positives():
    """A false positive on a lesion-free slice lowers the mean (MONAI's default ignore_empty would drop it)."""
    p, g = masks((PRED, GT), (PRED, EMPTY), (EMPTY, EMPTY), (EMPTY, GT))
    metric = LesionMetric("dice")
    metric(p[:2], g[:2])
    metric([p[2], p[3]], [g[2], g[3]])  # decollated lists are accepted too
    per_image = metric.get_buffer()
    assert per_image.shape == (4, 1)
    assert per_image[:, 0].tolist() == pytest.approx([4 / 7, 0.0, 1.0, 0.0])
    assert metric.aggregate().item() == pytest.approx((4 / 7 + 1.0) / 4)
    for name in METRICS:
        assert not torch.isnan(lesion_metrics(p, g)[name]).any()


def test_one_hot_and_bool_inputs_match_binary():
    p, g = masks((PRED, GT), (PRED, EMPTY))
    onehot = lambda x: torch.cat([1 - x, x], dim=1)  # noqa: E731
    a, b = lesion_metrics(p, g), lesion_metrics(onehot(p), onehot(g).bool())
    for name in METRICS:
        assert torch.allclose(a[name], b[name])


def test_bad_shapes_and_names_are_refused():
    with pytest.raises(ValueError, match="B, 1, H, W"):
        lesion_metrics(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="differ in shape"):
        lesion_metrics(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="metric_name"):
        LesionMetric("hausdorff")


def test_handler_in_an_engine_and_saved_metrics(tmp_path):
    p, g = masks((PRED, GT), (PRED, EMPTY), (EMPTY, GT))
    batches = [{"pred": p[:2], "label": g[:2]}, {"pred": p[2:], "label": g[2:]}]
    engine = Engine(lambda e, batch: batch)
    for name in METRICS:
        LesionMetricHandler(name, output_transform=from_engine(["pred", "label"])).attach(engine, f"val_{name}")
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["val_dice"] == pytest.approx((4 / 7) / 3)
    assert engine.state.metrics["val_recall"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    result = save_metrics(engine, ["a.nii.gz", "b.nii.gz", "c.nii.gz"], str(tmp_path), extra={"fold": 2})
    assert result["fold"] == 2 and result["num_images"] == 3
    assert result["per_image"][1] == {"image": "b.nii.gz", "dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 1.0}
    assert math.isclose(result["mean"]["precision"], (2 / 3) / 3, rel_tol=1e-6)
    assert (tmp_path / "metrics.json").is_file()
    lines = (tmp_path / "metrics_per_image.csv").read_text().splitlines()
    assert lines[0] == "image,dice,iou,precision,recall" and lines[-1].startswith("mean,") and len(lines) == 5
    with pytest.raises(ValueError, match="per-image values"):
        save_metrics(engine, ["a.nii.gz"], str(tmp_path))


def test_counts_stay_exact_above_2_to_the_24_pixels():
    """One false positive among 2^24 + 1 true positives (a 4097 × 4097 image): float32 confusion counts round it away
    (precision and IoU 1.0); the float64 counts give precision N / (N + 1) and IoU N / (N + 1 + 8191 missed)."""
    side, n_tp = 4097, 2**24 + 1
    pred, gt = torch.zeros(side * side), torch.zeros(side * side)
    pred[: n_tp + 1], gt[:n_tp] = 1, 1
    m = lesion_metrics(pred.view(1, 1, side, side), gt.view(1, 1, side, side))
    # tolerance: float64 division, relative error ~1e-16; the differences checked are ~6e-8
    assert m["precision"].item() == pytest.approx(n_tp / (n_tp + 1), rel=1e-12) and m["precision"].item() < 1
    assert m["iou"].item() == pytest.approx(n_tp / (n_tp + 1), rel=1e-12) and m["recall"].item() == 1.0
