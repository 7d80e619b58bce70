"""Embedded default data set: a procedural DBT phantom, so the bundle runs (and is tested) with no data.

Each case is a small reconstructed-DBT-like volume ``(S, H, W)`` with 1–2 masses and their masks, built from:

1. :func:`breast_volume` — a compressed-breast silhouette: half-ellipse on the chest wall, flat in the middle and
   rounded at the edge (so the outer slices are smaller), with a smooth skin edge; 0 outside.
2. :func:`power_law_texture` — fibroglandular texture: Gaussian noise filtered to a ``1/f^beta`` power spectrum in
   each slice, ``beta = 3`` (Burgess, Jacobson & Judy, *Human observer detection experiments with mammograms and
   power-law noise*, Med. Phys. 28(4), 2001: beta ~ 3 for mammographic backgrounds).
3. :func:`through_plane_blur` — DBT's poor depth resolution (limited-angle scan): a Gaussian blur along axis 0.
4. :func:`place_masses` — elliptical masses (ellipsoids with random axes and in-plane orientation) or spiculated
   masses (ellipsoid core + thin radiating spicules), denser than the tissue, spanning several slices and fully
   inside the breast. The mask is the geometric mass region (core + spicules), per slice.

Intensities look like a reconstructed DBT slice stored as 12 bits: float32 in 0..4095, background near 0 (plus mild
Gaussian noise, clipped at 0). Masses are added *after* the through-plane blur, so the mask matches the image; the
out-of-plane "ghosts" of real DBT masses are not modelled.

Spacing: ``(1.0, 0.1, 0.1)`` mm (slice, row, column), nominal DBT values (1 mm reconstruction planes, ~0.1 mm
detector pixels). At the default shape this makes a miniature breast (19 x 16 mm in-plane, 24 mm thick): the
geometry is not to scale, the spacing only gives downstream code DBT-like 10:1 anisotropy.

Laterality: each case is drawn with the chest wall on the left (breast on low column indices) and flipped when its
random ``breast_side`` is ``"right"``, so the pipeline's laterality normalisation gets exercised.

Every case is fully determined by ``(seed, case index)``: case ``i`` is the same whatever ``num_cases`` is.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from .case import Case

__all__ = [
    "BETA",
    "MAX_INTENSITY",
    "SPACING_MM",
    "breast_volume",
    "make_phantom_case",
    "make_phantom_cases",
    "mass_region",
    "place_masses",
    "power_law_texture",
    "through_plane_blur",
]

SPACING_MM = (1.0, 0.1, 0.1)
BETA = 3.0
MAX_INTENSITY = 4095.0
THROUGH_PLANE_SIGMA = 1.5  # slices
NOISE_SIGMA = 15.0  # intensity units, ~0.4 % of the range
MIN_SHAPE = (6, 48, 48)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def breast_volume(shape: tuple[int, int, int], rng: np.random.Generator, edge_px: float = 1.5) -> np.ndarray:
    """Compressed-breast silhouette with the chest wall at column 0 (breast on the left of the image).

    In-plane the breast is a half-ellipse centred on the chest-wall edge (row semi-axis 38–46 % of H, column
    semi-axis 70–90 % of W, random). Through the slices it has the profile of a compressed breast: full thickness
    (all slices) within a normalised radius ``rho0`` (0.6–0.75) and a rounded (quarter-circle) edge beyond, so the
    silhouette shrinks towards the first and last slice, where the paddles are.

    Args:
        shape: ``(S, H, W)``.
        rng: random generator (consumed).
        edge_px: width in pixels of the smooth (logistic) skin edge.

    Returns:
        ``(S, H, W)`` float32 tissue fraction in [0, 1]: ~1 inside, ~0 outside.
    """
    s, h, w = shape
    row_c = h * (0.5 + rng.uniform(-0.05, 0.05))
    row_a = h * rng.uniform(0.38, 0.46)
    col_a = w * rng.uniform(0.70, 0.90)
    rho0 = rng.uniform(0.6, 0.75)
    rows = (np.arange(h) + 0.5 - row_c) / row_a
    cols = (np.arange(w) + 0.5) / col_a
    rho = np.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)  # (H, W), 1 on the skin of the thickest slice
    zeta = (np.arange(s) + 0.5) / s * 2.0 - 1.0  # (S,), -1..1 between the paddles
    radius = rho0 + (1.0 - rho0) * np.sqrt(np.clip(1.0 - zeta**2, 0.0, None))  # silhouette radius per slice
    px_per_rho = min(row_a, col_a)
    return _sigmoid((radius[:, None, None] - rho[None]) * px_per_rho / edge_px).astype(np.float32)


def power_law_texture(shape: tuple[int, ...], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with an isotropic in-plane ``1/f^beta`` power spectrum (amplitude filter ``f^(-beta/2)``).

    Only the last two axes are filtered; for an ``(S, H, W)`` shape every slice is independent (depth correlation
    comes from :func:`through_plane_blur`). The zero frequency is removed. Source: Burgess et al., Med. Phys.
    28(4):419–437, 2001 (mammographic backgrounds have beta ~ 3).

    Args:
        shape: ``(H, W)`` or ``(..., H, W)``.
        beta: power-law exponent (> 0).
        rng: random generator (consumed).

    Returns:
        float32 array of ``shape``, zero mean and unit standard deviation (over the whole array).
    """
    h, w = shape[-2:]
    noise = rng.standard_normal(shape)
    spectrum = np.fft.rfft2(noise, axes=(-2, -1))
    f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)  # cycles / pixel
    f[0, 0] = np.inf  # zero mean
    field = np.fft.irfft2(spectrum * f ** (-beta / 2.0), s=(h, w), axes=(-2, -1))
    field -= field.mean()
    return (field / field.std()).astype(np.float32)


def through_plane_blur(volume: np.ndarray, sigma: float = THROUGH_PLANE_SIGMA) -> np.ndarray:
    """Blur along axis 0 (the slice axis) only, mimicking DBT's poor depth resolution.

    Args:
        volume: ``(S, H, W)``.
        sigma: Gaussian standard deviation in slices (``0`` returns a copy).

    Returns:
        ``(S, H, W)`` float32, edges handled by replicating the first/last slice.
    """
    if sigma <= 0:
        return volume.astype(np.float32, copy=True)
    return ndimage.gaussian_filter1d(volume.astype(np.float32), sigma, axis=0, mode="nearest")


def mass_region(
    shape: tuple[int, int, int],
    center: tuple[float, float, float],
    axes: tuple[float, float, float],
    angle: float,
    spicules: list[tuple[float, float]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One mass on a grid: ellipsoid core, optionally with in-plane spicules radiating from it.

    Args:
        shape: ``(S, H, W)`` of the grid (usually a crop around the mass).
        center: ``(slice, row, col)`` of the centre, continuous voxel coordinates (voxel ``i`` spans ``[i, i+1)``).
        axes: semi-axes ``(slices, px, px)``: through-plane, then the two in-plane axes before rotation.
        angle: in-plane rotation of the first in-plane axis from the row axis, radians.
        spicules: ``(direction in radians, length beyond the core in px)`` per spicule; each is a thin line
            (half-width 1.3 px at the core, tapering to 0.75 px so it stays 4-connected) over the central slices
            of the mass, its depth extent tapering too.

    Returns:
        ``(mask, density)``: ``(S, H, W)`` bool mass region and float32 relative density in [0, 1] (0.6–1 in the
        core, brightest in the centre, 0.55 on spicules, 0 outside the mask).
    """
    s, h, w = shape
    az, a, b = axes
    z = (np.arange(s) + 0.5 - center[0])[:, None, None]
    r = (np.arange(h) + 0.5 - center[1])[None, :, None]
    c = (np.arange(w) + 0.5 - center[2])[None, None, :]
    u = np.cos(angle) * r + np.sin(angle) * c
    v = -np.sin(angle) * r + np.cos(angle) * c
    q = (u / a) ** 2 + (v / b) ** 2 + (z / az) ** 2
    mask = q <= 1.0
    density = np.where(mask, 0.6 + 0.4 * np.sqrt(np.clip(1.0 - q, 0.0, 1.0)), 0.0)
    for direction, length in spicules or []:
        dr, dc = np.cos(direction), np.sin(direction)
        du, dv = np.cos(direction - angle), np.sin(direction - angle)
        core_r = 1.0 / np.sqrt((du / a) ** 2 + (dv / b) ** 2)  # core radius along this direction
        end = core_r + length
        t = np.clip(r * dr + c * dc, 0.0, end)  # (1, H, W) position along the spicule
        dist = np.hypot(r - t * dr, c - t * dc)
        frac = np.clip((t - core_r) / length, 0.0, 1.0)  # 0 at the core surface, 1 at the tip
        in_plane = dist <= 1.3 - 0.55 * frac
        depth = np.abs(z) <= 0.5 + 0.5 * az * (1.0 - frac)
        spic = in_plane & depth & ~mask
        density = np.where(spic, 0.55, density)
        mask |= spic
    return mask, density.astype(np.float32)


def place_masses(
    breast: np.ndarray,
    rng: np.random.Generator,
    num_masses: int | None = None,
    margin_px: int = 2,
    max_tries: int = 200,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw 1–2 non-overlapping masses, each fully inside the breast.

    Each mass is, with equal odds, elliptical or spiculated (6–12 spicules, 0.6–1.4 core radii long). Core
    semi-axes: 5–11 % of min(H, W) in-plane, 2–4 slices through-plane (capped at S/4, at least 1.5 so a mass
    spans >= 3 slices). A placement is accepted when the mask dilated by ``margin_px`` lies where
    ``breast >= 0.95``, does not touch the volume border and does not touch another mass; sizes shrink by 15 %
    after every 20 failed placements.

    Args:
        breast: ``(S, H, W)`` tissue fraction from :func:`breast_volume`.
        rng: random generator (consumed).
        num_masses: number of masses; random 1 or 2 when ``None``.
        margin_px: clearance to the skin edge, border and other masses, in voxels.
        max_tries: placements tried per mass.

    Returns:
        ``(density, label, kinds)``: ``(S, H, W)`` float32 relative mass density in [0, 1] (smoothed in-plane by
        0.6 px for a soft edge), ``(S, H, W)`` uint8 mask in {0, 1} and the kind of each mass
        (``"elliptical"`` or ``"spiculated"``).

    Raises:
        ValueError: a mass cannot be placed (breast too small, e.g. shape below ``MIN_SHAPE``).
    """
    s, h, w = breast.shape
    n = int(rng.integers(1, 3)) if num_masses is None else num_masses
    label = np.zeros(breast.shape, dtype=bool)
    density = np.zeros(breast.shape, dtype=np.float32)
    inside = breast >= 0.95
    kinds = []
    for k in range(n):
        spiculated = bool(rng.random() < 0.5)
        scale = 1.0
        for attempt in range(max_tries):
            if attempt and attempt % 20 == 0:
                scale *= 0.85
            az = min(max(rng.uniform(2.0, 4.0), 1.5), max(s / 4.0, 1.5))
            a, b = scale * min(h, w) * rng.uniform(0.05, 0.11, size=2)
            angle = rng.uniform(0.0, np.pi)
            spicules = (
                [(rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.4) * (a + b) / 2) for _ in range(rng.integers(6, 13))]
                if spiculated
                else []
            )
            reach = max(a, b) + max((length for _, length in spicules), default=0.0) + margin_px + 2
            center = (rng.uniform(0, s), rng.uniform(0, h), rng.uniform(0, w))
            lo = np.floor(np.array(center) - (az + margin_px + 1, reach, reach)).astype(int)
            hi = np.ceil(np.array(center) + (az + margin_px + 1, reach, reach)).astype(int)
            if (lo < 0).any() or (hi > np.array(breast.shape)).any():
                continue
            crop = tuple(slice(lo_, hi_) for lo_, hi_ in zip(lo, hi, strict=True))
            mask, dens = mass_region(tuple(hi - lo), tuple(np.array(center) - lo), (az, a, b), angle, spicules)
            grown = ndimage.binary_dilation(mask, iterations=margin_px)
            if not mask.any() or (grown & ~inside[crop]).any() or (grown & label[crop]).any():
                continue
            label[crop] |= mask
            kinds.append("spiculated" if spiculated else "elliptical")
            density[crop] = np.maximum(density[crop], ndimage.gaussian_filter(dens, (0, 0.6, 0.6)))
            break
        else:
            raise ValueError(f"could not place mass {k + 1} of {n} inside a breast of shape {breast.shape}")
    return density, label.astype(np.uint8), kinds


def make_phantom_case(seed: int, index: int, shape: tuple[int, int, int] = (24, 192, 160)) -> Case:
    """Phantom case ``index`` of data set ``seed``; depends on nothing else.

    Image = ``4095 * breast * (0.15 + 0.55 * sigmoid(1.5 * texture))`` (texture: ``beta = 3`` power-law noise,
    blurred through-plane and renormalised) ``+ 4095 * contrast * mass density`` (contrast 0.25–0.35) ``+`` noise
    (sigma 15), clipped to 0..4095, then flipped left-right for a ``"right"`` breast.

    Args:
        seed: data-set seed (>= 0).
        index: case index (>= 0); the generator is ``numpy.random.default_rng([seed, index])``.
        shape: ``(S, H, W)``, at least ``MIN_SHAPE``.

    Returns:
        Case ``phantom-{index:03d}`` with ``(S, H, W)`` float32 image in 0..4095, uint8 {0, 1} label,
        spacing ``SPACING_MM``, random ``breast_side``, ``meta`` with seed, index, mass count and kinds, contrast.

    Raises:
        ValueError: negative seed/index or a shape below ``MIN_SHAPE``.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    if len(shape) != 3 or any(n < m for n, m in zip(shape, MIN_SHAPE, strict=True)):
        raise ValueError(f"phantom shape {shape} must be (S, H, W) with each size >= {MIN_SHAPE}")
    rng = np.random.default_rng([seed, index])
    side = "right" if rng.random() < 0.5 else "left"
    breast = breast_volume(shape, rng)
    texture = through_plane_blur(power_law_texture(shape, BETA, rng))
    texture = (texture - texture.mean()) / texture.std()
    tissue = breast * (0.15 + 0.55 * _sigmoid(1.5 * texture))
    mass_density, label, kinds = place_masses(breast, rng)
    contrast = rng.uniform(0.25, 0.35)
    image = MAX_INTENSITY * (tissue + contrast * mass_density) + rng.normal(0.0, NOISE_SIGMA, shape)
    image = np.clip(image, 0.0, MAX_INTENSITY).astype(np.float32)
    if side == "right":
        image, label = image[..., ::-1].copy(), label[..., ::-1].copy()
    case_id = f"phantom-{index:03d}"
    return Case(
        case_id=case_id,
        patient_id=case_id,
        image=image,
        label=label,
        spacing=SPACING_MM,
        breast_side=side,
        source=f"phantom:seed={seed},case={index}",
        lossy_mask=False,
        meta={
            "seed": seed,
            "index": index,
            "n_masses": len(kinds),
            "mass_kinds": kinds,
            "contrast": round(float(contrast), 4),
        },
    )


def make_phantom_cases(
    num_cases: int = 16, seed: int = 0, shape: tuple[int, int, int] = (24, 192, 160)
) -> Iterator[Case]:
    """Yield phantom cases ``0 .. num_cases - 1`` (see :func:`make_phantom_case`); ~10 ms–0.1 s each on one CPU.

    Args:
        num_cases: number of cases (>= 0).
        seed: data-set seed (>= 0); case ``i`` depends only on ``(seed, i)``.
        shape: ``(S, H, W)`` of every case.

    Yields:
        Case, see :func:`make_phantom_case`.

    Raises:
        ValueError: negative ``num_cases`` or seed, or a shape below ``MIN_SHAPE``.
    """
    if num_cases < 0:
        raise ValueError(f"num_cases must be >= 0, got {num_cases}")
    for index in range(num_cases):
        yield make_phantom_case(seed, index, shape)
