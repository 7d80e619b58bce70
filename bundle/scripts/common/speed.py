"""Speed options shared by training and sampling: mixed precision by dtype, the no-grad mode of sampling, and the
channels-last memory format (PyTorch's ``torch.autocast``, ``torch.inference_mode``, ``torch.channels_last``).

What ``amp`` and ``amp_dtype`` mean together (config ids in ``diffusion.json``):

* ``amp`` false: float32 everywhere, whatever ``amp_dtype`` says;
* ``amp`` true: the network calls run under ``torch.autocast(<device type>, dtype=amp_dtype)`` on the device the
  tensors are on; ``"bfloat16"`` works on CUDA and on the CPU; ``"float16"`` only on CUDA (MONAI's engines then add
  their ``GradScaler``), and is refused elsewhere with a one-line ``ValueError``: PyTorch's CPU float16 autocast
  covers few kernels, runs slower than float32 on common CPUs and MONAI's scaler is CUDA-only, so a CPU float16 run
  would be a slow, unscaled float16 training that looks like a speed option.

MONAI 1.6.1's ``SupervisedTrainer`` / ``SupervisedEvaluator`` autocast with ``torch.autocast("cuda", **amp_kwargs)``
only, so on the CPU they do nothing; :class:`AutocastDiffusionInferer` (the guider's forward) and
``scripts.pig.GeneratorIteration`` autocast on the tensors' own device type, so bfloat16 takes effect on both.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import Scheduler

__all__ = [
    "AMP_DTYPES",
    "AutocastDiffusionInferer",
    "amp_kwargs",
    "autocast",
    "check_amp",
    "grad_mode",
    "place",
]

#: ``amp_dtype`` config values → torch dtypes.
AMP_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _dtype(amp_dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(amp_dtype, torch.dtype):
        if amp_dtype not in AMP_DTYPES.values():
            raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}, got {amp_dtype}")
        return amp_dtype
    if amp_dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}, got {amp_dtype!r}")
    return AMP_DTYPES[amp_dtype]


def _device_type(device: str | torch.device) -> str:
    return torch.device(device).type


def check_amp(amp: bool, amp_dtype: str, device: str | torch.device) -> None:
    """Check the ``amp`` / ``amp_dtype`` pair for ``device`` before a run starts (see the module docstring).

    Raises:
        TypeError: ``amp`` is not a bool (``scripts.common.flags.check_flags``' rule).
        ValueError: ``amp_dtype`` is not ``"bfloat16"`` or ``"float16"``; or ``amp`` with float16 on a non-CUDA device.
    """
    if not isinstance(amp, bool):
        raise TypeError(f"amp must be a Python boolean, got {amp!r}; on the command line write --amp True")
    dtype = _dtype(amp_dtype)
    if amp and dtype == torch.float16 and _device_type(device) != "cuda":
        raise ValueError(
            f"amp with amp_dtype float16 needs a CUDA device (got {device}); use --amp_dtype bfloat16 or --amp False"
        )


def amp_kwargs(amp_dtype: str) -> dict[str, torch.dtype]:
    """MONAI engines' ``amp_kwargs`` for ``amp_dtype``: ``{"dtype": torch.bfloat16 | torch.float16}``.

    Raises:
        ValueError: unknown ``amp_dtype``.
    """
    return {"dtype": _dtype(amp_dtype)}


def autocast(device: str | torch.device, amp_dtype: str | torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast(device type, dtype)`` when ``amp_dtype`` is given, else a no-op context (float32).

    Raises:
        ValueError: unknown ``amp_dtype``; float16 on a non-CUDA device (see :func:`check_amp`).
    """
    if amp_dtype is None:
        return nullcontext()
    dtype, kind = _dtype(amp_dtype), _device_type(device)
    if dtype == torch.float16 and kind != "cuda":
        raise ValueError(f"float16 autocast needs a CUDA device, got {device}; use bfloat16")
    return torch.autocast(kind, dtype=dtype)


def grad_mode(inference_mode: bool) -> AbstractContextManager:
    """``torch.inference_mode()`` (no autograd bookkeeping at all) when set, else ``torch.no_grad()``."""
    return torch.inference_mode() if inference_mode else torch.no_grad()


def place(module: torch.nn.Module, device: str | torch.device, channels_last: bool = False) -> torch.nn.Module:
    """``module.to(device)``, its 4-D weights in ``torch.channels_last`` when ``channels_last`` (in place; returned)."""
    if channels_last:
        return module.to(device, memory_format=torch.channels_last)
    return module.to(device)


class AutocastDiffusionInferer(DiffusionInferer):
    """MONAI ``DiffusionInferer`` whose training forward pass runs under :func:`autocast` on the inputs' device.

    Needed because MONAI 1.6.1's engines autocast on CUDA only; on CUDA this nests inside the engine's own
    ``torch.autocast("cuda")`` with the same dtype (no change). The prediction is returned in the inputs' dtype
    (float32), so the engine's loss is computed in float32.

    Args:
        scheduler: the training noise scheduler (MONAI ``DDPMScheduler``).
        amp_dtype: ``"bfloat16"``, ``"float16"`` or None (float32: MONAI's ``DiffusionInferer`` unchanged).
        channels_last: give the network its (B, C, H, W) input in ``torch.channels_last``.

    Raises:
        ValueError: unknown ``amp_dtype`` (at construction); float16 on a non-CUDA input (at the call).
    """

    def __init__(self, scheduler: Scheduler, amp_dtype: str | None = None, channels_last: bool = False) -> None:
        super().__init__(scheduler)
        self.amp_dtype = None if amp_dtype is None else _dtype(amp_dtype)
        self.channels_last = channels_last

    def __call__(self, inputs: torch.Tensor, diffusion_model: Any, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """MONAI's ``DiffusionInferer.__call__`` under autocast; (B, C_out, H, W) float32 prediction."""
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(inputs.device, self.amp_dtype):
            pred = super().__call__(inputs, diffusion_model, *args, **kwargs)
        return pred.to(inputs.dtype)
