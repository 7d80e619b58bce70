"""Quick pair statistics of a generated folder against prepared real slices: lesion area, components, contrast.

A non-empty generated mask proves little (the sampling-time binarisation always leaves some pixels on), so these
figures compare generated pairs with real ones on what matters for segmentation training data. Area and components
are :func:`~.mask_stats.mask_statistics`' (8-connected); the contrast of the image inside the mask against a ring
around it, and whether a mask touches the image border, are this module's. The full report with FID/KID is
``evaluate.json``; this is its fast, feature-free part::

    python -m scripts.evaluation.pair_stats --ckpt_dir <training ckpt_dir> --generated <output_dir>
    python -m scripts.evaluation.pair_stats --datalist <cache>/<key>/datalist.json --generated <output_dir>
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from ..data.prepare import read_datalist
from .mask_stats import mask_statistics
from .sets import PairSet, load_generated_set, load_real_set

__all__ = [
    "pair_statistics",
    "set_summary",
    "generated_pairs",
    "training_datalist",
    "compare",
    "markdown_table",
    "main",
]


def pair_statistics(image: np.ndarray, mask: np.ndarray, ring_px: int = 3) -> dict:
    """Statistics of one pair.

    Args:
        image: (H, W) slice, any linear intensity scale (e.g. [0, 1] or [-1, 1]).
        mask: (H, W) lesion mask, non-zero = lesion.
        ring_px: width in pixels of the ring around the mask (binary dilation minus the mask) used as surround.

    Returns:
        ``area_px`` (lesion pixels), ``components`` (8-connected), ``contrast`` (mean inside minus mean in the
        ring, in the image's units; NaN for an empty mask or an empty ring), ``contrast_std_units`` (the same
        divided by the image's standard deviation, comparable across intensity scales), ``eccentricity`` (of the
        largest component, :func:`~.mask_stats.eccentricity`; NaN for an empty mask) and ``touches_border`` (a lesion
        pixel in the first or last row or column: the lesion is cut by the patch edge).
    """
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask) > 0
    shape = mask_statistics(mask)
    ring = ndimage.binary_dilation(mask, iterations=ring_px) & ~mask
    contrast = float(image[mask].mean() - image[ring].mean()) if mask.any() and ring.any() else float("nan")
    std = float(image.std())
    return {
        "area_px": shape["area_px"],
        "components": shape["components"],
        "contrast": contrast,
        "contrast_std_units": contrast / std if std > 0 else float("nan"),
        "eccentricity": shape["eccentricity"],
        "touches_border": bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()),
    }


def set_summary(stats: Iterable[dict]) -> dict:
    """Mean, standard deviation and median of each statistic over a set (NaNs ignored), plus the shares of empty
    masks and of masks touching the border (``touches_border_fraction``, when the statistics carry it)."""
    stats = list(stats)
    out: dict = {"n": len(stats)}
    if not stats:
        return out
    for key in ("area_px", "components", "eccentricity", "contrast", "contrast_std_units"):
        if not all(key in s for s in stats):
            continue
        vals = np.array([s[key] for s in stats], dtype=np.float64)
        finite = np.isfinite(vals).any()  # all-NaN (e.g. every mask empty): NaN without numpy's warning
        for stat, fn in (("mean", np.nanmean), ("std", np.nanstd), ("median", np.nanmedian)):
            out[f"{key}_{stat}"] = float(fn(vals)) if finite else float("nan")
    out["empty_mask_fraction"] = float(np.mean([s["area_px"] == 0 for s in stats]))
    if all("touches_border" in s for s in stats):
        out["touches_border_fraction"] = float(np.mean([s["touches_border"] for s in stats]))
    return out


def generated_pairs(folder: str) -> PairSet:
    """The generated pairs of ``folder`` (``sets.load_generated_set``), which must have masks.

    Raises:
        FileNotFoundError, ValueError: see ``load_generated_set`` (e.g. a path outside ``folder``).
        ValueError: an image-only folder (DDPM/DDIM baselines), which has no masks to compute pair statistics of.
    """
    pairs = load_generated_set(folder)
    if pairs.masks is None:
        raise ValueError(
            f"{folder}: {len(pairs)} of {len(pairs)} manifest rows have no label file: an image-only generator's "
            "folder (DDPM/DDIM baseline) has no masks, so there are no pair statistics; use evaluate.json for its "
            "image measures"
        )
    return pairs


def training_datalist(ckpt_dir: str) -> str:
    """The ``datalist.json`` of the slices a training run used: the cache folder its ``dataset.json`` records
    (``scripts.common.runinfo.write_dataset_summary``).

    Raises:
        FileNotFoundError: no ``dataset.json`` in ``ckpt_dir`` (not a training folder), or its cache folder no
            longer holds ``datalist.json`` (the cache was deleted: rerun training with the same settings, which
            prepares it again, or pass ``--datalist``).
    """
    from ..common.runinfo import read_dataset_summary

    summary = read_dataset_summary(ckpt_dir)
    if summary is None or not summary.get("cache"):
        raise FileNotFoundError(
            f"{os.path.join(ckpt_dir, 'dataset.json')}: no training record naming the prepared slices; pass the "
            "--ckpt_dir of a training run, or --datalist <cache>/<key>/datalist.json"
        )
    path = os.path.join(summary["cache"], "datalist.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: the prepared slices recorded by {ckpt_dir}/dataset.json are gone (cache deleted?); rerun "
            "training with the same settings to prepare them again, or pass --datalist"
        )
    return path


def compare(real: PairSet, generated: PairSet) -> dict:
    """``{"real": set_summary(...), "generated": set_summary(...)}`` of two pair sets (images in [0, 1])."""
    return {
        side: set_summary(pair_statistics(i[0].numpy(), m[0].numpy()) for i, m in zip(s.images, s.masks, strict=True))
        for side, s in (("real", real), ("generated", generated))
    }


def markdown_table(result: dict) -> str:
    """Markdown table of ``compare``'s output (mean ± std per statistic, real vs generated)."""
    rows = [
        ("pairs", "n", None),
        ("lesion area (px), mean ± std", "area_px", 0),
        ("lesion area (px), median", "area_px_median", 0),
        ("connected components (8-connected), mean ± std", "components", 2),
        ("connected components, median", "components_median", 1),
        ("eccentricity of the largest component", "eccentricity", 2),
        ("contrast inside mask - ring (image units, [0, 1])", "contrast", 3),
        ("contrast / image std", "contrast_std_units", 2),
        ("empty masks (share)", "empty_mask_fraction", 2),
        ("masks touching the patch border (share)", "touches_border_fraction", 2),
    ]
    lines = ["| statistic | real | generated |", "|---|---|---|"]
    for label, key, nd in rows:
        cells = []
        for side in ("real", "generated"):
            s = result[side]
            if nd is None:
                cells.append(str(s.get(key)))
            elif f"{key}_mean" in s:
                cells.append(f"{s[f'{key}_mean']:.{nd}f} ± {s[f'{key}_std']:.{nd}f}")
            else:
                cells.append(f"{s.get(key, float('nan')):.{nd}f}")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """CLI: ``python -m scripts.evaluation.pair_stats (--ckpt_dir <run> | --datalist <datalist.json>) --generated
    <dir>``; prints the JSON of :func:`compare` and its Markdown table."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m scripts.evaluation.pair_stats",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    real = parser.add_mutually_exclusive_group(required=True)
    real.add_argument("--ckpt_dir", help="a training run's folder: its dataset.json names the prepared real slices")
    real.add_argument("--datalist", help="datalist.json of the prepared real slices")
    parser.add_argument("--split", default="train", help="the real reference: train (default), validation or all")
    parser.add_argument("--generated", required=True, help="PIG inference output folder (with manifest.csv)")
    parser.add_argument("--grid", default=None, help="optional PNG path for a grid of generated pairs")
    args = parser.parse_args(argv)
    try:  # bad input: argparse's one-line error, printed last
        datalist = args.datalist or training_datalist(args.ckpt_dir)
        generated = generated_pairs(args.generated)
        result = compare(load_real_set(read_datalist(datalist), args.split), generated)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(json.dumps(result, indent=2))
    print(markdown_table(result))
    if args.grid:
        from ..common.grid import save_pair_grid

        size = generated.images.shape[-1]
        images, masks = list(generated.images[:, 0].numpy()), list(generated.masks[:, 0].numpy())
        save_pair_grid(images, masks, args.grid, columns=8, scale=max(1, 128 // size))
    return result


if __name__ == "__main__":
    main()
