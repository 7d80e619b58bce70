"""Run guards used by the PIG and segmentation configs: a write probe before work starts and a NaN-loss stop.

* :func:`check_writable` is the first expression of every workflow list (``training``, ``inference``,
  ``evaluating``, ``run``): a read-only, missing-permission, full or not-a-folder output path fails in a second with a
  message naming the folder, instead of after hours of training when the first checkpoint is written.
* :func:`check_size_multiple` refuses an ``image_size`` the U-Nets cannot take before any data is prepared.
* :func:`install_error_summary` makes an uncaught error end with the bundle's own one-line message, after MONAI's
  long traceback (which ends in a dump of the failing config expression), where the user looks.
* :class:`StopOnNonFiniteLoss` is an ignite handler for ``ITERATION_COMPLETED``. ignite's own ``TerminateOnNan``
  ends the run *quietly* (the engine just stops, the workflow goes on as if training had finished and a final
  checkpoint of NaN weights may be written); this one raises :class:`NonFiniteLossError` naming the stage, the
  iteration and the checkpoint that is kept.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable

import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine

__all__ = [
    "check_writable",
    "check_size_multiple",
    "remove_empty_created_folders",
    "root_cause",
    "install_error_summary",
    "NonFiniteLossError",
    "StopOnNonFiniteLoss",
]

logger = logging.getLogger(__name__)


#: errors whose message is written for the user (bad data, paths, settings); MONAI and ignite wrap them in
#: RuntimeErrors ("Failed to evaluate ConfigExpression", "applying transform").
_USER_ERRORS = (ValueError, OSError, KeyError)


def root_cause(error: BaseException) -> BaseException:
    """The innermost ``__cause__`` / ``__context__`` of ``error`` that is a :data:`_USER_ERRORS` (the bundle's
    ``DataError`` is a ``ValueError``), else ``error`` itself."""
    found, seen, current = error, set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _USER_ERRORS):
            found = current
        current = current.__cause__ or current.__context__
    return found


def install_error_summary() -> None:
    """Make ``sys.excepthook`` print, after the usual traceback, one last line ``ERROR: <message>`` of the error's
    :func:`root_cause`, after removing the empty output folders the run created
    (:func:`remove_empty_created_folders`); idempotent. Installed when the configs import ``scripts``."""
    import sys

    if getattr(sys.excepthook, "_pig_summary", False):
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        for path in remove_empty_created_folders():  # a failed run leaves no empty output folder behind
            logger.info("removed the empty folder %s this failed run had created", path)
        cause = root_cause(value)
        message = str(cause.args[0]) if isinstance(cause, KeyError) and cause.args else str(cause)
        if message:
            print(f"\nERROR: {message}", file=sys.stderr, flush=True)

    hook._pig_summary = True
    sys.excepthook = hook


def check_size_multiple(image_size: int, multiple: int, network: str = "the U-Net") -> int:
    """Refuse an ``image_size`` the networks cannot take, before any data is prepared.

    A U-Net that halves its input ``k`` times needs sides divisible by ``2**k``; otherwise the skip connections do
    not match and training fails at its first iteration (``Sizes of tensors must match``), after all the data
    preparation.

    Args:
        image_size: the configured side in pixels.
        multiple: what the side must divide by: ``2 ** (len(channels) - 1)`` for MONAI's ``DiffusionModelUNet``,
            the product of ``strides`` for MONAI's ``UNet``.
        network: named in the message.

    Returns:
        ``image_size``.

    Raises:
        ValueError: names the size, the multiple and the nearest valid sizes.
    """
    image_size, multiple = int(image_size), int(multiple)
    if image_size < multiple or image_size % multiple:
        lower = image_size // multiple * multiple
        nearest = f"{lower} or {lower + multiple}" if lower else str(multiple)
        raise ValueError(
            f"image_size {image_size} does not fit {network}: its side must be a multiple of {multiple} (it halves "
            f"the image {multiple.bit_length() - 1} times); use --image_size {nearest}"
        )
    return image_size


def check_writable(folder: str, option: str = "output_dir", min_free_mb: float = 1.0) -> str:
    """Create ``folder`` if needed and prove it is writable by writing, fsync-ing and removing a 1-byte file.

    A real write is used rather than ``os.access``: ``os.access`` says yes to root on a folder with mode 0o555 and
    knows nothing about full disks.

    Args:
        folder: the run's output folder (``ckpt_dir`` for training, ``output_dir`` for inference / evaluation).
        option: the config id / command-line option that sets it, named in the message (``ckpt_dir``).
        min_free_mb: refuse when the file system holding ``folder`` has less free space than this (MiB).

    Returns:
        ``folder``.

    Raises:
        OSError: (a ``PermissionError``, ``NotADirectoryError``... according to the errno) the folder cannot be
            created or written, or its disk is full; the message reads ``cannot write to <option> <folder>: <why>``.
            (MONAI's config parser re-raises it as a ``RuntimeError`` whose ``__cause__`` it is; the message is also
            logged at ERROR level first.)
    """

    def fail(err: OSError | None, reason: str) -> OSError:
        msg = f"cannot write to {option} {folder}: {reason}; choose another --{option} or free/fix that folder"
        logger.error(msg)  # MONAI wraps the exception in a long traceback; say it plainly first
        return OSError(err.errno if err is not None and err.errno else errno.EIO, msg)

    if os.path.exists(folder) and not os.path.isdir(folder):
        raise fail(OSError(errno.ENOTDIR, "not a directory"), "it exists and is not a folder")
    created = _first_missing(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:  # e.g. a parent is a file, or a read-only parent
        raise fail(e, e.strerror or str(e)) from e
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write_probe_", dir=folder)
    except OSError as e:
        raise fail(e, e.strerror or str(e)) from e
    try:
        os.write(fd, b"0")
        os.fsync(fd)  # delayed allocation: a full disk may only be reported here
    except OSError as e:
        raise fail(e, e.strerror or str(e)) from e
    finally:
        os.close(fd)
        os.remove(tmp)
    free_mb = shutil.disk_usage(folder).free / 2**20
    if free_mb < min_free_mb:
        raise fail(OSError(errno.ENOSPC, "no space"), f"only {free_mb:.1f} MiB free (need at least {min_free_mb} MiB)")
    if created is not None:
        _CREATED.append((created, os.path.abspath(folder)))
    return folder


#: ``(top-most folder created, the output folder)`` of every :func:`check_writable` call that created folders:
#: removed again, when still empty, by the error summary of a failed run.
_CREATED: list[tuple[str, str]] = []


def _first_missing(folder: str) -> str | None:
    """The top-most missing folder on the way to ``folder`` (what ``os.makedirs`` will create), or None."""
    path, missing = os.path.abspath(folder), None
    while not os.path.exists(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def remove_empty_created_folders() -> list[str]:
    """Remove the folders :func:`check_writable` created in this process that are still empty (from the output
    folder up to the top-most one created); never a folder that holds anything. Returns the removed paths."""
    removed = []
    while _CREATED:
        top, folder = _CREATED.pop()
        path = folder
        while True:
            try:
                os.rmdir(path)  # fails on anything not empty: nothing is ever deleted but empty folders
            except OSError:
                break
            removed.append(path)
            if path == top:
                break
            path = os.path.dirname(path)
    return removed


class NonFiniteLossError(FloatingPointError):
    """Raised by :class:`StopOnNonFiniteLoss` when a training loss is NaN or infinite."""


class StopOnNonFiniteLoss:
    """Ignite handler: raise :class:`NonFiniteLossError` as soon as an iteration's loss is NaN or ±Inf.

    Attach it **before** any checkpoint handler in the trainer's handler list: ignite runs ``ITERATION_COMPLETED``
    handlers in attachment order, so the error is raised before the checkpointer of that iteration could store the
    weights the bad step produced. The resume checkpoint written before stays as it was, and a rerun resumes from it.

    Args:
        stage: name used in the message (``"guider"``, ``"generator"``, ``"segmentation"``).
        checkpoint: the checkpoint that is kept (resume checkpoint of the stage, or the best model); named in the
            message, with a note when it was not written yet.
        output_transform: engine output -> loss; default ``from_engine(["loss"], first=True)`` takes the scalar
            ``"loss"`` of MONAI's (possibly decollated) output.

    Raises (when called):
        NonFiniteLossError: message ``<stage>: loss is nan at iteration i (epoch e); training stopped. ...``.
    """

    def __init__(
        self,
        stage: str,
        checkpoint: str | None = None,
        output_transform: Callable | None = None,
    ) -> None:
        self.stage = stage
        self.checkpoint = checkpoint
        self.output_transform = output_transform or from_engine(["loss"], first=True)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = self.output_transform(engine.state.output)
        if isinstance(loss, (list, tuple)):
            loss = loss[0]
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)
        if math.isfinite(value):
            return
        if self.checkpoint and os.path.isfile(self.checkpoint):
            kept = f"the last good checkpoint {self.checkpoint} is kept (rerun to resume from it)"
        elif self.checkpoint:
            kept = f"no checkpoint had been written yet ({self.checkpoint} does not exist)"
        else:
            kept = "no checkpoint is written for this stage"
        msg = (
            f"{self.stage}: loss is {value} at iteration {engine.state.iteration} (epoch {engine.state.epoch}); "
            f"training stopped, {kept}. Lower --learning_rate, check the data for NaN/Inf values, or turn --amp off"
        )
        logger.error(msg)
        raise NonFiniteLossError(msg)
