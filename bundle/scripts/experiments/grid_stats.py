"""Paired intervals and the Dice-vs-ratio plot of the segmentation grid (:mod:`scripts.experiments.seg_grid`).

Three patient folds are too few to bootstrap over folds, so the uncertainty of "setting − real only" is taken from
the held-out patients: within each fold the held-out patients are resampled with replacement (a cluster bootstrap:
all images of a drawn patient come along) and the *same* draw scores both settings, so the difference is paired.
The fold means of the difference are averaged, as the table averages folds. The interval covers the choice of
held-out patients, not the randomness of training (one seeded training per setting and fold).

Written here because ``scipy.stats.bootstrap`` resamples observations of independent samples; it has no resampling
of clusters (patients) within strata (folds) shared by two paired statistics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["per_image_by_patient", "paired_patient_interval", "plot_dice_vs_ratio"]


def per_image_by_patient(result: Mapping, test_items: Sequence[Mapping], source: str | os.PathLike) -> dict:
    """Per-image Dice of one evaluation with each image's patient.

    Args:
        result: ``metrics.json`` content of ``seg_evaluate.json`` (``per_image``: ``[{"image", "dice", ...}]``).
        test_items: the fold's held-out items (``split['test']``: dicts with ``image`` and ``patient_id``).
        source: the ``metrics.json`` path, for the error message.

    Returns:
        ``{"images": [path, ...], "patients": [id, ...], "dice": [value in [0, 1], ...]}`` in the evaluation's order.

    Raises:
        ValueError: an evaluated image that is not a held-out item of the fold.
    """
    patient_of = {str(it["image"]): str(it["patient_id"]) for it in test_items}
    rows = list(result.get("per_image") or [])
    missing = [r["image"] for r in rows if str(r["image"]) not in patient_of]
    if missing:
        raise ValueError(f"{source}: {len(missing)} evaluated image(s) are not held-out items of the fold, e.g. "
                         f"{missing[0]}")  # fmt: skip
    return {
        "images": [str(r["image"]) for r in rows],
        "patients": [patient_of[str(r["image"])] for r in rows],
        "dice": [float(r["dice"]) for r in rows],
    }


def _fold_draws(a: Mapping, b: Mapping, num_resamples: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """Observed image-mean Dice difference ``a − b`` of one fold and its ``num_resamples`` patient-resampled values."""
    if a["images"] != b["images"]:
        raise ValueError("the two settings were evaluated on different held-out images")
    patients = sorted(set(a["patients"]))
    index = {p: i for i, p in enumerate(patients)}
    rows = np.array([index[p] for p in a["patients"]])
    delta = np.asarray(a["dice"], dtype=float) - np.asarray(b["dice"], dtype=float)
    sums = np.bincount(rows, weights=delta, minlength=len(patients))
    counts = np.bincount(rows, minlength=len(patients)).astype(float)
    draw = rng.integers(0, len(patients), size=(num_resamples, len(patients)))
    return float(delta.mean()), sums[draw].sum(axis=1) / counts[draw].sum(axis=1)


def paired_patient_interval(
    per_fold: Mapping[int, Mapping[str, Mapping]],
    key: str,
    reference: str = "real",
    num_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Dice difference ``key − reference`` (percentage points) with a paired, patient-resampled percentile interval.

    Args:
        per_fold: ``{fold: {setting key: per_image_by_patient(...)}}``.
        key: the setting to compare; folds without it (or without ``reference``) are left out.
        reference: the baseline setting key (default ``"real"``, real only).
        num_resamples: bootstrap resamples per fold (B).
        seed: seed of the resampling (``numpy.random.default_rng``); the same seed gives the same interval.
        level: two-sided coverage of the percentile interval.

    Returns:
        ``{"delta", "low", "high"}`` (mean over folds of the per-fold differences and its interval, in points of
        Dice %), ``"p_le_0"`` (share of resamples with a difference ≤ 0), ``"folds"``, ``"num_resamples"``, and
        ``"per_fold": {fold: {"delta", "low", "high", "patients"}}``.

    Raises:
        ValueError: no fold holds both settings, or the two were scored on different images.
    """
    folds = sorted(f for f in per_fold if key in per_fold[f] and reference in per_fold[f])
    if not folds:
        raise ValueError(f"no fold holds both {key!r} and {reference!r}")
    rng = np.random.default_rng(seed)
    tail = 100.0 * (1.0 - level) / 2.0
    observed, draws, detail = [], [], {}
    for f in folds:
        obs, d = _fold_draws(per_fold[f][key], per_fold[f][reference], num_resamples, rng)
        observed.append(obs)
        draws.append(d)
        lo, hi = np.percentile(100.0 * d, [tail, 100.0 - tail])
        detail[f] = {"delta": 100.0 * obs, "low": float(lo), "high": float(hi),
                     "patients": len(set(per_fold[f][key]["patients"]))}  # fmt: skip
    mean_draws = 100.0 * np.mean(draws, axis=0)
    lo, hi = np.percentile(mean_draws, [tail, 100.0 - tail])
    return {"delta": 100.0 * float(np.mean(observed)), "low": float(lo), "high": float(hi),
            "p_le_0": float(np.mean(mean_draws <= 0.0)), "folds": folds, "num_resamples": num_resamples,
            "per_fold": detail}  # fmt: skip


def plot_dice_vs_ratio(points: Sequence[Mapping], path: str | os.PathLike, title: str) -> str:
    """Dice against synthetic pairs per real item: per-fold points, the fold mean and the paired intervals.

    Args:
        points: one per setting: ``{"label", "ratio", "kind"}`` (``"curve"`` for real only and ``+ PIG ×r``,
            ``"synthetic_only"``, ``"gated"``, ``"seed_control"``), ``"fold_dice": {fold: Dice %}`` and ``"mean"``
            (Dice %); optional ``"interval": (low, high)`` of the difference to real only (points), drawn in a second
            panel; optional ``"note"`` written beside the point (e.g. ``"k=3"`` for gated rows at the same ratio).
        path: the PNG to write (atomically).
        title: the figure title (scale, N, folds).

    Returns:
        ``str(path)``.

    Raises:
        ImportError: matplotlib is missing (``pip install -r requirements.txt``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = {"curve": ("o", "C0"), "synthetic_only": ("s", "C3"), "gated": ("D", "C2"), "seed_control": ("x", "0.3")}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for kind, (marker, color) in style.items():
        group = sorted((p for p in points if p["kind"] == kind), key=lambda p: p["ratio"])
        if not group:
            continue
        for p in group:  # per-fold points, spread sideways a little so they do not hide each other
            folds = sorted(p["fold_dice"])
            for j, f in enumerate(folds):
                ax.scatter(p["ratio"] + 0.012 * (j - (len(folds) - 1) / 2), p["fold_dice"][f], s=14, color=color,
                           alpha=0.45, marker=marker, linewidths=0)  # fmt: skip
        name = {"curve": "real + PIG (fold mean)", "synthetic_only": "PIG only", "gated": "real + PIG, gated",
                "seed_control": "real only, another seed"}[kind]
        ax.plot([p["ratio"] for p in group], [p["mean"] for p in group], marker=marker, color=color,
                ls="-" if kind == "curve" else "none", label=name)  # fmt: skip
        with_iv = [p for p in group if p.get("interval")]
        if with_iv:
            x = [p["ratio"] for p in with_iv]
            mid = [(p["interval"][0] + p["interval"][1]) / 2 for p in with_iv]
            half = [(p["interval"][1] - p["interval"][0]) / 2 for p in with_iv]
            delta = [p["delta"] for p in with_iv]
            bx.errorbar(x, mid, yerr=half, fmt="none", ecolor=color, capsize=3)
            bx.plot(x, delta, marker=marker, color=color, ls="-" if kind == "curve" else "none", label=name)
        for p in group:
            if p.get("note"):
                ax.annotate(p["note"], (p["ratio"], p["mean"]), xytext=(5, 3), textcoords="offset points", fontsize=7)
                if p.get("interval"):
                    bx.annotate(p["note"], (p["ratio"], p["delta"]), xytext=(5, 3), textcoords="offset points",
                                fontsize=7)  # fmt: skip
    ax.set(xlabel="synthetic pairs per real training item", ylabel="Dice (%) on held-out patients",
           title="Dice; small points: folds")  # fmt: skip
    ax.legend(fontsize=8)
    bx.axhline(0.0, color="0.5", lw=1)
    bx.set(xlabel="synthetic pairs per real training item", ylabel="Δ Dice vs real only (points)",
           title="paired difference, 95 % patient-resampled interval")  # fmt: skip
    bx.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return str(path)
