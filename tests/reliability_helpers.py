"""Test-only ignite handlers and losses injected into bundle runs by the overlays of tests/test_common_checkpoint.py
and tests/test_common_guards.py.

Kept out of ``bundle/scripts``: they exist to break runs on purpose (SIGKILL, NaN losses).
"""

import os
import signal

import torch
from ignite.engine import Engine, Events


class KillAtIteration:
    """Ignite handler: SIGKILL the own process when the engine completes iteration ``iteration``.

    Attached last in a trainer's handler list, so it fires after that iteration's checkpoint was written: the state
    on disk is exactly what a crash right after a checkpoint leaves (no Python cleanup, no ``finally`` blocks).
    """

    def __init__(self, iteration: int) -> None:
        self.iteration = int(iteration)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=self.iteration), self)

    def __call__(self, engine: Engine) -> None:
        if torch.distributed.is_initialized():  # torchrun: every rank (rank 0 has saved) dies at the same point
            torch.distributed.barrier()
        os.kill(os.getpid(), signal.SIGKILL)


class NaNAfter(torch.nn.Module):
    """Wrap a loss; from call ``n + 1`` on, return the loss times NaN (the gradients become NaN as a real blow-up's).

    Args:
        loss: the loss module to wrap (``torch.nn.MSELoss()``, MONAI ``DiceCELoss``...).
        n: number of calls that return the finite loss.
    """

    def __init__(self, loss: torch.nn.Module, n: int = 1) -> None:
        super().__init__()
        self.loss, self.n, self.calls = loss, int(n), 0

    def forward(self, *args, **kwargs) -> torch.Tensor:
        self.calls += 1
        value = self.loss(*args, **kwargs)
        return value if self.calls <= self.n else value * float("nan")
