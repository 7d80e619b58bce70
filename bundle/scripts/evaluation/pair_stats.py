"""Quick pair statistics of a generated folder against prepared real slices: lesion area, components, contrast.

A non-empty generated mask proves little (the sampling-time binarisation always leaves some pixels on), so these
figures compare generated pairs with real ones on what matters for segmentation training data. Area and components
are :func:`~.mask_stats.mask_statistics`' (8-connected); the contrast of the image inside the mask against a ring
around it is this module's. The full report with FID/KID is ``evaluate.json``; this is its fast, feature-free part::

    python -m scripts.evaluation.pair_stats --datalist <cache>/<key>/datalist.json --generated <output_dir>
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from ..data.prepare import read_datalist
from .mask_stats import mask_statistics
from .sets import PairSet, load_generated_set, load_real_set

__all__ = ["pair_statistics", "set_summary", "generated_pairs", "compare", "markdown_table", "main"]


def pair_statistics(image: np.ndarray, mask: np.ndarray, ring_px: int = 3) -> dict:
    """Statistics of one pair.

    Args:
        image: (H, W) slice, any linear intensity scale (e.g. [0, 1] or [-1, 1]).
        mask: (H, W) lesion mask, non-zero = lesion.
        ring_px: width in pixels of the ring around the mask (binary dilation minus the mask) used as surround.

    Returns:
        ``area_px`` (lesion pixels), ``components`` (8-connected), ``contrast`` (mean inside minus mean in the
        ring, in the image's units; NaN for an empty mask or an empty ring) and ``contrast_std_units`` (the same
        divided by the image's standard deviation, comparable across intensity scales).
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
    }


def set_summary(stats: Iterable[dict]) -> dict:
    """Mean and standard deviation of each statistic over a set (NaNs ignored), plus the share of empty masks."""
    stats = list(stats)
    out: dict = {"n": len(stats)}
    if not stats:
        return out
    for key in ("area_px", "components", "contrast", "contrast_std_units"):
        vals = np.array([s[key] for s in stats], dtype=np.float64)
        out[f"{key}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        out[f"{key}_std"] = float(np.nanstd(vals)) if np.isfinite(vals).any() else float("nan")
    out["empty_mask_fraction"] = float(np.mean([s["area_px"] == 0 for s in stats]))
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
        ("lesion area (px)", "area_px", 0),
        ("connected components", "components", 2),
        ("contrast inside mask - ring (image units, [0, 1])", "contrast", 3),
        ("contrast / image std", "contrast_std_units", 2),
        ("empty masks (share)", "empty_mask_fraction", 2),
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
    """CLI: ``python -m scripts.evaluation.pair_stats --datalist <cache>/<key>/datalist.json --generated <dir>``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datalist", required=True, help="datalist.json of the prepared real slices")
    parser.add_argument("--split", default="train", help="which split of the datalist is the real reference")
    parser.add_argument("--generated", required=True, help="PIG inference output folder (with manifest.csv)")
    parser.add_argument("--grid", default=None, help="optional PNG path for a grid of generated pairs")
    args = parser.parse_args(argv)
    generated = generated_pairs(args.generated)
    result = compare(load_real_set(read_datalist(args.datalist), args.split), generated)
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
