"""The baselines' ``inference`` body and training preview: seeded samples written in PIG's output layout."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..common.grid import free_png_path, save_pair_grid
from ..common.value_range import image_to_unit, signed_to_mask
from ..common.writer import MANIFEST_FIELDS, checkpoint_column, write_samples
from ..pig import sample_noise
from .inferer import BaselineDiffusionInferer
from .masks import load_condition_masks, mask_indices

__all__ = ["BASELINE_FIELDS", "sample_images", "generate_samples", "preview_baseline"]

#: manifest columns after PIG's ``MANIFEST_FIELDS``; ``mask_case`` / ``mask_source`` name the training mask a
#: mask-conditional sample was generated from (empty for image-only samples, whose ``label`` is empty too).
BASELINE_FIELDS = ("generator_type", "sampler", "num_inference_steps", "image_model", "mask_case", "mask_source")


def _step_generator(seed: int, index: int, device: str | torch.device) -> torch.Generator:
    # DDPM step noise of sample i from SeedSequence([seed, i, 1]): independent of the initial noise (which uses
    # SeedSequence([seed, i])) and of the batch. A CUDA generator draws other numbers than a CPU one, so DDPM samples
    # are reproducible per device type (DDIM samples are deterministic given y_T, which is drawn on the CPU).
    state = np.random.SeedSequence([int(seed), int(index), 1]).generate_state(1, dtype=np.uint64)
    return torch.Generator(device=device).manual_seed(int(state[0] % (2**63)))


def sample_images(
    inferer: BaselineDiffusionInferer,
    network: torch.nn.Module,
    seed: int,
    indices: Sequence[int],
    image_size: int,
    condition: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Sample the images ``indices`` of run ``seed`` in one batch.

    y_T of sample i is the image noise of PIG's ``sample_noise(seed, i)`` (so a PIG run and a baseline run with the
    same seed start their slices from the same noise); DDPM step noise is per sample too (``_step_generator``).

    Args:
        condition: (N, 1, S, S) masks in {-1, +1} for the mask-conditional baselines, else ``None``.

    Returns:
        (N, 1, S, S) float32 on the CPU in [0, 1] (``image_to_unit(ŷ0)``).
    """
    y_T = torch.cat([sample_noise(seed, i, image_size)[1] for i in indices]).to(device)
    generators = [_step_generator(seed, i, device) for i in indices]
    cond = None if condition is None else condition.to(device)
    y0_hat = inferer.sample(y_T, network, cond, generators)
    return image_to_unit(y0_hat.float()).cpu()


def generate_samples(
    inferer: BaselineDiffusionInferer,
    network: torch.nn.Module,
    num_samples: int,
    batch_size: int,
    seed: int,
    image_size: int,
    output_dir: str,
    sampler: str,
    masks: Sequence[dict] | None = None,
    spacing_mm: Sequence[float] = (1.0, 1.0),
    checkpoint: str | None = None,
    image_model_checkpoint: str | None = None,
    device: str | torch.device = "cpu",
) -> list[dict]:
    """Generate ``num_samples`` baseline samples into ``output_dir`` in PIG's layout (``write_samples``).

    Image-only (``inferer.generator_type == "image"``): ``<id>_image.nii.gz`` only; the manifest's ``label`` and
    ``lesion_area_px`` are empty (the segmentation experiment refuses such a folder). Mask-conditional: sample i is
    generated from training mask ``masks[mask_indices(seed, [i], M)[0]]``, written as ``<id>_label.nii.gz`` (uint8
    {0, 1}) beside its image, with ``mask_case`` / ``mask_source`` in the manifest. Ids:
    ``<generator_type>-<sampler>-s<seed>-<index:05d>``.

    Args:
        inferer: the baseline inferer with its sampling scheduler and timesteps set.
        network: trained network (``DiffusionModelUNet``, or the ``ControlNet``).
        num_samples, batch_size: counts (>= 1); results do not depend on ``batch_size``.
        seed: run seed.
        image_size: S.
        output_dir: destination folder.
        sampler: ``"ddpm"`` or ``"ddim"``, recorded in the manifest.
        masks: the training masks (``read_mask_list``), needed by the mask-conditional baselines.
        spacing_mm: (row, column) pixel spacing of the NIfTI affine.
        checkpoint: the trained weights file (recorded with its SHA-256 in the ``generator`` column).
        image_model_checkpoint: the frozen image model's file (``controlnet``; ``image_model`` column).
        device: where the networks run.

    Returns:
        The manifest rows.

    Raises:
        ValueError: no masks for a mask-conditional baseline; see also ``write_samples``.
        FileExistsError: a target exists (nothing is written).
    """
    conditional = inferer.generator_type != "image"
    if conditional and not masks:
        raise ValueError(f"the {inferer.generator_type} baseline needs training masks (train_masks.json)")
    columns = {
        "guider": "",
        "generator": checkpoint_column(checkpoint) if checkpoint else "",
        "generator_type": inferer.generator_type,
        "sampler": sampler,
        "num_inference_steps": len(inferer.scheduler.timesteps),
        "image_model": checkpoint_column(image_model_checkpoint) if image_model_checkpoint else "",
        "mask_case": "",
        "mask_source": "",
    }
    network.eval()

    def batch(index: list[int]) -> tuple[torch.Tensor, torch.Tensor | None, list[dict] | None]:
        if not conditional:
            return sample_images(inferer, network, seed, index, image_size, None, device), None, None
        chosen = [masks[j] for j in mask_indices(seed, index, len(masks))]
        cond = load_condition_masks([m["label"] for m in chosen], image_size)
        images = sample_images(inferer, network, seed, index, image_size, cond, device)
        extras = [{"mask_case": m.get("case_id", ""), "mask_source": m["label"]} for m in chosen]
        return images, signed_to_mask(cond), extras

    prefix = f"{inferer.generator_type}-{sampler}"
    fields = MANIFEST_FIELDS + BASELINE_FIELDS
    return write_samples(
        batch, num_samples, batch_size, seed, output_dir, spacing_mm, prefix, columns, fields, with_masks=conditional
    )


def preview_baseline(
    inferer: BaselineDiffusionInferer,
    network: torch.nn.Module,
    num_samples: int,
    image_size: int,
    path: str,
    masks: Sequence[dict] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> str | None:
    """Training's last step: a PNG grid of ``num_samples`` samples from the final weights (mask outlines in red for
    the mask-conditional baselines). An existing ``path`` gets a numbered sibling. Returns the PNG path, or None if
    ``num_samples`` < 1.
    """
    if num_samples < 1:
        return None
    network.eval()
    index = list(range(num_samples))
    cond = None
    if inferer.generator_type != "image":
        cond = load_condition_masks([masks[j]["label"] for j in mask_indices(seed, index, len(masks))], image_size)
    images = sample_images(inferer, network, seed, index, image_size, cond, device)[:, 0].numpy()
    outlines = np.zeros_like(images) if cond is None else signed_to_mask(cond[:, 0]).numpy()
    scale = max(1, 128 // image_size)
    return save_pair_grid(list(images), list(outlines), free_png_path(path), columns=min(4, num_samples), scale=scale)
