"""Distribution distances between two feature sets: FID (MONAI ``FIDMetric``) and KID (unbiased polynomial MMD²).

Both take ``(N, D)`` feature matrices (rows = images) from one extractor (:mod:`.features`). Both are biased by
small samples: FID is biased **upward** for small N (its expected value falls as N grows, Chong & Forsyth 2020), so
FID values are only comparable at equal N and equal extractor; KID's estimator is unbiased, but its spread over
subsets is large for small sets.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import torch
from monai.metrics import FIDMetric

__all__ = ["frechet_distance", "kernel_inception_distance", "polynomial_mmd2_unbiased"]

logger = logging.getLogger(__name__)


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        shapes = f"{tuple(a.shape)}, {tuple(b.shape)}"
        raise ValueError(f"{what}: need two (N, D) feature sets with the same D, got {shapes}")
    if min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"{what}: each set needs at least 2 images, got {a.shape[0]} and {b.shape[0]}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError(f"{what}: non-finite features")
    return a, b


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> dict:
    """FID between feature sets ``a`` (N_a, D) and ``b`` (N_b, D) with MONAI's ``FIDMetric``.

    ``||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^½)`` (Heusel et al. 2017), covariances with the N - 1
    denominator, the matrix square root by ``scipy.linalg.sqrtm`` inside MONAI. With N ≤ D a covariance is singular:
    the value is still defined and finite (MONAI retries with 1e-6 on the diagonal when ``sqrtm`` fails), but it is
    noisy and strongly biased; ``rank_deficient`` says so. Numerical error (the matrix square root of nearly
    singular covariances) leaves values around a true 0 (a set against itself): -1.4e-2 was measured with N ≤ D.
    They are reported as computed, never clipped; ``negative`` flags a value below 0.

    Returns:
        ``{"fid": float, "n_a": int, "n_b": int, "feature_dim": int, "rank_deficient": bool, "negative": bool}``.

    Raises:
        ValueError: fewer than 2 rows in a set, mismatched D, non-finite input, or a result that is complex (MONAI's
            check) or not finite — never returns NaN or a complex number.
    """
    a, b = _check_pair(a, b, "FID")
    with contextlib.redirect_stdout(io.StringIO()) as printed:  # MONAI prints its singular-matrix retry
        value = FIDMetric()(a, b)
    if printed.getvalue().strip():
        logger.info("FID: %s", printed.getvalue().strip())
    if torch.is_complex(value) or not torch.isfinite(value).all():
        raise ValueError(f"FID is not a finite real number ({value}); sets of {a.shape[0]} and {b.shape[0]} images")
    n_min, dim = min(a.shape[0], b.shape[0]), a.shape[1]
    return {
        "fid": float(value),
        "n_a": int(a.shape[0]),
        "n_b": int(b.shape[0]),
        "feature_dim": int(dim),
        "rank_deficient": bool(n_min <= dim),
        "negative": bool(float(value) < 0),
    }


# KID is computed here rather than by a library: torch-fidelity's ``kid_features_to_metric`` does the same sums on
# features, but torch-fidelity is an optional dependency (it imports torchvision at import time) and draws its subsets
# with numpy's legacy ``RandomState``; torchmetrics' ``KernelInceptionDistance`` takes images through its own extractor
# and draws subsets from torch's global generator. A test checks these sums against torch-fidelity's on whole sets.
def _poly_kernel(x: torch.Tensor, y: torch.Tensor, degree: int, gamma: float, coef0: float) -> torch.Tensor:
    return (gamma * x @ y.T + coef0) ** degree


def polynomial_mmd2_unbiased(
    x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
    """Unbiased MMD² of two equal-size samples with the kernel ``k(u, v) = (gamma u·v + coef0)^degree``.

    ``1/(m(m-1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i, y_j) - 2/m² Σ_{i,j} k(x_i, y_j)``
    (Gretton et al. 2012, eq. 3 with n = m; Bińkowski et al. 2018 use it with ``gamma = 1/D``, ``coef0 = 1``,
    degree 3 — the defaults). Can be negative for similar sets (it is unbiased, not a squared norm).

    Args:
        x, y: (m, D) float64 features, m ≥ 2 and the same in both.
    """
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"need two samples of the same size m >= 2, got {x.shape[0]} and {y.shape[0]}")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    kxx = _poly_kernel(x, x, degree, gamma, coef0)
    kyy = _poly_kernel(y, y, degree, gamma, coef0)
    kxy = _poly_kernel(x, y, degree, gamma, coef0)
    off = 1.0 / (m * (m - 1))
    return float(off * (kxx.sum() - kxx.diagonal().sum()) + off * (kyy.sum() - kyy.diagonal().sum()) - 2.0 * kxy.mean())


def kernel_inception_distance(
    a: torch.Tensor,
    b: torch.Tensor,
    subset_size: int = 1000,
    num_subsets: int = 100,
    degree: int = 3,
    coef0: float = 1.0,
    seed: int = 0,
) -> dict:
    """KID (Bińkowski et al. 2018): mean and std of :func:`polynomial_mmd2_unbiased` over random subset pairs.

    Each of ``num_subsets`` rounds draws ``subset_size`` rows of ``a`` and of ``b`` without replacement
    (``numpy.random.default_rng(seed)``), as torch-fidelity does (defaults 1000 / 100 there too). A
    ``subset_size`` larger than a set is **capped** at the smaller set's size and flagged (``subset_capped``); when
    the cap equals both set sizes every subset is the whole set: no spread can be estimated (``kid_std`` is 0 and
    ``spread_estimable`` False).

    Returns:
        ``{"kid_mean", "kid_std", "subset_size" (used), "subset_size_requested", "subset_capped", "num_subsets",
        "n_a", "n_b", "feature_dim"}``.

    Raises:
        ValueError: a set with fewer than 2 rows, mismatched D, non-finite input, ``subset_size`` < 2 or
            ``num_subsets`` < 1.
    """
    a, b = _check_pair(a, b, "KID")
    if subset_size < 2 or num_subsets < 1:
        raise ValueError(f"KID needs subset_size >= 2 and num_subsets >= 1, got {subset_size}, {num_subsets}")
    m = min(int(subset_size), a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(num_subsets)):
        ia = torch.as_tensor(rng.choice(a.shape[0], m, replace=False))
        ib = torch.as_tensor(rng.choice(b.shape[0], m, replace=False))
        values.append(polynomial_mmd2_unbiased(a[ia], b[ib], degree=degree, coef0=coef0))
    vals = np.asarray(values)
    if not np.isfinite(vals).all():
        raise ValueError("KID: non-finite MMD estimate")
    return {
        "kid_mean": float(vals.mean()),
        "kid_std": float(vals.std()),
        "subset_size": int(m),
        "subset_size_requested": int(subset_size),
        "subset_capped": bool(m < subset_size),
        "spread_estimable": bool(m < max(a.shape[0], b.shape[0])),
        "num_subsets": int(num_subsets),
        "n_a": int(a.shape[0]),
        "n_b": int(b.shape[0]),
        "feature_dim": int(a.shape[1]),
    }
