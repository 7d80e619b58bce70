"""Checkpoints: atomic writes, resumable stages and weight loading with clear errors.

Layout under ``ckpt_dir`` for a stage ``<name>`` (``guider`` or ``generator``):

* ``<name>_checkpoint.pt``: resume state ``{"model", "optimizer", "lr_scheduler", "trainer", "rng"[, "ema"]}``,
  replaced atomically every ``save_interval`` epochs (and/or iterations); ``"rng"`` holds the torch / numpy / Python
  random states, so a resumed run draws the same noise and timesteps as an uninterrupted one;
* ``<name>.pt``: final plain ``state_dict`` of the network (of its EMA copy when EMA is on), written once when the
  stage completes; its presence marks the stage as done.

All files are plain containers of tensors and numbers so that ``torch.load(weights_only=True)`` reads them, and every
load here uses ``weights_only=True``. The segmentation configs' MONAI ``CheckpointSaver`` is replaced by
:class:`AtomicCheckpointSaver`: MONAI 1.6.1 builds ignite's ``DiskSaver`` with ``atomic=False`` and deletes the
fixed-name file before rewriting it, so a crash during the save lost the best model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver

from .distributed import barrier, unwrap
from .guards import NonFiniteLossError

__all__ = [
    "atomic_save",
    "file_sha256",
    "load_weights",
    "rng_state",
    "set_rng_state",
    "CheckedCheckpointLoader",
    "ResumeCheckpointLoader",
    "AtomicCheckpointSaver",
    "StageCheckpointer",
    "train_stage",
]

logger = logging.getLogger(__name__)


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` onto ``path``.

    A crash leaves either the previous file or the new one, never a truncated file.

    Raises:
        OSError: the folder cannot be created or written (read-only, full); the message names ``path``. A failure
            during the write removes the temporary file and leaves the previous ``path`` as it was.
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
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):  # disk full during the write: the previous file is untouched
            raise OSError(e.errno, f"cannot write checkpoint {path} (the previous one is kept): {e}") from e
        raise


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file (recorded in manifests and run records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _mismatch(what: str, path: str, err: Exception) -> ValueError:
    """ValueError for weights that do not fit the network: names the file, the first shape mismatch and key counts.

    ``load_state_dict``'s own message lists every missing key (hundreds for a U-Net with other attention levels);
    this keeps the first of each kind.
    """
    text = str(err)
    parts = []
    m = re.search(r"size mismatch for ([^:]+): copying a param with shape (.+?) from checkpoint, the shape in current "
                  r"model is (.+?)\.(?:\s|$)", text)  # fmt: skip
    if m:
        parts.append(f"size mismatch for {m.group(1)}: {m.group(2)} in the file, {m.group(3)} in the network")
    for kind in ("Missing", "Unexpected"):
        km = re.search(rf"{kind} key\(s\) in state_dict: (.*?)\.\s*(?:\n|$)", text)
        if km:
            keys = re.findall(r'"([^"]+)"', km.group(1))
            parts.append(f"{len(keys)} {kind.lower()} key(s), e.g. {keys[0] if keys else '?'}")
    detail = "; ".join(parts) or text.splitlines()[0][:300]
    return ValueError(
        f"{what} checkpoint {path} does not fit the configured network (trained with another architecture: "
        f"channels, attention_levels, num_res_blocks...? use the settings it was trained with): {detail}"
    )


def _read(path: str, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        FileNotFoundError: no such file (message says to train first or to point ``--ckpt_dir`` at the folder).
        ValueError: truncated / not a torch file / holds objects other than tensors and plain containers.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} checkpoint not found: {path} (train first, or point --ckpt_dir at the folder)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(f"cannot read {what} checkpoint {path} (truncated or not a weights file?): {e}") from e


def load_weights(
    network: torch.nn.Module, path: str, what: str = "network", map_location: Any = "cpu"
) -> torch.nn.Module:
    """Load a plain ``state_dict`` (or a resume checkpoint's ``"model"`` entry) into ``network``, strictly.

    Args:
        network: the module to fill (its architecture must match the file).
        path: ``.pt`` file written by training, read with ``torch.load(weights_only=True)``.
        what: name used in error messages (``"guider"``, ``"generator"``).
        map_location: ``torch.load`` map location.

    Returns:
        ``network``.

    Raises:
        FileNotFoundError: ``path`` does not exist (message says to train first or pass ``--ckpt_dir``).
        ValueError: unreadable file, or weights of another architecture (message names the file and the first
            mismatching tensor). The image size cannot be read from conv weights: see
            :func:`scripts.common.runinfo.check_image_size`.
    """
    state = _read(path, what, map_location)
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{what} checkpoint {path} holds a {type(state).__name__}, not a state_dict")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise _mismatch(what, path, e) from e
    return network


def rng_state() -> dict:
    """The global random states (torch CPU, CUDA when present, numpy, Python) as tensors and numbers.

    Stored in resume checkpoints so that ``torch.load(weights_only=True)`` can read them back (numpy's and Python's
    tuples are unpacked into int64 tensors and plain numbers).
    """
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_cached_gaussian": float(np_state[4]),
        "python_version": int(py_state[0]),
        "python": torch.tensor(py_state[1], dtype=torch.int64),
        "python_gauss_next": py_state[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only when the same number of devices is visible)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            int(state["numpy_pos"]),
            int(state["numpy_has_gauss"]),
            float(state["numpy_cached_gaussian"]),
        )
    )
    random.setstate((int(state["python_version"]), tuple(int(v) for v in state["python"]), state["python_gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class CheckedCheckpointLoader(CheckpointLoader):
    """MONAI ``CheckpointLoader`` whose errors name the file: missing, unreadable, or of another architecture.

    MONAI's own loader lets ``torch.load`` / ``load_state_dict`` errors through, e.g. a bare
    ``RuntimeError: Error(s) in loading state_dict for DiffusionModelUNet`` that does not say which file was read.
    Loading itself is MONAI's (``torch.load(weights_only=True)``, ignite ``Checkpoint.load_objects``).

    Args:
        load_path: checkpoint file.
        load_dict: objects to restore (``{"model": network}``...).
        what: name used in messages (``"guider"``, ``"segmentation model"``).
        kwargs: passed to ``CheckpointLoader`` (``map_location``, ``strict``...).

    Raises (when the engine starts):
        FileNotFoundError: no file at ``load_path``.
        ValueError: unreadable file, or weights that do not fit (message names ``load_path``).
    """

    def __init__(self, load_path: str, load_dict: dict, what: str = "model", **kwargs: Any) -> None:
        super().__init__(load_path=load_path, load_dict=load_dict, **kwargs)
        self.what = what

    def __call__(self, engine: Engine) -> None:
        _read(self.load_path, self.what, "cpu")  # clear message for a missing / unreadable file
        try:
            super().__call__(engine)
        except RuntimeError as e:
            raise _mismatch(self.what, self.load_path, e) from e


class ResumeCheckpointLoader(CheckedCheckpointLoader):
    """Checkpoint loader that also restores the engine it is attached to and tolerates a missing file.

    A config cannot reference a trainer inside its own handler list, so the engine is added under ``"trainer"`` when
    the handler is attached. If ``load_path`` does not exist when the engine starts, training starts fresh; objects
    the file does not hold start fresh with a warning (an ``"ema"`` copy starts from the resumed model). The global
    random states stored under ``"rng"`` (see :class:`StageCheckpointer`) are restored last, so the iterations after
    the resume draw the noise and timesteps the interrupted run would have drawn.

    Raises:
        ValueError: unreadable checkpoint, or one of another architecture (message names ``load_path``).

    Args:
        load_path: resume checkpoint (``<ckpt_dir>/<stage>_checkpoint.pt``).
        load_dict: objects to restore (``model``, ``optimizer``, ``lr_scheduler``, ``ema``...).
        what: name used in messages.
        kwargs: passed to ``CheckpointLoader`` (``map_location``, ``strict``...).
    """

    def __init__(self, load_path: str, load_dict: dict, what: str = "resume", **kwargs: Any) -> None:
        super().__init__(
            load_path=load_path, load_dict={k: v for k, v in load_dict.items() if v is not None}, what=what, **kwargs
        )

    def attach(self, engine: Engine) -> None:
        self.load_dict = {**self.load_dict, "trainer": engine}
        super().attach(engine)

    def __call__(self, engine: Engine) -> None:
        if not os.path.isfile(self.load_path):
            self.logger.info(f"no resume checkpoint at {self.load_path}: starting from scratch")
            return
        stored = _read(self.load_path, self.what, "cpu")
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
        if isinstance(stored.get("rng"), Mapping):
            set_rng_state(stored["rng"])
        else:  # checkpoints written before the random states were stored
            self.logger.warning(f"{self.load_path} holds no random states: the resumed run draws other noise")
        state = engine.state
        self.logger.info(f"resumed from {self.load_path} at epoch {state.epoch}, iteration {state.iteration}")


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` that writes atomically and never saves after a non-finite loss.

    MONAI 1.6.1 builds its ignite ``DiskSaver`` with ``atomic=False`` and, for a fixed file name
    (``key_metric_filename`` / ``final_filename``), deletes the old file before writing the new one in place: a
    crash in between leaves no model or a truncated one. Here every save goes to a temporary file in ``save_dir``
    that ``os.replace`` moves onto the name (ignite's ``atomic=True`` path), and the old fixed-name file is only
    replaced, never deleted first. On an exception, MONAI saves the current weights as the final checkpoint; after a
    :class:`~scripts.common.guards.NonFiniteLossError` those weights are NaN, so that save is skipped and the
    previous file is kept.

    Args: as MONAI ``CheckpointSaver``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is None:
                continue
            saver = ckpt.save_handler
            saver._atomic = True  # ignite DiskSaver: temporary file + os.replace, then group/other read bits
            if getattr(saver, "filename", None) is not None:
                # the fixed name is replaced by os.replace; deleting it first would open a window without a model
                saver.remove = lambda filename: None

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        if isinstance(e, NonFiniteLossError):
            self.logger.error(f"non-finite loss: nothing saved on the way out, {self.save_dir} keeps the last model")
            raise e
        super().exception_raised(engine, e)


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

    Networks wrapped in ``DistributedDataParallel`` (``torchrun``, ``scripts.common.distributed.ddp``) are saved
    unwrapped, so a multi-process run writes the same files as a single process (no ``module.`` prefix); under
    ``torchrun`` rank 0 alone attaches this handler (``scripts.common.distributed.main_process_handlers``).
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
        """Write ``<stage>_checkpoint.pt``: every object's ``state_dict``, the engine state and the random states."""
        state = {k: unwrap(v).state_dict() if isinstance(v, torch.nn.Module) else v.state_dict()
                 for k, v in self.save_dict.items()}  # fmt: skip
        state["trainer"] = engine.state_dict()
        state["rng"] = rng_state()
        atomic_save(state, self.resume_path)

    def save_final(self, engine: Engine) -> None:
        """Write ``<stage>.pt`` (plain weights) and a last resume checkpoint."""
        self.save_resume(engine)
        atomic_save(unwrap(self.final_model).state_dict(), self.final_path)
        logger.info(f"{self.stage} finished: weights in {self.final_path}")


def train_stage(
    trainer: Engine, final_path: str, stage: str, position: str = "", resume_path: str | None = None
) -> bool:
    """Run ``trainer`` unless ``final_path`` already exists (that stage finished in an earlier run), saying which
    stage of how many runs, whether it starts fresh or resumes, and where its weights went.

    Args:
        trainer: the stage's engine.
        final_path: the stage's final weights.
        stage: its name in the log (``"guider"``).
        position: e.g. ``"1 of 2"``, logged as ``stage 1 of 2: guider``.
        resume_path: its resume checkpoint, when it has one (a run that finds it continues from it).

    Returns:
        True if the stage ran, False if it was skipped.

    Under ``torchrun`` every rank returns only once all have finished (a barrier), so the next stage finds the
    weights rank 0 wrote.
    """
    name = f"stage {position}: {stage}" if position else stage
    if os.path.isfile(final_path):
        logger.info(f"{name}: {final_path} exists, stage already complete; skipping (delete it to retrain)")
        return False
    if resume_path and os.path.isfile(resume_path):
        logger.info(f"{name}: resuming from {resume_path}")
    else:
        logger.info(f"{name}: training from scratch ({trainer.state.max_epochs or '?'} epochs)")
    trainer.run()
    barrier()
    logger.info(f"{name}: done, weights written to {final_path}")
    return True
