"""Segmentation configs: overlay ids exist, MONAI Label / model-zoo ids present, laterality-safe flips, metadata."""

import json

import pytest
import torch
from helpers import CONFIGS, parser

from scripts.common.configs import merged_config


def load(name):
    with open(CONFIGS / name, encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("workflow", ["seg_train", "seg_evaluate"])
def test_overlay_ids_exist_in_base(workflow):
    # MONAI silently adds unknown ids, so a typo in an overlay would give a full-size "smoke" run (seg_inference,
    # which reads no training id, is checked with the other workflows in test_configs.py).
    over = load("seg_smoke.json")
    missing = sorted(set(over) - set(merged_config(workflow)))
    assert not missing, f"seg_smoke.json sets ids absent from {workflow}: {missing}"
    assert "dataset_dir" not in over


# no ``initialize``: it would resolve ``$import scripts`` before MONAI puts the bundle on sys.path (test_bundle_root)
TRAIN_IDS = [
    "bundle_root", "device", "dataset_dir", "ckpt_dir", "output_dir", "network_def", "network", "preprocessing",
    "postprocessing", "inferer", "train#trainer", "train#trainer#max_epochs", "train#dataset", "train#dataset#data",
    "train#handlers", "validate#evaluator", "validate#handlers", "validate#dataset", "validate#dataset#data",
    "val_interval", "training", "run", "num_folds", "fold", "synthetic_dir", "num_synthetic",
    "synthetic_ratio", "cache_dir", "image_size", "crop_mode", "inner_val_fraction",
]  # fmt: skip
INFER_IDS = [
    "bundle_root", "device", "ckpt_dir", "output_dir", "network_def", "network", "preprocessing", "postprocessing",
    "inferer", "inference", "run",
]  # fmt: skip


@pytest.mark.parametrize(
    "names, ids",
    [
        ("seg_train", TRAIN_IDS),
        ("seg_evaluate", TRAIN_IDS + ["evaluating"]),
        ("seg_inference", INFER_IDS),
    ],
)
def test_monai_label_and_model_zoo_ids(names, ids):
    p = parser(names)
    missing = [i for i in ids if i not in p]
    assert not missing, f"{names} lacks {missing}"


def _fake_datalist():
    items = [{"image": f"r{i}_image.nii.gz", "label": f"r{i}_label.nii.gz", "patient_id": f"P{i // 2}"}
             for i in range(20)]  # fmt: skip
    return {"train": items[:14], "validation": items[14:]}


def test_selection_on_inner_validation_and_evaluation_on_the_held_out_fold():
    """Training selects on inner validation patients of the training folds; evaluating scores the held-out fold."""
    p = parser("seg_evaluate", "seg_smoke.json")
    p["datalist"] = _fake_datalist()
    p["fold"] = 1
    split = p.get_parsed_content("split")
    evaluated = p.get_parsed_content("validate#dataset#data")
    assert evaluated == split["test"] and {it["patient_id"] for it in evaluated} == set(split["folds"][1])
    t = parser("seg_train", "seg_smoke.json")
    t["datalist"] = _fake_datalist()
    t["fold"] = 1
    selected = t.get_parsed_content("validate#dataset#data")
    trained = t.get_parsed_content("train#dataset#data")
    assert selected == split["validation"] and trained == split["train"]
    sel_p, train_p = {it["patient_id"] for it in selected}, {it["patient_id"] for it in trained}
    assert sel_p and not sel_p & train_p and not sel_p & set(split["folds"][1]) and not train_p & set(split["folds"][1])


@pytest.mark.parametrize("fraction, validates", [(0.15, True), (0.0, False)])
def test_zero_inner_validation_keeps_the_final_model(fraction, validates, tmp_path):
    p = parser("seg_train", "seg_smoke.json")
    p["bundle_root"] = str(tmp_path)  # the handlers create ckpt_dir / tb_dir
    p["datalist"] = _fake_datalist()
    p["inner_val_fraction"] = fraction
    p["cache_rate"] = 0.0  # the fake items have no files
    from monai.handlers import CheckpointSaver

    handlers = [type(h).__name__ for h in p.get_parsed_content("train#handlers")]
    savers = [h for h in p.get_parsed_content("train#handlers") if isinstance(h, CheckpointSaver)]  # atomic subclass
    assert ("ValidationHandler" in handlers) is validates
    assert bool(savers) is not validates  # save_final → seg_model.pt
    if not validates:
        saver = savers[0]
        assert saver._final_checkpoint is not None and saver._final_filename == "seg_model.pt"


def _components(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node
        for v in node.values():
            yield from _components(v)
    elif isinstance(node, list):
        for v in node:
            yield from _components(v)


@pytest.mark.parametrize("name", ["seg_train", "seg_inference"])
def test_flips_keep_the_chest_wall_left_and_keys_are_image_label_pred(name):
    comps = list(_components(merged_config(name)))
    flips = [c for c in comps if "Flip" in c["_target_"]]
    assert all(c["spatial_axis"] == 0 for c in flips), "only vertical flips: rows reversed, columns kept"
    if name == "seg_train":
        assert flips
    keys = {k for c in comps for k in ([c["keys"]] if isinstance(c.get("keys"), str) else c.get("keys", []))}
    assert keys <= {"image", "label", "pred"}


def test_train_and_inference_networks_match_and_fit_64_to_512_px():
    train_net = parser("seg_train").get_parsed_content("network_def")
    infer_net = parser("seg_inference").get_parsed_content("network_def")
    assert train_net.state_dict().keys() == infer_net.state_dict().keys()
    train_net.eval()
    with torch.no_grad():
        for size in (64, 512):
            assert train_net(torch.zeros(1, 1, size, size)).shape == (1, 2, size, size)
    loss = parser("seg_train").get_parsed_content("loss")
    assert type(loss).__name__ == "DiceCELoss"


def test_seg_metadata_fields():
    meta = load("seg_metadata.json")
    for key in [
        "schema", "version", "changelog", "monai_version", "pytorch_version", "numpy_version",
        "required_packages_version", "name", "task", "description", "authors", "copyright", "data_source",
        "data_type", "image_classes", "label_classes", "pred_classes", "intended_use", "references",
        "network_data_format",
    ]:  # fmt: skip
        assert meta.get(key), f"seg_metadata.json lacks {key}"
    assert "eval_metrics" in meta
    assert meta["version"] in meta["changelog"]
    fmt = meta["network_data_format"]
    assert list(fmt["inputs"]) == ["image"] and list(fmt["outputs"]) == ["pred"]
    assert fmt["inputs"]["image"]["num_channels"] == 1 and fmt["outputs"]["pred"]["num_channels"] == 2
    assert fmt["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "mass"}
    assert len(fmt["inputs"]["image"]["spatial_shape"]) == 2
