"""PNG grids of (image, mask) pairs: the image in gray with the mask outline drawn in red.

Used by PIG's training preview, the baselines' preview and the evaluation report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["pair_grid", "save_pair_grid", "free_png_path"]


#: pixels of mid-gray between tiles, so that neighbouring pairs are not read as one image.
GAP = 2


def pair_grid(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], columns: int = 4, scale: int = 1, labels: bool = True
) -> np.ndarray:
    """Tile pairs into one RGB uint8 picture, mask outlines in red, tiles apart by a :data:`GAP`-pixel gray line and
    numbered (``0``, ``1``, ... in yellow, top left, the pair's index in the given order) when ``labels``.

    Args:
        images: N arrays (H, W) in [0, 1].
        masks: N arrays (H, W), non-zero = lesion (outline = mask minus its erosion).
        columns: tiles per row.
        scale: integer nearest-neighbour up-scaling per tile (small images are hard to see).
        labels: write each tile's index (skipped on tiles under 24 px, where it would hide the image).

    Returns:
        ``(rows * (H * scale + GAP) - GAP, columns * (W * scale + GAP) - GAP, 3)`` uint8 array.
    """
    from PIL import ImageDraw

    if len(images) != len(masks) or not images:
        raise ValueError("need the same, non-zero number of images and masks")
    tiles = []
    for img, msk in zip(images, masks, strict=True):
        img = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
        msk = np.asarray(msk) > 0
        rgb = np.repeat((img * 255).astype(np.uint8)[..., None], 3, axis=2)
        edge = msk & ~ndimage.binary_erosion(msk)
        rgb[edge] = (255, 40, 40)
        tiles.append(np.kron(rgb, np.ones((scale, scale, 1), dtype=np.uint8)))
    h, w, _ = tiles[0].shape
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * (h + GAP) - GAP, columns * (w + GAP) - GAP, 3), 128, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = tile
    if labels and min(h, w) >= 24:
        picture = Image.fromarray(grid)
        draw = ImageDraw.Draw(picture)
        for k in range(len(tiles)):
            r, c = divmod(k, columns)
            draw.text((c * (w + GAP) + 2, r * (h + GAP) + 1), str(k), fill=(255, 230, 0))
        grid = np.asarray(picture)
    return grid


def save_pair_grid(images, masks, path: str, columns: int = 4, scale: int = 1) -> str:
    """Write ``pair_grid`` as PNG to ``path`` (refuses to overwrite). Returns ``path``."""
    if os.path.exists(path):
        raise FileExistsError(f"refusing to overwrite {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(pair_grid(images, masks, columns, scale)).save(path)
    return path


def free_png_path(path: str) -> str:
    """``path`` if no file is there, else the first free ``<stem>_<k><ext>`` beside it (k = 1, 2, ...)."""
    stem, ext = os.path.splitext(path)
    k = 1
    while os.path.exists(path):
        path, k = f"{stem}_{k}{ext}", k + 1
    return path
