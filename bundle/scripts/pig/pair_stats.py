"""Simple statistics of (image, mask) pair sets: lesion area, connected components, lesion-vs-ring contrast.

A non-empty generated mask proves little (the sampling-time binarisation always leaves some pixels on), so these
figures compare generated pairs with real ones on what matters for segmentation training data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import nibabel as nib
import numpy as np
from scipy import ndimage

from .writer import read_manifest

__all__ = [
    "pair_statistics",
    "summarise",
    "load_manifest_pairs",
    "load_datalist_pairs",
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
        ring, in the image's units; NaN for an empty mask or an empty ring) and ``contrast_std_units`` (the same
        divided by the image's standard deviation, comparable across intensity scales).
    """
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask) > 0
    _, components = ndimage.label(mask, structure=np.ones((3, 3)))
    ring = ndimage.binary_dilation(mask, iterations=ring_px) & ~mask
    if mask.any() and ring.any():
        contrast = float(image[mask].mean() - image[ring].mean())
    else:
        contrast = float("nan")
    std = float(image.std())
    return {
        "area_px": int(mask.sum()),
        "components": int(components),
        "contrast": contrast,
        "contrast_std_units": contrast / std if std > 0 else float("nan"),
    }


def summarise(stats: Iterable[dict]) -> dict:
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


def load_manifest_pairs(folder: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, mask) arrays of a PIG output folder, read through its ``manifest.csv``.

    Raises:
        FileNotFoundError, ValueError: see ``scripts.pig.writer.read_manifest`` (e.g. a path outside ``folder``).
        ValueError: a row without a label file: the folder holds image-only samples (DDPM/DDIM baselines), which
            have no masks to compute pair statistics of.
    """
    rows = read_manifest(folder)
    missing = [row.get("id", "?") for row in rows if not row["label"]]
    if missing:
        raise ValueError(
            f"{folder}: {len(missing)} of {len(rows)} manifest rows have no label file (first: {missing[0]}): an "
            "image-only generator's folder (DDPM/DDIM baseline) has no masks, so there are no pair statistics; use "
            "evaluate.json for its image measures"
        )
    return [(nib.load(row["image"]).get_fdata(), nib.load(row["label"]).get_fdata()) for row in rows]


def load_datalist_pairs(datalist_json: str, split: str = "train") -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, mask) arrays of a prepared slice set (``<cache>/<key>/datalist.json``), images mapped to [0, 1].

    Relative paths in the datalist are relative to its folder.
    """
    with open(datalist_json, encoding="utf-8") as f:
        items = json.load(f)[split]
    root = os.path.dirname(os.path.abspath(datalist_json))
    return [
        (
            (nib.load(os.path.join(root, d["image"])).get_fdata() + 1) / 2,
            nib.load(os.path.join(root, d["label"])).get_fdata(),
        )
        for d in items
    ]


def compare(real: list[tuple[np.ndarray, np.ndarray]], generated: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """``{"real": summarise(...), "generated": summarise(...)}`` for two pair sets."""
    return {
        "real": summarise(pair_statistics(i, m) for i, m in real),
        "generated": summarise(pair_statistics(i, m) for i, m in generated),
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
    """CLI: ``python -m scripts.pig.pair_stats --datalist <cache>/<key>/datalist.json --generated <output_dir>``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datalist", required=True, help="datalist.json of the prepared real slices")
    parser.add_argument("--split", default="train", help="which split of the datalist is the real reference")
    parser.add_argument("--generated", required=True, help="PIG inference output folder (with manifest.csv)")
    parser.add_argument("--grid", default=None, help="optional PNG path for a grid of generated pairs")
    args = parser.parse_args(argv)
    generated = load_manifest_pairs(args.generated)
    result = compare(load_datalist_pairs(args.datalist, args.split), generated)
    print(json.dumps(result, indent=2))
    print(markdown_table(result))
    if args.grid:
        from .preview import save_pair_grid

        size = generated[0][0].shape[-1]
        save_pair_grid(
            [g[0] for g in generated], [g[1] for g in generated], args.grid, columns=8, scale=max(1, 128 // size)
        )
    return result


if __name__ == "__main__":
    main()
