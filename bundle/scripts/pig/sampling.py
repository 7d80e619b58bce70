"""The ``inference`` workflow body: seeded batches of paired DDIM samples written as NIfTI + manifest."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch

from .checkpoint import file_sha256
from .inferer import PairedDDIMInferer
from .writer import check_free, pair_paths, write_manifest, write_pair

__all__ = ["sample_noise", "sample_pairs", "generate_pairs"]

logger = logging.getLogger(__name__)


def sample_noise(seed: int, index: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial noise (x_T, y_T), each (1, 1, S, S) float32 N(0, I), fixed by (seed, sample index) alone.

    Drawn on the CPU from a generator seeded by ``numpy.random.SeedSequence([seed, index])``, so a sample does not
    depend on the batch size, the device or the other samples, and (seed, i) never collides with (seed', j).
    """
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint64)
    g = torch.Generator().manual_seed(int(state[0] % (2**63)))
    x_T = torch.randn((1, 1, image_size, image_size), generator=g)
    y_T = torch.randn((1, 1, image_size, image_size), generator=g)
    return x_T, y_T


def sample_pairs(
    inferer: PairedDDIMInferer,
    guider: torch.nn.Module,
    generator: torch.nn.Module,
    seed: int,
    indices: Sequence[int],
    image_size: int,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample the pairs ``indices`` of run ``seed`` in one batch.

    Returns:
        ``(images, masks)`` on the CPU: (N, 1, S, S) float32 slices in [0, 1] (``(ŷ0 + 1) / 2``) and (N, 1, S, S)
        uint8 masks, 1 where x̂0 > 0 (the midpoint of the {-1, +1} mask convention).
    """
    noise = [sample_noise(seed, i, image_size) for i in indices]
    x_T = torch.cat([n[0] for n in noise]).to(device)
    y_T = torch.cat([n[1] for n in noise]).to(device)
    x0_hat, y0_hat = inferer(x_T, y_T, guider, generator)
    images = ((y0_hat.float().clamp(-1, 1) + 1) / 2).cpu()
    masks = (x0_hat.float() > 0).to(torch.uint8).cpu()
    return images, masks


def generate_pairs(
    inferer: PairedDDIMInferer,
    guider: torch.nn.Module,
    generator: torch.nn.Module,
    num_samples: int,
    batch_size: int,
    seed: int,
    image_size: int,
    output_dir: str,
    spacing_mm: Sequence[float] = (1.0, 1.0),
    checkpoints: Sequence[str] = (),
    device: str | torch.device = "cpu",
    id_prefix: str = "pig",
) -> list[dict]:
    """Generate ``num_samples`` (mask, slice) pairs and write them into ``output_dir``.

    Files: ``<id>_image.nii.gz`` (float32, [0, 1] = (ŷ0 + 1) / 2), ``<id>_label.nii.gz`` (uint8, 1 where x̂0 > 0,
    i.e. the {-1, +1} mask convention thresholded at its midpoint), and ``manifest.csv``; ids are
    ``<id_prefix>-s<seed>-<index:05d>``. Every target is checked before the first write.

    Args:
        inferer: the paired DDIM sampler.
        guider, generator: trained networks (weights loaded).
        num_samples: number of pairs (>= 1).
        batch_size: pairs per network call (>= 1); results do not depend on it.
        seed: run seed; sample i uses noise from ``sample_noise(seed, i)``.
        image_size: S, the side in pixels the networks were trained at.
        output_dir: destination folder (created if missing).
        spacing_mm: (row, column) pixel spacing for the NIfTI affine, e.g. the training data's.
        checkpoints: (guider, generator) weight files, recorded with their SHA-256 in the manifest.
        device: where the networks run.

    Returns:
        The manifest rows.

    Raises:
        ValueError: ``num_samples`` or ``batch_size`` < 1.
        FileExistsError: a target file or ``manifest.csv`` exists already (nothing is written).
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}")
    ids = [f"{id_prefix}-s{seed}-{i:05d}" for i in range(num_samples)]
    manifest = os.path.join(output_dir, "manifest.csv")
    targets = [p for sid in ids for p in pair_paths(output_dir, sid)] + [manifest]
    check_free(targets)
    ckpt = [f"{os.path.basename(p)}:sha256={file_sha256(p)[:16]}" for p in checkpoints]
    ckpt += [""] * (2 - len(ckpt))
    guider.eval()
    generator.eval()
    rows = []
    for start in range(0, num_samples, batch_size):
        index = list(range(start, min(start + batch_size, num_samples)))
        images, labels = sample_pairs(inferer, guider, generator, seed, index, image_size, device)
        for k, i in enumerate(index):
            image_path, label_path = pair_paths(output_dir, ids[i])
            write_pair(images[k], labels[k], image_path, label_path, spacing_mm)
            rows.append(
                {
                    "id": ids[i],
                    "image": os.path.basename(image_path),
                    "label": os.path.basename(label_path),
                    "seed": seed,
                    "sample_index": i,
                    "lesion_area_px": int(labels[k].sum()),
                    "guider": ckpt[0],
                    "generator": ckpt[1],
                }
            )
        logger.info(f"generated {len(rows)}/{num_samples} pairs")
    write_manifest(manifest, rows)
    return rows
