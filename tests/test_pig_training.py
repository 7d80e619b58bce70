"""Training steps: the guider's forward process (Algorithm 1) and the generator with a frozen guider."""

import pytest
import torch
from helpers import tiny_unet
from monai.engines import SupervisedTrainer
from monai.inferers import DiffusionInferer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler

from scripts.pig import GeneratorIteration, PairedDiffusionPrepareBatch, predict_x0

T = 1024


def scheduler(clip_sample=True):
    return DDPMScheduler(T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, clip_sample=clip_sample)


def batch(n=4, size=16):
    g = torch.Generator().manual_seed(0)
    label = torch.where(torch.rand(n, 1, size, size, generator=g) > 0.8, 1.0, -1.0)
    image = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    return {"image": image, "label": label}


def test_paper_architecture_parameter_count():
    net = DiffusionModelUNet(
        spatial_dims=2,
        in_channels=2,
        out_channels=1,
        channels=(32, 32, 64, 64, 128, 128),
        attention_levels=(False,) * 5 + (True,),
        num_res_blocks=2,
        num_head_channels=32,
    )
    assert sum(p.numel() for p in net.parameters()) == 7_125_409


def test_prepare_batch_stacks_mask_first_and_targets_eps1():
    pb = PairedDiffusionPrepareBatch(T, antithetic=True, seed=3)
    b = batch()
    inputs, target, args, kwargs = pb(b, "cpu")
    assert torch.equal(inputs[:, 0:1], b["label"]) and torch.equal(inputs[:, 1:2], b["image"])
    assert torch.equal(target, kwargs["noise"][:, 0:1])
    t = kwargs["timesteps"]
    assert t.shape == (4,) and t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) < T
    assert torch.equal(t[2:], T - 1 - t[:2]), "antithetic pairs (t, T-1-t)"
    pb.reset()
    again = pb(b, "cpu")
    assert torch.equal(again[3]["noise"], kwargs["noise"]) and torch.equal(again[3]["timesteps"], t)
    assert not torch.equal(kwargs["noise"][:, 0], kwargs["noise"][:, 1]), "eps1 and eps2 independent"


def test_guider_sees_noisy_pair_with_one_timestep():
    """Algorithm 1: model_x([x_t, y_t], t) with x_t, y_t noised by the same t and independent noise."""
    seen = {}

    class Rec(torch.nn.Module):
        def forward(self, x, timesteps, **kwargs):
            seen["x"], seen["t"] = x, timesteps
            return x[:, :1]

    s = scheduler()
    pb = PairedDiffusionPrepareBatch(T, seed=0)
    inputs, target, _, kw = pb(batch(), "cpu")
    DiffusionInferer(s)(inputs, Rec(), noise=kw["noise"], timesteps=kw["timesteps"])
    abar = s.alphas_cumprod[kw["timesteps"]].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * inputs[:, :1] + (1 - abar).sqrt() * kw["noise"][:, :1]
    y_t = abar.sqrt() * inputs[:, 1:] + (1 - abar).sqrt() * kw["noise"][:, 1:]
    assert torch.allclose(seen["x"][:, 0:1], x_t, atol=1e-6) and torch.allclose(seen["x"][:, 1:2], y_t, atol=1e-6)
    assert torch.equal(seen["t"], kw["timesteps"])


def _loader(n=4):
    b = batch(n)
    data = [{"image": b["image"][i], "label": b["label"][i]} for i in range(n)]
    return torch.utils.data.DataLoader(data, batch_size=2)


def test_generator_training_leaves_guider_untouched_and_gradient_free():
    guider, generator = tiny_unet(seed=0), tiny_unet(seed=1)
    before_guider = {k: v.clone() for k, v in guider.state_dict().items()}
    before_gen = {k: v.clone() for k, v in generator.state_dict().items()}
    trainer = SupervisedTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=_loader(),
        network=generator,
        optimizer=torch.optim.Adam(generator.parameters(), 1e-3),
        loss_function=torch.nn.MSELoss(),
        prepare_batch=PairedDiffusionPrepareBatch(T),
        iteration_update=GeneratorIteration(guider, scheduler()),
    )
    trainer.run()
    for k, v in guider.state_dict().items():
        assert torch.equal(v, before_guider[k]), f"guider parameter {k} changed"
    assert all(p.grad is None for p in guider.parameters()), "guider received gradients"
    assert all(not p.requires_grad for p in guider.parameters())
    assert any(not torch.equal(v, before_gen[k]) for k, v in generator.state_dict().items()), "generator not trained"
    assert torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"]))  # output is decollated per sample


def test_generator_is_conditioned_on_guider_x0_hat_and_weighted():
    seen = {}

    class Rec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t):
            seen["gen_in"] = x
            return x[:, :1] * 0 + self.w

    guider = tiny_unet(seed=0)
    s = scheduler(clip_sample=True)
    it = GeneratorIteration(guider, s, lesion_weighting=True)
    gen = Rec()

    class Eng:  # the parts of a trainer GeneratorIteration reads; a plain object -> evaluation path
        prepare_batch = PairedDiffusionPrepareBatch(T, seed=5)
        non_blocking = False
        network = gen

        class state:
            device = "cpu"

    out = it(Eng, batch())
    inputs, _, _, kw = PairedDiffusionPrepareBatch(T, seed=5)(batch(), "cpu")
    noisy = s.add_noise(inputs, kw["noise"], kw["timesteps"])
    with torch.no_grad():
        x0_hat = predict_x0(s, noisy[:, :1], guider(noisy, kw["timesteps"]), kw["timesteps"])
    assert torch.allclose(seen["gen_in"][:, 0:1], noisy[:, 1:2], atol=1e-6), "channel 0 must be y_t"
    assert torch.allclose(seen["gen_in"][:, 1:2], x0_hat, atol=1e-5), "channel 1 must be the guider's x̂0"
    assert float(x0_hat.abs().max()) <= 1.0, "clip_sample clips x̂0 as DDIMScheduler.step does"
    eps2 = kw["noise"][:, 1:]
    expected = (torch.sigmoid(x0_hat) * (eps2 - out["pred"]) ** 2).mean()
    assert it.loss(out["pred"], eps2, x0_hat) == pytest.approx(float(expected), rel=1e-6)
    plain = GeneratorIteration(guider, s, lesion_weighting=False).loss(out["pred"], eps2, x0_hat)
    assert float(plain) == pytest.approx(float(((eps2 - out["pred"]) ** 2).mean()), rel=1e-6)
