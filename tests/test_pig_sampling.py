"""Paired DDIM sampling (paper Algorithm 2): schedule consistency, update order, channel order, binarisation."""

import numpy as np
import pytest
import torch
from helpers import tiny_unet
from monai.networks.schedulers import DDIMScheduler

from scripts.pig import PairedDDIMInferer, binarize_mask, generate_pairs, predict_x0, sample_noise, set_ddim_timesteps

T = 1024


def make_scheduler(clip_sample: bool = False) -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, clip_sample=clip_sample
    )


class Oracle(torch.nn.Module):
    """eps-predictor that returns the very noise that made x_T (or y_T) from the known clean sample."""

    def __init__(self, eps: torch.Tensor) -> None:
        super().__init__()
        self.eps = eps
        self.inputs: list[torch.Tensor] = []
        self.timesteps: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        self.timesteps.append(t.clone())
        return self.eps


def oracle_run(num_steps: int, schedule_fix: bool = True, binarize: bool = False, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    x0 = torch.where(torch.rand(2, 1, 16, 16, generator=g) > 0.7, 1.0, -1.0).to(dtype)
    y0 = (torch.rand(2, 1, 16, 16, generator=g) * 2 - 1).to(dtype)
    eps1 = torch.randn(2, 1, 16, 16, generator=g, dtype=dtype)
    eps2 = torch.randn(2, 1, 16, 16, generator=g, dtype=dtype)
    scheduler = make_scheduler()
    inferer = PairedDDIMInferer(scheduler, num_inference_steps=num_steps, binarize_x0=binarize)
    if not schedule_fix:  # MONAI 1.6.1's own linspace schedule
        scheduler.set_timesteps(num_steps)
    t0 = scheduler.timesteps[0:1]
    x_T = scheduler.add_noise(x0, eps1, t0)
    y_T = scheduler.add_noise(y0, eps2, t0)
    guider, generator = Oracle(eps1), Oracle(eps2)
    x0_hat, y0_hat = inferer(x_T, y_T, guider, generator)
    return x0, y0, x0_hat, y0_hat, x_T, y_T, guider, generator, scheduler


@pytest.mark.parametrize("num_steps", [10, 50, 256])
def test_oracle_ddim_recovers_clean_pair_float64(num_steps):
    # Deterministic DDIM with the true noise must land on (x0, y0): 1e-6 is far above float64 round-off (~1e-13
    # after division by sqrt(abar) ~ 6e-3) and far below any schedule error (0.02-0.67, next test).
    x0, y0, x0_hat, y0_hat, *_ = oracle_run(num_steps)
    assert (x0_hat - x0).abs().max() < 1e-6
    assert (y0_hat - y0).abs().max() < 1e-6


def test_oracle_float32_floor():
    x0, y0, x0_hat, y0_hat, *_ = oracle_run(256, dtype=torch.float32)
    assert (x0_hat - x0).abs().max() < 1e-4 and (y0_hat - y0).abs().max() < 1e-4


def test_monai_linspace_schedule_is_inconsistent_with_step():
    # Guards the reason for set_ddim_timesteps: MONAI's own schedule misses x0 by a wide margin at 10 steps.
    x0, _, x0_hat, *_ = oracle_run(10, schedule_fix=False)
    assert (x0_hat - x0).abs().max() > 0.1


def test_consistent_schedule_values():
    s = make_scheduler()
    assert set_ddim_timesteps(s, 256).tolist() == list(range(1020, -1, -4))
    assert set_ddim_timesteps(s, 10).tolist() == list(range(918, -1, -102))
    with pytest.raises(ValueError):
        set_ddim_timesteps(s, T + 1)


def test_timesteps_and_order_fed_to_networks():
    *_, x_T, y_T, guider, generator, scheduler = oracle_run(10, binarize=True)
    expected = scheduler.timesteps.tolist()
    assert [int(t[0]) for t in guider.timesteps] == expected
    assert [int(t[0]) for t in generator.timesteps] == expected
    # First step: guider sees [x_T, y_T]; generator sees [y_T, binarised x̂0 of that step].
    assert torch.equal(guider.inputs[0][:, 0:1], x_T) and torch.equal(guider.inputs[0][:, 1:2], y_T)
    assert torch.equal(generator.inputs[0][:, 0:1], y_T)
    _, x0_hat_first = make_step(scheduler, guider.inputs[0][:, 0:1], int(expected[0]))
    assert torch.equal(generator.inputs[0][:, 1:2], binarize_mask(x0_hat_first))
    # Second step: the guider sees the updated x_t (the mask step happens before the image step).
    x_next, _ = make_step(scheduler, x_T, int(expected[0]))
    assert torch.allclose(guider.inputs[1][:, 0:1], x_next)


def make_step(scheduler, x_t, t):
    """MONAI DDIM step with the oracle's eps1 (regenerated from oracle_run's seed)."""
    g = torch.Generator().manual_seed(1)
    torch.rand(2, 1, 16, 16, generator=g)
    torch.rand(2, 1, 16, 16, generator=g)
    eps1 = torch.randn(2, 1, 16, 16, generator=g, dtype=torch.float64)
    return scheduler.step(eps1, t, x_t)


def test_x0_hat_equals_monai_ddim_step_prediction():
    """The x̂0 handed to the generator (binarisation off) is exactly DDIMScheduler.step's pred_original_sample."""
    torch.manual_seed(0)
    x_T, y_T = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)
            self.inputs = []

        def forward(self, x, t):
            self.inputs.append(x.clone())
            return self.conv(x) * 0.1 + t.float().view(-1, 1, 1, 1) * 1e-4

    guider, generator = Net(), Net()
    inferer = PairedDDIMInferer(make_scheduler(clip_sample=True), num_inference_steps=5, binarize_x0=False)
    inferer(x_T, y_T, guider, generator)
    reference = make_scheduler(clip_sample=True)
    set_ddim_timesteps(reference, 5)
    for k, t in enumerate(reference.timesteps):
        x_t = guider.inputs[k][:, 0:1]
        with torch.no_grad():  # the recorded inputs are inference tensors (the sampler's inference_mode)
            eps = guider.conv(guider.inputs[k]) * 0.1 + int(t) * 1e-4
        _, x0_ref = reference.step(eps, int(t), x_t)
        assert torch.allclose(generator.inputs[k][:, 1:2], x0_ref, atol=1e-6)
        assert torch.allclose(predict_x0(reference, x_t, eps, torch.full((2,), int(t))), x0_ref, atol=1e-6)


def _binarize_reference(x: np.ndarray, k: int = 5, w: float = 0.75) -> np.ndarray:
    """Loop implementation: k x k mean over the in-image pixels (stride 1), threshold w*max + (1-w)*min, strict >."""
    pad = k // 2
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        xp = np.pad(x[b, 0], pad, constant_values=np.nan)
        pooled = np.array(
            [[np.nanmean(xp[i : i + k, j : j + k]) for j in range(x.shape[3])] for i in range(x.shape[2])]
        )
        thr = w * pooled.max() + (1 - w) * pooled.min()
        out[b, 0] = np.where(pooled > thr, 1.0, -1.0)
    return out


def test_binarize_matches_definition_per_sample():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, 1, 12, 10)).astype(np.float64)
    x[1] *= 0.1  # a sample on another scale must get its own threshold
    x[2, 0, 3:8, 2:7] = 1.0
    got = binarize_mask(torch.from_numpy(x)).numpy()
    assert got.shape == x.shape
    np.testing.assert_array_equal(got, _binarize_reference(x))
    assert set(np.unique(got)) <= {-1.0, 1.0}


def test_binarize_hand_computed_square_and_constant():
    x = -torch.ones(2, 1, 15, 15)
    x[0, 0, 5:10, 5:10] = 1.0  # 5x5 lesion centred at (7, 7), away from the border
    got = binarize_mask(x)
    # max pooled = 1 (centre), min = -1 (a window of pure background), threshold = 0.75 - 0.25 = 0.5.
    # A window holding n lesion pixels pools to (2n - 25) / 25 > 0.5  <=>  n >= 19: offsets (0,0) n=25,
    # (+-1, 0) and (0, +-1) n=20 pass; (+-1, +-1) n=16 fails -> a 5-pixel plus.
    expected = torch.full((15, 15), -1.0)
    expected[6:9, 7] = 1.0
    expected[7, 6:9] = 1.0
    assert torch.equal(got[0, 0], expected)
    # A constant map stays constant after pooling (padding not counted) and gives an all-background mask,
    # not a frame of border "lesion" as zero padding would.
    assert torch.equal(got[1, 0], -torch.ones(15, 15)), "constant map must give an all-background mask"


def test_sample_noise_reproducible_and_seed_dependent():
    a = sample_noise(3, 5, 8)
    b = sample_noise(3, 5, 8)
    c = sample_noise(4, 5, 8)
    d = sample_noise(3, 6, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], d[0])
    assert not torch.equal(a[0], a[1]), "x_T and y_T must be independent draws"


def test_generate_pairs_same_seed_identical_different_seed_differs(tmp_path):
    import nibabel as nib

    guider, generator = tiny_unet(seed=0).eval(), tiny_unet(seed=1).eval()

    def run(seed, out, batch_size):
        inferer = PairedDDIMInferer(make_scheduler(clip_sample=True), num_inference_steps=3)
        generate_pairs(inferer, guider, generator, 3, batch_size, seed, 16, str(out), spacing_mm=(0.2, 0.3))
        return [
            (nib.load(out / f"pig-s{seed}-{i:05d}_image.nii.gz"), nib.load(out / f"pig-s{seed}-{i:05d}_label.nii.gz"))
            for i in range(3)
        ]

    first = run(7, tmp_path / "a", batch_size=2)
    again = run(7, tmp_path / "b", batch_size=3)  # batch size must not change the samples
    other = run(8, tmp_path / "c", batch_size=2)
    for (ia, la), (ib, lb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(ia.get_fdata(), ib.get_fdata())
        np.testing.assert_array_equal(la.get_fdata(), lb.get_fdata())
    assert not np.array_equal(first[0][0].get_fdata(), other[0][0].get_fdata())
    img, lab = first[0]
    assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8
    assert 0.0 <= img.get_fdata().min() and img.get_fdata().max() <= 1.0
    assert set(np.unique(lab.get_fdata())) <= {0.0, 1.0}
    assert np.allclose(img.header.get_zooms()[:2], (0.2, 0.3)) and np.allclose(img.affine, lab.affine)
    with pytest.raises(FileExistsError, match="pig-s7-00000_image.nii.gz"):
        run(7, tmp_path / "a", batch_size=2)
    import csv

    with open(tmp_path / "a" / "manifest.csv", newline="", encoding="utf-8") as f:
        assert {row["label_source"] for row in csv.DictReader(f)} == {"condition"}  # which mask the labels are


class _SpyNet(torch.nn.Module):
    """A small conv eps-predictor that records its inputs (the generator's channel 1 is its mask condition)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, t):
        self.inputs.append(x.clone())
        return self.conv(x) + 0.5


@pytest.mark.parametrize("binarize", [True, False], ids=["binarised", "continuous"])
def test_label_source_condition_is_the_mask_the_last_image_step_saw(binarize):
    torch.manual_seed(0)
    x_T, y_T = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    masks = {}
    for source in ("condition", "x0_hat"):
        guider, generator = _SpyNet(1), _SpyNet(2)
        inferer = PairedDDIMInferer(make_scheduler(clip_sample=True), num_inference_steps=4, binarize_x0=binarize,
                                    label_source=source)  # fmt: skip
        masks[source], _ = inferer.sample(x_T, y_T, guider, generator)
        last_condition = generator.inputs[-1][:, 1:2]
        if source == "condition":
            assert torch.equal(masks[source], last_condition)
        else:  # x̂0 of the last step: what the binarisation turned into the condition
            expected = binarize_mask(masks[source]) if binarize else masks[source]
            assert torch.equal(expected, last_condition)
    # binarised: the written labels differ (x̂0 > 0 vs the pooled, relatively thresholded map); continuous: the same
    differ = not torch.equal(masks["condition"] > 0, masks["x0_hat"] > 0)
    assert differ is binarize


def test_unknown_label_source_is_refused():
    with pytest.raises(ValueError, match="label_source must be one of"):
        PairedDDIMInferer(make_scheduler(), num_inference_steps=2, label_source="mask")
