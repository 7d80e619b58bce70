"""Run records and run logs: the engine start line of a fresh run, the final 'what was written where' line."""

from __future__ import annotations

import logging

import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer

from scripts.common.runinfo import report_outputs, word_fresh_engine_starts


def _engines():
    net = torch.nn.Conv2d(1, 1, 1)
    data = [{"image": torch.zeros(1, 1, 4, 4), "label": torch.zeros(1, 1, 4, 4)}] * 2
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=2, train_data_loader=data, network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=torch.nn.MSELoss(),
    )  # fmt: skip
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=data, network=net)
    return trainer, evaluator


def test_a_fresh_run_is_announced_as_a_start_and_a_real_resume_as_a_resume(caplog):
    word_fresh_engine_starts()
    word_fresh_engine_starts()  # idempotent: one filter per logger
    assert len(logging.getLogger("ignite.engine.engine.SupervisedTrainer").filters) == 1
    trainer, evaluator = _engines()
    with caplog.at_level(logging.INFO):
        trainer.run()
        evaluator.run(global_epoch=3)
    text = caplog.text
    assert "resuming from iteration 0" not in text  # MONAI's engines said this on every fresh start
    assert "Engine run starting: epochs 1 to 2" in text and "Engine run starting (evaluation 3)" in text
    # a run that really continues (as after loading a resume checkpoint) keeps ignite's wording
    trainer, _ = _engines()
    trainer.state.iteration, trainer.state.epoch = 2, 1
    caplog.clear()
    with caplog.at_level(logging.INFO):
        trainer.run()
    assert "Engine run resuming from iteration 2, epoch 1 until 2 epochs" in caplog.text


def test_report_outputs_counts_each_pattern_that_matches(tmp_path, caplog):
    for name in ("a_image.nii.gz", "a_label.nii.gz", "b_image.nii.gz", "b_label.nii.gz", "manifest.csv"):
        (tmp_path / name).write_text("x")
    with caplog.at_level(logging.INFO, logger="scripts.common.runinfo"):
        found = report_outputs(str(tmp_path), ["manifest.csv", "absent.txt"], "inference",
                               pattern=["*_image.nii.gz", "*_label.nii.gz", "*_label.seg.nrrd"])  # fmt: skip
    assert found == [str(tmp_path / "manifest.csv")]
    assert f"inference finished: wrote 2 × *_image.nii.gz, 2 × *_label.nii.gz, manifest.csv in {tmp_path}" in (
        caplog.text
    )
