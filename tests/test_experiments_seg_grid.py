"""The Table-2 grid runner ``scripts.experiments.seg_grid``: table formatting, and one resumable smoke run."""

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest
from helpers import LAUNCHER, run_python_module

from scripts.common.checkpoint import file_sha256
from scripts.experiments.seg_grid import (
    MARKER,
    Setting,
    _settings,
    format_table,
    parse_args,
    pig_fold_datalist,
    summarise_folds,
)
from scripts.seg.folds import fold_split


def test_summarise_and_format_mean_std_over_folds():
    settings = [Setting(None), Setting("PIG", 0.5)]
    per_fold = {
        0: {"real": {"dice": 0.5, "iou": 0.4, "precision": 0.6, "recall": 0.7}, "pig_r0.5": dict.fromkeys(
            ("dice", "iou", "precision", "recall"), 0.25)},
        1: {"real": {"dice": 0.7, "iou": 0.6, "precision": 0.8, "recall": 0.9}, "pig_r0.5": dict.fromkeys(
            ("dice", "iou", "precision", "recall"), 0.75)},
    }  # fmt: skip
    rows = summarise_folds(per_fold, settings)
    assert [r["setting"] for r in rows] == ["real only", "+ PIG ×0.5"]
    assert rows[0]["folds"] == 2
    assert rows[0]["dice_mean"] == pytest.approx(60.0) and rows[0]["dice_std"] == pytest.approx(math.sqrt(200.0))
    assert rows[1]["recall_mean"] == pytest.approx(50.0) and rows[1]["recall_std"] == pytest.approx(math.sqrt(1250.0))
    table = format_table(rows).splitlines()
    assert table[0] == (
        "| setting | folds | Dice (%) | IoU (%) | precision (%) | recall (%) | Δ Dice vs real only [95 % interval] |"
    )
    assert table[2] == "| real only | 2 | 60.00 ± 14.14 | 50.00 ± 14.14 | 70.00 ± 14.14 | 80.00 ± 14.14 | – |"
    assert table[3] == "| + PIG ×0.5 | 2 | 50.00 ± 35.36 | 50.00 ± 35.36 | 50.00 ± 35.36 | 50.00 ± 35.36 | – |"
    rows[1].update(dice_delta=-10.0, dice_delta_low=-12.5, dice_delta_high=1.25)
    assert format_table(rows).splitlines()[3].endswith("| -10.00 [-12.50, +1.25] |")
    # One fold: the standard deviation is undefined and shown as a dash.
    one = format_table(summarise_folds({3: per_fold[0]}, settings[:1]))
    assert "| real only | 1 | 50.00 ± – | 40.00 ± – | 60.00 ± – | 70.00 ± – | – |" in one


def test_setting_keys_and_labels_of_the_synthetic_only_and_gated_rows():
    assert (Setting(None).key, Setting(None).label) == ("real", "real only")
    assert (Setting("PIG", 1.0).key, Setting("PIG", 1.0).label) == ("pig_r1", "+ PIG ×1")
    only = Setting("PIG", 1.0, real=False)
    assert (only.key, only.label) == ("pig_only_r1", "PIG only ×1")
    gated = Setting("PIG", 0.3, gate=3)
    assert (gated.key, gated.label) == ("pig_r0.3_gate3", "+ PIG ×0.3, gate k=3")


def test_every_generator_gets_its_synthetic_only_and_gated_rows():
    args = parse_args(["--work_dir", "w", "--ratios", "0.3", "--synthetic_only", "1", "--gate_ratios", "0.3",
                       "--gate_max_components", "1,3", "--extra_generator", "X=f/{fold}", "--seed_controls", "1"])
    settings = _settings(args)
    assert [s.key for s in settings] == ["real", "real_seed1", "pig_r0.3", "pig_only_r1", "pig_r0.3_gate1",
                                         "pig_r0.3_gate3", "x_r0.3", "x_only_r1", "x_r0.3_gate1", "x_r0.3_gate3"]
    assert [(s.real, s.gate, s.pattern) for s in settings if s.generator == "X"] == [
        (True, None, "f/{fold}"), (False, None, "f/{fold}"), (True, 1, "f/{fold}"), (True, 3, "f/{fold}")]
    assert [s.label for s in settings[:2]] == ["real only", "real only, seed 1"]
    assert [s.is_reference for s in settings[:3]] == [True, False, False]
    for bad in (["--gate_ratios", "0.3", "--gate_max_components", "0"], ["--gate_max_components", "1"],
                ["--synthetic_only", "0"], ["--gate_ratios", "0"]):  # fmt: skip
        with pytest.raises(SystemExit):  # each would otherwise be dropped without a word
            parse_args(["--work_dir", "w", *bad])
    assert parse_args(["--work_dir", "w"]).gate_max_components == [3]
    with pytest.raises(SystemExit):
        parse_args(["--work_dir", "w", "--seed_controls", "0"])  # the runner's own seed: not a control


def test_pig_fold_datalist_keeps_only_training_patients():
    # PIG trains on the fold's training patients: the seg train and inner validation items, never the held-out fold.
    items = [{"image": f"{p}-{i}", "patient_id": p, "spacing_mm": [1.0, 2.0]} for p in "abcdef" for i in range(2)]
    datalist = {"train": items[:8], "validation": items[8:], "cache": "/c", "counts": {"cases": 6}}
    split = fold_split(datalist, num_folds=3, fold=1, seed=0)
    pig = pig_fold_datalist(datalist, split)
    assert split["validation"] and split["test"]
    assert pig["validation"] == [] and pig["train"] == split["train"] + split["validation"]
    assert pig["spacing_mm"] == [1.0, 2.0]
    assert not {it["patient_id"] for it in pig["train"]} & set(split["folds"][1])
    assert pig["counts"]["fold"] == 1 and pig["counts"]["train_items"] == 8 and pig["cache"] == "/c"
    with pytest.raises(ValueError, match="held-out patients"):
        pig_fold_datalist(datalist, {**split, "train": items})


def _run_grid(work: Path, cache: Path) -> subprocess.CompletedProcess:
    args = [
        "--work_dir", work, "--cache_dir", cache, "--pig_overlay", "configs/smoke.json", "--seg_overlay",
        "configs/seg_smoke.json", "--folds", "0,1", "--num_folds", "3", "--ratios", "0.5,1.0", "--pig_overrides",
        '{"preview_samples": 1, "batch_size": 16}', "--synthetic_only", "1", "--gate_ratios", "0.5",
        "--gate_max_components", "1000", "--seed_controls", "1", "--bootstrap", "200", "--launcher", LAUNCHER,
    ]  # fmt: skip
    return run_python_module("scripts.experiments.seg_grid", args)


def _train_counts(seg_dir: Path) -> dict:
    """The training set as the segmentation run loaded it (``DataCountLogger``'s ``seg_data.json``)."""
    return json.loads((seg_dir / "seg_data.json").read_text(encoding="utf-8"))["train"]


@pytest.mark.slow
def test_grid_smoke_on_phantom_no_leakage_and_resume(tmp_path):
    work = tmp_path / "grid dir"
    _run_grid(work, tmp_path / "cache")
    with open(work / "table.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["setting"] for r in rows] == ["real only", "real only, seed 1", "+ PIG ×0.5", "+ PIG ×1", "PIG only ×1",
                                            "+ PIG ×0.5, gate k=1000"]  # fmt: skip
    for r in rows:
        assert r["folds"] == "2"
        assert all(math.isfinite(float(r[f"{m}_{s}"])) for m in ("dice", "iou", "precision", "recall")
                   for s in ("mean", "std"))  # fmt: skip
    md = (work / "table.md").read_text(encoding="utf-8")
    assert "| real only | 2 |" in md and "| + PIG ×1 | 2 |" in md and '"pig_overrides"' in md
    config = json.loads((work / "config.json").read_text(encoding="utf-8"))
    assert config["folds"] == [0, 1] and config["num_folds"] == 3 and "monai" in config["versions"]["packages"]
    for fold in (0, 1):
        detail = config["folds_detail"][str(fold)]
        # Held-out patients as the segmentation training recorded them, independently of the runner's bookkeeping.
        seg_folds = json.loads((work / f"fold{fold}" / "seg_real" / "folds.json").read_text())
        held_out = set(seg_folds["test_patients"])
        assert held_out and held_out == set(detail["held_out_patients"])
        inner = set(seg_folds["validation_patients"])
        assert inner == set(detail["inner_validation_patients"]) and not inner & held_out
        pig_saw = json.loads((work / f"fold{fold}" / "pig" / "dataset.json").read_text())
        seen = set(pig_saw["train_patients"]) | set(pig_saw["validation_patients"])
        assert seen == set(seg_folds["train_patients"]) | inner == set(detail["pig"]["patients"])
        assert not seen & held_out
        assert set(detail["pig"]["sha256"]) == {"guider.pt", "generator.pt"}
        assert all(len(h) == 64 for h in detail["pig"]["sha256"].values())
        # ratio 1.0 needs one pair per real training item; ratio 0.5 takes the first half of the same manifest.
        with open(work / f"fold{fold}" / "samples" / "manifest.csv", newline="", encoding="utf-8") as f:
            assert len(list(csv.DictReader(f))) == detail["num_real_train"] == seg_folds["num_train_items"]
        # What each training loaded (DataCountLogger's seg_data.json, not the runner's bookkeeping).
        n = detail["num_real_train"]
        loaded = {k: _train_counts(work / f"fold{fold}" / f"seg_{k}")
                  for k in ("real", "pig_r0.5", "pig_only_r1", "pig_r0.5_gate1000")}  # fmt: skip
        assert (loaded["real"]["real"], loaded["real"]["synthetic"]) == (n, 0)
        assert (loaded["pig_r0.5"]["real"], loaded["pig_r0.5"]["synthetic"]) == (n, round(0.5 * n))
        assert (loaded["pig_only_r1"]["real"], loaded["pig_only_r1"]["synthetic"]) == (0, n)
        assert (loaded["pig_r0.5_gate1000"]["real"], loaded["pig_r0.5_gate1000"]["synthetic"]) == (n, round(0.5 * n))
        gate = detail["seg_data"]["pig_r0.5_gate1000"]["quality_gate"]
        assert gate["listed"] == n and gate["max_components"] == 1000 and gate["kept"] >= round(0.5 * n)
        assert detail["seg_data"]["pig_r0.5"]["quality_gate"] is None
        # The seed control trains the same real items with another seed (its run record says which).
        assert loaded["real"] == _train_counts(work / f"fold{fold}" / "seg_real_seed1")
        records = [json.loads(p.read_text()) for k in ("real", "real_seed1")
                   for p in sorted((work / f"fold{fold}" / f"seg_{k}" / "runs").glob("*_seg_training.json"))]
        assert [(r["seed"], r["train_seed"]) for r in records] == [(0, 0), (0, 1)]
        # ...and the seed reaches the training: another initialisation gives other weights (same data, same folds).
        weights = {k: file_sha256(str(work / f"fold{fold}" / f"seg_{k}" / "seg_model.pt"))
                   for k in ("real", "real_seed1")}  # fmt: skip
        assert weights["real"] != weights["real_seed1"]
        assert set(detail["per_image"]["real"]["patients"]) == held_out  # per-image Dice kept per held-out patient
    for r in rows[1:]:  # paired differences with their interval around them
        assert float(r["dice_delta_low"]) <= float(r["dice_delta"]) <= float(r["dice_delta_high"])
    assert "fold 0: 0 real +" in md and "gate kept" in md and "Δ Dice vs real only" in md
    assert "Held-out patients per fold: 1 / 1." in md and "read them as descriptive only" in md
    assert (work / "dice_vs_ratio.png").stat().st_size > 1000
    # A second invocation resumes: every stage is skipped, no marker changes, and the first table is kept.
    markers = {p: p.stat().st_mtime_ns for p in work.rglob(MARKER)}
    assert len(markers) == 2 * (2 + 6 * 2)  # per fold: pig, samples, 6 x (seg training, evaluation)
    first_table = (work / "table.md").read_bytes()
    proc = _run_grid(work, tmp_path / "cache")
    assert "running" not in proc.stderr and proc.stderr.count("skipping") == len(markers)
    assert {p: p.stat().st_mtime_ns for p in work.rglob(MARKER)} == markers
    assert (work / "table.md").read_bytes() == first_table
    assert len(list(work.glob("table_*.md"))) == 1 and len(list(work.glob("config_*.json"))) == 1
    assert len(list(work.glob("dice_vs_ratio_*.png"))) == 1


def test_gate_shortfall_leaves_out_a_gated_row_only_when_too_few_pairs_pass(tmp_path):
    """The runner's pre-check uses the training's own gate: 2 of the 6 pairs pass (k = 1, real areas 16-100 px)."""
    from test_seg_synthetic import _gate_folder

    from scripts.experiments.seg_grid import gate_shortfall

    folder, real = _gate_folder(tmp_path)
    assert gate_shortfall(folder, Setting("PIG", 1.0, gate=1), real) is None  # needs round(1 x 2) = 2
    short = gate_shortfall(folder, Setting("PIG", 1.5, gate=1), real)  # needs 3
    assert short is not None and (short["needed"], short["kept"], short["listed"]) == (3, 2, 6)
    assert gate_shortfall(folder, Setting("PIG", 1.5, gate=3), real) is None  # k = 3 keeps the 3-component pair too


def test_a_row_trained_in_no_fold_gets_dashes_not_an_error():
    from scripts.experiments.seg_grid import add_paired_intervals

    settings = [Setting(None), Setting("PIG", 0.3), Setting("PIG", 0.3, gate=1)]
    metrics = {"dice": 0.8, "iou": 0.7, "precision": 0.8, "recall": 0.8}
    per_fold = {0: {"real": metrics, "pig_r0.3": metrics}}
    img = {"images": ["a", "b"], "patients": ["P1", "P2"], "dice": [0.8, 0.6]}
    rows = summarise_folds(per_fold, settings)
    detail = add_paired_intervals(rows, {0: {"real": img, "pig_r0.3": {**img, "dice": [0.9, 0.6]}}}, settings, 50, 0)
    assert detail["pig_r0.3_gate1"] is None and math.isclose(rows[1]["dice_delta"], 5.0)
    line = format_table(rows).splitlines()[-1]
    assert line == "| + PIG ×0.3, gate k=1 | 0 | – | – | – | – | – |"
