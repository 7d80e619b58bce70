"""The pair writer and manifest reader (``scripts.common.writer``): outputs are never overwritten and the refusal comes
before any write; every manifest reader refuses paths outside the folder."""

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_unet
from monai.data import FolderLayout
from monai.networks.schedulers import DDIMScheduler
from test_seg_synthetic import make_pig_folder, rewrite_manifest

from scripts.common.grid import save_pair_grid
from scripts.common.writer import read_manifest
from scripts.evaluation.pair_stats import generated_pairs
from scripts.pig import PairedDDIMInferer, generate_pairs
from scripts.seg.inference import check_outputs


# ------------------------------------------------------------------------------------------------ no overwriting
def _inferer():
    scheduler = DDIMScheduler(num_train_timesteps=1024, schedule="linear_beta", beta_start=1e-4, beta_end=0.02,
                              clip_sample=True, set_alpha_to_one=True, steps_offset=0)  # fmt: skip
    return PairedDDIMInferer(scheduler, num_inference_steps=2)


def test_outputs_are_never_overwritten_and_the_refusal_comes_before_any_write(tmp_path):
    # PIG pairs: only the *last* target (manifest.csv) exists; without the up-front check every pair would be
    # written before write_manifest refused.
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "manifest.csv").write_text("earlier run\n")
    with pytest.raises(FileExistsError, match="refusing to overwrite .*manifest.csv"):
        generate_pairs(_inferer(), tiny_unet(seed=0).eval(), tiny_unet(seed=1).eval(), 2, 2, 0, 16, str(out))
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


