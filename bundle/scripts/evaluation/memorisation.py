"""Memorisation audit: is each generated pair closer to a training lesion than unseen real lesions are?

With a few hundred training patches a diffusion model can copy them. For every generated pair and, as the reference,
every held-out real pair (the ``validation`` patients of the same preparation, never trained on), the audit finds the
nearest **training lesion** by three measures:

* feature distance: the L2 distance between the evaluation extractor's features (the FID/KID network);
* image SSIM: MONAI ``SSIMMetric`` (2-D, data range 1, 11-px Gaussian window) on the [0, 1] slices;
* mask IoU: intersection over union of the {0, 1} masks (skipped for image-only generators).

A training lesion is one annotated mass slice (``case_id`` + ``slice_index``): the patch mode prepares several
jittered patches of it, so a lesion's value is the best over its patches (min distance, max SSIM / IoU). A pair is
**flagged** when it is closer to a training lesion than all but ``percentile`` % of the held-out pairs are (below
their 5th percentile of distance, above their 95th of SSIM / IoU). Without copying, about ``percentile`` % of
generated pairs are flagged; the one-sided binomial test (``scipy.stats.binomtest``) says whether more are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import SSIMMetric
from scipy.stats import binomtest

from .features import FeatureExtractor
from .sets import PairSet

__all__ = ["MEASURES", "lesion_keys", "nearest_training_lesion", "memorisation_audit", "closest_pairs", "write_figures"]

logger = logging.getLogger(__name__)

#: measure → (closer is "lower" or "higher", description).
MEASURES = {
    "feature_distance": ("lower", "L2 distance of the extractor's features"),
    "ssim": ("higher", "SSIM of the [0, 1] slices (MONAI SSIMMetric)"),
    "mask_iou": ("higher", "IoU of the masks"),
}


def lesion_keys(items: Sequence[dict]) -> list[str]:
    """One key per prepared item naming its lesion: ``<case_id>:s<slice_index>`` (the jittered patches of one
    annotated mass slice share it); items without those fields get their ``image`` path (one lesion each)."""
    out = []
    for it in items:
        if it.get("case_id") is not None and it.get("slice_index") is not None:
            out.append(f"{it['case_id']}:s{int(it['slice_index'])}")
        else:
            out.append(str(it.get("image")))
    return out


def _group_best(values: torch.Tensor, groups: np.ndarray, n_groups: int, lower: bool) -> torch.Tensor:
    """(N, M) per-patch values → (N, G) best per lesion (min if ``lower`` else max)."""
    fill = float("inf") if lower else float("-inf")
    out = torch.full((values.shape[0], n_groups), fill, dtype=values.dtype)
    index = torch.as_tensor(groups, dtype=torch.long).expand(values.shape[0], -1)
    return out.scatter_reduce(1, index, values, reduce="amin" if lower else "amax", include_self=True)


def nearest_training_lesion(
    query: PairSet,
    query_features: torch.Tensor,
    train: PairSet,
    train_features: torch.Tensor,
    train_lesions: Sequence[str],
    ssim_candidates: int | None = 64,
    chunk: int = 4096,
) -> dict:
    """For each query pair, its nearest training lesion by each measure (:data:`MEASURES`).

    Args:
        query: (N, 1, H, W) pairs to audit; query_features: their (N, D) extractor features.
        train: (M, 1, H, W) training pairs; train_features: (M, D); train_lesions: M lesion keys (:func:`lesion_keys`).
        ssim_candidates: SSIM is computed against the query's ``ssim_candidates`` nearest training patches by feature
            distance (all M when None or >= M): N × M SSIMs at full scale would take hours.
        chunk: SSIM pairs per MONAI call.

    Returns:
        ``{measure: (N,) float64 array}`` of the best value over the training lesions (``mask_iou`` absent when
        either set has no masks), plus ``"nearest_patch"``: (N,) index of the feature-nearest training patch.

    Raises:
        ValueError: sizes that do not match, or an empty set.
    """
    n, m = len(query), len(train)
    if n == 0 or m == 0 or len(train_lesions) != m or query_features.shape[0] != n or train_features.shape[0] != m:
        raise ValueError(f"memorisation audit: {n} query / {m} training pairs, {len(train_lesions)} lesion keys")
    names, groups = np.unique(np.asarray(train_lesions), return_inverse=True)
    qf, tf = query_features.double().cpu(), train_features.double().cpu()
    dist = torch.cdist(qf, tf, compute_mode="donot_use_mm_for_euclid_dist")  # (N, M); exactly 0 for a copy
    out = {"feature_distance": _group_best(dist, groups, len(names), lower=True).min(1).values.numpy()}
    out["nearest_patch"] = dist.argmin(1).numpy()
    if query.masks is not None and train.masks is not None:
        q = query.masks.flatten(1).double()
        t = train.masks.flatten(1).double()
        inter = q @ t.T
        union = q.sum(1, keepdim=True) + t.sum(1) - inter
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))  # both empty: identical
        out["mask_iou"] = _group_best(iou, groups, len(names), lower=False).max(1).values.numpy()
    k = m if ssim_candidates is None else min(int(ssim_candidates), m)
    candidates = dist.topk(k, dim=1, largest=False).indices  # (N, k)
    qi = torch.arange(n).repeat_interleave(k)
    ti = candidates.flatten()
    metric = SSIMMetric(spatial_dims=2, data_range=1.0)
    values = torch.empty(qi.shape[0], dtype=torch.float64)
    for s in range(0, qi.shape[0], chunk):
        a, b = query.images[qi[s : s + chunk]], train.images[ti[s : s + chunk]]
        values[s : s + chunk] = metric(a, b).flatten().double()
    ssim = torch.full((n, m), float("-inf"), dtype=torch.float64)
    ssim[qi, ti] = values
    out["ssim"] = _group_best(ssim, groups, len(names), lower=False).max(1).values.numpy()
    return out


def _threshold(held: np.ndarray, lower: bool, percentile: float) -> float:
    return float(np.percentile(held, percentile if lower else 100.0 - percentile))


def _histogram(gen: np.ndarray, held: np.ndarray, bins: int = 20) -> dict:
    lo, hi = float(min(gen.min(), held.min())), float(max(gen.max(), held.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    return {"edges": edges.tolist(), "generated": np.histogram(gen, edges)[0].tolist(),
            "held_out": np.histogram(held, edges)[0].tolist()}  # fmt: skip


def memorisation_audit(
    extractor: FeatureExtractor,
    train: PairSet,
    train_lesions: Sequence[str],
    held_out: PairSet,
    generated: PairSet,
    percentile: float = 5.0,
    alpha: float = 0.01,
    ssim_candidates: int | None = 64,
    features: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict, dict]:
    """The ``memorisation`` section of ``metrics.json``.

    Args:
        extractor: the evaluation's feature extractor.
        train: the training pairs the generator learned from; train_lesions: their lesion keys (:func:`lesion_keys`).
        held_out: real pairs of patients not trained on (the reference); generated: the pairs to audit.
        percentile: the held-out tail that defines "closer than unseen data" (5 %).
        alpha: significance level of the one-sided binomial test against ``percentile`` %.
        ssim_candidates: see :func:`nearest_training_lesion`.
        features: the extractor's ``(train, generated)`` features when already computed (the FID/KID section's).

    Returns:
        ``(section, per_pair)``: the JSON-ready section (per measure: threshold, flagged count and share among the
        generated and, as a check, among the held-out pairs, binomial p-value, histograms; ``verdict``) and the
        per-pair arrays (``generated`` / ``held_out`` → measure → (N,) array, ``nearest_patch``) for the grid.
    """
    f_train, f_gen = features if features is not None else (extractor(train.images), extractor(generated.images))
    f_held = extractor(held_out.images)
    gen = nearest_training_lesion(generated, f_gen, train, f_train, train_lesions, ssim_candidates)
    held = nearest_training_lesion(held_out, f_held, train, f_train, train_lesions, ssim_candidates)
    section: dict = {
        "status": "ok",
        "n_generated": len(generated),
        "n_held_out": len(held_out),
        "n_training_patches": len(train),
        "n_training_lesions": len(set(train_lesions)),
        "held_out_patients": len(set(held_out.patients)),
        "percentile": float(percentile),
        "alpha": float(alpha),
        "ssim_candidates": ssim_candidates,
        "measures": {},
    }
    flagged_measures = []
    for name, (direction, what) in MEASURES.items():
        if name not in gen or name not in held:
            continue
        lower = direction == "lower"
        tau = _threshold(held[name], lower, percentile)
        flag = gen[name] < tau if lower else gen[name] > tau
        held_flag = held[name] < tau if lower else held[name] > tau
        k = int(flag.sum())
        p = float(binomtest(k, len(flag), percentile / 100.0, alternative="greater").pvalue)
        section["measures"][name] = {
            "description": what, "closer_is": direction, "threshold": tau,
            "generated_flagged": k, "generated_flagged_share": k / len(flag),
            "held_out_flagged_share": float(held_flag.mean()), "binomial_p": p,
            "generated_median": float(np.median(gen[name])), "held_out_median": float(np.median(held[name])),
            "histogram": _histogram(gen[name], held[name]),
        }  # fmt: skip
        if p < alpha:
            flagged_measures.append(name)
    section["memorising"] = bool(flagged_measures)
    section["verdict"] = (
        f"more generated pairs lie closer to a training lesion than {percentile:g} % of held-out pairs do than "
        f"chance allows (binomial p < {alpha:g}) by {', '.join(flagged_measures)}: the generator reproduces training "
        "lesions" if flagged_measures else
        f"no sign of copying: the generated pairs are no closer to the training lesions than held-out real pairs "
        f"are (no measure above the {percentile:g} % expected at p < {alpha:g})"
    )  # fmt: skip
    logger.info("memorisation audit: %s", section["verdict"])
    return section, {"generated": gen, "held_out": held}


def closest_pairs(generated: PairSet, train: PairSet, per_pair: dict, count: int) -> tuple[list, list]:
    """Images and masks for a grid of the ``count`` generated pairs nearest (by feature distance) to a training
    patch, each followed by that patch: ``[g1, t1, g2, t2, …]`` as (H, W) arrays."""
    gen = per_pair["generated"]
    order = np.argsort(gen["feature_distance"])[: max(1, int(count))]
    images, masks = [], []
    for i in order:
        j = int(gen["nearest_patch"][i])
        for s, idx in ((generated, int(i)), (train, j)):
            images.append(s.images[idx, 0].numpy())
            masks.append(np.zeros_like(images[-1]) if s.masks is None else s.masks[idx, 0].numpy())
    return images, masks


def write_figures(section: dict, per_pair: dict, generated: PairSet, train: PairSet, grid_path: str,
                  hist_path: str, count: int = 8) -> list[str]:  # fmt: skip
    """``grid_path``: PNG of the closest generated/training pairs (:func:`closest_pairs`, generated left, mask
    outlines in red); ``hist_path``: PNG histograms of each measure, generated against held-out. Returns the paths.

    Raises:
        FileExistsError: a target exists (never overwritten).
        ImportError: matplotlib is missing (``pip install -r requirements.txt``).
    """
    import os

    from ..common.grid import save_pair_grid

    for path in (grid_path, hist_path):
        if os.path.exists(path):
            raise FileExistsError(f"refusing to overwrite {path}")
    images, masks = closest_pairs(generated, train, per_pair, count)
    save_pair_grid(images, masks, grid_path, columns=2, scale=max(1, 128 // images[0].shape[-1]))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = section["measures"]
    fig, axes = plt.subplots(1, len(measures), figsize=(4 * len(measures), 3.2), squeeze=False)
    for ax, (name, m) in zip(axes[0], measures.items(), strict=True):
        edges = np.asarray(m["histogram"]["edges"])
        width = np.diff(edges)
        for key, label, colour in (("generated", f"generated ({section['n_generated']})", "C0"),
                                   ("held_out", f"held-out real ({section['n_held_out']})", "C1")):  # fmt: skip
            counts = np.asarray(m["histogram"][key], dtype=float)
            ax.bar(edges[:-1], counts / max(counts.sum(), 1), width, align="edge", alpha=0.5, label=label, color=colour)
        ax.axvline(m["threshold"], color="k", ls="--", lw=1, label=f"held-out {section['percentile']:g} % tail")
        ax.set(title=f"{name} to the nearest training lesion", xlabel=name, ylabel="share")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(hist_path, dpi=110)
    plt.close(fig)
    return [grid_path, hist_path]
