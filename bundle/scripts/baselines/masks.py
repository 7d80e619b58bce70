"""Training-set masks for the mask-conditional baselines: the list training records, and the seeded choice per sample.

Paper Table 2's baselines generate images *from training-set masks*. Training writes the training split's masks to
``<ckpt_dir>/train_masks.json`` (the prepared slices' label files, absolute paths into ``cache_dir``), so inference
needs only ``--ckpt_dir`` and uses exactly the masks the model was trained with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import LoadImage

from ..common.value_range import mask_to_signed

__all__ = ["MASK_LIST", "write_mask_list", "read_mask_list", "mask_indices", "load_condition_masks"]

MASK_LIST = "train_masks.json"


def write_mask_list(ckpt_dir: str, datalist: dict) -> str:
    """Write ``<ckpt_dir>/train_masks.json``: ``{"masks": [{"case_id", "patient_id", "label"}, ...]}`` of the
    training split (``datalist["train"]`` of ``scripts.data.prepare.prepare_dataset``), atomically. Returns the path.
    """
    masks = [
        {"case_id": d.get("case_id"), "patient_id": d.get("patient_id"), "label": d["label"]}
        for d in datalist.get("train", [])
    ]
    os.makedirs(ckpt_dir, exist_ok=True)
    path = os.path.join(ckpt_dir, MASK_LIST)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"masks": masks}, f, indent=1, default=str)
    os.replace(path + ".tmp", path)
    return path


def read_mask_list(ckpt_dir: str) -> list[dict]:
    """The training masks recorded by ``write_mask_list``.

    Raises:
        FileNotFoundError: no ``train_masks.json`` (train the baseline into this ``ckpt_dir`` first).
        ValueError: the list is empty.
    """
    path = os.path.join(ckpt_dir, MASK_LIST)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: mask-conditional sampling takes its masks from the training split that baseline "
            "training records there (train first, or point --ckpt_dir at the training folder)"
        )
    with open(path, encoding="utf-8") as f:
        masks = json.load(f)["masks"]
    if not masks:
        raise ValueError(f"{path} lists no training masks")
    return masks


def mask_indices(seed: int, indices: Sequence[int], num_masks: int) -> list[int]:
    """Which training mask sample i gets: a seeded permutation of the M masks, a fresh one for every M samples.

    Sample i takes ``perm_k[i mod M]`` with ``k = i // M`` and ``perm_k`` drawn from
    ``numpy.random.default_rng(SeedSequence([seed, k]))``: every mask is used equally often (±1) and the choice
    depends only on (seed, i, M), never on the batch size.

    Returns:
        One index in [0, M) per entry of ``indices``.

    Raises:
        ValueError: ``num_masks`` < 1.
    """
    if num_masks < 1:
        raise ValueError("need at least one training mask")
    perms: dict[int, np.ndarray] = {}
    out = []
    for i in indices:
        k = int(i) // num_masks
        if k not in perms:
            perms[k] = np.random.default_rng(np.random.SeedSequence([int(seed), k])).permutation(num_masks)
        out.append(int(perms[k][int(i) % num_masks]))
    return out


def load_condition_masks(paths: Sequence[str], image_size: int) -> torch.Tensor:
    """Load masks as the training pipeline does (MONAI ``LoadImage`` with ``NibabelReader``), mapped to {-1, +1}.

    Args:
        paths: 2-D NIfTI label files with values {0, 1} (prepared slices).
        image_size: S; every mask must be (S, S).

    Returns:
        (N, 1, S, S) float32, +1 inside the lesion, -1 outside (the x0 convention the models were trained on).

    Raises:
        FileNotFoundError: a mask is missing (e.g. the cache was deleted: rerun the training command, which
            prepares the slices again and skips finished stages).
        ValueError: a mask of another size.
    """
    loader = LoadImage(reader="NibabelReader", image_only=True)
    out = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"training mask {path} not found (prepared-slice cache deleted?): rerun the baseline training "
                "command with the same data options; it prepares the slices again and skips finished stages"
            )
        mask = torch.as_tensor(np.asarray(loader(path)), dtype=torch.float32)
        if tuple(mask.shape) != (image_size, image_size):
            raise ValueError(f"training mask {path} is {tuple(mask.shape)}, the model generates {image_size}²")
        out.append(mask_to_signed(mask)[None])
    return torch.stack(out)
