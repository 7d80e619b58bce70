"""One inferer for the three baselines: MONAI's training forward pass, and DDPM / DDIM sampling on a consistent
schedule."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from monai.inferers import ControlNetDiffusionInferer, DiffusionInferer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, Scheduler

from ..common.speed import grad_mode
from ..pig import set_ddim_timesteps
from .networks import check_choice

__all__ = ["BaselineDiffusionInferer"]

logger = logging.getLogger(__name__)


class BaselineDiffusionInferer(ControlNetDiffusionInferer):
    """Noise prediction for the ``image``, ``concat`` and ``controlnet`` baselines, for training and sampling.

    Training (``__call__``) is MONAI's own forward pass: ``DiffusionInferer`` for ``image`` (eps from ``y_t``) and
    ``concat`` (``mode="concat"``: eps from ``[y_t, mask]``, SegGuidedDiff), ``ControlNetDiffusionInferer`` for
    ``controlnet`` (the network being trained is the ControlNet; ``image_model`` is the frozen unconditional model
    that receives its residuals). Sampling (``sample``) calls the same networks the same way (``predict_noise``; a
    test checks it against MONAI's forward pass) in its own loop, because MONAI's ``sample`` (1.6.1) runs its
    scheduler's ``timesteps`` as set by ``DDIMScheduler.set_timesteps`` (``linspace``, inconsistent with the fixed
    stride of ``DDIMScheduler.step``; see ``scripts.pig.set_ddim_timesteps``) and draws DDPM noise for the whole
    batch (results would depend on the batch size).

    Timesteps when ``num_inference_steps`` is given: DDIM gets PIG's stride-consistent schedule
    (``set_ddim_timesteps``; paper: 256 of 1024); DDPM always gets all T steps, T-1, ..., 0, because
    ``DDPMScheduler.step`` goes from t to t-1 whatever the schedule (a warning says so when another count is asked).

    Args:
        scheduler: MONAI ``DDPMScheduler`` (training noise, DDPM sampling) or ``DDIMScheduler`` (DDIM sampling), built
            with the training noise schedule (linear beta 1e-4..0.02, T = 1024).
        generator_type: ``"image"``, ``"concat"`` or ``"controlnet"``.
        num_inference_steps: sampling steps (``None``: leave the scheduler's timesteps alone, e.g. for training).
        image_model: the frozen unconditional ``DiffusionModelUNet`` (``controlnet`` only).
        inference_mode: sample under ``torch.inference_mode()`` (default) rather than ``torch.no_grad()``, as PIG's
            sampler; the returned tensor is an ordinary tensor either way.

    Raises:
        ValueError: unknown ``generator_type``; ``controlnet`` without ``image_model``.
        TypeError: ``num_inference_steps`` given with a scheduler that is neither DDPM nor DDIM.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        generator_type: str = "image",
        num_inference_steps: int | None = None,
        image_model: torch.nn.Module | None = None,
        inference_mode: bool = True,
    ) -> None:
        super().__init__(scheduler)
        check_choice(generator_type)
        if generator_type == "controlnet" and image_model is None:
            raise ValueError("the controlnet baseline needs the trained image model (image_model_path)")
        self.generator_type = generator_type
        self.inference_mode = inference_mode
        self.image_model = None if image_model is None else image_model.eval().requires_grad_(False)
        if num_inference_steps is not None:
            self.set_timesteps(num_inference_steps)

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """Set the sampling timesteps (DDIM: stride-consistent n steps; DDPM: all T). Returns them, descending."""
        num_train = self.scheduler.num_train_timesteps
        if isinstance(self.scheduler, DDIMScheduler):
            return set_ddim_timesteps(self.scheduler, num_inference_steps)
        if not isinstance(self.scheduler, DDPMScheduler):
            raise TypeError(f"sampling needs a MONAI DDPMScheduler or DDIMScheduler, got {type(self.scheduler)}")
        if int(num_inference_steps) != num_train:
            logger.warning(
                f"DDPM sampling uses all T = {num_train} steps (DDPMScheduler.step always steps from t to t-1); "
                f"num_inference_steps={num_inference_steps} applies to DDIM only"
            )
        self.scheduler.set_timesteps(num_train)  # linspace(T-1, 0, T) = every integer timestep
        return self.scheduler.timesteps

    def _check_condition(self, condition: torch.Tensor | None) -> None:
        if (condition is None) != (self.generator_type == "image"):
            need = "no mask" if self.generator_type == "image" else "a mask condition (B, 1, H, W)"
            raise ValueError(f"the {self.generator_type} baseline takes {need}")

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: torch.nn.Module,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training forward pass: noise ``inputs`` (y0) to y_t and predict eps (MONAI's inferers).

        Args:
            inputs: (B, 1, H, W) y0 in [-1, 1].
            network: the network being trained (the ``DiffusionModelUNet``, or the ``ControlNet``).
            noise: (B, 1, H, W) eps; timesteps: (B,) long in [0, T).
            condition: (B, 1, H, W) mask in {-1, +1} (``concat`` / ``controlnet``), ``None`` for ``image``.

        Returns:
            (B, 1, H, W) predicted eps.
        """
        self._check_condition(condition)
        if self.generator_type == "image":
            return DiffusionInferer.__call__(self, inputs, network, noise, timesteps)
        if self.generator_type == "concat":
            return DiffusionInferer.__call__(self, inputs, network, noise, timesteps, condition, mode="concat")
        return ControlNetDiffusionInferer.__call__(
            self, inputs, self.image_model, network, noise, timesteps, cn_cond=condition
        )

    def predict_noise(
        self, x_t: torch.Tensor, network: torch.nn.Module, timesteps: torch.Tensor, condition: torch.Tensor | None
    ) -> torch.Tensor:
        """eps for y_t (B, 1, H, W) at timesteps (B,), as in training: the same network calls as ``__call__``."""
        self._check_condition(condition)
        if self.generator_type == "image":
            return network(x_t, timesteps)
        if self.generator_type == "concat":
            return network(torch.cat([x_t, condition], dim=1), timesteps)
        down, mid = network(x=x_t, timesteps=timesteps, controlnet_cond=condition)
        return self.image_model(x_t, timesteps, down_block_additional_residuals=down, mid_block_additional_residual=mid)

    def sample(  # type: ignore[override]
        self,
        input_noise: torch.Tensor,
        network: torch.nn.Module,
        condition: torch.Tensor | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Run the reverse process over ``scheduler.timesteps`` and return the last step's sample.

        Args:
            input_noise: (B, 1, H, W) y_T ~ N(0, I).
            network: trained network (weights loaded).
            condition: (B, 1, H, W) masks in {-1, +1} for ``concat`` / ``controlnet``.
            generators: DDPM only: one ``torch.Generator`` per sample (on the sample's device) for its step noise,
                so that a sample does not depend on the batch it is in. ``None``: the global RNG.

        Returns:
            (B, 1, H, W) y0 estimate in [-1, 1] when the scheduler clips (``clip_sample``): with DDIM the last step
            lands on abar = 1 (x̂0 itself), with DDPM the t = 0 step adds no noise and returns x̂0.

        Raises:
            ValueError: wrong condition for the generator type, or ``generators`` not one per sample.
        """
        if generators is not None and len(generators) != input_noise.shape[0]:
            raise ValueError(f"need one generator per sample, got {len(generators)} for {input_noise.shape[0]}")
        with grad_mode(self.inference_mode):
            y_t = self._sample(input_noise, network, condition, generators)
        return y_t.clone() if self.inference_mode else y_t  # an inference tensor cannot be modified in place later

    def _sample(self, input_noise, network, condition, generators) -> torch.Tensor:
        ddpm = isinstance(self.scheduler, DDPMScheduler)
        y_t = input_noise
        for t in self.scheduler.timesteps:
            t_batch = torch.full((y_t.shape[0],), int(t), device=y_t.device, dtype=torch.long)
            eps = self.predict_noise(y_t, network, t_batch, condition)
            if ddpm and generators is not None:
                steps = [
                    self.scheduler.step(eps[k : k + 1], int(t), y_t[k : k + 1], g)[0] for k, g in enumerate(generators)
                ]
                y_t = torch.cat(steps)
            else:
                y_t, _ = self.scheduler.step(eps, int(t), y_t)
        return y_t
