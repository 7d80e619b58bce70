"""Procedural DBT phantom: determinism, geometry, mass contrast, texture spectrum, through-plane blur."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from scripts.data.phantom import (
    MAX_INTENSITY,
    SPACING_MM,
    breast_volume,
    make_phantom_case,
    make_phantom_cases,
    place_masses,
    power_law_texture,
    through_plane_blur,
)

SHAPE = (24, 192, 160)


@pytest.fixture(scope="module")
def cases():
    return list(make_phantom_cases(16, seed=0))


def _same(a, b) -> bool:
    return (
        a.case_id == b.case_id
        and a.breast_side == b.breast_side
        and a.meta == b.meta
        and np.array_equal(a.image, b.image)
        and np.array_equal(a.label, b.label)
    )


def _adjacent_slice_correlation(volume: np.ndarray) -> float:
    a = volume[:-1].reshape(volume.shape[0] - 1, -1)
    b = volume[1:].reshape(volume.shape[0] - 1, -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return float(np.mean((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))))


# ---------------------------------------------------------------- determinism


def test_same_seed_same_cases(cases):
    again = list(make_phantom_cases(16, seed=0))
    assert all(_same(a, b) for a, b in zip(cases, again, strict=True))


def test_case_independent_of_num_cases(cases):
    few = list(make_phantom_cases(3, seed=0))
    assert all(_same(a, b) for a, b in zip(few, cases[:3], strict=True))
    assert _same(make_phantom_case(0, 11), cases[11])


def test_different_seeds_and_cases_differ(cases):
    other = list(make_phantom_cases(4, seed=1))
    assert not any(np.array_equal(a.image, b.image) for a, b in zip(cases[:4], other, strict=True))
    assert not np.array_equal(cases[0].image, cases[1].image)


# ---------------------------------------------------------------- case contents


def test_case_fields(cases):
    for i, case in enumerate(cases):
        assert case.image.shape == case.label.shape == SHAPE
        assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
        assert 0.0 <= case.image.min() and case.image.max() <= MAX_INTENSITY
        assert set(np.unique(case.label)) == {0, 1}
        assert case.spacing == SPACING_MM == (1.0, 0.1, 0.1)
        assert case.case_id == case.patient_id == f"phantom-{i:03d}"
        assert case.source == f"phantom:seed=0,case={i}"
        assert 1 <= case.meta["n_masses"] <= 2
    assert {c.breast_side for c in cases} == {"left", "right"}
    assert {k for c in cases for k in c.meta["mass_kinds"]} == {"elliptical", "spiculated"}


def test_breast_on_stated_side_and_background_dark(cases):
    w = SHAPE[2]
    for case in cases:
        left, right = case.image[..., : w // 2].mean(), case.image[..., w // 2 :].mean()
        assert (right > left) == (case.breast_side == "right")
        far = case.image[:, :8, :8] if case.breast_side == "right" else case.image[:, :8, -8:]
        assert far.mean() < 0.01 * MAX_INTENSITY  # background near 0


def test_masks_inside_breast_in_cases(cases):
    """Every mask voxel and a 2-voxel ring around it are breast tissue (well above background)."""
    for case in cases:
        grown = ndimage.binary_dilation(case.label.astype(bool), iterations=2)
        assert case.image[grown].min() > 0.1 * MAX_INTENSITY, case.case_id


@pytest.mark.parametrize("seed", range(8))
def test_place_masses_inside_breast(seed):
    rng = np.random.default_rng(seed)
    breast = breast_volume(SHAPE, rng)
    density, label, kinds = place_masses(breast, rng)
    assert 1 <= len(kinds) <= 2
    assert label.any() and (breast[label.astype(bool)] >= 0.95).all()
    assert (density[breast < 0.5] == 0).all()


def test_masses_span_several_slices(cases):
    for case in cases:
        components, n = ndimage.label(case.label, structure=np.ones((3, 3, 3)))
        assert n == case.meta["n_masses"]
        for k in range(1, n + 1):
            assert np.unique(np.nonzero(components == k)[0]).size >= 3


def test_masses_brighter_than_surroundings(cases):
    """Mean inside each mass vs a ring 2–5 px around it in the same slices: >= 300 (of 4095) brighter."""
    ring_struct = np.zeros((1, 3, 3), bool)
    ring_struct[0] = ndimage.generate_binary_structure(2, 1)
    for case in cases:
        components, n = ndimage.label(case.label, structure=np.ones((3, 3, 3)))
        for k in range(1, n + 1):
            mass = components == k
            ring = ndimage.binary_dilation(mass, ring_struct, iterations=5) & ~ndimage.binary_dilation(
                mass, ring_struct, iterations=2
            )
            ring &= case.label == 0
            assert case.image[mass].mean() - case.image[ring].mean() >= 300, (case.case_id, k)


# ---------------------------------------------------------------- building blocks


def test_breast_volume_profile():
    breast = breast_volume(SHAPE, np.random.default_rng(3))
    s, h, w = SHAPE
    assert breast.dtype == np.float32 and breast.min() >= 0 and breast.max() <= 1
    assert breast[s // 2, h // 2, 0] > 0.99  # attached to the chest wall (column 0)
    assert breast[:, 0, -1].max() < 0.01 and breast[:, -1, -1].max() < 0.01  # background
    area = (breast > 0.5).sum(axis=(1, 2))
    assert area[0] < 0.8 * area[s // 2] and area[-1] < 0.8 * area[s // 2]  # compressed: edge slices smaller
    assert ((breast > 0.05) & (breast < 0.95)).any()  # smooth skin edge


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_texture_spectrum_slope(beta):
    """Radially averaged power spectrum slope in log-log over 1/64..1/4 cycles/px: -beta within 0.15."""
    n = 256
    tex = power_law_texture((8, n, n), beta, np.random.default_rng(0))
    assert tex.dtype == np.float32 and abs(tex.mean()) < 1e-3 and abs(tex.std() - 1) < 1e-3
    power = (np.abs(np.fft.fft2(tex)) ** 2).mean(axis=0)
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    bins = np.geomspace(1 / 64, 1 / 4, 13)
    centres, means = [], []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (freq >= lo) & (freq < hi)
        centres.append(np.sqrt(lo * hi))
        means.append(power[sel].mean())
    slope = np.polyfit(np.log(centres), np.log(means), 1)[0]
    assert abs(slope + beta) < 0.15, slope


def test_through_plane_blur_correlates_slices():
    tex = power_law_texture((16, 64, 64), 3.0, np.random.default_rng(1))
    raw, blurred = _adjacent_slice_correlation(tex), _adjacent_slice_correlation(through_plane_blur(tex))
    assert abs(raw) < 0.2 and blurred > raw + 0.5
    plane = through_plane_blur(tex)
    assert np.allclose(plane.mean(axis=0), tex.mean(axis=0), atol=0.1)  # blur only along axis 0


def test_phantom_depth_blur_applied(monkeypatch):
    """In the phantom's tissue (central crop, no mass) adjacent slices correlate more than without the blur."""
    from scripts.data import phantom

    def tissue_correlation(case):
        s, h, w = case.image.shape
        cols = slice(4, w // 3) if case.breast_side == "left" else slice(w - w // 3, w - 4)
        crop = case.image[s // 4 : s - s // 4, h // 3 : h - h // 3, cols]
        assert case.label[s // 4 : s - s // 4, h // 3 : h - h // 3, cols].mean() < 0.1
        return _adjacent_slice_correlation(crop)

    blurred = [tissue_correlation(make_phantom_case(0, i)) for i in range(4)]
    monkeypatch.setattr(phantom, "through_plane_blur", lambda volume, *args, **kwargs: volume)
    unblurred = [tissue_correlation(make_phantom_case(0, i)) for i in range(4)]
    assert min(b - u for b, u in zip(blurred, unblurred, strict=True)) > 0.3, (blurred, unblurred)


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_phantom_case(0, 0, shape=(2, 16, 16))
    with pytest.raises(ValueError):
        make_phantom_case(-1, 0)
    with pytest.raises(ValueError):
        list(make_phantom_cases(-1))
