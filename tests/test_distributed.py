"""``torchrun`` runs of the bundle's multi-GPU overlays on the CPU (gloo): ``multi_gpu_train.json`` (PIG, both
stages), ``seg_multi_gpu_train.json`` and ``multi_gpu_inference.json``.

Every launch runs in a network namespace of its own (``unshare -n``, only ``lo`` up) with the rendezvous on
127.0.0.1, one torch thread per rank (``OMP_NUM_THREADS=1``, ``GLOO_SOCKET_IFNAME=lo``). Each launch costs about
10 s of process start-up and rendezvous besides the smoke-size work.

Training data: the first 16 training slices of the 3-case phantom (an even number, so that MONAI's
``DistributedSampler`` pads nothing) and a global batch of 16 (one batch per pass; ``smoke.json``'s
``epoch_length`` 2 and ``max_epochs`` 2 give 4 iterations per stage), so one process with batch 16 and two ranks
with batch 8 see the same samples in each step.
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import BUNDLE, CONFIGS, TESTS, bundle_run, weights

from scripts.common.configs import config_files, meta_file

TRAIN_OVERLAY = {"train#dataset#data": "$@datalist['train'][:16]", "max_epochs": 2, "save_iteration_interval": 1,
                 "preview_samples": 0}  # fmt: skip
PORT = 29511  # inside the launch's own network namespace nothing else listens


def _namespace_ok() -> bool:
    return shutil.which("unshare") is not None and (
        subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    )


NAMESPACE = _namespace_ok()


def torchrun(nproc: int, workflow: str, run_id: str, overlays: list, *args, check: bool = True):
    """``torchrun --nnodes 1 --nproc_per_node nproc -m monai.bundle run run_id`` of ``workflow``'s configs +
    ``overlays`` from ``bundle/``; returns the CompletedProcess (output as text)."""
    files = config_files(workflow, [str(o) for o in overlays])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{PORT}", "--local_addr", "127.0.0.1",
           "-m", "monai.bundle", "run", run_id, "--meta_file", meta_file(workflow), "--config_file", repr(files),
           "--logging_file", str(CONFIGS / "logging.conf"), *map(str, args)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "MASTER_ADDR": "127.0.0.1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    if NAMESPACE:
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
    proc = subprocess.run(cmd, cwd=BUNDLE, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    if not NAMESPACE and os.environ.get("CI"):
        pytest.fail("CI must run the torchrun tests in a network namespace (unshare -n failed)")
    root = tmp_path_factory.mktemp("ddp")
    (root / "train.json").write_text(json.dumps(TRAIN_OVERLAY), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def two_ranks(work):
    """PIG smoke training under torchrun, 2 ranks × batch 8: its ckpt_dir (the reference of the other tests)."""
    ckpt = work / "two"
    torchrun(2, "train", "training", ["configs/smoke.json", "configs/multi_gpu_train.json", work / "train.json"],
             "--ckpt_dir", ckpt, "--cache_dir", work / "cache", "--batch_size", 8)  # fmt: skip
    return ckpt


@pytest.mark.slow
def test_two_ranks_train_as_one_process_with_the_global_batch(work, two_ranks):
    one = work / "one"
    proc = torchrun(1, "train", "training", ["configs/smoke.json", "configs/multi_gpu_train.json", work / "train.json"],
                    "--ckpt_dir", one, "--cache_dir", work / "cache", "--batch_size", 16)  # fmt: skip
    assert "rank 0 of 1 joined the gloo process group" in proc.stderr + proc.stdout
    for stage in ("guider", "generator"):
        a, b = weights(two_ranks / f"{stage}.pt"), weights(one / f"{stage}.pt")
        assert a.keys() == b.keys() and not any(k.startswith("module.") for k in a)  # saved unwrapped
        # Tolerance: the runs differ only in float summation order (two half-batch means averaged by the all-reduce
        # against one mean over 16) and batch-size-dependent CPU kernels, ~1e-7 relative per value. Measured after
        # 4 Adam steps (lr 2e-4): weights within 6e-8, Adam's first moment (the gradients' running mean) within
        # 1e-6 relative over all parameters. Noise drawn per rank instead of the global batch's rows, or another
        # sample order, moves a weight by up to lr per step (~1e-4) and the first moment by O(1).
        worst = max(float((a[k] - b[k]).abs().max()) for k in b)
        assert worst < 1e-6, (stage, worst)
        ma = weights(two_ranks / f"{stage}_checkpoint.pt")["optimizer"]["state"]
        mb = weights(one / f"{stage}_checkpoint.pt")["optimizer"]["state"]
        diff = sum(float((ma[i]["exp_avg"] - mb[i]["exp_avg"]).norm() ** 2) for i in mb) ** 0.5
        norm = sum(float(mb[i]["exp_avg"].norm() ** 2) for i in mb) ** 0.5
        assert diff / norm < 1e-4, (stage, diff / norm)
    # rank 0 alone wrote the run record and the dataset summary
    assert len(list((two_ranks / "runs").glob("*_training.json"))) == 1
    assert json.loads((two_ranks / "dataset.json").read_text())["num_train_slices"] >= 16


@pytest.mark.slow
def test_killed_two_rank_run_resumes_to_the_uninterrupted_weights(work, two_ranks):
    ckpt = work / "killed"
    base = ["configs/smoke.json", "configs/multi_gpu_train.json", work / "train.json"]
    kill = work / "kill.json"
    kill.write_text(json.dumps({
        "kill_at": {"_target_": "reliability_helpers.KillAtIteration", "iteration": 3},
        "train#guider#trainer#train_handlers":
            "$scripts.common.distributed.main_process_handlers(@train#guider#handlers) + [@kill_at]",
    }), encoding="utf-8")  # fmt: skip
    args = ["--ckpt_dir", ckpt, "--cache_dir", work / "cache", "--batch_size", 8]
    proc = torchrun(2, "train", "training", [*base, kill], *args, check=False)
    assert proc.returncode != 0 and "SIGKILL" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert weights(ckpt / "guider_checkpoint.pt")["trainer"]["iteration"] == 3 and not (ckpt / "guider.pt").exists()
    proc = torchrun(2, "train", "training", base, *args)
    assert "guider_checkpoint.pt at epoch 1, iteration 3" in proc.stdout + proc.stderr
    for stage in ("guider", "generator"):
        got, want = weights(ckpt / f"{stage}.pt"), weights(two_ranks / f"{stage}.pt")
        # Same ranks, batch and arithmetic; the resume restores weights, Adam moments, iteration and random states.
        unequal = [k for k in want if not torch.equal(got[k], want[k])]
        assert not unequal, f"{stage}: {len(unequal)} tensors differ from the uninterrupted run, e.g. {unequal[:3]}"


@pytest.mark.slow
def test_two_rank_sampling_writes_the_single_process_pairs_and_one_manifest(work, two_ranks):
    single, multi = work / "pairs_one", work / "pairs_two"
    common = ["--ckpt_dir", two_ranks, "--num_samples", 5, "--batch_size", 2]
    bundle_run("inference", "inference", *common, "--output_dir", single, one_thread=True)
    proc = torchrun(2, "inference", "inference", ["configs/smoke.json", "configs/multi_gpu_inference.json"],
                    *common, "--output_dir", multi)  # fmt: skip
    assert "rank 1: 2 of 5" in proc.stdout + proc.stderr and "rank 0: 3 of 5" in proc.stdout + proc.stderr

    def rows(folder):
        with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    got, want = rows(multi), rows(single)
    assert [r["id"] for r in got] == [f"pig-s0-{i:05d}" for i in range(5)]  # exactly N distinct ids, in order
    assert got == want  # same ids, areas, checkpoint hashes
    assert len(list(multi.glob("*_image.nii.gz"))) == len(list(multi.glob("*_label.nii.gz"))) == 5
    assert len(list((multi / "runs").glob("*_inference.json"))) == 1
    for r in want:
        for key in ("image", "label"):
            a = np.asarray(nib.load(multi / r[key]).dataobj)
            b = np.asarray(nib.load(single / r[key]).dataobj)
            # the same (seed, index) noise and networks; only the batch composition differs ([0, 2] vs [0, 1])
            assert np.array_equal(a, b), (r["id"], key, float(np.abs(a - b).max()))


def test_segmenter_overlay_sets_only_existing_ids():
    # The segmenter's overlay is the PIG overlay's pattern on seg_train.json (run under torchrun in the PIG tests);
    # every id it sets must exist in the merged configs, or MONAI would add a dead key silently.
    from monai.bundle import ConfigParser

    from scripts.common.configs import merged_config

    base = ConfigParser(merged_config("seg_train", ["configs/seg_smoke.json"]))
    overlay = json.loads((CONFIGS / "seg_multi_gpu_train.json").read_text(encoding="utf-8"))
    new = {"train#sampler", "validate#sampler", "initialize", "finalize", "_desc_", "train#dataloader#sampler",
           "validate#dataloader#sampler"}  # fmt: skip
    for key in overlay:
        if key not in new:
            assert key in base, key
    for key in ("train#dataloader", "validate#dataloader", "train#trainer", "validate#evaluator"):
        assert key in base, key


def test_overlays_fail_clearly_without_torchrun():
    from scripts.common.distributed import init_process_group

    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in os.environ}
    try:
        with pytest.raises(ValueError, match="needs torchrun"):
            init_process_group()
    finally:
        os.environ.update(env)


def test_rank_shares_and_handler_lists_by_rank(monkeypatch, tmp_path):
    from monai.handlers import StatsHandler, TensorBoardStatsHandler, ValidationHandler

    from scripts.common import distributed
    from scripts.common.checkpoint import ResumeCheckpointLoader, StageCheckpointer
    from scripts.common.guards import StopOnNonFiniteLoss

    net = torch.nn.Linear(1, 1)
    handlers = [ResumeCheckpointLoader("missing.pt", {"model": net}), StopOnNonFiniteLoss("guider"), None,
                ValidationHandler(interval=1), StatsHandler(), TensorBoardStatsHandler(log_dir=str(tmp_path)),
                StageCheckpointer("ckpt", "guider", {"model": net}, net)]  # fmt: skip
    kept = distributed.main_process_handlers(handlers)
    assert kept == [h for h in handlers if h is not None]  # one process / rank 0: all but the disabled entry
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    assert distributed.main_process_handlers(handlers) == handlers[:2] + [handlers[3]]  # no logs, no checkpoints
    assert distributed.rank_indices(8) == [1, 4, 7]
