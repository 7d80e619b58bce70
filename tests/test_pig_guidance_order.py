"""The guidance-direction ablation (``guidance_order``): with ``image_first`` the two networks swap roles in training
and sampling — the first denoises the image from [y_t, x_t], the second the mask from [x_t, ŷ0] — checked with spy
networks that record what they are given."""

import pytest
import torch
from helpers import tiny_unet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from scripts.pig import GeneratorIteration, PairedDDIMInferer, PairedDiffusionPrepareBatch, predict_x0

T = 1024


class Spy(torch.nn.Module):
    """eps-prediction stub: records each call's input and returns a fixed fraction of its first channel."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale, self.calls = scale, []

    def forward(self, x, t):
        self.calls.append(x.clone())
        return self.scale * x[:, :1]


def _ddim() -> DDIMScheduler:
    return DDIMScheduler(T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, clip_sample=True)


@pytest.mark.parametrize("order", ["mask_first", "image_first"])
def test_sampling_swaps_the_roles(order):
    g = torch.Generator().manual_seed(0)
    x_T, y_T = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    first, second = Spy(0.3), Spy(0.5)
    inferer = PairedDDIMInferer(_ddim(), num_inference_steps=3, guidance_order=order)
    mask, image = inferer.sample(x_T, y_T, first, second)
    a, b = first.calls[0], second.calls[0]  # the first step's inputs
    t0 = int(inferer.scheduler.timesteps[0])
    own, other = (x_T, y_T) if order == "mask_first" else (y_T, x_T)
    assert torch.equal(a[:, :1], own) and torch.equal(a[:, 1:], other)  # first network: [its stream_t, other_t]
    _, first_hat = _ddim_step(inferer, 0.3 * own, t0, own)
    assert torch.equal(b[:, :1], other)  # second network: its own noisy stream ...
    cond = inferer.condition(first_hat) if order == "mask_first" else first_hat  # ... and the first's estimate
    assert torch.allclose(b[:, 1:], cond, atol=1e-6)
    assert len(first.calls) == len(second.calls) == 3
    if order == "image_first":  # the mask is the second network's binarised x̂0: values in {-1, +1}
        assert set(mask.unique().tolist()) <= {-1.0, 1.0}


def _ddim_step(inferer, eps, t, sample):
    s = _ddim()
    s.timesteps = inferer.scheduler.timesteps.clone()
    s.num_inference_steps = inferer.scheduler.num_inference_steps
    return s.step(eps, t, sample)


def test_training_swaps_the_roles():
    g = torch.Generator().manual_seed(0)
    label = torch.where(torch.rand(4, 1, 16, 16, generator=g) > 0.8, 1.0, -1.0)
    image = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    batch = {"image": image, "label": label}
    inputs, target, _, kw = PairedDiffusionPrepareBatch(T, seed=3, guidance_order="image_first")(batch, "cpu")
    assert torch.equal(inputs[:, :1], image) and torch.equal(inputs[:, 1:], label)  # the image stream first
    assert torch.equal(target, kw["noise"][:, :1])  # the first network learns the image's noise
    s = DDPMScheduler(T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, clip_sample=True)
    first = tiny_unet(seed=0)
    it = GeneratorIteration(first, s, lesion_weighting=True, guidance_order="image_first")
    assert not it.lesion_weighting  # sigmoid(ŷ0) marks no lesion
    second = Spy(0.0)

    class Eng:  # evaluation path of GeneratorIteration: a plain object with the parts it reads
        prepare_batch = PairedDiffusionPrepareBatch(T, seed=3, guidance_order="image_first")
        non_blocking = False
        network = second

        class state:
            device = "cpu"

    out = it(Eng, batch)
    noisy = s.add_noise(inputs, kw["noise"], kw["timesteps"])
    with torch.no_grad():
        y0_hat = predict_x0(s, noisy[:, :1], first(noisy, kw["timesteps"]), kw["timesteps"])
    seen = second.calls[0]
    assert torch.allclose(seen[:, :1], noisy[:, 1:]) and torch.allclose(seen[:, 1:], y0_hat, atol=1e-5)
    assert torch.equal(out["label"], kw["noise"][:, 1:])  # the second network learns the mask's noise
    with pytest.raises(ValueError, match="guidance_order"):
        PairedDDIMInferer(_ddim(), guidance_order="both")


def test_sampling_with_the_other_order_than_training_is_refused(tmp_path):
    from scripts.common.runinfo import check_guidance_order

    check_guidance_order(str(tmp_path), "image_first")  # no training record: nothing to check
    (tmp_path / "runs").mkdir()
    record = tmp_path / "runs" / "20261204T000000000000Z_training.json"
    record.write_text('{"config": {"guidance_order": "image_first"}}', encoding="utf-8")
    check_guidance_order(str(tmp_path), "image_first")
    with pytest.raises(ValueError, match="trained with guidance_order 'image_first'.*--guidance_order image_first"):
        check_guidance_order(str(tmp_path), "mask_first")
