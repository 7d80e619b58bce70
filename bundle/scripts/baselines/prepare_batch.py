"""Batch preparation for the baselines: y0 alone, or y0 with its mask as the condition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines import DiffusionPrepareBatch

from ..pig import PairedDiffusionPrepareBatch

__all__ = ["ImageDiffusionPrepareBatch"]


class ImageDiffusionPrepareBatch(PairedDiffusionPrepareBatch):
    """MONAI ``DiffusionPrepareBatch`` on the slice y0, with PIG's timestep and noise draws.

    The output is MONAI's: ``(y0, eps, (), {"noise": eps, "timesteps": t[, "condition": mask]})`` with y0 and eps
    (B, 1, H, W), t (B,) long in [0, T), and the mask (B, 1, H, W) in {-1, +1} when ``condition_name`` is set (the
    mask-conditional baselines). Timesteps and noise come from ``PairedDiffusionPrepareBatch`` so that the baselines
    train exactly like PIG's networks: antithetic timesteps (authors' code) and, with ``seed``, the same validation
    noise every epoch.

    Args:
        num_train_timesteps: T (1024).
        antithetic: ``t`` for half the batch, ``T - 1 - t`` for the other half.
        condition_name: batch key of the mask (``"label"``) or ``None`` (image-only).
        seed: private generator seed (validation), re-seeded when the attached engine starts.

    Raises (``__call__``):
        KeyError: the batch lacks ``image`` or the condition key.
    """

    def __init__(
        self,
        num_train_timesteps: int,
        antithetic: bool = False,
        condition_name: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_train_timesteps, antithetic=antithetic, label_key=condition_name or "label", seed=seed)
        self.condition_name = condition_name

    def __call__(self, batchdata: Mapping[str, torch.Tensor], *args: Any, **kwargs: Any):
        """MONAI's ``DiffusionPrepareBatch`` output for ``batchdata`` (see the class docstring)."""
        self.check_keys(batchdata, [k for k in ("image", self.condition_name) if k is not None])
        return DiffusionPrepareBatch.__call__(self, batchdata, *args, **kwargs)
