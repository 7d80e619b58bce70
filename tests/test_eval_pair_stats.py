"""Pair statistics against hand-computed values."""

import math

import numpy as np

from scripts.evaluation.pair_stats import pair_statistics, set_summary


def test_pair_statistics_hand_computed():
    image = np.zeros((12, 12))
    mask = np.zeros((12, 12), dtype=np.uint8)
    mask[4:7, 4:7] = 1  # 9 px, one component
    mask[10, 10] = 1  # second component
    image[mask > 0] = 2.0
    s = pair_statistics(image, mask, ring_px=1)
    assert s["area_px"] == 10 and s["components"] == 2
    assert s["contrast"] == 2.0  # inside 2, ring 0
    assert math.isclose(s["contrast_std_units"], 2.0 / image.std())


def test_empty_mask_gives_nan_contrast_and_counts_as_empty():
    s = pair_statistics(np.random.default_rng(0).random((8, 8)), np.zeros((8, 8)))
    assert s["area_px"] == 0 and s["components"] == 0 and math.isnan(s["contrast"])
    summary = set_summary([s, {"area_px": 4, "components": 1, "contrast": 1.0, "contrast_std_units": 2.0}])
    assert summary["empty_mask_fraction"] == 0.5 and summary["contrast_mean"] == 1.0 and summary["area_px_mean"] == 2.0
