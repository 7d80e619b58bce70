"""One iteration of the conditional generator (model_y) with a frozen diffusion guider (model_x).

Authors' code (not in the paper's algorithm box), see ``shared/reference/pig_method.md``: the frozen guider gives
``x̂0 = (x_t - sqrt(1 - abar_t) eps_x) / sqrt(abar_t)`` from the noisy pair; the generator is trained with
``mean(w * (eps2 - model_y([y_t, x̂0], t))^2)``, ``w = sigmoid(x̂0)`` (optional), x̂0 not binarised.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from monai.networks.schedulers import Scheduler
from monai.utils.enums import CommonKeys as Keys

from ..common.speed import autocast
from .schedule import predict_x0

__all__ = ["GeneratorIteration"]


class GeneratorIteration:
    """``iteration_update`` for a MONAI ``SupervisedTrainer`` / ``SupervisedEvaluator`` training model_y.

    The engine's ``prepare_batch`` must be ``PairedDiffusionPrepareBatch`` (inputs [x0, y0], noise [eps1, eps2]).
    On a ``Trainer`` it does forward, backward and the optimiser step (with the engine's AMP scaler); on an evaluator
    it only computes the prediction. The guider never receives gradients: it is frozen here and run under
    ``torch.no_grad``. With the engine's ``amp`` on, both forward passes (the frozen guider's and the generator's) run
    under ``torch.autocast`` on the batch's device type with the engine's ``amp_kwargs`` dtype (default float16, as
    MONAI's engines); x̂0 and the loss are computed in float32 (``scripts.common.speed``: bfloat16 also on the CPU,
    float16 on CUDA only, a ``ValueError`` elsewhere).

    Args:
        guider: trained model_x, ``(B, 2, H, W), (B,) -> (B, 1, H, W)`` eps-prediction on [x_t, y_t]. It is set to
            eval mode and ``requires_grad_(False)``.
        scheduler: the training noise scheduler (MONAI ``DDPMScheduler``), for ``add_noise`` and abar_t.
        lesion_weighting: weight the eps-MSE by ``sigmoid(x̂0)`` (up-weights the lesion, x̂0 in [-1, 1]).
        guidance_order: ``"mask_first"`` (the paper) or ``"image_first"``: then the batch is [y0, x0]
            (``PairedDiffusionPrepareBatch`` with the same id), the frozen first network is the image model, this
            network learns the mask from [x_t, ŷ0] and ``lesion_weighting`` does not apply. The code names the
            streams of ``mask_first``.

    Returns (``__call__``): the engine output dict with ``image`` (B, 2, H, W) [x0, y0], ``label`` eps2
    (B, 1, H, W), ``pred`` eps_y (B, 1, H, W), ``x0_hat`` (B, 1, H, W) and, on a trainer, ``loss`` (scalar).
    """

    def __init__(
        self, guider: torch.nn.Module, scheduler: Scheduler, lesion_weighting: bool = True,
        guidance_order: str = "mask_first",
    ) -> None:  # fmt: skip
        self.guider = guider.eval().requires_grad_(False)
        self.scheduler = scheduler
        # sigmoid(x̂0) up-weights the lesion in the image loss; with image_first the second network learns the mask
        # and its condition is ŷ0, whose sigmoid marks no lesion: unweighted there
        self.lesion_weighting = lesion_weighting and guidance_order == "mask_first"
        self.guidance_order = guidance_order

    def loss(self, pred: torch.Tensor, eps2: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
        """``mean(w * (eps2 - pred)^2)`` with ``w = sigmoid(x̂0)`` or 1; all (B, 1, H, W) -> scalar."""
        err = (eps2.float() - pred.float()) ** 2
        if self.lesion_weighting:
            err = torch.sigmoid(x0_hat.float()) * err
        return err.mean()

    def __call__(self, engine: Any, batchdata: dict) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        inputs, _, _, kwargs = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
        noise, timesteps = kwargs["noise"], kwargs["timesteps"]
        noisy = self.scheduler.add_noise(original_samples=inputs, noise=noise, timesteps=timesteps)
        x_t, y_t, eps2 = noisy[:, :1], noisy[:, 1:], noise[:, 1:]
        amp = bool(getattr(engine, "amp", False))
        dtype = getattr(engine, "amp_kwargs", None) or {}
        autocast_dtype = dtype.get("dtype", torch.float16) if amp else None
        with torch.no_grad(), autocast(inputs.device, autocast_dtype):  # the frozen guider: a pure inference pass
            self.guider.eval()
            eps_x = self.guider(noisy, timesteps)
        x0_hat = predict_x0(self.scheduler, x_t, eps_x.to(noisy.dtype), timesteps)
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: eps2, "x0_hat": x0_hat}
        training = isinstance(engine, Trainer)
        if not training:
            engine.network.eval()
            with torch.no_grad(), autocast(inputs.device, autocast_dtype):
                pred = engine.network(torch.cat([y_t, x0_hat], dim=1), timesteps)
            engine.state.output[Keys.PRED] = pred.to(inputs.dtype)
            return engine.state.output
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with autocast(inputs.device, autocast_dtype):
            pred = engine.network(torch.cat([y_t, x0_hat], dim=1), timesteps)
            engine.state.output[Keys.PRED] = pred
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss = self.loss(pred, eps2, x0_hat)
            engine.state.output[Keys.LOSS] = loss
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if amp and engine.scaler is not None and engine.scaler.is_enabled():  # MONAI's GradScaler (CUDA only)
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
