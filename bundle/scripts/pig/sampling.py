"""PIG's sampling workflows: seeded paired DDIM samples, written as NIfTI + manifest (``inference``) or as the
PNG preview at the end of ``training``."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..common.checkpoint import load_weights
from ..common.distributed import is_main_process
from ..common.grid import free_png_path, save_pair_grid
from ..common.speed import place
from ..common.value_range import image_to_unit, signed_to_mask
from ..common.writer import MANIFEST_FIELDS, checkpoint_column, write_samples
from .inferer import PairedDDIMInferer

__all__ = ["sample_noise", "sample_pairs", "generate_pairs", "preview_samples"]

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
        ``(images, masks)`` on the CPU: (N, 1, S, S) float32 slices in [0, 1] (``image_to_unit(ŷ0)``) and
        (N, 1, S, S) uint8 masks, 1 where the inferer's mask (x̂0 or the generator's last condition, its
        ``label_source``) is > 0 (``signed_to_mask``: the midpoint of the {-1, +1} convention).
    """
    noise = [sample_noise(seed, i, image_size) for i in indices]
    x_T = torch.cat([n[0] for n in noise]).to(device)
    y_T = torch.cat([n[1] for n in noise]).to(device)
    mask, y0_hat = inferer.sample(x_T, y_T, guider, generator)
    return image_to_unit(y0_hat.float()).cpu(), signed_to_mask(mask).cpu()


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
    output_formats: str | Sequence[str] = ("nifti",),
) -> list[dict]:
    """Generate ``num_samples`` (mask, slice) pairs and write them into ``output_dir``.

    Files: ``<id>_image.nii.gz`` (float32, [0, 1] = (ŷ0 + 1) / 2), ``<id>_label.nii.gz`` (uint8, 1 where the
    inferer's mask is > 0, i.e. the {-1, +1} mask convention thresholded at its midpoint; which mask is the
    inferer's ``label_source``, recorded in the manifest), and ``manifest.csv``; ids are
    ``<id_prefix>-s<seed>-<index:05d>``. Every target is checked before the first write (``write_samples``).

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
        output_formats: extra files per pair besides NIfTI (``seg.nrrd``, ``dicom_seg``; ``write_samples``).

    Returns:
        The manifest rows.

    Raises:
        ValueError: ``num_samples`` or ``batch_size`` < 1.
        FileExistsError: a target file or ``manifest.csv`` exists already (nothing is written).
    """
    ckpt = [checkpoint_column(p) for p in checkpoints]
    ckpt += [""] * (2 - len(ckpt))
    guider.eval()
    generator.eval()

    def batch(index: list[int]) -> tuple[torch.Tensor, torch.Tensor, None]:
        images, labels = sample_pairs(inferer, guider, generator, seed, index, image_size, device)
        return images, labels, None

    columns = {"guider": ckpt[0], "generator": ckpt[1], "label_source": inferer.label_source,
               "guidance_order": inferer.guidance_order}  # fmt: skip
    return write_samples(
        batch, num_samples, batch_size, seed, output_dir, spacing_mm, id_prefix, columns,
        fields=(*MANIFEST_FIELDS, "label_source", "guidance_order"), output_formats=output_formats,
    )  # fmt: skip


def preview_samples(
    guider_def: torch.nn.Module,
    network_def: torch.nn.Module,
    guider_path: str,
    generator_path: str,
    inferer: PairedDDIMInferer,
    num_samples: int,
    image_size: int,
    path: str,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> str | None:
    """Sample ``num_samples`` pairs from the final weights and save them as a PNG grid (training's last step).

    Copies of ``guider_def`` / ``network_def`` are loaded from ``guider_path`` / ``generator_path`` (in
    ``torch.channels_last`` when the inferer's ``channels_last`` is set); an existing
    ``path`` gets a numbered sibling instead of being overwritten. Returns the PNG path, or None if
    ``num_samples`` < 1 and on ranks other than 0 of a ``torchrun`` run (rank 0 alone samples the preview).
    """
    if num_samples < 1 or not is_main_process():
        return None
    target = free_png_path(path)
    logger.info("sampling %d preview pairs (%d DDIM steps) for %s", num_samples, inferer.num_inference_steps, target)
    cl = inferer.channels_last
    guider = place(load_weights(copy.deepcopy(guider_def), guider_path, "guider", device), device, cl).eval()
    generator = place(load_weights(copy.deepcopy(network_def), generator_path, "generator", device), device, cl).eval()
    images, masks = sample_pairs(inferer, guider, generator, seed, range(num_samples), image_size, device)
    images, masks = images[:, 0].numpy(), masks[:, 0].numpy()
    scale = max(1, 128 // image_size)
    written = save_pair_grid(list(images), list(masks), target, columns=min(4, num_samples), scale=scale)
    logger.info("preview written to %s (pairs 0-%d, mask outlines in red)", written, num_samples - 1)
    return written
