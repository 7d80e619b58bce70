"""Synthetic PIG pairs: training set only, in the requested number, [0, 1] -> [-1, 1], confined to their folder."""

import csv
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import parser as config_parser

from scripts.common.writer import MANIFEST_FIELDS, pair_paths, read_manifest, write_manifest, write_pair
from scripts.seg.synthetic import SYNTHETIC_KEY, SyntheticToRealRanged, synthetic_items


def make_pig_folder(folder: Path, n: int = 4, size: int = 32, seed: int = 0) -> Path:
    """A PIG inference output folder as ``scripts.pig.generate_pairs`` writes it: n pairs + manifest.csv."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        sid = f"pig-s{seed}-{i:05d}"
        image = torch.from_numpy(rng.uniform(0.0, 1.0, (size, size)).astype(np.float32))
        label = torch.zeros(size, size, dtype=torch.uint8)
        label[size // 4 : size // 2, size // 4 : size // 2] = 1
        img_path, lab_path = pair_paths(str(folder), sid)
        write_pair(image, label, img_path, lab_path, (1.0, 1.0))
        row = dict.fromkeys(MANIFEST_FIELDS, "")
        row.update(id=sid, image=os.path.basename(img_path), label=os.path.basename(lab_path), seed=seed,
                   sample_index=i, lesion_area_px=int(label.sum()))  # fmt: skip
        rows.append(row)
    write_manifest(str(folder / "manifest.csv"), rows)
    return folder


def rewrite_manifest(folder: Path, row: int, key: str, value: str) -> None:
    path = folder / "manifest.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[row][key] = value
    path.unlink()
    write_manifest(str(path), rows)


def test_counts_by_number_and_ratio_first_rows_first(tmp_path):
    folder = make_pig_folder(tmp_path / "pig", n=4)
    items = synthetic_items(str(folder), num_synthetic=3, image_size=32)
    assert [it["case_id"] for it in items] == [f"pig-s0-{i:05d}" for i in range(3)]
    assert all(it[SYNTHETIC_KEY] == 1 and os.path.isabs(it["image"]) for it in items)
    assert len(synthetic_items(str(folder), synthetic_ratio=0.5, num_real=6)) == 3
    assert len(synthetic_items(str(folder), synthetic_ratio=0.0, num_real=6)) == 0
    assert len(synthetic_items(str(folder))) == 4  # neither count: every listed pair
    assert synthetic_items(None) == []


def test_invalid_requests_are_refused(tmp_path):
    folder = make_pig_folder(tmp_path / "pig", n=4)
    with pytest.raises(ValueError, match="only 4"):
        synthetic_items(str(folder), num_synthetic=5)
    with pytest.raises(ValueError, match="not both"):
        synthetic_items(str(folder), num_synthetic=1, synthetic_ratio=0.1)
    with pytest.raises(ValueError, match="need synthetic_dir"):
        synthetic_items(None, num_synthetic=2)
    with pytest.raises(ValueError, match="expected 64"):
        synthetic_items(str(folder), num_synthetic=1, image_size=64)
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        synthetic_items(str(tmp_path), num_synthetic=1)


@pytest.mark.parametrize("escape", ["../outside_image.nii.gz", "ABS", "sub/../../outside_image.nii.gz", "LINK"])
def test_manifest_paths_outside_the_folder_are_refused(tmp_path, escape):
    folder = make_pig_folder(tmp_path / "pig", n=2)
    outside = tmp_path / "outside_image.nii.gz"
    outside.write_bytes((folder / "pig-s0-00000_image.nii.gz").read_bytes())
    if escape == "ABS":
        escape = str(outside)
    elif escape == "LINK":
        (folder / "link_image.nii.gz").symlink_to(outside)
        escape = "link_image.nii.gz"
    rewrite_manifest(folder, 1, "image", escape)
    with pytest.raises(ValueError, match="points outside"):
        read_manifest(str(folder))


def test_missing_listed_file_is_an_error(tmp_path):
    folder = make_pig_folder(tmp_path / "pig", n=2)
    (folder / "pig-s0-00001_label.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="line 3: label"):
        read_manifest(str(folder))


def test_synthetic_images_are_mapped_to_the_real_range_labels_and_real_items_untouched():
    t = SyntheticToRealRanged(keys="image")
    img = torch.tensor([[[0.0, 0.25, 1.0]]])
    lab = torch.tensor([[[0.0, 1.0, 1.0]]])
    out = t({"image": img, "label": lab, SYNTHETIC_KEY: 1})
    assert out["image"].tolist() == [[[-1.0, -0.5, 1.0]]]
    assert torch.equal(out["label"], lab)
    real = t({"image": img, "label": lab})
    assert torch.equal(real["image"], img)


def test_training_config_pipeline_maps_synthetic_pairs(tmp_path):
    """The configured training preprocessing loads a PIG pair into [-1, 1] with its {0, 1} mask."""
    folder = make_pig_folder(tmp_path / "pig", n=1)
    parser = config_parser("seg_train", "seg_smoke.json")
    for key in ("flip_prob", "rotate_prob", "zoom_prob", "intensity_prob"):
        parser[key] = 0.0
    item = synthetic_items(str(folder))[0]
    out = parser.get_parsed_content("train#preprocessing")(item)
    raw = torch.as_tensor(np.asarray(nib.load(item["image"]).dataobj))
    assert set(out) == {"image", "label"}
    assert torch.allclose(out["image"][0], raw * 2 - 1)
    assert out["image"].min() >= -1 and out["image"].max() <= 1
    assert set(out["label"].unique().tolist()) == {0.0, 1.0}


def fake_datalist():
    items = [
        {"image": f"r{i}_image.nii.gz", "label": f"r{i}_label.nii.gz", "patient_id": f"P{i // 2}"} for i in range(12)
    ]
    return {"train": items[:8], "validation": items[8:]}


@pytest.mark.parametrize("request_", [("num_synthetic", 4, 4), ("synthetic_ratio", 0.5, None)])
def test_synthetic_pairs_enter_the_training_set_only(tmp_path, request_):
    key, value, expected = request_
    folder = make_pig_folder(tmp_path / "pig", n=6)
    parser = config_parser("seg_train", "seg_smoke.json")
    parser["datalist"] = fake_datalist()
    parser["synthetic_dir"] = str(folder)
    parser[key] = value
    split = parser.get_parsed_content("split")
    train = parser.get_parsed_content("train#dataset#data")
    validation = parser.get_parsed_content("validate#dataset#data")
    n_syn = sum(1 for it in train if it.get(SYNTHETIC_KEY))
    if expected is None:  # ratio: relative to the real training items of this fold
        expected = round(value * len(split["train"]))
    assert n_syn == expected > 0
    assert [it for it in train if not it.get(SYNTHETIC_KEY)] == split["train"]
    assert validation == split["validation"] and not any(it.get(SYNTHETIC_KEY) for it in validation)
    # Model selection on the inner validation patients: neither training nor held-out test patients.
    patients = {key: {it["patient_id"] for it in split[key]} for key in ("train", "validation", "test")}
    assert patients["validation"] and not patients["validation"] & (patients["train"] | patients["test"])
    assert not {it["patient_id"] for it in train} & patients["test"]


def test_synthetic_only_trains_on_the_pairs_alone_and_keeps_real_model_selection(tmp_path):
    """``use_real_train`` false: the training set is the requested pairs only; validation stays the real inner fold."""
    folder = make_pig_folder(tmp_path / "pig", n=6)
    parser = config_parser("seg_train", "seg_smoke.json")
    parser["datalist"] = fake_datalist()
    parser.update({"synthetic_dir": str(folder), "synthetic_ratio": 1.0, "use_real_train": False})
    split = parser.get_parsed_content("split")
    train = parser.get_parsed_content("train#dataset#data")
    assert len(train) == len(split["train"]) > 0 and all(it.get(SYNTHETIC_KEY) == 1 for it in train)
    assert parser.get_parsed_content("validate#dataset#data") == split["validation"]
    with pytest.raises(ValueError, match="no synthetic_dir"):
        synthetic_items(None, use_real=False)
    with pytest.raises(ValueError, match="0 synthetic pairs were selected"):
        synthetic_items(str(folder), num_synthetic=0, use_real=False)


def _gate_folder(tmp_path):
    """Six pairs: good, empty, three components, too large, good, too small (real areas span 16–100 px)."""
    folder = make_pig_folder(tmp_path / "pig", n=6, size=32)
    masks = {1: [], 2: [(2, 2, 4), (10, 10, 4), (20, 20, 4)], 3: [(0, 0, 20)], 5: [(4, 4, 3)]}  # (row, col, side)
    for i, squares in masks.items():
        label = np.zeros((32, 32), dtype=np.uint8)
        for r, c, side in squares:
            label[r : r + side, c : c + side] = 1
        path = folder / f"pig-s0-{i:05d}_label.nii.gz"
        path.unlink()
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(path))
    real = []
    for j, side in enumerate((4, 10)):  # real lesion areas 16 and 100 px; make_pig_folder's squares are 64 px
        label = np.zeros((32, 32), dtype=np.uint8)
        label[:side, :side] = 1
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / f"real{j}.nii.gz"))
        real.append({"image": "unused", "label": str(tmp_path / f"real{j}.nii.gz")})
    return folder, real


def test_quality_gate_drops_exactly_the_masks_unlike_real_ones(tmp_path, caplog):
    import logging

    from scripts.seg.synthetic import quality_gate

    folder, real = _gate_folder(tmp_path)
    kept, report = quality_gate(read_manifest(str(folder)), max_components=1, real_items=real)
    assert [Path(r["image"]).name for r in kept] == ["pig-s0-00000_image.nii.gz", "pig-s0-00004_image.nii.gz"]
    assert report == {"listed": 6, "kept": 2, "dropped_empty": 1, "dropped_components": 1, "dropped_area": 2,
                      "max_components": 1, "area_range_px": [16, 100]}  # fmt: skip
    # three components pass a gate of 3 (its area, 48 px, is within the real range)
    assert len(quality_gate(read_manifest(str(folder)), max_components=3, real_items=real)[0]) == 3
    with caplog.at_level(logging.INFO, logger="scripts.seg.synthetic"):
        items = synthetic_items(str(folder), num_synthetic=2, max_components=1, real_items=real)
    assert [it["case_id"] for it in items] == ["pig-s0-00000", "pig-s0-00004"]  # the first n kept pairs
    assert "quality gate kept 2 of 6 pairs (dropped: 1 empty, 1 with more than 1 components, 2 with an area" in (
        caplog.text
    )
    with pytest.raises(ValueError, match="the quality gate kept only 2 of 6"):
        synthetic_items(str(folder), num_synthetic=3, max_components=1, real_items=real)
    assert len(synthetic_items(str(folder), num_synthetic=3)) == 3  # gate off: the first 3 listed, whatever they hold
    every = synthetic_items(str(folder), max_components=1, real_items=real)  # no count: every pair that passes
    assert len(every) == 2 and every.gate_report["dropped_area"] == 2
    assert synthetic_items(str(folder)).gate_report is None
    with pytest.raises(ValueError, match="synthetic_max_components must be >= 1"):
        quality_gate(read_manifest(str(folder)), max_components=0, real_items=real)
