"""FID (MONAI FIDMetric) and KID (unbiased polynomial MMD²) on feature sets with known answers."""

import os

import numpy as np
import pytest
import scipy.linalg
import torch

from scripts.evaluation.distances import frechet_distance, kernel_inception_distance, polynomial_mmd2_unbiased


def exact_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> torch.Tensor:
    """n samples whose sample mean and (N-1)-denominator covariance are exactly ``mean`` and ``cov``."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, mean.size))
    z -= z.mean(axis=0)
    # whiten to an exact identity sample covariance, then colour with cov's Cholesky factor
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return torch.from_numpy(z @ np.linalg.cholesky(cov).T + mean)


def closed_form_fid(mu1, s1, mu2, s2) -> float:
    """||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½), computed here with scipy, independently of MONAI."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean.real))


def test_fid_matches_closed_form_on_known_covariances():
    d = 4
    mu1, mu2 = np.zeros(d), np.array([1.0, -2.0, 0.5, 0.0])
    s1 = np.diag([1.0, 2.0, 0.5, 4.0])
    a = np.random.default_rng(3).standard_normal((d, d))
    s2 = a @ a.T + 0.5 * np.eye(d)  # a full (non-diagonal) covariance
    x, y = exact_moments(200, mu1, s1, 0), exact_moments(300, mu2, s2, 1)
    got = frechet_distance(x, y)["fid"]
    assert got == pytest.approx(closed_form_fid(mu1, s1, mu2, s2), rel=1e-8)  # float64 throughout
    # diagonal vs diagonal has the textbook form ||dmu||² + sum (sqrt(s1) - sqrt(s2))²
    s3 = np.diag([4.0, 2.0, 2.0, 1.0])
    z = exact_moments(100, mu2, s3, 2)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(np.diag(s1)) - np.sqrt(np.diag(s3))) ** 2)
    assert frechet_distance(x, z)["fid"] == pytest.approx(expected, rel=1e-8)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_shift():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(frechet_distance(x, x)["fid"]) < 1e-8
    fids = [frechet_distance(x, x + s)["fid"] for s in (0.1, 0.5, 1.0)]
    # a pure shift leaves the covariances equal: FID = ||shift||² = 8 s²
    assert fids == pytest.approx([8 * 0.01, 8 * 0.25, 8 * 1.0], rel=1e-6)
    scaled = [frechet_distance(x, x * s)["fid"] for s in (1.0, 1.5, 3.0)]
    assert scaled[0] < 1e-8 < scaled[1] < scaled[2]


def test_fid_with_fewer_samples_than_features_is_finite_and_flagged():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 64, generator=g), torch.randn(12, 64, generator=g) + 1
    out = frechet_distance(x, y)
    assert out["rank_deficient"] and np.isfinite(out["fid"]) and isinstance(out["fid"], float)
    assert abs(frechet_distance(x, x)["fid"]) < 1e-3  # singular sqrtm: numerical zero only
    assert out["fid"] > 64 * 0.5  # the mean shift alone contributes 64 (N is small: loose bound)
    assert not frechet_distance(torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g))["rank_deficient"]


@pytest.mark.parametrize("n_a, n_b", [(1, 5), (5, 1), (0, 5)])
def test_fid_and_kid_refuse_sets_of_fewer_than_two(n_a, n_b):
    a, b = torch.randn(n_a, 3), torch.randn(n_b, 3)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a, b)
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(a, b)


def test_distances_refuse_mismatched_or_non_finite_features():
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(torch.randn(5, 3), torch.randn(5, 4))
    bad = torch.randn(5, 3)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        kernel_inception_distance(bad, torch.randn(5, 3))


def test_kid_by_hand_on_one_dimensional_pairs():
    # k(u, v) = (u v / 1 + 1)^3; X = {0, 1}, Y = {1, 2}
    # XX off-diagonal: k(0,1) = 1 twice -> 2 / (2*1) = 1; YY: k(1,2) = 27 twice -> 27;
    # XY: k(0,1) + k(0,2) + k(1,1) + k(1,2) = 1 + 1 + 8 + 27 = 37 -> 2 * 37 / 4 = 18.5; MMD² = 1 + 27 - 18.5 = 9.5
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    assert polynomial_mmd2_unbiased(x, y) == pytest.approx(9.5, abs=1e-12)
    out = kernel_inception_distance(x, y, subset_size=2, num_subsets=5)
    # subsets of the whole 2-element sets are permutations of them: every estimate is 9.5
    assert out["kid_mean"] == pytest.approx(9.5, abs=1e-12) and out["kid_std"] == pytest.approx(0.0, abs=1e-12)
    assert not out["subset_capped"] and not out["spread_estimable"]  # a 0 that says nothing: flagged


def test_kid_two_dimensional_by_hand_with_gamma_one_half():
    # D = 2 -> gamma = 1/2. X = {(0,0), (2,0)}, Y = {(0,2), (2,2)}
    # k(x1,x2) = (0 + 1)^3 = 1 -> XX term 1; k(y1,y2) = (4/2 + 1)^3 = 27 -> YY term 27
    # XY: k((0,0),.) = 1, 1; k((2,0),(0,2)) = 1; k((2,0),(2,2)) = (4/2 + 1)^3 = 27 -> 30, times 2/4 = 15
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
    assert polynomial_mmd2_unbiased(x, y) == pytest.approx(1 + 27 - 15, abs=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    same = kernel_inception_distance(x, y, subset_size=100, num_subsets=50)
    # unbiased: the estimate scatters around 0. The subsets overlap (drawn from the same 400 rows), so their mean is
    # not much tighter than one subset: tolerance = the spread of single-subset estimates (0.025 here, |mean| 0.014).
    assert abs(same["kid_mean"]) < same["kid_std"]
    kids = [kernel_inception_distance(x, y + s, subset_size=100, num_subsets=50)["kid_mean"] for s in (0.25, 0.5, 1)]
    assert abs(same["kid_mean"]) < 0.1 * kids[0] and kids[0] < kids[1] < kids[2]


def test_kid_subset_larger_than_a_set_is_capped_and_flagged():
    g = torch.Generator().manual_seed(0)
    out = kernel_inception_distance(torch.randn(7, 5, generator=g), torch.randn(30, 5, generator=g), subset_size=1000)
    assert out["subset_capped"] and out["subset_size"] == 7 and out["subset_size_requested"] == 1000
    assert out["spread_estimable"]  # subsets of the 30-row set still differ
    assert np.isfinite(out["kid_mean"]) and np.isfinite(out["kid_std"])
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(torch.randn(7, 5), torch.randn(7, 5), subset_size=1)


def test_kid_is_seeded():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 4, generator=g), torch.randn(60, 4, generator=g)
    a = kernel_inception_distance(x, y, subset_size=20, num_subsets=10, seed=1)
    assert a == kernel_inception_distance(x, y, subset_size=20, num_subsets=10, seed=1)
    assert a["kid_mean"] != kernel_inception_distance(x, y, subset_size=20, num_subsets=10, seed=2)["kid_mean"]


def test_kid_on_whole_sets_equals_torch_fidelity():
    """One subset of the whole sets removes the subset draw (the unbiased MMD² does not depend on the row order), so
    the estimate must equal torch-fidelity's ``kid_features_to_metric`` with the same kernel (cubic, gamma 1/D,
    coef0 1). Tolerance 1e-9 relative: both sum the same float64 kernel values, in another order."""
    try:
        from torch_fidelity.metric_kid import kid_features_to_metric
    except ImportError as e:  # as the Inception test: a skip on a developer's machine, a failure in CI
        if os.environ.get("CI"):
            pytest.fail(f"torch-fidelity missing in CI ({e}): .ci/run must install requirements-fid.txt")
        pytest.skip("torch-fidelity not installed (requirements-fid.txt)")

    rng = np.random.default_rng(5)
    a = torch.from_numpy(rng.normal(0.0, 1.0, (40, 16)))
    b = torch.from_numpy(rng.normal(0.3, 1.2, (40, 16)))
    ours = kernel_inception_distance(a, b, subset_size=40, num_subsets=1)
    theirs = kid_features_to_metric(a, b, kid_subsets=1, kid_subset_size=40, verbose=False, rng_seed=0)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours["kid_mean"] > 0


def test_fid_below_zero_is_reported_as_computed_and_flagged():
    from scripts.evaluation.distances import frechet_distance

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 32, generator=g, dtype=torch.float64)  # N << D: near-singular covariances
    out = frechet_distance(x, x.clone())
    # measured: -1.2e-6 here (a set against itself, N << D), reported as computed and flagged
    assert out["fid"] < 0 and out["negative"] and out["rank_deficient"]
