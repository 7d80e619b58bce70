"""The pair writer and manifest reader (``scripts.common.writer``): outputs are never overwritten and the refusal comes
before any write; every manifest reader refuses paths outside the folder."""

import os

import numpy as np
import pytest
from helpers import tiny_unet
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
    # Segmentation inference: an existing mask (in any of the chosen formats) is found before anything is written.
    items = [{"image": str(tmp_path / "in" / f"c{i}_image.nii.gz")} for i in range(2)]
    target = tmp_path / "pred" / "c1_image_pred.seg.nrrd"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"earlier")
    check_outputs(items, str(tmp_path / "pred"), "nifti")
    with pytest.raises(FileExistsError, match=f"refusing to overwrite {target}"):
        check_outputs(items, str(tmp_path / "pred"), "nifti,seg.nrrd")
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




# ----------------------------------------------------------------------------------------------- output formats
def test_generated_pairs_in_every_output_format_read_back_as_the_nifti_pair(tmp_path):
    """``output_formats`` adds a ``.seg.nrrd`` on the NIfTI grid and a synthetic DICOM image with its SEG, one series
    per run; each reads back equal to the NIfTI pair (image within one 16-bit step)."""
    import pydicom

    from scripts.data.readers import read_array
    from scripts.export import read_dicom_seg, read_seg_nrrd

    out = tmp_path / "pairs"
    rows = generate_pairs(_inferer(), tiny_unet(seed=0).eval(), tiny_unet(seed=1).eval(), 2, 2, 0, 16, str(out),
                          spacing_mm=(0.2, 0.3), output_formats="nifti,seg.nrrd,dicom_seg")  # fmt: skip
    series = set()
    for row in rows:
        label, spacing, info = read_array(out / row["label"])
        image, _, _ = read_array(out / row["image"])
        seg, affine, segments = read_seg_nrrd(out / f"{row['id']}_label.seg.nrrd")
        assert np.array_equal(seg, label) and np.allclose(affine, info["affine_ras"])
        assert segments[0]["name"] == "mass"
        ds = pydicom.dcmread(out / f"{row['id']}_image.dcm")
        assert ds.SyntheticData == "YES" and ds.PatientID.startswith("PIG-SYN-")
        assert [float(v) for v in ds.PixelSpacing] == [0.2, 0.3]
        dicom_image, _, _ = read_array(out / f"{row['id']}_image.dcm")
        assert np.abs(dicom_image - image).max() <= 1 / 65535 + 1e-6
        assert np.array_equal(read_dicom_seg(out / f"{row['id']}_label_seg.dcm", [ds]), label)
        series.add(ds.SeriesInstanceUID)
    assert len(series) == 1  # one series per run
    with pytest.raises(ValueError, match="unknown output format 'png'"):
        generate_pairs(_inferer(), tiny_unet(seed=0).eval(), tiny_unet(seed=1).eval(), 1, 1, 0, 16,
                       str(tmp_path / "other"), output_formats="nifti,png")  # fmt: skip
    assert not (tmp_path / "other").exists()


def test_pair_grid_separates_and_numbers_its_tiles():
    from scripts.common.grid import GAP, pair_grid

    images, masks = [np.full((32, 32), 0.0)] * 5, [np.zeros((32, 32))] * 5
    grid = pair_grid(images, masks, columns=4)
    assert grid.shape == (2 * 32 + GAP, 4 * 32 + GAP * 3, 3)
    assert (grid[:, 32 : 32 + GAP] == 128).all()  # a gray line between columns 0 and 1
    corner = grid[:16, :16].astype(int)
    assert ((corner[..., 0] > 128) & (corner[..., 1] > 128) & (corner[..., 2] < 100)).any()  # a yellow "0"
    assert not (pair_grid(images, masks, columns=4, labels=False)[:32, :32] != 0).any()
