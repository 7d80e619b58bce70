"""Reliability of training, checkpoints and outputs.

Resume after a SIGKILL mid-epoch, outputs never overwritten, manifests confined to their folder, bit-identical
repeated inference, clear errors for checkpoints of another architecture / image size, for unwritable output
folders and for NaN losses, atomic checkpoint writes. Tiny CPU settings throughout (the smoke overlay: 32-px
phantom patches, 3-level U-Nets, 2 DDIM steps).
"""

import errno
import json
import os
import re
import signal
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import bundle_run, parser
from ignite.engine import Engine
from monai.data import FolderLayout
from monai.handlers import CheckpointSaver
from monai.networks.schedulers import DDIMScheduler
from test_seg_synthetic import make_pig_folder, rewrite_manifest

from scripts.common.checkpoint import AtomicCheckpointSaver, StageCheckpointer, file_sha256
from scripts.common.grid import save_pair_grid
from scripts.common.guards import NonFiniteLossError
from scripts.common.writer import read_manifest
from scripts.evaluation.pair_stats import generated_pairs
from scripts.pig import PairedDDIMInferer, generate_pairs
from scripts.seg.inference import check_outputs

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


def cause(excinfo) -> BaseException:
    """MONAI's config parser re-raises an expression's error as RuntimeError ``from`` it: the original error."""
    e = excinfo.value
    while isinstance(e, RuntimeError) and e.__cause__ is not None:
        e = e.__cause__
    return e


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


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
    for stage in ("guider", "generator"):  # run 1 dies in the guider stage, run 2 resumes it and dies in the generator
        handlers = f"$[h for h in @train#{stage}#handlers if h is not None] + [@kill_at]"  # kill after the save
        kill = write_json(tmp_path / f"kill_{stage}.json", {
            "kill_at": {"_target_": "reliability_helpers.KillAtIteration", "iteration": 3},
            f"train#{stage}#trainer#train_handlers": handlers,
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


# ------------------------------------------------------------------------------------------------ no overwriting
def _inferer():
    scheduler = DDIMScheduler(num_train_timesteps=1024, schedule="linear_beta", beta_start=1e-4, beta_end=0.02,
                              clip_sample=True, set_alpha_to_one=True, steps_offset=0)  # fmt: skip
    return PairedDDIMInferer(scheduler, num_inference_steps=2)


def test_outputs_are_never_overwritten_and_the_refusal_comes_before_any_write(tmp_path, tiny_unet):
    # PIG pairs: only the *last* target (manifest.csv) exists; without the up-front check every pair would be
    # written before write_manifest refused.
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "manifest.csv").write_text("earlier run\n")
    with pytest.raises(FileExistsError, match="refusing to overwrite .*manifest.csv"):
        generate_pairs(_inferer(), tiny_unet(0).eval(), tiny_unet(1).eval(), 2, 2, 0, 16, str(out))
    assert os.listdir(out) == ["manifest.csv"] and (out / "manifest.csv").read_text() == "earlier run\n"
    # Segmentation inference: an existing mask named as SaveImaged would name it.
    layout = FolderLayout(str(tmp_path / "pred"), postfix="pred", extension=".nii.gz", parent=False, makedirs=True)
    items = [{"image": str(tmp_path / "in" / f"c{i}_image.nii.gz")} for i in range(2)]
    target = Path(layout.filename(subject=items[1]["image"]))
    target.parent.mkdir(parents=True, exist_ok=True)  # FolderLayout(makedirs=True) made it
    target.write_bytes(b"earlier")
    with pytest.raises(FileExistsError, match=f"refusing to overwrite {target}"):
        check_outputs(items, layout)
    # pair_stats --grid
    grid = tmp_path / "grid.png"
    grid.write_bytes(b"earlier")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_pair_grid([np.zeros((4, 4))], [np.zeros((4, 4))], str(grid))
    assert grid.read_bytes() == b"earlier" and target.read_bytes() == b"earlier"


# --------------------------------------------------------------------------------------------- manifest confined
@pytest.mark.parametrize("reader", [read_manifest, generated_pairs], ids=["seg_synthetic", "pair_stats"])
def test_every_manifest_reader_refuses_paths_outside_the_folder(tmp_path, reader):
    folder = make_pig_folder(tmp_path / "pig", n=2)
    secret = tmp_path / "secret_label.nii.gz"
    secret.write_bytes((folder / "pig-s0-00001_label.nii.gz").read_bytes())  # a valid file: only the place is wrong
    rewrite_manifest(folder, 1, "label", "../secret_label.nii.gz")
    with pytest.raises(ValueError, match=r"line 3: label path '\.\./secret_label\.nii\.gz' points outside"):
        reader(str(folder))


# --------------------------------------------------------------------------------- checkpoints of another network
FOREIGN = {  # the configured architecture is the smoke overlay's; the file comes from these settings
    "pig": {"channels": [8, 8, 16], "attention_levels": [False, False, False]},
    "seg": {"channels": [2, 4], "strides": [2]},
}
LOADERS = [  # (workflow + overlay, handler id, file it loads, resume checkpoint?)
    (["train", "smoke.json"], "train#guider#handlers#0", "guider_checkpoint.pt", True),
    (["train", "smoke.json"], "train#generator#handlers#0", "guider.pt", False),
    (["train", "smoke.json"], "train#generator#handlers#1", "generator_checkpoint.pt", True),
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
    [("train", "train#guider#handlers"), ("train", "train#generator#handlers"), ("seg_train", "train#handlers")],
)  # fmt: skip
def test_nan_guard_comes_before_every_checkpoint_writer(config, handlers_id):
    """ignite runs ITERATION_COMPLETED handlers in attachment order: the guard must raise before any save."""
    targets = [h["_target_"] if isinstance(h, dict) else h for h in parser(config)[handlers_id]]
    guard = targets.index("scripts.common.guards.StopOnNonFiniteLoss")
    writers = [i for i, t in enumerate(targets) if "Checkpointer" in t or "CheckpointSaver" in t or "ema" in t]
    assert writers and all(guard < i for i in writers), targets


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
