"""Raw source images to network input and back (``scripts.data.source``) and the ``seg_inference.json`` chain on raw
files, with an oracle network, so that a flipped, transposed or shifted result fails.

The oracle marks as lesion what the window maps above 0.6: in these images the lesion is the brightest structure
(the upper percentile of the window falls inside it), so a correct round trip returns the lesion where it was drawn.
"""

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import parser, write_dbt

from scripts.data.case import DataError
from scripts.data.readers import _read_itk, read_array
from scripts.data.source import LoadSourced, RestoreSourced, check_network_input, from_network, source_kind, to_network
from scripts.seg.inference import check_outputs, list_inputs, output_paths, training_settings

H, W = 90, 70  # non-square: a transposed result cannot have the source's shape


def raw_slice(side: str = "right", lesion=(30, 52), radius: int = 6, seed: int = 0):
    """``(H, W)`` float32 slice: dark background, a half-disc breast against the ``side`` edge (chest wall), a bright
    lesion disc at ``lesion`` (row, column, in the slice's own coordinates); and the lesion mask."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:H, :W]
    wall = W - 1 if side == "right" else 0
    breast = (rr - H / 2) ** 2 / (H * 0.45) ** 2 + (cc - wall) ** 2 / (W * 0.7) ** 2 <= 1
    lesion_mask = (rr - lesion[0]) ** 2 + (cc - lesion[1]) ** 2 <= radius**2
    image = np.where(breast, 100.0 + rng.normal(0, 4, (H, W)), 5.0 + rng.normal(0, 1, (H, W)))
    image[lesion_mask] = 250.0
    return image.astype(np.float32), lesion_mask.astype(np.uint8)


def oracle(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x) > 0.6).astype(np.float32)


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.mark.parametrize("side", ["right", "left"])
def test_slice_mode_round_trip_puts_the_lesion_back_where_it_was(side):
    lesion = (30, 52) if side == "right" else (60, 17)
    image, truth = raw_slice(side, lesion)
    x, record = to_network(image[None], (1.0, 0.1, 0.1), 64)
    assert x.shape == (1, 64, 64) and -1 <= x.min() and x.max() <= 1
    assert record["flipped"] == (side == "right")  # the network always sees the breast on the left
    mask = from_network(oracle(x), record)
    assert mask.shape == (1, H, W) and mask.dtype == np.uint8
    assert dice(mask[0], truth) > 0.85  # 64-px resize of a ~80-px crop: edge pixels may differ, the disc may not move


def test_patch_mode_resamples_to_the_training_spacing_and_back():
    image, truth = raw_slice("right")
    # source 0.1 mm per pixel, training 0.2 mm per network pixel: the slice is halved, then restored
    x, record = to_network(image[None], (1.0, 0.1, 0.1), 32, crop_mode="patch", training_spacing_mm=(0.2, 0.2))
    assert x.shape == (1, 45, 35) and record["shape"] == [45, 35]
    assert dice(from_network(oracle(x), record)[0], truth) > 0.8
    with pytest.raises(ValueError, match="training pixel spacing"):
        to_network(image[None], (1.0, 0.1, 0.1), 32, crop_mode="patch")


def test_volume_slice_by_slice_with_an_empty_plane():
    image, truth = raw_slice("right")
    volume = np.stack([image, np.full_like(image, 7.0), np.fliplr(image)])  # slice 2: breast on the left
    labels = np.stack([truth, np.zeros_like(truth), np.fliplr(truth)])
    x, record = to_network(volume, (1.0, 0.1, 0.1), 64)
    assert record["slices"][1] == {"empty": True} and np.all(x[1] == -1)
    mask = from_network(oracle(x), record)
    assert mask.shape == volume.shape and not mask[1].any()
    # one laterality decision per volume (as training does): slice 2's breast is mirrored, its lesion still returns
    assert dice(mask[0], labels[0]) > 0.85 and dice(mask[2], labels[2]) > 0.85
    with pytest.raises(ValueError, match="probabilities"):
        from_network(oracle(x)[:2], record)


def test_network_input_range_check_names_what_it_saw(tmp_path):
    check_network_input(np.linspace(-1, 1, 10), "a.nii.gz", "prepared")
    check_network_input(np.linspace(0, 1, 10), "a.nii.gz", "prepared")  # a patch inside the breast: no background
    (tmp_path / "manifest.csv").write_text("id\n")
    with pytest.raises(DataError, match=r"p_image.nii.gz: a generated-pair image .*saw \[0, 1\]"):
        check_network_input(np.linspace(0, 1, 10), str(tmp_path / "p_image.nii.gz"), "prepared")
    check_network_input(np.linspace(-1, 1, 10), str(tmp_path / "p_image.nii.gz"), "raw")  # windowed from [0, 1]
    with pytest.raises(DataError, match=r"a.nii.gz: a prepared slice .*saw \[0, 4.1e\+03\].*--source_kind raw"):
        check_network_input(np.linspace(0, 4095, 10), "a.nii.gz", "prepared")
    with pytest.raises(DataError, match="NaN"):
        check_network_input(np.array([np.nan]), "c", "raw")


def test_source_kind_auto_detects_prepared_slices(tmp_path):
    (tmp_path / "datalist.json").write_text("{}")
    assert source_kind(tmp_path / "a_image.nii.gz") == "prepared"
    assert source_kind(tmp_path / "a.nii.gz") == "raw"
    assert source_kind(tmp_path / "a_image.nii.gz", "raw") == "raw"
    with pytest.raises(ValueError, match="source_kind"):
        source_kind("x", "cooked")


def _raw_files(folder):
    """A PNG slice (breast on the right), a 3-D NIfTI volume with an oblique-free but shifted, anisotropic affine,
    and a DBT multi-frame DICOM; returns ``{path: lesion mask (S, H, W)}``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    image, truth = raw_slice("right")
    files = {}
    png = folder / "slice.jpg"  # a JPEG with 100 dpi in its header, as the Duke export: ITK reads 0.254 mm pixels
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(png, quality=98, dpi=(100, 100))
    files[png] = truth[None]
    left, left_truth = raw_slice("left", (60, 17), seed=1)
    volume = np.stack([left, np.full_like(left, 7.0), left])  # (S, H, W)
    affine = np.array([[0.0, -0.15, 0, 12.5], [0.12, 0, 0, -40.0], [0, 0, 1.0, 7.0], [0, 0, 0, 1]])
    nii = folder / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(volume, (1, 2, 0)), affine), str(nii))  # (X, Y, Z) = (H, W, S)
    files[nii] = np.stack([left_truth, np.zeros_like(left_truth), left_truth])
    dcm = folder / "dbt.dcm"
    write_dbt(dcm, np.clip(volume, 0, 4095).astype(np.uint16), pixel_spacing=(0.1, 0.1), origin=(5.0, -3.0, 2.0))
    files[dcm] = files[nii]
    return files


class _Oracle(torch.nn.Module):
    """Two-class logits from the input brightness: lesion where the windowed slice exceeds 0.6."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 50.0 * (x - 0.6)], dim=1)


@pytest.mark.parametrize("formats", ["nifti", "nifti,seg.nrrd"])
def test_seg_inference_chain_on_raw_files_writes_masks_on_each_source_grid(tmp_path, formats):
    """The config's preprocessing, inferer and postprocessing (as MONAI Label's bundle task runs them) with an oracle
    network: each mask has its source's shape and geometry, and the lesion lies where it was drawn."""
    files = _raw_files(tmp_path / "raw")
    out = tmp_path / "out"
    p = parser("seg_inference", "seg_smoke.json", ckpt_dir=str(tmp_path / "no model"), image_size=64,
               crop_mode="slice", output_dir=str(out), output_formats=formats)  # fmt: skip
    pre, inferer, post = (p.get_parsed_content(k) for k in ("preprocessing", "inferer", "postprocessing"))
    items = list_inputs(str(tmp_path / "raw"))
    assert [it["image"] for it in items] == sorted(str(p) for p in files)
    check_outputs(items, str(out), formats)
    for item in items:
        d = pre(item)
        with torch.no_grad():
            d["pred"] = inferer(d["image"][None], _Oracle())[0]
        post(d)
    for path, truth in files.items():
        paths = output_paths(str(path), str(out), formats)
        mask, spacing, info = read_array(paths["nifti"])
        src, src_spacing, src_info = read_array(path)
        assert mask.shape == src.shape == truth.shape
        if path.suffix == ".jpg":  # the geometry ITK (and so 3D Slicer) reads the JPEG with, not Pillow's 1 mm
            src_info = _read_itk(path)[2]
            assert np.allclose(np.abs(src_info["affine_ras"][:2, 1:3]).max(axis=0), 0.254)
        else:
            assert np.allclose(spacing, src_spacing)
        assert np.allclose(info["affine_ras"], src_info["affine_ras"])
        assert dice(mask, truth) > 0.85, path.name
        if "seg.nrrd" in paths:
            from scripts.export.seg_nrrd import read_seg_nrrd

            seg, seg_affine, _ = read_seg_nrrd(paths["seg.nrrd"])
            assert np.array_equal(seg, mask) and np.allclose(seg_affine, info["affine_ras"])
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        check_outputs(items, str(out), formats)


def test_dicom_seg_only_for_dicom_sources(tmp_path):
    files = _raw_files(tmp_path / "raw")
    png = [{"image": str(p)} for p in files if p.suffix == ".jpg"]
    with pytest.raises(ValueError, match="DICOM SEG needs a DICOM source"):
        check_outputs(png, str(tmp_path / "out"), "dicom_seg")
    both = check_outputs([{"image": str(p)} for p in files], str(tmp_path / "out"), "nifti,dicom_seg")
    assert sorted(Path(p).name for p in both if p.endswith("_seg.dcm")) == ["dbt_pred_seg.dcm"]


def test_training_settings_come_from_the_training_record(tmp_path):
    assert training_settings(str(tmp_path), 64, "slice", (0.5, 99.5))["image_size"] == 64  # no record: configured
    params = {"image_size": 128, "crop_mode": "patch", "window_percentiles": [1, 99]}
    record = {"params": params, "spacing_mm": [0.3, 0.3]}
    (tmp_path / "seg_preparation.json").write_text(json.dumps(record))
    assert training_settings(str(tmp_path), 64, "slice", (0.5, 99.5)) == {
        "image_size": 128, "crop_mode": "patch", "window_percentiles": [1.0, 99.0], "spacing_mm": [0.3, 0.3],
    }  # fmt: skip
    with pytest.raises(ValueError, match="patch-mode segmenter needs the training pixel spacing"):
        training_settings(str(tmp_path / "none"), 64, "patch", (0.5, 99.5))


def test_load_sourced_refuses_a_prepared_slice_of_another_size(tmp_path):
    (tmp_path / "datalist.json").write_text("{}")
    path = tmp_path / "a_image.nii.gz"
    nib.save(nib.Nifti1Image(np.full((32, 32), -1.0, np.float32), np.eye(4)), str(path))
    with pytest.raises(DataError, match="must be 64×64"):
        LoadSourced("image", 64)({"image": str(path)})
    d = LoadSourced("image", 32)({"image": str(path)})
    assert d["image"].shape == (1, 1, 32, 32)
    prob = torch.zeros(2, 1, 32, 32)
    prob[1, 0, 3:5, 4:9] = 1
    restored = RestoreSourced("pred")({"pred": prob, "geometry": d["geometry"]})["pred"]
    assert restored.shape == (1, 32, 32) and restored.sum() == 10


def test_training_data_from_raw_image_label_items_goes_through_the_same_pipeline(tmp_path):
    """A datalist of raw ``{image, label}`` paths (MONAI Label's datastore) is prepared like the folder layout: the
    same slices, the same cache key for the same files, each item's patient kept."""
    import shutil

    from PIL import Image

    from scripts.data.prepare import prepare_dataset

    root = tmp_path / "folder"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    items = []
    for i, side in enumerate(("right", "left", "right")):
        image, truth = raw_slice(side, (30, 52) if side == "right" else (60, 17), seed=i)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(truth * 255).save(root / "labels" / f"c{i}.png")
        items.append({"image": f"images/c{i}.png", "label": f"labels/c{i}.png", "patient": f"p{i // 2}"})
    (root / "datalist.json").write_text(json.dumps({"training": items}))
    listed = prepare_dataset(str(root / "datalist.json"), str(tmp_path / "cache"), 32, val_fraction=0.5)
    folder = prepare_dataset(str(root), str(tmp_path / "cache"), 32, val_fraction=0.5)
    assert listed["cache"] != folder["cache"]  # another input, another cache
    by_case = [sorted(d["train"] + d["validation"], key=lambda it: it["case_id"]) for d in (listed, folder)]
    for a, b in zip(*by_case, strict=True):
        assert nib.load(a["image"]).get_fdata().tobytes() == nib.load(b["image"]).get_fdata().tobytes()
        assert a["flipped"] == b["flipped"] and a["crop_bbox"] == b["crop_bbox"]
    assert {it["patient_id"] for it in listed["train"] + listed["validation"]} == {"p0", "p1"}
    absolute = [{"image": str(root / it["image"]), "label": str(root / it["label"])} for it in items]
    in_memory = prepare_dataset(absolute, str(tmp_path / "cache"), 32)
    assert len(in_memory["train"] + in_memory["validation"]) == 3
    shutil.rmtree(root / "labels")
    with pytest.raises(DataError, match=r"datalist.json, item 1: label .*c0.png not found"):
        prepare_dataset(str(root / "datalist.json"), str(tmp_path / "cache"), 32)


def test_score_source_predictions_against_the_dataset_masks(tmp_path):
    from PIL import Image

    from scripts.export.nifti import write_nifti_mask
    from scripts.seg.score import main, score_source_predictions

    root = tmp_path / "set"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    truths = {}
    for i in range(2):
        image, truth = raw_slice("right", seed=i)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(truth * 255).save(root / "labels" / f"c{i}.png")
        truths[f"c{i}"] = truth
    pred = tmp_path / "pred"
    write_nifti_mask(truths["c0"][None], None, (1, 1, 1), str(pred / "c0_pred.nii.gz"))
    write_nifti_mask(np.fliplr(truths["c1"])[None], None, (1, 1, 1), str(pred / "c1_pred.nii.gz"))  # mirrored
    result = score_source_predictions(str(root), str(pred))
    dice = {Path(r["image"]).stem: r["dice"] for r in result["per_image"]}
    assert dice["c0"] == pytest.approx(1.0) and dice["c1"] < 0.1 and result["num_images"] == 2
    assert score_source_predictions(str(root), str(pred), patients=["c0"])["mean"]["dice"] == pytest.approx(1.0)
    main(["--dataset_dir", str(root), "--pred_dir", str(pred), "--output", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text())["num_images"] == 2
    (pred / "c1_pred.nii.gz").unlink()
    write_nifti_mask(truths["c1"][None, :, :-1], None, (1, 1, 1), str(pred / "c1_pred.nii.gz"))
    with pytest.raises(ValueError, match=r"c1_pred.nii.gz: shape \(1, 90, 69\) differs"):
        score_source_predictions(str(root), str(pred))


def test_dbt_multiframe_with_voi_lut_through_the_pipeline(tmp_path):
    """A right-breast DBT multi-frame (per-frame positions and VOI windows) and its mask as a DICOM on the same grid:
    the prepared slices are the lesion frames, flipped (breast to the left), windowed to [-1, 1], with the DICOM
    pixel spacing scaled by the resize."""
    from scripts.data.prepare import prepare_dataset

    image, truth = raw_slice("right")
    frames = np.stack([image, image, np.full_like(image, 5.0)]).astype(np.uint16) * 10
    labels = np.stack([truth, truth * 0, truth * 0])
    root = tmp_path / "set"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    windows = [(1300, 2600, "LINEAR"), (1300, 1000, "SIGMOID"), (50, 100, None)]
    write_dbt(root / "images" / "c0.dcm", frames, pixel_spacing=(0.1, 0.085), windows=windows, laterality="R")
    write_dbt(root / "labels" / "c0.dcm", labels.astype(np.uint8), pixel_spacing=(0.1, 0.085), laterality="R")
    result = prepare_dataset(str(root), str(tmp_path / "cache"), 32, val_fraction=0)
    (item,) = result["train"]
    assert item["slice_index"] == 0 and item["flipped"] and item["source_shape"] == [H, W]
    assert np.allclose(item["spacing_mm"], [0.1 * item["scale"], 0.085 * item["scale"]])
    prepared = nib.load(item["image"]).get_fdata()
    mask = nib.load(item["label"]).get_fdata()
    assert prepared.min() == pytest.approx(-1) and prepared.max() == pytest.approx(1, abs=1e-3)
    cols = np.nonzero(mask.any(axis=0))[0]
    assert mask.sum() > 0 and cols.mean() < mask.shape[1] / 2  # the right-side lesion now lies in the left half


def test_phantom_volume_round_trip_returns_each_lesion_to_its_voxels():
    """The embedded phantom (non-square (24, 192, 160) volume), mirrored so that its breast lies on the right: the
    true mask, pushed onto the network grid through the record's crop box and window, comes back onto the
    source's voxels by :func:`from_network`, unflipped (a missing unflip or a transposed paste fails)."""
    from monai.transforms import Resize

    from scripts.data.crops import crop_square
    from scripts.data.phantom import make_phantom_cases

    case = next(iter(make_phantom_cases(1, 0)))
    image, label = case.image[..., ::-1], case.label[..., ::-1]
    x, record = to_network(image, case.spacing, 64)
    assert record["flipped"] and x.shape == (image.shape[0], 64, 64)
    prob = []
    for s, sl in enumerate(record["slices"]):
        r0b, r1b, c0b, c1b = sl["crop_bbox"]
        r0, c0, side = sl["window"]
        flipped = label[s][:, ::-1].astype(np.float32)  # the label on the network's side of the flip
        square = crop_square(flipped[r0b:r1b, c0b:c1b], r0, c0, side, 0.0)
        prob.append(np.asarray(Resize((64, 64), mode="area")(square[None]))[0])
    mask = from_network(np.stack(prob), record)
    lesion_slices = [s for s in range(label.shape[0]) if label[s].sum() > 200]
    # 0.85: a ~162-px crop squeezed to 64 px (2.5 source px per network px) loses the spicules' thin tips
    assert lesion_slices and all(dice(mask[s], label[s]) > 0.85 for s in lesion_slices)


def test_fold_evaluation_refuses_other_preparation_settings_and_patch_models_warn(tmp_path, caplog):
    from scripts.seg.inference import check_training_settings

    check_training_settings(str(tmp_path), 512, "slice")  # no record: nothing to compare
    record = {"params": {"image_size": 128, "crop_mode": "patch", "window_percentiles": [0.5, 99.5]},
              "spacing_mm": [0.5, 0.5], "counts": {"lesion_items": 40, "lesion_free_items": 0}}  # fmt: skip
    (tmp_path / "seg_preparation.json").write_text(json.dumps(record))
    check_training_settings(str(tmp_path), 128, "patch")
    with pytest.raises(ValueError, match=r"trained with image_size 128, crop_mode patch, this run prepares "
                                         r"image_size 512, crop_mode slice: pass --image_size 128 --crop_mode patch"):
        check_training_settings(str(tmp_path), 512, "slice")
    with caplog.at_level(logging.WARNING):
        training_settings(str(tmp_path), 128, "patch", (0.5, 99.5))
    assert "lesion-centred windows only" in caplog.text
