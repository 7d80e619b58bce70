"""``python -m monai.bundle run evaluating`` (evaluate.json + smoke.json) against a generated folder written here."""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CONFIGS, bundle_run

from scripts.common.configs import config_files, merged_config
from scripts.common.writer import pair_paths, write_manifest, write_pair
from scripts.evaluation.sections import pair_consistency
from scripts.evaluation.sets import PairSet, split_halves


def write_generated(folder: Path, n: int = 10, size: int = 32, seed: int = 0) -> Path:
    """A PIG-layout output folder (scripts.common.writer): textured slices in [0, 1] with a bright elliptical lesion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    rows = []
    folder.mkdir(parents=True)
    for k in range(n):
        img = np.clip(0.5 + 0.1 * rng.standard_normal((size, size)), 0, 1)
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        a, b = rng.uniform(2, size / 5, 2)
        mask = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1
        if k == n - 1:
            mask[:] = False  # one empty mask: no eccentricity, counted in empty_mask_fraction
        img[mask] = np.clip(img[mask] + 0.3, 0, 1)
        sid = f"{k:05d}"
        ip, lp = pair_paths(str(folder), sid)
        write_pair(
            torch.from_numpy(img.astype(np.float32)), torch.from_numpy(mask.astype(np.uint8)), ip, lp, [0.5, 0.5]
        )
        rows.append(
            {
                "id": sid,
                "image": os.path.basename(ip),
                "label": os.path.basename(lp),
                "seed": seed,
                "sample_index": k,
                "lesion_area_px": int(mask.sum()),
                "guider": "test",
                "generator": "test",
            }
        )
    write_manifest(str(folder / "manifest.csv"), rows)
    return folder


def evaluate(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return bundle_run("evaluating", "evaluate", *args, check=check)


def check_report(out: Path, n_generated: int, extractor: str) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    h = m["headline"]
    assert h["extractor"] == extractor and h["n_generated"] == n_generated and h["n_real"] > 1
    assert np.isfinite(h["fid"]) and np.isfinite(h["kid_mean"]) and np.isfinite(h["kid_std"])
    assert len(m["extractor"]["weights_sha256"]) == 64 and m["extractor"]["input_size_px"]
    rows = [m["distances"]["generated_vs_real"], *m["distances"]["controls"].values()]
    for r in rows:  # every number carries the extractor, its hash, the input size and both set sizes
        assert r["extractor"] == extractor and r["extractor_weights_sha256"] == m["extractor"]["weights_sha256"]
        assert r["extractor_input_size_px"] == m["extractor"]["input_size_px"] and r["n_a"] >= 1 and r["n_b"] >= 1
    ctl = m["distances"]["controls"]
    assert ctl["real_vs_blurred_real"]["fid"] > 0 and ctl["real_vs_blurred_real"]["n_a"] == h["n_real"]
    assert ctl["generated_subset_vs_real_half_a"]["n_a"] == min(ctl["real_half_a_vs_real_half_b"]["n_b"], n_generated)
    for side in ("generated", "real"):
        assert 0 <= m["diversity"][side]["ms_ssim"]["mean"] <= 1 and 0 <= m["diversity"][side]["mask_dice"]["mean"] <= 1
    ms = m["mask_statistics"]
    assert ms["area_px"]["generated"]["n"] == n_generated and ms["area_px"]["wasserstein"] is not None
    assert ms["eccentricity"]["generated"]["n"] == n_generated - 1  # the empty mask has none
    if "area_mm2_unknown" in ms:  # patch-mode or Duke real data: mm² would not compare like with like
        assert ms["area_mm2"]["generated"] is None and ms["area_mm2"]["real"] is None
    else:
        assert ms["area_mm2"]["generated"]["mean"] == pytest.approx(ms["area_px"]["generated"]["mean"] * 0.25)
    summary = (out / "summary.md").read_text()
    assert extractor in summary and "biased upward" in summary and f"**{n_generated} generated**" in summary
    assert (out / "pairs_grid.png").stat().st_size > 0 and list((out / "runs").glob("*_evaluating.json"))
    memo = m["memorisation"]  # the audit against the held-out (validation) patients of the same preparation
    assert memo["status"] == "ok" and memo["n_generated"] == n_generated and memo["n_held_out"] > 0
    assert set(memo["measures"]) == {"feature_distance", "ssim", "mask_iou"} and "Memorisation audit" in summary
    assert all((out / f).stat().st_size > 0 for f in ("memorisation_grid.png", "memorisation_hist.png"))
    return m


@pytest.mark.slow
def test_evaluate_smoke_on_phantom_and_refuse_to_overwrite(tmp_path):
    gen = write_generated(tmp_path / "gen", n=10)
    evaluate("--generated_dir", str(gen), "--cache_dir", str(tmp_path / "cache"))
    out = gen / "eval_random_resnet18_seed0"
    m = check_report(out, 10, "random_resnet18_seed0")
    assert m["extractor"]["sanity_only"] and "Sanity check only" in (out / "summary.md").read_text()
    assert m["pair_consistency"]["status"] == "skipped" and "seg_model_path" in m["pair_consistency"]["reason"]
    assert m["distances"]["generated_vs_real"]["subset_capped"]  # KID's 1000 > 10 generated: capped and flagged
    before = (out / "metrics.json").read_bytes()
    proc = evaluate("--generated_dir", str(gen), "--cache_dir", str(tmp_path / "cache"), check=False)
    assert proc.returncode != 0 and "refusing to overwrite" in proc.stdout + proc.stderr
    assert (out / "metrics.json").read_bytes() == before


@pytest.mark.slow
def test_evaluate_smoke_on_duke_slices(tmp_path, duke_dir, duke_cache):
    gen = write_generated(tmp_path / "gen", n=8)
    evaluate("--generated_dir", str(gen), "--cache_dir", str(duke_cache), "--dataset_dir", str(duke_dir))
    m = check_report(gen / "eval_random_resnet18_seed0", 8, "random_resnet18_seed0")
    assert m["sets"]["real"]["format"] == "duke" and m["distances"]["half_split"] == "patient-wise"


@pytest.mark.slow
def test_evaluate_with_the_seg_encoder_computes_pair_consistency(tmp_path):
    # the seg network of evaluate.json's defaults (seg_train.json's UNet), random weights saved as seg_model.pt
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)
    weights = tmp_path / "seg_model.pt"
    torch.save(net.state_dict(), weights)
    gen = write_generated(tmp_path / "gen", n=6)
    args = ["--generated_dir", str(gen), "--cache_dir", str(tmp_path / "cache"), "--fid_extractor", "seg_unet_encoder"]
    evaluate(*args, "--seg_model_path", str(weights))
    m = check_report(gen / "eval_seg_unet_encoder", 6, "seg_unet_encoder")
    assert m["extractor"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert m["extractor"]["feature_dim"] == 256 and not m["extractor"]["sanity_only"]
    pc = m["pair_consistency"]
    assert pc["status"] == "computed" and pc["n"] == 6 and 0 <= pc["dice_mean"] <= 1
    assert pc["seg_model_sha256"] == m["extractor"]["weights_sha256"] and pc["real_reference"]["n"] > 0


@pytest.mark.slow
def test_evaluate_names_the_missing_weights_file_and_writes_nothing(tmp_path):
    gen = write_generated(tmp_path / "gen", n=3)
    args = ["--generated_dir", str(gen), "--cache_dir", str(tmp_path / "cache")]
    proc = evaluate(*args, "--fid_extractor", "radimagenet_resnet50", check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "RadImageNet_ResNet50.pt" in log and "--fid_weights_path" in log
    assert not (gen / "eval_radimagenet_resnet50").exists()


class ThresholdSegmenter(torch.nn.Module):
    """A parameter-free 'segmenter': lesion where the [-1, 1] slice is above 0.2, as 2-class logits."""

    def forward(self, x):
        fg = (x > 0.2).float()
        return torch.cat([1 - fg, fg], dim=1)


def test_pair_consistency_by_hand(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 32, 32, generator=g) * 0.5  # [0, 0.5] -> [-1, 0] after 2x - 1: predicted empty
    masks = torch.zeros(4, 32, 32)
    masks[:2, 8:16, 8:16] = 1
    images[:2, 8:16, 8:16] = 0.9  # 0.8 after 2x - 1: predicted exactly where the mask is
    images[2, 0:4, 0:4] = 0.9  # a prediction with an empty mask: Dice 0; pair 3: both empty: Dice 1
    gen = PairSet(images.numpy(), masks.numpy(), [None] * 4, list("abcd"), {"kind": "generated"})
    weights = tmp_path / "seg_model.pt"
    torch.save(ThresholdSegmenter().state_dict(), weights)
    out = pair_consistency(ThresholdSegmenter(), str(weights), gen, real=None)
    assert out["status"] == "computed" and out["dice_mean"] == pytest.approx((1 + 1 + 0 + 1) / 4)
    assert out["seg_model_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    skipped = pair_consistency(ThresholdSegmenter(), None, gen)
    assert skipped == {
        "status": "skipped",
        "reason": "seg_model_path is not set (pass --seg_model_path <seg_model.pt>)",
    }
    assert "does not exist" in pair_consistency(ThresholdSegmenter(), str(tmp_path / "x.pt"), gen)["reason"]


def test_split_halves_is_patient_wise():
    patients = ["p1", "p1", "p2", "p3", "p3", "p3", "p4"]
    a, b, kind = split_halves(patients, seed=0)
    assert kind == "patient-wise" and sorted(a + b) == list(range(7))
    assert not {patients[i] for i in a} & {patients[i] for i in b}
    a1, b1, kind1 = split_halves(["x"] * 5, seed=0)
    assert kind1 == "item-wise" and sorted(a1 + b1) == list(range(5)) and len(a1) == 2


@pytest.mark.parametrize("overlay", ["smoke.json", "demo.json"])
def test_overlay_ids_exist_in_evaluate_json(overlay):
    # MONAI silently adds unknown ids: an overlay id missing here would leave evaluate.json at full size.
    over = json.loads((CONFIGS / overlay).read_text())
    merged = merged_config("evaluate")
    assert not sorted(set(over) - set(merged))
    # the data pipeline is train.json's: the same layer, so the same datalist and defaults
    assert config_files("evaluate")[0] == config_files("train")[0]
    train = merged_config("train")
    assert merged["datalist"] == train["datalist"]
    for key in ("image_size", "crop_mode", "min_patch_size", "patches_per_lesion", "val_fraction", "phantom_cases"):
        assert merged[key] == train[key], key
