"""Batch preparation for the paired forward process (PIG paper, Algorithm 1 and the authors' generator training)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines import DiffusionPrepareBatch

from ..common.distributed import rank as rank_of
from ..common.distributed import world_size

__all__ = ["PairedDiffusionPrepareBatch"]


class PairedDiffusionPrepareBatch(DiffusionPrepareBatch):
    """Stack (x0, y0), draw independent noise (eps1, eps2) and one timestep per pair.

    With MONAI ``DiffusionInferer`` this is exactly the guider's training step: the inferer adds noise to the stacked
    ``[x0, y0]`` with one ``t`` per pair (giving ``[x_t, y_t]``) and calls the network on it; the target is ``eps1``.

    Args:
        num_train_timesteps: T (1024 in the paper).
        antithetic: draw ``t`` for the first half of the batch and ``T - 1 - t`` for the second (authors' code).
        image_key: key of y0, the DBT slice (B, 1, H, W) in [-1, 1].
        label_key: key of x0, the mask (B, 1, H, W) in {-1, +1}.
        seed: if given, noise and timesteps come from a private ``torch.Generator`` re-seeded each time the engine it
            is attached to starts (validation: the same noise every epoch, so losses are comparable).
        guidance_order: ``"mask_first"`` (the paper: inputs [x0, y0], the guider learns the mask) or
            ``"image_first"`` (the ablation: inputs [y0, x0], the first network learns the image and the second
            the mask; ``scripts.pig.GUIDANCE_ORDERS``).
        split_across_ranks: under ``torchrun`` with MONAI's ``DistributedSampler`` (rank r holds the samples
            r, r + W, r + 2W, … of each shuffled epoch): every rank draws the noise and timesteps of the whole global
            batch (W × its own, from the same-seeded random stream) and keeps rows r, r + W, …, so W ranks train on
            exactly the noise one process with the W-times batch and the same sample order draws. Off (or one
            process): each batch draws its own.

    Returns (``__call__``): ``(inputs, target, (), {"noise": noise, "timesteps": t})`` with inputs (B, 2, H, W) =
    [x0, y0], noise (B, 2, H, W) = [eps1, eps2], target (B, 1, H, W) = eps1, t (B,) long in [0, T).

    Raises:
        KeyError: the batch lacks ``image_key`` or ``label_key``.
        ValueError: image and mask batches of different shapes.
    """

    def __init__(
        self,
        num_train_timesteps: int,
        antithetic: bool = False,
        image_key: str = "image",
        label_key: str = "label",
        seed: int | None = None,
        split_across_ranks: bool = False,
        guidance_order: str = "mask_first",
    ) -> None:
        super().__init__(num_train_timesteps=num_train_timesteps)
        if guidance_order not in ("mask_first", "image_first"):
            raise ValueError(f"guidance_order must be 'mask_first' or 'image_first', got {guidance_order!r}")
        self.guidance_order = guidance_order
        self.split_across_ranks = split_across_ranks
        self.antithetic = antithetic
        self.image_key = image_key
        self.label_key = label_key
        self.seed = seed
        self._generator: torch.Generator | None = None
        self.reset()

    def reset(self, engine: Engine | None = None) -> None:
        """Re-seed the private generator (no-op without ``seed``)."""
        if self.seed is not None:
            self._generator = torch.Generator().manual_seed(int(self.seed))

    def attach(self, engine: Engine) -> None:
        """Re-seed at every ``engine`` start (MONAI handler protocol)."""
        if self.seed is not None:
            engine.add_event_handler(Events.STARTED, self.reset)

    def get_noise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W) standard normal noise [eps1, eps2], drawn on the CPU when seeded (device-independent)."""
        if self._generator is None:
            return torch.randn_like(images)
        return torch.randn(images.shape, generator=self._generator, dtype=images.dtype).to(images.device)

    def get_timesteps(self, images: torch.Tensor) -> torch.Tensor:
        """(B,) long timesteps, uniform in [0, T); antithetic pairs (t, T - 1 - t) if enabled."""
        batch = images.shape[0]
        n_draw = (batch + 1) // 2 if self.antithetic else batch
        t = torch.randint(0, self.num_train_timesteps, (n_draw,), generator=self._generator)
        if self.antithetic:
            t = torch.cat([t, self.num_train_timesteps - 1 - t])[:batch]
        return t.long().to(images.device)

    @staticmethod
    def check_keys(batchdata: Mapping[str, torch.Tensor], keys) -> None:
        """KeyError naming the first of ``keys`` missing from the batch (and the keys it has)."""
        for key in keys:
            if key not in batchdata:
                raise KeyError(f"batch has no '{key}' entry (keys: {sorted(batchdata)})")

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        self.check_keys(batchdata, (self.image_key, self.label_key))
        x0 = torch.as_tensor(batchdata[self.label_key])
        y0 = torch.as_tensor(batchdata[self.image_key])
        if x0.shape != y0.shape:
            raise ValueError(f"mask batch {tuple(x0.shape)} and image batch {tuple(y0.shape)} differ in shape")
        streams = [x0, y0] if self.guidance_order == "mask_first" else [y0, x0]  # the first network's stream first
        inputs = torch.cat(streams, dim=1).to(device, non_blocking=non_blocking, **kwargs)
        world, rank = (world_size(), rank_of()) if self.split_across_ranks else (1, 0)
        # the global batch's shape: its noise and timesteps are drawn whole, this rank keeps its interleaved rows
        whole = inputs if world == 1 else inputs.new_empty((inputs.shape[0] * world, *inputs.shape[1:]))
        noise = self.get_noise(whole)[rank::world].to(device, non_blocking=non_blocking)
        timesteps = self.get_timesteps(whole)[rank::world].to(device, non_blocking=non_blocking)
        return inputs, noise[:, :1], (), {"noise": noise, "timesteps": timesteps}
