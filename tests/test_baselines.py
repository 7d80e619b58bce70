"""Baselines (image-only DDPM/DDIM, mask-concat, ControlNet): schedules, MONAI equivalence, masks, output layout."""

import csv
import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import tiny_unet
from monai.inferers import ControlNetDiffusionInferer, DiffusionInferer
from monai.networks.nets import ControlNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from scripts.baselines.inferer import BaselineDiffusionInferer
from scripts.baselines.masks import load_condition_masks, mask_indices, read_mask_list, write_mask_list
from scripts.baselines.networks import check_choice, init_controlnet
from scripts.baselines.prepare_batch import ImageDiffusionPrepareBatch
from scripts.baselines.sampling import generate_samples
from scripts.common.writer import MANIFEST_FIELDS, read_manifest
from scripts.seg.synthetic import synthetic_items

S = 16


def schedulers(T: int = 1024):
    kw = {"num_train_timesteps": T, "schedule": "linear_beta", "beta_start": 1e-4, "beta_end": 0.02}
    return DDPMScheduler(clip_sample=False, **kw), DDIMScheduler(clip_sample=False, **kw)


def randomise(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    # MONAI zero-initialises the U-Net's output conv and the ControlNet's output blocks: an untrained network would
    # predict eps = 0 whatever its input, and hide a dropped condition or residual.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return net


#: the ControlNet's tiny settings: those of ``helpers.tiny_unet``'s default U-Net (16 px inputs)
TINY = {"channels": (8, 8), "attention_levels": (False, False), "num_res_blocks": 1, "norm_num_groups": 8}


def controlnet(seed: int = 1) -> ControlNet:
    torch.manual_seed(seed)
    cond = {"conditioning_embedding_in_channels": 1, "conditioning_embedding_num_channels": (8,)}
    return ControlNet(spatial_dims=2, in_channels=1, num_head_channels=8, **TINY, **cond)


def square_masks(n: int) -> torch.Tensor:
    m = -torch.ones(n, 1, S, S)
    for k in range(n):
        r = 2 + 3 * (k % 3)
        m[k, :, r : r + 5, r : r + 5] = 1.0
    return m


class Recorder(torch.nn.Module):
    """eps network that returns a fixed noise (the oracle) and records its inputs and timesteps."""

    def __init__(self, eps: torch.Tensor | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.timesteps: list[int] = []

    def forward(self, x, timesteps):
        self.timesteps.append(int(timesteps[0]))
        assert (timesteps == timesteps[0]).all() and timesteps.shape == (x.shape[0],)
        return torch.zeros_like(x[:, :1]) if self.eps is None else self.eps


def test_ddpm_sampler_visits_every_timestep(caplog):
    ddpm, _ = schedulers(T=16)
    with caplog.at_level(logging.WARNING):
        inferer = BaselineDiffusionInferer(ddpm, "image", num_inference_steps=4)
    assert "all T = 16 steps" in caplog.text  # asked for 4, told why it takes 16
    net = Recorder()
    inferer.sample(torch.randn(2, 1, S, S), net, generators=[torch.Generator().manual_seed(i) for i in range(2)])
    # DDPMScheduler.step always goes t -> t-1: anything but every timestep would skip part of the chain.
    assert net.timesteps == list(range(15, -1, -1))


@pytest.mark.parametrize("num_steps", [10, 50, 256])
def test_ddim_baseline_oracle_recovers_y0_on_consistent_schedule(num_steps):
    # With the true noise, deterministic DDIM returns y0 exactly when every step lands on the next scheduled
    # timestep and the last on abar = 1: 1e-6 is far above float64 round-off, far below the schedule error (next test).
    _, ddim = schedulers()
    inferer = BaselineDiffusionInferer(ddim, "image", num_inference_steps=num_steps)
    g = torch.Generator().manual_seed(3)
    y0 = torch.rand(2, 1, S, S, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(2, 1, S, S, generator=g, dtype=torch.float64)
    y_T = ddim.add_noise(y0, eps, ddim.timesteps[:1].expand(2))
    net = Recorder(eps)
    out = inferer.sample(y_T, net)
    assert net.timesteps == ddim.timesteps.tolist() and len(net.timesteps) == num_steps
    assert (out - y0).abs().max() < 1e-6


def test_ddim_baseline_oracle_misses_with_monai_default_timesteps():
    # Guards the reason the baseline does not use MONAI's set_timesteps / DiffusionInferer.sample defaults.
    _, ddim = schedulers()
    inferer = BaselineDiffusionInferer(ddim, "image", num_inference_steps=10)
    ddim.set_timesteps(10)  # MONAI's linspace schedule
    g = torch.Generator().manual_seed(3)
    y0 = torch.rand(2, 1, S, S, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(2, 1, S, S, generator=g, dtype=torch.float64)
    out = inferer.sample(ddim.add_noise(y0, eps, ddim.timesteps[:1].expand(2)), Recorder(eps))
    assert (out - y0).abs().max() > 0.1


@pytest.mark.parametrize("generator_type", ["image", "concat", "controlnet"])
def test_training_pass_is_monais_and_sampling_calls_networks_the_same_way(generator_type):
    ddpm, _ = schedulers()
    image_model = randomise(tiny_unet(1), seed=2)
    net = randomise({"image": tiny_unet(1), "concat": tiny_unet(2), "controlnet": controlnet()}[generator_type], seed=3)
    inferer = BaselineDiffusionInferer(ddpm, generator_type, image_model=image_model)
    g = torch.Generator().manual_seed(0)
    y0, eps = torch.randn(3, 1, S, S, generator=g), torch.randn(3, 1, S, S, generator=g)
    t = torch.tensor([5, 500, 1000])
    mask = None if generator_type == "image" else square_masks(3)
    with torch.no_grad():
        pred = inferer(y0, net, eps, t, mask)
        if generator_type == "controlnet":
            ref = ControlNetDiffusionInferer(ddpm)(y0, image_model, net, eps, t, cn_cond=mask)
        elif generator_type == "concat":
            ref = DiffusionInferer(ddpm)(y0, net, eps, t, condition=mask, mode="concat")
        else:
            ref = DiffusionInferer(ddpm)(y0, net, eps, t)
        same = inferer.predict_noise(ddpm.add_noise(y0, eps, t), net, t, mask)
    assert pred.shape == (3, 1, S, S)
    torch.testing.assert_close(pred, ref, rtol=0, atol=0)
    torch.testing.assert_close(same, pred, rtol=1e-6, atol=1e-6)  # float32 round-off of identical calls
    if mask is not None:  # the condition matters: another mask changes the prediction by more than 1 % of its scale
        with torch.no_grad():
            other = inferer(y0, net, eps, t, -mask)
        assert (other - pred).abs().max() > 0.01 * pred.abs().max()


def test_condition_is_required_exactly_for_mask_conditional_types():
    ddpm, _ = schedulers()
    with pytest.raises(ValueError, match="takes a mask"):
        BaselineDiffusionInferer(ddpm, "concat").predict_noise(
            torch.zeros(1, 1, S, S), tiny_unet(2), torch.zeros(1), None
        )
    with pytest.raises(ValueError, match="takes no mask"):
        BaselineDiffusionInferer(ddpm, "image").predict_noise(
            torch.zeros(1, 1, S, S), tiny_unet(1), torch.zeros(1), torch.zeros(1, 1, S, S)
        )
    with pytest.raises(ValueError, match="image model"):
        BaselineDiffusionInferer(ddpm, "controlnet")
    with pytest.raises(ValueError, match="generator_type"):
        check_choice("latent")
    with pytest.raises(ValueError, match="sampler"):
        check_choice("image", "plms")


def test_controlnet_starts_as_a_copy_of_the_frozen_image_model():
    image_model, cn = tiny_unet(1, seed=4), controlnet(seed=5)
    copied = init_controlnet(cn, image_model)
    assert copied > 0
    assert torch.equal(cn.conv_in.conv.weight, image_model.conv_in.conv.weight)
    _, ddim = schedulers()
    inferer = BaselineDiffusionInferer(ddim, "controlnet", image_model=image_model)
    x, t = torch.randn(2, 1, S, S), torch.tensor([10, 900])
    with torch.no_grad():  # zero-initialised control outputs: the pair predicts exactly what the image model does
        torch.testing.assert_close(inferer.predict_noise(x, cn, t, square_masks(2)), image_model(x, t))
    assert not any(p.requires_grad for p in image_model.parameters())


def test_prepare_batch_condition_and_antithetic_timesteps():
    batch = {"image": torch.rand(4, 1, S, S), "label": square_masks(4)}
    inputs, target, args, kwargs = ImageDiffusionPrepareBatch(1024, antithetic=True, condition_name="label")(batch)
    assert torch.equal(inputs, batch["image"]) and torch.equal(target, kwargs["noise"]) and args == ()
    assert torch.equal(kwargs["condition"], batch["label"])
    t = kwargs["timesteps"]
    assert t[:2].tolist() == (1023 - t[2:]).tolist()
    _, _, _, kwargs = ImageDiffusionPrepareBatch(1024)(batch)
    assert "condition" not in kwargs
    a = ImageDiffusionPrepareBatch(1024, seed=7)(batch)[3]
    b = ImageDiffusionPrepareBatch(1024, seed=7)(batch)[3]
    assert torch.equal(a["noise"], b["noise"]) and torch.equal(a["timesteps"], b["timesteps"])
    with pytest.raises(KeyError, match="label"):
        ImageDiffusionPrepareBatch(1024, condition_name="label")({"image": batch["image"]})


def test_mask_choice_is_balanced_seeded_and_batch_independent():
    m = 7
    idx = mask_indices(0, range(3 * m), m)
    assert np.bincount(idx, minlength=m).tolist() == [3] * m  # every mask equally often
    assert idx[:m] != idx[m : 2 * m]  # a fresh permutation per cycle
    assert mask_indices(0, [5, 16], m) == [idx[5], idx[16]]  # depends on (seed, i) only
    assert mask_indices(1, range(m), m) != idx[:m]


def write_masks(tmp_path, n):
    items = []
    for k, m in enumerate(square_masks(n)):
        path = tmp_path / f"m{k}_label.nii.gz"
        nib.save(nib.Nifti1Image((m[0] > 0).numpy().astype(np.uint8), np.eye(4)), path)
        items.append({"label": str(path), "case_id": f"case{k}", "patient_id": f"p{k}"})
    write_mask_list(str(tmp_path / "ckpt"), {"train": items, "validation": []})
    return read_mask_list(str(tmp_path / "ckpt"))


def test_condition_masks_load_as_plus_minus_one(tmp_path):
    masks = write_masks(tmp_path, 2)
    cond = load_condition_masks([m["label"] for m in masks], S)
    assert torch.equal(cond, square_masks(2))
    with pytest.raises(ValueError, match="generates"):
        load_condition_masks([masks[0]["label"]], 32)
    with pytest.raises(FileNotFoundError, match="train first"):
        read_mask_list(str(tmp_path / "nowhere"))


def read_rows(folder):
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_image_only_samples_batch_independent_and_manifest_without_masks(tmp_path, sampler):
    ddpm, ddim = schedulers(T=8)  # DDPM takes every step: T = 8 keeps this test fast and still exercises it
    inferer = BaselineDiffusionInferer(ddpm if sampler == "ddpm" else ddim, "image", num_inference_steps=8)
    net = randomise(tiny_unet(1), seed=1)
    images = {}
    for bs in (1, 3):
        out = tmp_path / f"bs{bs}"
        rows = generate_samples(inferer, net, 3, bs, 0, S, str(out), sampler)
        images[bs] = [nib.load(out / r["image"]).get_fdata() for r in rows]
        assert list(rows[0]) == list(MANIFEST_FIELDS) + [
            "generator_type",
            "sampler",
            "num_inference_steps",
            "image_model",
            "mask_case",
            "mask_source",
        ]
    for a, b in zip(images[1], images[3], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)  # float32 batched vs unbatched convolutions
    assert not np.allclose(images[1][0], images[1][1])
    rows = read_rows(tmp_path / "bs1")
    assert all(r["label"] == "" and r["lesion_area_px"] == "" and r["sampler"] == sampler for r in rows)
    assert int(rows[0]["num_inference_steps"]) == 8
    assert not list((tmp_path / "bs1").glob("*_label.nii.gz"))
    # The segmentation experiment needs masks: an image-only folder is refused with a clear message.
    assert [r["label"] for r in read_manifest(str(tmp_path / "bs1"))] == ["", "", ""]  # evaluation reads it
    with pytest.raises(ValueError, match="image-only"):
        synthetic_items(str(tmp_path / "bs1"))
    with pytest.raises(FileExistsError):
        generate_samples(inferer, net, 3, 1, 0, S, str(tmp_path / "bs1"), sampler)


def test_mask_conditional_samples_carry_their_training_mask(tmp_path):
    masks = write_masks(tmp_path, 3)
    _, ddim = schedulers()
    inferer = BaselineDiffusionInferer(ddim, "concat", num_inference_steps=4)
    out = tmp_path / "out"
    rows = generate_samples(inferer, tiny_unet(2), 5, 2, 0, S, str(out), "ddim", masks=masks, checkpoint=None)
    chosen = mask_indices(0, range(5), 3)
    for row, j in zip(rows, chosen, strict=True):
        label = nib.load(out / row["label"]).get_fdata()
        assert row["mask_source"] == masks[j]["label"] and row["mask_case"] == f"case{j}"
        np.testing.assert_array_equal(label, nib.load(masks[j]["label"]).get_fdata())
        assert int(row["lesion_area_px"]) == int(label.sum()) == 25
    items = synthetic_items(str(out), image_size=S)  # the segmentation experiment takes the folder
    assert len(items) == 5
    with pytest.raises(ValueError, match="training masks"):
        generate_samples(inferer, tiny_unet(2), 1, 1, 0, S, str(tmp_path / "o2"), "ddim", masks=None)
