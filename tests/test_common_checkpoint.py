"""Checkpoints (``scripts.common.checkpoint``): a SIGKILL mid-epoch resumes to the uninterrupted run's exact weights
(and two inference runs from them are bit-identical), weights of another architecture or image size are refused
naming the file, a failed checkpoint write keeps the previous file. Tiny CPU settings (the smoke overlay)."""

import errno
import json
import re
import signal
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import bundle_run, cause, parser, weights
from ignite.engine import Engine
from monai.handlers import CheckpointSaver

from scripts.common.checkpoint import AtomicCheckpointSaver, StageCheckpointer, file_sha256

# One batch per pass over the 3-case phantom's training slices (19 of them; asserted below): every iteration then
# starts a fresh DataLoader iterator, in an uninterrupted run as in a resumed one, so with the random states restored
# from the resume checkpoint both draw the same shuffle, noise and timesteps and the weights can be compared bit for
# bit. With several batches per pass the resumed run starts a new pass where the uninterrupted one was mid-pass,
# and equality would be impossible by construction (ignite does not store the data-iterator position).
RESUME_OVERLAY = {"batch_size": 32, "max_epochs": 2, "save_iteration_interval": 1}


def run(run_id: str, workflow: str, overlays: list, *args, check: bool = True):
    """``bundle_run`` with one torch thread: the bit-identity tests compare runs of equal thread counts."""
    return bundle_run(run_id, workflow, *args, overlays=[str(o) for o in overlays], check=check, one_thread=True)


def write_json(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One uninterrupted smoke training (RESUME_OVERLAY) on the embedded phantom: (ckpt_dir, cache_dir, overlay)."""
    root = tmp_path_factory.mktemp("reference")
    overlay = write_json(root / "resume_overlay.json", RESUME_OVERLAY)
    ckpt, cache = root / "ckpt", root / "cache"
    run("training", "train", ["configs/smoke.json", overlay], "--ckpt_dir", ckpt, "--cache_dir", cache)
    assert json.loads((ckpt / "dataset.json").read_text())["num_train_slices"] <= RESUME_OVERLAY["batch_size"]
    return ckpt, cache, overlay


# --------------------------------------------------------------------------------------------------- kill and resume
@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path, trained):
    """SIGKILL right after the iteration-3 checkpoint of each stage (epoch_length 2: the first iteration of epoch 2),
    then a plain rerun: the final guider and generator equal the uninterrupted run's exactly (see RESUME_OVERLAY)."""
    ref, cache, overlay = trained
    ckpt = tmp_path / "ckpt"
    base = ["configs/smoke.json", overlay]
    logs = []
    # run 1 dies in the guider stage, run 2 resumes it and dies in the generator (MONAI's train#... ids)
    for stage, section in (("guider", "train#guider"), ("generator", "train")):
        handlers = f"$[h for h in @{section}#handlers if h is not None] + [@kill_at]"  # kill after the save
        kill = write_json(tmp_path / f"kill_{stage}.json", {
            "kill_at": {"_target_": "reliability_helpers.KillAtIteration", "iteration": 3},
            f"{section}#trainer#train_handlers": handlers,
        })  # fmt: skip
        proc = run("training", "train", [*base, kill], "--ckpt_dir", ckpt, "--cache_dir", cache, check=False)
        logs.append(proc.stdout + proc.stderr)
        assert proc.returncode == -signal.SIGKILL, logs[-1][-3000:]
        assert weights(ckpt / f"{stage}_checkpoint.pt")["trainer"]["iteration"] == 3
        assert not (ckpt / f"{stage}.pt").exists()
        assert not list(ckpt.glob(".tmp_*")), "the kill came after the save: no temporary file may be left"
    proc = run("training", "train", base, "--ckpt_dir", ckpt, "--cache_dir", cache)
    logs.append(proc.stdout + proc.stderr)
    assert "guider_checkpoint.pt at epoch 1, iteration 3" in logs[1]
    assert "stage already complete" in logs[2] and "generator_checkpoint.pt at epoch 1, iteration 3" in logs[2]
    for name in ("guider.pt", "generator.pt"):
        got, want = weights(ckpt / name), weights(ref / name)
        assert got.keys() == want.keys()
        # Exact: same arithmetic in the same order on the same CPU; any lost state (optimizer moments, iteration
        # count, random states) shows up as a difference.
        unequal = [k for k in want if not torch.equal(got[k], want[k])]
        assert not unequal, f"{name}: {len(unequal)} tensors differ from the uninterrupted run, e.g. {unequal[:3]}"


# ---------------------------------------------------------------------------------------- bit-identical inference
@pytest.mark.slow
def test_two_full_inference_runs_with_the_same_config_and_seed_are_bit_identical(tmp_path, trained):
    ref, _, _ = trained
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        run("inference", "inference", ["configs/smoke.json"], "--ckpt_dir", ref, "--output_dir", out,
            "--num_samples", 3, "--batch_size", 2)  # fmt: skip
    a, b = outs
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()  # ids, areas, weight hashes
    names = sorted(p.name for p in a.glob("*.nii.gz"))
    assert len(names) == 6 and names == sorted(p.name for p in b.glob("*.nii.gz"))
    for name in names:
        ia, ib = nib.load(a / name), nib.load(b / name)
        # gzip headers hold a time stamp, so the decoded voxels and the NIfTI headers are compared, not file bytes
        assert ia.header.binaryblock == ib.header.binaryblock
        np.testing.assert_array_equal(np.asarray(ia.dataobj), np.asarray(ib.dataobj))
    # The run folder records config (merged files + CLI overrides), resolved paths, versions, seed, weight hashes.
    (record_path,) = (a / "runs").glob("*_inference.json")
    record = json.loads(record_path.read_text())
    assert record["seed"] == 0 and record["packages"]["torch"] and record["packages"]["monai"]
    assert record["config"]["num_inference_steps"] == 2 and record["config"]["ckpt_dir"] == str(ref)
    assert record["resolved"]["output_dir"] == str(a)
    assert record["checkpoints"] == {str(ref / n): file_sha256(str(ref / n)) for n in ("guider.pt", "generator.pt")}


# --------------------------------------------------------------------------------- checkpoints of another network
FOREIGN = {  # the configured architecture is the smoke overlay's; the file comes from these settings
    "pig": {"channels": [8, 8, 16], "attention_levels": [False, False, False]},
    "seg": {"channels": [2, 4], "strides": [2]},
}
LOADERS = [  # (workflow + overlay, handler id, file it loads, resume checkpoint?)
    (["train", "smoke.json"], "train#guider#handlers#0", "guider_checkpoint.pt", True),
    (["train", "smoke.json"], "train#handlers#0", "guider.pt", False),
    (["train", "smoke.json"], "train#handlers#1", "generator_checkpoint.pt", True),
    (["seg_evaluate", "seg_smoke.json"], "validate#handlers#0", "seg_model.pt", False),
    (["seg_inference", "seg_smoke.json"], "handlers#0", "seg_model.pt", False),
]


@pytest.mark.parametrize("configs, handler_id, filename, resume", LOADERS, ids=[f"{c[0]}:{h}" for c, h, *_ in LOADERS])
def test_checkpoint_of_another_architecture_is_refused_naming_the_file(tmp_path, configs, handler_id, filename, resume):
    foreign = FOREIGN["seg" if configs[0].startswith("seg") else "pig"]
    state = parser(*configs, **foreign).get_parsed_content("network_def").state_dict()
    path = tmp_path / filename
    torch.save({"model": state} if resume else state, path)
    p = parser(*configs, ckpt_dir=str(tmp_path), bundle_root=str(tmp_path))
    handler = p.get_parsed_content(handler_id)
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    with pytest.raises(ValueError, match=re.escape(f"{path} does not fit the configured network") + ".*size mismatch"):
        handler(engine)


def test_inference_refuses_weights_of_another_architecture_or_image_size(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    foreign = parser("inference", "smoke.json", **FOREIGN["pig"]).get_parsed_content("network_def")
    torch.save(foreign.state_dict(), ckpt / "guider.pt")
    p = parser("inference", "smoke.json", ckpt_dir=str(ckpt))
    with pytest.raises(RuntimeError) as excinfo:
        p.get_parsed_content("guider")
    assert isinstance(cause(excinfo), ValueError) and f"{ckpt / 'guider.pt'} does not fit" in str(cause(excinfo))
    # Conv weights load at any image size: the size recorded by training (dataset.json) is what is checked.
    (ckpt / "dataset.json").write_text(json.dumps({"image_size": 64}))
    p = parser("inference", "smoke.json", ckpt_dir=str(ckpt), output_dir=str(tmp_path / "out"))
    with pytest.raises(RuntimeError) as excinfo:
        p.get_parsed_content("inference")
    msg = str(cause(excinfo))
    assert f"{ckpt / 'guider.pt'} was trained at image_size 64" in msg and "--image_size 64" in msg
    assert not (tmp_path / "out" / "manifest.csv").exists()
    # With a training run record, the refusal names the overlay that sets the size and the network sizes together
    # (--image_size alone would next fail on the network sizes).
    (ckpt / "runs").mkdir()
    argv = ["monai.bundle", "run", "training", "--config_file",
            str(["configs/data.json", "configs/diffusion.json", "configs/train.json", "/somewhere/configs/demo.json"])]
    (ckpt / "runs" / "20261202T000000Z_training.json").write_text(json.dumps({"argv": argv}))
    p = parser("inference", "smoke.json", ckpt_dir=str(ckpt), output_dir=str(tmp_path / "out"))
    with pytest.raises(RuntimeError) as excinfo:
        p.get_parsed_content("inference")
    msg = str(cause(excinfo))
    assert "trained at image_size 64 with the overlay 'configs/demo.json'" in msg
    assert "add 'configs/demo.json' at the end of --config_file" in msg


# ---------------------------------------------------------------------------------------------- atomic writes
def _failing_save(real_save):
    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # bytes reach the (temporary) file, then the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


@pytest.mark.parametrize("saver_kind", ["pig_stage", "seg_best_model"])
def test_a_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch, saver_kind):
    net = torch.nn.Linear(3, 2)
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"val_dice": 0.5}
    if saver_kind == "pig_stage":
        saver = StageCheckpointer(str(tmp_path), "guider", {"model": net}, net)
        path, save = tmp_path / "guider_checkpoint.pt", lambda: saver.save_resume(engine)
    else:  # seg_train.json's best-model saver: fixed name, replaced at each better score
        saver = AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_name="val_dice",
                                      key_metric_filename="seg_model.pt")  # fmt: skip
        assert isinstance(saver, CheckpointSaver)
        path, save = tmp_path / "seg_model.pt", lambda: saver.metrics_completed(engine)
    save()
    first = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    engine.state.metrics = {"val_dice": 0.9}  # a better score: the seg saver replaces its file
    monkeypatch.setattr(torch, "save", _failing_save(torch.save))
    with pytest.raises(OSError, match="No space left"):
        save()
    monkeypatch.undo()
    stored = weights(path)
    stored = stored.get("model", stored)
    assert all(torch.equal(stored[k], first[k]) for k in first), "the previous checkpoint must survive a failed write"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "no temporary file may be left"
