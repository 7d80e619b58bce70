"""Paired, patient-resampled intervals and the Dice-vs-ratio plot of the segmentation grid."""

import numpy as np
import pytest

from scripts.experiments.grid_stats import paired_patient_interval, per_image_by_patient, plot_dice_vs_ratio


def _setting(patients, dice):
    return {"images": [f"img{i}" for i in range(len(dice))], "patients": list(patients), "dice": list(dice)}


def test_per_image_by_patient_maps_images_to_held_out_patients():
    result = {"per_image": [{"image": "/d/b.nii", "dice": 0.5}, {"image": "/d/a.nii", "dice": 1.0}]}
    test_items = [{"image": "/d/a.nii", "patient_id": "P1"}, {"image": "/d/b.nii", "patient_id": "P2"}]
    out = per_image_by_patient(result, test_items, "m.json")
    assert out == {"images": ["/d/b.nii", "/d/a.nii"], "patients": ["P2", "P1"], "dice": [0.5, 1.0]}
    with pytest.raises(ValueError, match=r"m\.json: 1 evaluated image\(s\) are not held-out items"):
        per_image_by_patient({"per_image": [{"image": "/d/c.nii", "dice": 0.0}]}, test_items, "m.json")


def test_a_constant_shift_has_a_zero_width_interval_because_the_draws_are_paired():
    # Every image 0.1 better: any paired resample gives exactly +10 points; unpaired draws would spread it.
    rng = np.random.default_rng(1)
    patients = [f"P{i // 3}" for i in range(30)]
    real = rng.uniform(0.3, 0.9, 30)
    per_fold = {f: {"real": _setting(patients, real), "pig_r1": _setting(patients, real + 0.1)} for f in (0, 1, 2)}
    iv = paired_patient_interval(per_fold, "pig_r1", num_resamples=500)
    assert iv["delta"] == pytest.approx(10.0) and iv["low"] == pytest.approx(10.0) and iv["high"] == pytest.approx(10.0)
    assert iv["p_le_0"] == 0.0 and iv["folds"] == [0, 1, 2] and iv["per_fold"][0]["patients"] == 10


def test_patients_not_images_are_resampled():
    # Patient A: 9 images, no change; patient B: 1 image, +1. Resampling the 2 patients gives a difference of 1 (both
    # draws B) with probability 1/4, so the upper 97.5 % bound is 100 points; resampling the 10 images would put it
    # near 30 points (P(>= 4 of 10 draws are B's image) ~ 1.3 %).
    per_fold = {0: {"real": _setting(["A"] * 9 + ["B"], [0.5] * 9 + [0.0]),
                    "pig_r1": _setting(["A"] * 9 + ["B"], [0.5] * 9 + [1.0])}}  # fmt: skip
    iv = paired_patient_interval(per_fold, "pig_r1", num_resamples=4000, seed=3)
    assert iv["delta"] == pytest.approx(10.0)
    assert iv["high"] == pytest.approx(100.0) and iv["low"] == pytest.approx(0.0)
    # The same seed gives the same interval; different held-out images are refused.
    assert paired_patient_interval(per_fold, "pig_r1", num_resamples=4000, seed=3) == iv
    per_fold[0]["pig_r1"]["images"][0] = "other"
    with pytest.raises(ValueError, match="different held-out images"):
        paired_patient_interval(per_fold, "pig_r1")
    with pytest.raises(ValueError, match="no fold holds both"):
        paired_patient_interval(per_fold, "pig_r9")


def test_plot_dice_vs_ratio_writes_a_png(tmp_path):
    points = [
        {"label": "real only", "ratio": 0.0, "kind": "curve", "mean": 80.0, "delta": 0.0, "interval": None,
         "fold_dice": {0: 79.0, 1: 81.0}},
        {"label": "+ PIG ×1", "ratio": 1.0, "kind": "curve", "mean": 78.0, "delta": -2.0, "interval": (-4.0, 0.5),
         "fold_dice": {0: 77.0, 1: 79.0}},
        {"label": "PIG only ×1", "ratio": 1.0, "kind": "synthetic_only", "mean": 40.0, "delta": -40.0,
         "interval": (-45.0, -35.0), "fold_dice": {0: 38.0, 1: 42.0}},
    ]  # fmt: skip
    path = plot_dice_vs_ratio(points, tmp_path / "curve.png", "test")
    data = (tmp_path / "curve.png").read_bytes()
    assert path.endswith("curve.png") and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not list(tmp_path.glob("*.tmp.png"))
