"""Evaluation of an image-only generated folder (DDPM/DDIM baselines: manifest rows with an empty ``label``).

The folder is written by the baselines' own writer (``scripts.baselines.sampling.generate_samples``) from a tiny
untrained image-only ``DiffusionModelUNet`` with 2 DDIM steps out of T = 8: the test is about what the evaluation
does with a folder that has no masks, not about image quality. The real set is the smoke-scale phantom (32 px).
"""

import json
import math

import pytest
from helpers import tiny_unet
from monai.networks.schedulers import DDIMScheduler

from scripts.baselines.inferer import BaselineDiffusionInferer
from scripts.baselines.sampling import generate_samples
from scripts.data.prepare import prepare_dataset
from scripts.evaluation.features import build_extractor
from scripts.evaluation.pair_stats import generated_pairs
from scripts.evaluation.report import EvaluationSettings, run_evaluation
from scripts.evaluation.sections import IMAGE_ONLY_REASON
from scripts.evaluation.sets import load_generated_set

S = 32


def write_image_only(folder, n: int = 6) -> None:
    net = tiny_unet(1)  # seeded, untrained: the test is about the folder layout, not image quality
    sched = DDIMScheduler(num_train_timesteps=8, schedule="linear_beta", clip_sample=True, set_alpha_to_one=True)
    inferer = BaselineDiffusionInferer(sched, generator_type="image", num_inference_steps=2)
    generate_samples(inferer, net, n, 3, 0, S, str(folder), "ddim", spacing_mm=(0.5, 0.5))


@pytest.fixture(scope="module")
def image_only_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("image_only")
    write_image_only(root / "gen")
    datalist = prepare_dataset(None, str(root / "cache"), S, crop_mode="patch", min_patch_size=S, phantom_cases=3)
    out = root / "eval"
    settings = EvaluationSettings(image_size=S, kid_subset_size=4, kid_num_subsets=5, max_pairs=20, grid_pairs=4)
    metrics = run_evaluation(build_extractor("random_resnet18_seed0"), datalist, str(root / "gen"), str(out), settings)
    return metrics, out


def test_image_only_folder_gets_image_measures_and_mask_measures_skipped(image_only_report):
    metrics, out = image_only_report
    h = metrics["headline"]
    assert h["image_only"] and h["n_generated"] == 6 and metrics["sets"]["generated"]["image_only"]
    # Image measures are computed: finite FID/KID, MS-SSIM diversity of the generated images.
    for key in ("fid", "kid_mean", "kid_std"):
        assert math.isfinite(h[key]), key
    ms = metrics["diversity"]["generated"]["ms_ssim"]
    assert ms["pairs"] == 15 and 0.0 <= ms["mean"] <= 1.0  # all 6·5/2 pairs (max_pairs 20 > 15)
    # Mask measures are skipped with the reason, never zeros.
    skipped = {"status": "skipped", "reason": IMAGE_ONLY_REASON}
    assert metrics["diversity"]["generated"]["mask_dice"] == skipped
    assert metrics["mask_statistics"] == skipped and metrics["pair_consistency"] == skipped
    # The real side still gets its own mask diversity (it has masks).
    assert 0.0 <= metrics["diversity"]["real"]["mask_dice"]["mean"] <= 1.0
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert summary.count(IMAGE_ONLY_REASON) == 3  # mask Dice cell, mask statistics, pair consistency
    assert "Wasserstein" not in summary  # no mask-statistics table with empty numbers
    assert json.loads((out / "metrics.json").read_text())["mask_statistics"] == skipped
    assert (out / "pairs_grid.png").stat().st_size > 0


def test_mixed_manifest_and_pair_stats_refuse_image_only(tmp_path):
    gen = tmp_path / "gen"
    write_image_only(gen, n=2)
    with pytest.raises(ValueError, match="no label file.*image-only generator"):
        generated_pairs(str(gen))
    assert load_generated_set(str(gen)).masks is None
    # A manifest that mixes rows with and without labels is neither kind: refused.
    manifest = gen / "manifest.csv"
    lines = manifest.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("label")] = row[header.index("image")]  # any existing in-folder file: a non-empty label
    manifest.write_text("\n".join([lines[0], ",".join(row), lines[2]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="1 of 2 rows have no label file"):
        load_generated_set(str(gen))
