"""Checkpoints: atomic writes, resumable stages and weight loading with clear errors.

Layout under ``ckpt_dir`` for a stage ``<name>`` (``guider`` or ``generator``):

* ``<name>_checkpoint.pt``: resume state ``{"model", "optimizer", "lr_scheduler", "trainer"[, "ema"]}``, replaced
  atomically every ``save_interval`` epochs (and/or iterations);
* ``<name>.pt``: final plain ``state_dict`` of the network (of its EMA copy when EMA is on), written once when the
  stage completes; its presence marks the stage as done.

All files are plain containers of tensors and numbers so that ``torch.load(weights_only=True)`` reads them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

__all__ = [
    "atomic_save",
    "file_sha256",
    "load_weights",
    "ResumeCheckpointLoader",
    "StageCheckpointer",
    "run_stage",
]

logger = logging.getLogger(__name__)


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` onto ``path``.

    A crash leaves either the previous file or the new one, never a truncated file.

    Raises:
        OSError: the folder cannot be created or written (read-only, full); the message names ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pt", dir=folder)
    except OSError as e:
        raise OSError(f"cannot write checkpoint {path}: {e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file (recorded in manifests and run records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights(
    network: torch.nn.Module, path: str, what: str = "network", map_location: Any = "cpu"
) -> torch.nn.Module:
    """Load a plain ``state_dict`` (or a resume checkpoint's ``"model"`` entry) into ``network``, strictly.

    Args:
        network: the module to fill (its architecture must match the file).
        path: ``.pt`` file written by training.
        what: name used in error messages (``"guider"``, ``"generator"``).
        map_location: ``torch.load`` map location.

    Returns:
        ``network``.

    Raises:
        FileNotFoundError: ``path`` does not exist (message says to train first or pass ``--ckpt_dir``).
        ValueError: unreadable file, or weights of another architecture / image size (message names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} weights not found: {path} (train first, or point --ckpt_dir at the folder)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(f"cannot read {what} weights {path}: {e}") from e
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"{what} weights {path} do not fit the configured network (another architecture or channel setting?): "
            f"{str(e).splitlines()[0]}"
        ) from e
    return network


class ResumeCheckpointLoader(CheckpointLoader):
    """MONAI ``CheckpointLoader`` that also restores the engine it is attached to and tolerates a missing file.

    A config cannot reference a trainer inside its own handler list, so the engine is added under ``"trainer"`` when
    the handler is attached. If ``load_path`` does not exist when the engine starts, training starts fresh; objects
    the file does not hold start fresh with a warning (an ``"ema"`` copy starts from the resumed model).

    Raises:
        ValueError: unreadable checkpoint, or one of another architecture (from ``CheckpointLoader``).

    Args:
        load_path: resume checkpoint (``<ckpt_dir>/<stage>_checkpoint.pt``).
        load_dict: objects to restore (``model``, ``optimizer``, ``lr_scheduler``, ``ema``...).
        kwargs: passed to ``CheckpointLoader`` (``map_location``, ``strict``...).
    """

    def __init__(self, load_path: str, load_dict: dict, **kwargs: Any) -> None:
        super().__init__(load_path=load_path, load_dict={k: v for k, v in load_dict.items() if v is not None}, **kwargs)

    def attach(self, engine: Engine) -> None:
        self.load_dict = {**self.load_dict, "trainer": engine}
        super().attach(engine)

    def __call__(self, engine: Engine) -> None:
        if not os.path.isfile(self.load_path):
            self.logger.info(f"no resume checkpoint at {self.load_path}: starting from scratch")
            return
        try:
            stored = set(torch.load(self.load_path, map_location="cpu", weights_only=True))
        except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
            raise ValueError(f"cannot read resume checkpoint {self.load_path}: {e}") from e
        wanted = self.load_dict
        missing = [k for k in wanted if k not in stored]
        self.load_dict = {k: v for k, v in wanted.items() if k in stored}
        try:
            super().__call__(engine)
        finally:
            self.load_dict = wanted
        if missing:
            self.logger.warning(f"{self.load_path} holds no {missing}: those start fresh")
        if "ema" in missing and "model" in wanted:
            # EMA switched on in a resumed run: start the average from the resumed weights, not the initial ones.
            wanted["ema"].load_state_dict(wanted["model"].state_dict())
        state = engine.state
        self.logger.info(f"resumed from {self.load_path} at epoch {state.epoch}, iteration {state.iteration}")


class StageCheckpointer:
    """Handler writing a stage's resume checkpoint and, on completion, its final plain weights, atomically.

    Args:
        save_dir: ``ckpt_dir``.
        stage: file stem (``"guider"`` or ``"generator"``).
        save_dict: objects with ``state_dict()`` to store for resuming (``None`` values are dropped); the engine is
            added under ``"trainer"``.
        final_model: module whose ``state_dict`` becomes ``<stage>.pt`` (the EMA copy when EMA is used).
        save_interval: epochs between resume checkpoints (0: never at epoch ends).
        iteration_interval: iterations between resume checkpoints (0: off).
    """

    def __init__(
        self,
        save_dir: str,
        stage: str,
        save_dict: dict,
        final_model: torch.nn.Module,
        save_interval: int = 1,
        iteration_interval: int = 0,
    ) -> None:
        self.save_dir = save_dir
        self.stage = stage
        self.save_dict = {k: v for k, v in save_dict.items() if v is not None}
        self.final_model = final_model
        self.save_interval = int(save_interval)
        self.iteration_interval = int(iteration_interval)
        self.resume_path = os.path.join(save_dir, f"{stage}_checkpoint.pt")
        self.final_path = os.path.join(save_dir, f"{stage}.pt")

    def attach(self, engine: Engine) -> None:
        if self.save_interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save_resume)
        if self.iteration_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.iteration_interval), self.save_resume)
        engine.add_event_handler(Events.COMPLETED, self.save_final)

    def save_resume(self, engine: Engine) -> None:
        """Write ``<stage>_checkpoint.pt`` with every object's ``state_dict`` and the engine state."""
        state = {k: v.state_dict() for k, v in self.save_dict.items()}
        state["trainer"] = engine.state_dict()
        atomic_save(state, self.resume_path)

    def save_final(self, engine: Engine) -> None:
        """Write ``<stage>.pt`` (plain weights) and a last resume checkpoint."""
        self.save_resume(engine)
        atomic_save(self.final_model.state_dict(), self.final_path)
        logger.info(f"{self.stage} finished: weights in {self.final_path}")


def run_stage(trainer: Engine, final_path: str, stage: str) -> bool:
    """Run ``trainer`` unless ``final_path`` already exists (that stage finished in an earlier run).

    Returns:
        True if the stage ran, False if it was skipped.
    """
    if os.path.isfile(final_path):
        logger.info(f"{stage}: {final_path} exists, stage already complete; skipping (delete it to retrain)")
        return False
    trainer.run()
    return True
