"""Generator types, the frozen image model of the ControlNet baseline and the ControlNet's initial weights."""

from __future__ import annotations

import logging
from typing import Any

import torch
from monai.networks.utils import copy_model_state

from ..common.checkpoint import load_weights

__all__ = ["GENERATOR_TYPES", "SAMPLERS", "check_choice", "load_frozen", "init_controlnet"]

logger = logging.getLogger(__name__)

#: ``image``: unconditional DDPM on y0; ``concat``: [y_t, mask] input channels; ``controlnet``: ControlNet on the
#: frozen ``image`` model.
GENERATOR_TYPES = ("image", "concat", "controlnet")
#: ``ddpm``: ancestral sampling with every one of the T training steps; ``ddim``: deterministic DDIM (eta = 0).
SAMPLERS = ("ddpm", "ddim")


def check_choice(generator_type: str, sampler: str | None = None) -> None:
    """Refuse an unknown ``generator_type`` (``GENERATOR_TYPES``) or ``sampler`` (``SAMPLERS``).

    Raises:
        ValueError: names the bad value and the accepted ones.
    """
    if generator_type not in GENERATOR_TYPES:
        raise ValueError(f"generator_type must be one of {GENERATOR_TYPES}, got {generator_type!r}")
    if sampler is not None and sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def load_frozen(network: torch.nn.Module, path: str, what: str, device: Any = "cpu") -> torch.nn.Module:
    """Load trained weights strictly (``scripts.common.checkpoint.load_weights``), move to ``device``, freeze.

    Frozen means eval mode and ``requires_grad_(False)``: the ControlNet baseline trains only the ControlNet, while
    gradients still flow *through* this model to the ControlNet's residuals.

    Raises:
        FileNotFoundError: ``path`` missing (train the ``image`` baseline first, or pass ``--image_model_path``).
        ValueError: weights of another architecture.
    """
    try:
        network = load_weights(network, path, what, device)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{e}; the controlnet baseline needs a trained image model: run the baseline training with "
            "--generator_type image first (same --ckpt_dir), or pass --image_model_path"
        ) from e
    return network.to(device).eval().requires_grad_(False)


def init_controlnet(controlnet: torch.nn.Module, image_model: torch.nn.Module) -> int:
    """Copy the image model's weights into the ControlNet's matching encoder (ControlNet's "trainable copy").

    Zhang & Agrawala (ControlNet, ICCV 2023) start the control branch as a copy of the frozen model's encoder; MONAI's
    ``ControlNet`` uses the ``DiffusionModelUNet`` names for ``conv_in``, ``time_embed``, ``down_blocks`` and
    ``middle_block``, so ``monai.networks.utils.copy_model_state`` copies exactly those. The zero-initialised
    ``controlnet_*`` blocks and the conditioning embedding's zero output keep the start equal to the image model.

    Args:
        controlnet: ``monai.networks.nets.ControlNet`` (same ``channels``, ``attention_levels``... as the model).
        image_model: trained ``DiffusionModelUNet`` with ``in_channels=1``.

    Returns:
        The number of tensors copied.

    Raises:
        ValueError: nothing could be copied (the two networks do not share an architecture).
    """
    _, updated, _ = copy_model_state(controlnet, image_model.state_dict(), inplace=True)
    if not updated:
        raise ValueError("no ControlNet weight matches the image model: use the same channels/attention settings")
    logger.info(f"ControlNet initialised from the image model: {len(updated)} tensors copied")
    return len(updated)
