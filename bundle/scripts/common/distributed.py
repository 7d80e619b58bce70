"""Multi-process runs under ``torchrun`` (PyTorch DDP): what the bundle's multi-GPU overlays call.

``configs/multi_gpu_train.json`` (PIG, both stages), ``configs/seg_multi_gpu_train.json`` (the segmenter) and
``configs/multi_gpu_inference.json`` (sampling) put these pieces into the single-process workflows:

* :func:`init_process_group` in ``initialize`` and :func:`destroy_process_group` in ``finalize``
  (``monai.bundle run`` runs those ids around the run id): NCCL on GPUs, gloo on CPUs;
* :func:`local_device` (``cuda:LOCAL_RANK`` or the CPU) and :func:`ddp` (``DistributedDataParallel``) for the
  trained networks; MONAI's ``DistributedSampler`` for the data;
* :func:`main_process_handlers`: every rank runs the handlers that change the training (loaders, LR schedule,
  validation, EMA, the NaN guard), rank 0 alone those that write (logs, TensorBoard, checkpoints);
* :func:`rank_indices` / :func:`gather_rows` for sampling split by sample index.

Rank, world size, barrier and all-gather are ignite's ``ignite.distributed`` (MONAI's engines are ignite engines);
outside ``torchrun`` they are rank 0 of 1 and no-ops, so the single-process workflows call the same functions.
Every rank must see the same ``ckpt_dir`` / ``cache_dir`` / ``output_dir`` (one machine, or a shared file system
across machines): rank 0 writes, the others read what it wrote after a barrier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import ignite.distributed as idist
import torch

__all__ = [
    "rank",
    "world_size",
    "is_main_process",
    "barrier",
    "init_process_group",
    "destroy_process_group",
    "local_device",
    "ddp",
    "unwrap",
    "main_process_handlers",
    "wait_for_main_process",
    "release_other_ranks",
    "rank_indices",
    "gather_rows",
    "broadcast_object",
]

logger = logging.getLogger(__name__)

#: handler classes that only write (logs, TensorBoard, checkpoints): rank 0 alone runs them.
WRITING_HANDLERS = ("StatsHandler", "TensorBoardStatsHandler", "StageCheckpointer", "CheckpointSaver",
                    "AtomicCheckpointSaver", "MetricsSaver", "MetricLogger", "DataCountLogger")  # fmt: skip


def rank() -> int:
    """This process's global rank (0 outside ``torchrun``)."""
    return idist.get_rank()


def world_size() -> int:
    """Number of processes (1 outside ``torchrun``)."""
    return idist.get_world_size()


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the process that writes files and logs."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world_size() > 1:
        idist.barrier()


def init_process_group() -> torch.device:
    """Join the ``torchrun`` process group: NCCL when CUDA is available, else gloo; set this rank's CUDA device.

    Reads torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` (env:// init).

    Returns:
        :func:`local_device`.

    Raises:
        ValueError: not started by ``torchrun`` (no ``WORLD_SIZE`` / ``RANK`` in the environment); the message
            says how to start it (a ``ValueError``, so the run's last line is this message: a usage error).
    """
    if not torch.distributed.is_initialized():
        missing = [v for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if v not in os.environ]
        if missing:
            raise ValueError(
                f"a multi_gpu overlay needs torchrun (no {', '.join(missing)} in the environment): start it with "
                "`torchrun --nproc_per_node <GPUs> -m monai.bundle run ...`, or drop the overlay for one process"
            )
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        torch.distributed.init_process_group(backend=backend)
        logger.info("rank %d of %d joined the %s process group", rank(), world_size(), backend)
    return local_device()


def destroy_process_group() -> None:
    """Leave the process group after a last barrier (no-op when none was joined)."""
    if torch.distributed.is_initialized():
        barrier()
        torch.distributed.destroy_process_group()


def local_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def ddp(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """``module`` on ``device`` wrapped in ``torch.nn.parallel.DistributedDataParallel`` (gradients averaged over
    ranks in ``backward``; rank 0's initial weights broadcast to all); returned unwrapped in a single process."""
    device = torch.device(device)
    module = module.to(device)
    if world_size() == 1:
        return module
    ids = [device] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, output_device=device if ids else None)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The network inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (its weights without the
    ``module.`` prefix), else ``module`` itself."""
    if isinstance(module, torch.nn.parallel.DistributedDataParallel | torch.nn.DataParallel):
        return module.module
    return module


def main_process_handlers(handlers: Sequence) -> list:
    """A workflow's handler list for this rank: ``None`` entries (``_disabled_`` handlers) dropped and, on ranks
    other than 0, the handlers that only write (:data:`WRITING_HANDLERS`, by class name) dropped too.

    Filtering by class, not by position, keeps the list right whatever order it has and whichever entries are
    disabled (slicing a fixed number of trailing handlers off breaks when either changes).
    """
    kept = [h for h in handlers if h is not None]
    if is_main_process():
        return kept
    return [h for h in kept if not any(c.__name__ in WRITING_HANDLERS for c in type(h).__mro__)]


def wait_for_main_process() -> None:
    """On ranks other than 0: wait at a barrier until rank 0 calls :func:`release_other_ranks`.

    Between the two, rank 0 alone runs what writes shared files (the data preparation into ``cache_dir``); the
    others then run the same step and find the finished cache. In a config list::

        "$scripts.common.distributed.wait_for_main_process()", "$@datalist",
        "$scripts.common.distributed.release_other_ranks()"
    """
    if not is_main_process():
        barrier()


def release_other_ranks() -> None:
    """On rank 0: the barrier the other ranks wait at in :func:`wait_for_main_process`."""
    if is_main_process():
        barrier()


def rank_indices(num: int) -> list[int]:
    """This rank's share of ``range(num)``: ``rank, rank + W, rank + 2W, …`` (W = world size)."""
    return list(range(rank(), int(num), world_size()))


def gather_rows(rows: list[dict]) -> list[dict]:
    """Every rank's ``rows`` concatenated on every rank (``ignite.distributed.all_gather`` of Python objects);
    ``rows`` itself in a single process."""
    if world_size() == 1:
        return list(rows)
    return [r for part in idist.all_gather(list(rows)) for r in part]


def broadcast_object(obj):
    """Rank 0's ``obj`` (any picklable value) on every rank; ``obj`` in a single process."""
    if world_size() == 1:
        return obj
    box = [obj if is_main_process() else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
