"""Mask statistics and diversity measures on tiny inputs with hand-computed answers."""

import math

import numpy as np
import pytest
import torch

from scripts.evaluation.diversity import index_pairs, ms_ssim_settings, pairwise_dice, pairwise_ms_ssim
from scripts.evaluation.mask_stats import compare_mask_statistics, eccentricity, mask_statistics


def ellipse(shape, center, a, b):
    """Filled axis-aligned ellipse: semi-axis ``a`` along rows, ``b`` along columns (pixel centres inside)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - center[0]) / a) ** 2 + ((xx - center[1]) / b) ** 2 <= 1


def test_rectangle_statistics_by_hand():
    m = np.zeros((10, 12), dtype=np.uint8)
    m[2:5, 3:8] = 1  # 3 rows x 5 columns
    s = mask_statistics(m, spacing_mm=(0.5, 0.2))
    assert s["area_px"] == 15 and s["components"] == 1
    assert s["area_mm2"] == pytest.approx(15 * 0.5 * 0.2)
    # coordinate variances of a uniform n-point grid: (n² - 1) / 12 -> rows 8/12, columns 24/12
    assert s["eccentricity"] == pytest.approx(math.sqrt(1 - (8 / 12) / (24 / 12)), abs=1e-12)
    assert mask_statistics(m)["area_mm2"] is None


def test_ellipse_eccentricity_matches_the_analytic_value():
    # continuous ellipse: sqrt(1 - b²/a²) = sqrt(0.75) = 0.8660. Pixelation shifts the digital value by O(1/b):
    # 0.006 for a 40 x 20 px ellipse, 0.0013 for this 80 x 40 px one; tolerance 0.005.
    m = ellipse((100, 100), (50, 49), 40, 20)
    assert eccentricity(m) == pytest.approx(math.sqrt(1 - (20 / 40) ** 2), abs=0.005)
    assert eccentricity(ellipse((64, 64), (32, 32), 15, 15)) == pytest.approx(0.0, abs=0.01)  # a disc
    assert mask_statistics(m)["area_px"] == pytest.approx(math.pi * 40 * 20, rel=0.01)  # pixel count ≈ π a b
    assert eccentricity(np.eye(5)) == pytest.approx(1.0)  # a line
    single = np.zeros((5, 5))
    single[2, 2] = 1
    assert eccentricity(single) == 0.0 and math.isnan(eccentricity(np.zeros((5, 5))))


def test_components_are_eight_connected_and_eccentricity_is_the_largest_ones():
    m = np.zeros((20, 20), dtype=bool)
    m[1:3, 1:3] = True  # 4 px square
    m[3, 3] = True  # touches the square diagonally only: same 8-connected component
    m[10:13, 5:15] = True  # 3 x 10 bar, the largest
    s = mask_statistics(m)
    assert s["components"] == 2 and s["area_px"] == 4 + 1 + 30
    assert s["eccentricity"] == pytest.approx(math.sqrt(1 - (8 / 12) / (99 / 12)), abs=1e-12)
    empty = mask_statistics(np.zeros((4, 4)))
    assert empty["components"] == 0 and empty["area_px"] == 0 and math.isnan(empty["eccentricity"])


def test_compare_mask_statistics_wasserstein_by_hand():
    real = [
        {"area_px": 10, "area_mm2": 2.5, "components": 1, "eccentricity": 0.5},
        {"area_px": 20, "area_mm2": 5.0, "components": 1, "eccentricity": 0.7},
    ]
    gen = [
        {"area_px": 20, "area_mm2": None, "components": 2, "eccentricity": 0.5},
        {"area_px": 30, "area_mm2": None, "components": 1, "eccentricity": 0.9},
        {"area_px": 0, "area_mm2": None, "components": 0, "eccentricity": float("nan")},
    ]
    out = compare_mask_statistics(real, gen)
    # areas {10, 20} vs {20, 30, 0}: W1 = ∫ |F_r - F_g| over the two empirical CDFs
    # F_r: 0 below 10, 1/2 on [10, 20), 1 after; F_g: 1/3 on [0, 20), 2/3 on [20, 30), 1 after
    # |diff|: [0,10) 1/3, [10,20) 1/6, [20,30) 1/3 -> 10/3 + 10/6 + 10/3 = 8.333...
    assert out["area_px"]["wasserstein"] == pytest.approx(25 / 3)
    assert out["area_px"]["real"] == {"mean": 15.0, "std": 5.0, "n": 2}
    assert out["area_mm2"]["generated"] is None and out["area_mm2"]["wasserstein"] is None
    assert out["eccentricity"]["generated"]["n"] == 2  # the empty mask has no eccentricity
    assert out["eccentricity"]["wasserstein"] == pytest.approx(0.1)  # {0.5, 0.7} vs {0.5, 0.9}: 0.2 / 2
    assert out["empty_mask_fraction"] == {"real": 0.0, "generated": pytest.approx(1 / 3)}


def test_pairwise_dice_of_three_tiny_masks_by_hand():
    m = torch.zeros(3, 1, 4, 4)
    m[0, 0, 0, 0:4] = 1  # 4 px
    m[1, 0, 0, 2:4] = 1
    m[1, 0, 1, 2:4] = 1  # 4 px, 2 of them shared with mask 0 -> Dice 2·2 / (4 + 4) = 0.5
    # mask 2 empty: Dice with a non-empty mask is 0 (scripts.seg.metrics convention)
    out = pairwise_dice(m)
    assert out["pairs"] == 3 and not out["pairs_subsampled"]
    assert out["mean"] == pytest.approx((0.5 + 0 + 0) / 3)
    two_empty = pairwise_dice(torch.zeros(2, 1, 4, 4))
    assert two_empty["mean"] == 1.0  # both empty: identical
    assert pairwise_dice(m[:1]) is None


def test_sample_pairs_all_or_seeded_subset():
    pairs, sub = index_pairs(5, 100)
    assert not sub and len(pairs) == 10 and (pairs[:, 0] < pairs[:, 1]).all()
    p1, s1 = index_pairs(50, 100, seed=3)
    p2, _ = index_pairs(50, 100, seed=3)
    p3, _ = index_pairs(50, 100, seed=4)
    assert s1 and len(p1) == 100 and len({tuple(p) for p in p1}) == 100 and (p1[:, 0] < p1[:, 1]).all()
    assert (p1 == p2).all() and not (p1 == p3).all()


@pytest.mark.parametrize(
    "size, scales, kernel", [(200, 5, 11), (176, 5, 11), (128, 4, 11), (64, 3, 11), (32, 3, 7), (16, 3, 3), (8, 2, 3)]
)
def test_ms_ssim_settings_fit_monai(size, scales, kernel):
    st = ms_ssim_settings(size)
    assert (st["scales"], st["kernel_size"]) == (scales, kernel)
    assert sum(st["weights"]) == pytest.approx(1.0) and len(st["weights"]) == scales
    x = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    out = pairwise_ms_ssim(x, settings=st)  # MONAI raises if the window does not fit
    assert 0.0 <= out["mean"] < 0.9


def test_ms_ssim_of_identical_images_is_one_and_of_different_ones_lower():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 32, 32, generator=g)
    same = pairwise_ms_ssim(base.repeat(3, 1, 1, 1))
    assert same["mean"] == pytest.approx(1.0, abs=1e-5) and same["settings"]["kernel_size"] == 7
    noisy = torch.cat([base, (base + 0.1 * torch.randn(1, 1, 32, 32, generator=g)).clamp(0, 1)])
    other = torch.cat([base, torch.rand(1, 1, 32, 32, generator=g)])
    assert pairwise_ms_ssim(other)["mean"] < pairwise_ms_ssim(noisy)["mean"] < 1.0


def test_real_reference_split_all_pools_training_and_validation(tmp_path):
    import nibabel as nib

    from scripts.evaluation.sets import load_real_set

    items = {}
    for split, n in (("train", 3), ("validation", 2)):
        items[split] = []
        for i in range(n):
            paths = {k: str(tmp_path / f"{split}{i}_{k}.nii.gz") for k in ("image", "label")}
            nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), paths["image"])
            nib.save(nib.Nifti1Image(np.zeros((8, 8), np.uint8), np.eye(4)), paths["label"])
            items[split].append({**paths, "patient_id": f"{split}{i}", "spacing_mm": [1, 1]})
    assert load_real_set(items, "train").description["n"] == 3
    assert load_real_set(items, "all").description["n"] == 5
    assert load_real_set(items, "all", max_images=4).description["n"] == 4
    with pytest.raises(ValueError, match="real_split must be one of"):
        load_real_set(items, "everything")


@pytest.mark.parametrize(("fmt", "spacings", "unknown"), [
    ("folder", [(0.1, 0.1), (0.1, 0.1)], None),
    ("folder", [(0.1, 0.1), (2.0, 2.0)], "spacings differ"),
    ("duke", [(8.2, 8.2), (8.2, 8.2)], "Duke JPEGs carry no pixel spacing"),
])  # fmt: skip
def test_mask_areas_in_mm2_only_like_with_like(fmt, spacings, unknown):
    from scripts.evaluation.sections import mask_statistics_section
    from scripts.evaluation.sets import PairSet

    masks = [np.ones((4, 4)), np.ones((4, 4))]
    real = PairSet([np.zeros((4, 4))] * 2, masks, spacings, ["a", "b"], {"format": fmt})
    generated = PairSet([np.zeros((4, 4))] * 2, masks, [(0.5, 0.5)] * 2, ["g1", "g2"], {"kind": "generated"})
    out = mask_statistics_section(real, generated)
    if unknown is None:
        assert "area_mm2_unknown" not in out
    else:
        assert unknown in out["area_mm2_unknown"]
