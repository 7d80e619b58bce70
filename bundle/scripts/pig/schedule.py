"""DDIM timestep schedule and one-step x̂0 estimate shared by PIG training and sampling.

MONAI 1.6.1 ``DDIMScheduler.set_timesteps`` spaces timesteps with ``linspace(T - 1, 0, n)`` while
``DDIMScheduler.step`` always steps back by the fixed stride ``T // n``. The two disagree whenever ``n`` does not
divide ``T - 1`` nicely (with T = 1024 a perfect-noise oracle ends 0.67 away from x0 after 10 steps). PIG's sampler
therefore sets the stride-consistent ("leading") DDIM schedule ``t_i = i * (T // n) + steps_offset`` (Song et al.,
DDIM, ICLR 2021, uniform skip), so that every ``step`` goes from one scheduled timestep exactly to the next one and
the last step goes from ``steps_offset`` to abar = 1.
"""

from __future__ import annotations

import torch
from monai.networks.schedulers import DDIMScheduler, Scheduler

__all__ = ["set_ddim_timesteps", "predict_x0"]


def set_ddim_timesteps(
    scheduler: DDIMScheduler, num_inference_steps: int, device: str | torch.device | None = None
) -> torch.Tensor:
    """Give ``scheduler`` the stride-consistent DDIM schedule that its ``step`` assumes.

    Args:
        scheduler: a MONAI ``DDIMScheduler`` (any ``num_train_timesteps`` T, ``steps_offset``).
        num_inference_steps: n, 1 <= n <= T.
        device: device for ``scheduler.timesteps``.

    Returns:
        ``scheduler.timesteps``: (n,) long, descending, ``t_i = (n - 1 - i) * (T // n) + steps_offset``.

    Raises:
        ValueError: n outside [1, T].
    """
    num_train = scheduler.num_train_timesteps
    if not 1 <= int(num_inference_steps) <= num_train:
        raise ValueError(f"num_inference_steps must be in [1, {num_train}], got {num_inference_steps}")
    # set_timesteps validates steps_offset and sets num_inference_steps, which step() reads for its stride.
    scheduler.set_timesteps(int(num_inference_steps), device=device)
    stride = num_train // scheduler.num_inference_steps
    timesteps = torch.arange(scheduler.num_inference_steps, device=device).flip(0) * stride + scheduler.steps_offset
    scheduler.timesteps = timesteps.long()
    return scheduler.timesteps


def predict_x0(scheduler: Scheduler, x_t: torch.Tensor, eps: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """One-step clean estimate ``x̂0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` for a batch of timesteps.

    This is ``pred_original_sample`` of MONAI ``DDIMScheduler.step`` for eps-prediction, per sample, including its
    optional clipping to ``[clip_sample_min, clip_sample_max]`` when ``scheduler.clip_sample`` is set, so that the
    generator is trained on the same x̂0 it is given when sampling.

    Args:
        scheduler: MONAI DDPM/DDIM scheduler (its ``alphas_cumprod`` and ``clip_sample`` are used).
        x_t: (B, C, H, W) noisy sample.
        eps: (B, C, H, W) predicted noise.
        timesteps: (B,) long timesteps in [0, T).

    Returns:
        (B, C, H, W) x̂0, same dtype as ``x_t``.
    """
    abar = scheduler.alphas_cumprod.to(device=x_t.device)[timesteps.long()].to(x_t.dtype)
    abar = abar.reshape(-1, *([1] * (x_t.ndim - 1)))
    x0_hat = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    if getattr(scheduler, "clip_sample", False):
        lo, hi = getattr(scheduler, "clip_sample_values", (-1.0, 1.0))
        x0_hat = x0_hat.clamp(lo, hi)
    return x0_hat
