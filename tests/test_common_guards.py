"""Run guards (``scripts.common.guards``): unwritable output folders fail before any work, a NaN loss stops training
before its weights could be saved and names the checkpoint kept."""

import errno
import os
import tempfile
from pathlib import Path

import pytest
import torch
from helpers import cause, parser, weights

from scripts.common.guards import NonFiniteLossError

# ----------------------------------------------------------------------------------------- unwritable folders
WORKFLOWS = [  # (workflow + overlay, run id, folder id)
    (["train", "smoke.json"], "training", "ckpt_dir"),
    (["inference", "smoke.json"], "inference", "output_dir"),
    (["seg_train", "seg_smoke.json"], "training", "ckpt_dir"),
    (["seg_evaluate", "seg_smoke.json"], "evaluating", "output_dir"),
    (["seg_inference", "seg_smoke.json"], "inference", "output_dir"),
]


def _break_folder(kind: str, folder: Path, monkeypatch) -> None:
    if kind == "file_in_the_way":
        folder.write_text("not a folder")
    elif kind == "read_only":
        folder.mkdir()
        folder.chmod(0o555)
        try:  # root ignores mode bits (CAP_DAC_OVERRIDE): then this case cannot be produced with chmod
            (folder / "probe").write_text("x")
        except PermissionError:
            return
        (folder / "probe").unlink()
        # Root: produce what the kernel returns to any other user for this folder (EACCES on file creation).
        real_mkstemp = tempfile.mkstemp

        def denied(*args, **kwargs):
            if os.path.abspath(str(kwargs.get("dir", ""))) == str(folder):
                raise PermissionError(errno.EACCES, "Permission denied")
            return real_mkstemp(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", denied)
    elif kind == "disk_full":

        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full)  # delayed allocation: ext4/xfs report ENOSPC at fsync


@pytest.mark.parametrize("kind", ["file_in_the_way", "read_only", "disk_full"])
@pytest.mark.parametrize("configs, workflow, folder_id", WORKFLOWS, ids=[f"{c[0]}:{w}" for c, w, _ in WORKFLOWS])
def test_unwritable_output_folder_fails_before_work_starts(tmp_path, monkeypatch, configs, workflow, folder_id, kind):
    folder = tmp_path / "target"
    cache, ckpt = tmp_path / "cache", tmp_path / "ckpt"
    overrides = {"bundle_root": str(tmp_path), "cache_dir": str(cache), "ckpt_dir": str(ckpt),
                 "input_dir": str(tmp_path / "inputs"), folder_id: str(folder)}  # fmt: skip
    p = parser(*configs)
    for key, value in overrides.items():
        if key == folder_id or key in p:
            p[key] = value
    _break_folder(kind, folder, monkeypatch)
    try:
        with pytest.raises(RuntimeError) as excinfo:
            p.get_parsed_content(workflow)
    finally:
        if folder.is_dir():
            folder.chmod(0o755)
    err = cause(excinfo)
    assert isinstance(err, OSError) and f"cannot write to {folder_id} {folder}" in str(err), repr(err)
    if kind == "read_only":
        assert isinstance(err, PermissionError)
    if kind == "disk_full":
        assert err.errno == errno.ENOSPC
    # Before work: no data prepared (training / evaluation), no checkpoint looked up (inference: ckpt_dir is empty,
    # so a later failure would be 'weights not found' instead), no input listed (seg inference: inputs missing).
    assert not cache.exists()


# ------------------------------------------------------------------------------------------------ NaN losses
def test_nan_loss_stops_the_guider_stage_and_keeps_the_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    p = parser("train", "smoke.json", bundle_root=str(tmp_path), ckpt_dir=str(ckpt),
               cache_dir=str(tmp_path / "cache"), save_iteration_interval=1)  # fmt: skip
    p["train#guider#trainer#loss_function"] = {"_target_": "reliability_helpers.NaNAfter",
                                               "loss": "$torch.nn.MSELoss()", "n": 1}  # fmt: skip
    with pytest.raises(RuntimeError) as excinfo:
        p.get_parsed_content("training")
    err = cause(excinfo)
    assert isinstance(err, NonFiniteLossError)
    resume = ckpt / "guider_checkpoint.pt"
    assert f"guider: loss is nan at iteration 2 (epoch 1); training stopped, the last good checkpoint {resume}" in (
        str(err)
    )
    kept = weights(resume)
    assert kept["trainer"]["iteration"] == 1, "the checkpoint of the NaN iteration must not be written"
    assert all(torch.isfinite(v).all() for v in kept["model"].values())
    assert not (ckpt / "guider.pt").exists() and not (ckpt / "generator_checkpoint.pt").exists()


def test_nan_loss_stops_segmentation_training_without_saving_nan_weights(tmp_path):
    ckpt = tmp_path / "ckpt"
    # inner_val_fraction 0: the trainer's own CheckpointSaver (save_final) is used, whose MONAI version saves the
    # current, here NaN, weights as seg_model.pt when an exception ends the run.
    p = parser("seg_train", "seg_smoke.json", bundle_root=str(tmp_path), ckpt_dir=str(ckpt),
               cache_dir=str(tmp_path / "cache"), inner_val_fraction=0.0)  # fmt: skip
    p["loss"] = {"_target_": "reliability_helpers.NaNAfter", "n": 1,
                 "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True}}  # fmt: skip
    with pytest.raises(RuntimeError) as excinfo:
        p.get_parsed_content("training")
    err = cause(excinfo)
    assert isinstance(err, NonFiniteLossError)
    assert "segmentation: loss is nan at iteration 2 (epoch 1)" in str(err) and "no checkpoint had been" in str(err)
    assert not (ckpt / "seg_model.pt").exists()


@pytest.mark.parametrize(
    "config, handlers_id",
    [("train", "train#guider#handlers"), ("train", "train#handlers"), ("seg_train", "train#handlers")],
)  # fmt: skip
def test_nan_guard_comes_before_every_checkpoint_writer(config, handlers_id):
    """ignite runs ITERATION_COMPLETED handlers in attachment order: the guard must raise before any save."""
    targets = [h["_target_"] if isinstance(h, dict) else h for h in parser(config)[handlers_id]]
    guard = targets.index("scripts.common.guards.StopOnNonFiniteLoss")
    writers = [i for i, t in enumerate(targets) if "Checkpointer" in t or "CheckpointSaver" in t or "ema" in t]
    assert writers and all(guard < i for i in writers), targets




@pytest.mark.parametrize("launcher", ["subprocess", "forkserver"])
def test_a_failed_run_ends_with_the_bundles_own_message(tmp_path, launcher, monkeypatch):
    """MONAI's traceback ends with a dump of the failing config expression; the bundle's one-line message follows it,
    as the last line the user sees, with either launcher."""
    import helpers

    monkeypatch.setattr(helpers, "LAUNCHER", launcher)
    missing = tmp_path / "no such data"
    proc = helpers.bundle_run("training", "train", "--ckpt_dir", str(tmp_path / "ckpt"), "--dataset_dir",
                              str(missing), "--cache_dir", str(tmp_path / "cache"), check=False)  # fmt: skip
    assert proc.returncode == 1
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last == f"ERROR: {missing}: dataset folder not found"
    assert not (tmp_path / "ckpt").exists()  # the empty ckpt_dir it had created is gone


def test_remove_empty_created_folders_keeps_anything_with_content(tmp_path):
    from scripts.common import guards

    guards._CREATED.clear()  # folders earlier in-process tests created (this process is one pytest worker)
    guards.check_writable(str(tmp_path / "a" / "b" / "c"))
    guards.check_writable(str(tmp_path / "kept" / "out"))
    (tmp_path / "kept" / "out" / "weights.pt").write_bytes(b"w")
    guards.check_writable(str(tmp_path))  # existed: nothing to remove
    removed = guards.remove_empty_created_folders()
    assert sorted(removed) == sorted(str(tmp_path / p) for p in ("a/b/c", "a/b", "a"))
    assert (tmp_path / "kept" / "out" / "weights.pt").is_file() and tmp_path.is_dir()


@pytest.mark.parametrize(("run_id", "workflow"), [("training", "train"), ("training", "baseline_train"),
                                                  ("training", "seg_train")])  # fmt: skip
def test_an_image_size_the_unets_cannot_take_is_refused_before_any_data_is_prepared(tmp_path, run_id, workflow):
    import helpers

    cache = tmp_path / "cache"
    proc = helpers.bundle_run(run_id, workflow, "--ckpt_dir", str(tmp_path / "ckpt"), "--cache_dir", str(cache),
                              "--image_size", "33", check=False)  # fmt: skip
    assert proc.returncode == 1
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("ERROR: image_size 33 does not fit the ") and "use --image_size 32 or" in last
    assert not cache.exists() or not any(cache.iterdir())  # refused before the data preparation


def test_check_size_multiple_names_the_nearest_valid_sizes():
    from scripts.common.guards import check_size_multiple

    assert check_size_multiple(512, 32) == 512
    with pytest.raises(ValueError, match=r"image_size 250 .*multiple of 32.*use --image_size 224 or 256"):
        check_size_multiple(250, 32, "the diffusion U-Nets")
    with pytest.raises(ValueError, match=r"use --image_size 32$"):
        check_size_multiple(16, 32)
