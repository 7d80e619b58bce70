"""Speed options (``scripts.common.speed``): inference mode, bfloat16 autocast, channels-last, their config wiring.

The networks are tiny seeded MONAI U-Nets whose zero-initialised layers (MONAI zero-inits every block's last
convolution and the output layer, so an untrained ``DiffusionModelUNet`` predicts eps = 0 exactly) are filled with
seeded noise: with eps = 0 every precision would give the same output and the comparisons would guard nothing.
"""

import pytest
import torch
from helpers import parser, tiny_unet
from monai.engines import SupervisedTrainer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from scripts.baselines.inferer import BaselineDiffusionInferer
from scripts.common import speed
from scripts.pig import GeneratorIteration, PairedDDIMInferer, PairedDiffusionPrepareBatch, sample_noise

T = 1024


def live_unet(seed: int, in_channels: int = 2) -> torch.nn.Module:
    """:func:`helpers.tiny_unet` with its all-zero parameters replaced by seeded N(0, 0.1²) values (eps != 0)."""
    net = tiny_unet(in_channels, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


def ddim(clip_sample: bool = True) -> DDIMScheduler:
    return DDIMScheduler(T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, clip_sample=clip_sample)


def noise(n: int = 4, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [sample_noise(0, i, size) for i in range(n)]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def sample(guider, generator, steps: int = 3, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    x_T, y_T = noise()
    return PairedDDIMInferer(ddim(), num_inference_steps=steps, **kwargs).sample(x_T, y_T, guider, generator)


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0, b > 0
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


@pytest.fixture(scope="module")
def nets():
    return live_unet(0), live_unet(1)


# --- inference mode -----------------------------------------------------------------------------------------------


def test_inference_mode_is_bit_equal_to_no_grad_and_returns_ordinary_tensors(nets):
    mask_im, img_im = sample(*nets, inference_mode=True)
    mask_ng, img_ng = sample(*nets, inference_mode=False)
    assert torch.equal(mask_im, mask_ng) and torch.equal(img_im, img_ng)
    assert not img_im.is_inference() and not mask_im.is_inference()
    img_im.add_(1)  # in place outside inference mode: an inference tensor would raise here


def test_sampler_runs_networks_in_the_configured_grad_mode(nets):
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
            return self.net(x, t)

    sample(Spy(nets[0]), Spy(nets[1]), steps=2, inference_mode=True)
    sample(Spy(nets[0]), Spy(nets[1]), steps=2, inference_mode=False)
    assert seen == [(True, False)] * 4 + [(False, False)] * 4


def test_baseline_sampler_inference_mode_is_bit_equal_to_no_grad():
    net = live_unet(2, in_channels=1)
    _, y_T = noise()
    out = {}
    for mode in (True, False):
        inferer = BaselineDiffusionInferer(ddim(), "image", num_inference_steps=3, inference_mode=mode)
        out[mode] = inferer.sample(y_T, net)
    assert torch.equal(out[True], out[False]) and not out[True].is_inference()


# --- bfloat16 autocast ----------------------------------------------------------------------------------------------


def test_bf16_network_call_is_within_bf16_rounding(nets):
    """One eps call: relative L2 error <= 3e-2. bfloat16 keeps 8 significant bits (rounding 2^-9 ~ 0.2 % per op);
    through the tiny U-Net's ~10 layers it measured 1.0 % at t = 10, 500, 1000; 3 % leaves room for other CPUs."""
    x_T, y_T = noise()
    inputs, t = torch.cat([x_T, y_T], 1), torch.full((4,), 500)
    with torch.no_grad():
        ref = nets[0](inputs, t)
        with speed.autocast("cpu", "bfloat16"):
            low = nets[0](inputs, t)
    assert low.dtype == torch.bfloat16
    assert float((low.float() - ref).norm() / ref.norm()) <= 3e-2


def test_bf16_sampling_is_close_to_float32(nets):
    """Two DDIM steps (t = 512, 0). Image (continuous x̂0 condition, so no threshold flips): max abs error <= 0.25
    and relative L2 <= 5e-2 — the first step's x̂0 carries the eps error times sqrt(1 - abar) / sqrt(abar) ~ 3.7 at
    t = 512 (eps error up to 0.04 measured: 0.15), measured 0.12 / 0.018. Mask with the binarised condition:
    Dice >= 0.95, since a pixel whose pooled x̂0 lies within the error of the threshold flips (measured 0.994).
    Longer runs diverge (random networks are chaotic: 10 steps gave Dice 0.29), so the test keeps to two steps."""
    m32, y32 = sample(*nets, steps=2, binarize_x0=False)
    m16, y16 = sample(*nets, steps=2, binarize_x0=False, amp_dtype="bfloat16")
    assert y16.dtype == torch.float32 and m16.dtype == torch.float32  # the DDIM arithmetic stays float32
    assert not torch.equal(y16, y32), "bfloat16 changed nothing: autocast did not take effect"
    assert float((y16 - y32).abs().max()) <= 0.25
    assert float((y16 - y32).norm() / y32.norm()) <= 5e-2
    mb32, _ = sample(*nets, steps=2)
    mb16, _ = sample(*nets, steps=2, amp_dtype="bfloat16")
    assert dice(mb16, mb32) >= 0.95


def test_sampler_autocasts_both_network_calls_only(nets):
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), x.dtype))
            return self.net(x, t)

    sample(Spy(nets[0]), Spy(nets[1]), steps=2, amp_dtype="bfloat16")
    assert seen == [(True, torch.bfloat16, torch.float32)] * 4  # the inputs (x_t, y_t, x̂0) are float32
    assert not torch.is_autocast_enabled("cpu")


def test_amp_dtype_rules():
    speed.check_amp(False, "float16", "cpu")  # amp off: float32, the dtype is not used
    speed.check_amp(True, "bfloat16", "cpu")
    speed.check_amp(True, "float16", "cuda:0")
    with pytest.raises(ValueError, match="float16 needs a CUDA device"):
        speed.check_amp(True, "float16", "cpu")
    with pytest.raises(ValueError, match="amp_dtype must be one of"):
        speed.check_amp(True, "half", "cuda")
    with pytest.raises(TypeError, match="Python boolean"):
        speed.check_amp("false", "bfloat16", "cpu")
    with pytest.raises(ValueError, match="amp_dtype must be one of"):
        PairedDDIMInferer(ddim(), num_inference_steps=2, amp_dtype="fp8")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        sample(live_unet(0), live_unet(1), steps=2, amp_dtype="float16")
    assert speed.amp_kwargs("bfloat16") == {"dtype": torch.bfloat16}


# --- bfloat16 training ----------------------------------------------------------------------------------------------


def _loader(n: int = 4, size: int = 16):
    g = torch.Generator().manual_seed(0)
    label = torch.where(torch.rand(n, 1, size, size, generator=g) > 0.8, 1.0, -1.0)
    image = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    data = [{"image": image[i], "label": label[i]} for i in range(n)]
    return torch.utils.data.DataLoader(data, batch_size=2)


def ddpm() -> DDPMScheduler:
    return DDPMScheduler(T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, clip_sample=True)


class AutocastSpy(torch.nn.Module):
    """Wraps a network; records (autocast on for the input's device, its dtype, grad mode) at every forward."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls: list[tuple[bool, torch.dtype, bool]] = []

    def forward(self, x, timesteps, **kwargs):
        kind = x.device.type
        self.calls.append((torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind), torch.is_grad_enabled()))
        return self.net(x, timesteps, **kwargs)


def _trainer(network, **kwargs) -> SupervisedTrainer:
    return SupervisedTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=_loader(),
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), 1e-3),
        loss_function=torch.nn.MSELoss(),
        prepare_batch=PairedDiffusionPrepareBatch(T),
        amp=True,
        amp_kwargs=speed.amp_kwargs("bfloat16"),
        **kwargs,
    )


def _changed(net, before) -> bool:
    return any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_bf16_guider_iteration_trains_under_autocast():
    """The guider's MONAI SupervisedTrainer with the bundle's AutocastDiffusionInferer: MONAI 1.6.1 autocasts on
    CUDA only, so without the inferer nothing would run in bfloat16 on the CPU."""
    guider = AutocastSpy(live_unet(0).train())
    before = {k: v.clone() for k, v in guider.state_dict().items()}
    trainer = _trainer(guider, inferer=speed.AutocastDiffusionInferer(ddpm(), amp_dtype="bfloat16"))
    trainer.run()
    loss = torch.as_tensor(trainer.state.output[0]["loss"])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert _changed(guider, before), "guider weights did not change"
    assert guider.calls == [(True, torch.bfloat16, True)] * 2


def test_bf16_generator_iteration_autocasts_frozen_guider_and_generator():
    """Both forward passes of GeneratorIteration run under bfloat16 autocast; the frozen guider's without grad."""
    guider, generator = AutocastSpy(live_unet(0)), AutocastSpy(live_unet(1).train())
    before_gen = {k: v.clone() for k, v in generator.state_dict().items()}
    before_guider = {k: v.clone() for k, v in guider.state_dict().items()}
    trainer = _trainer(generator, iteration_update=GeneratorIteration(guider, ddpm()))
    trainer.run()
    assert guider.calls == [(True, torch.bfloat16, False)] * 2, "the frozen guider ran outside autocast"
    assert generator.calls == [(True, torch.bfloat16, True)] * 2
    loss = torch.as_tensor(trainer.state.output[0]["loss"])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert _changed(generator, before_gen) and not _changed(guider, before_guider)
    assert trainer.state.output[0]["x0_hat"].dtype == torch.float32  # x̂0 computed in float32


def test_generator_iteration_refuses_float16_on_cpu():
    trainer = _trainer(live_unet(1).train(), iteration_update=GeneratorIteration(live_unet(0), ddpm()))
    trainer.amp_kwargs = {"dtype": torch.float16}
    with pytest.raises(ValueError, match="needs a CUDA device"):
        trainer.run()


# --- channels-last --------------------------------------------------------------------------------------------------


def test_channels_last_sampling_matches_plain_path():
    """float32 in either layout; only the kernels' summation order differs (~1e-6 relative per convolution),
    amplified by at most sqrt(1 - abar) / sqrt(abar) ~ 3.7 per step: image max abs error <= 1e-4 over 3 steps with
    the continuous condition (measured 1e-5); the same mask pixels > 0."""
    plain = sample(live_unet(0), live_unet(1), binarize_x0=False)
    cl_nets = [speed.place(live_unet(s), "cpu", channels_last=True) for s in (0, 1)]
    assert cl_nets[0].out[2].conv.weight.is_contiguous(memory_format=torch.channels_last)
    fast = sample(*cl_nets, binarize_x0=False, channels_last=True)
    assert float((fast[1] - plain[1]).abs().max()) <= 1e-4
    assert torch.equal(fast[0] > 0, plain[0] > 0)


def test_channels_last_training_step_matches_plain_path():
    """One guider step in each layout: losses within 1e-5 relative (float32, other summation order)."""
    losses = []
    for cl in (False, True):
        net = speed.place(live_unet(0).train(), "cpu", channels_last=cl)
        torch.manual_seed(5)
        trainer = _trainer(net, inferer=speed.AutocastDiffusionInferer(ddpm(), channels_last=cl))
        trainer.amp = False
        trainer.run()
        losses.append(float(trainer.state.output[0]["loss"]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


# --- config wiring --------------------------------------------------------------------------------------------------


def test_configs_pass_the_speed_ids_to_training_and_sampling():
    p = parser("train", "smoke.json", amp=True, amp_dtype="bfloat16", channels_last=True, inference_mode=False)
    inferer = p.get_parsed_content("inferer")
    assert (inferer.amp_dtype, inferer.inference_mode, inferer.channels_last) == ("bfloat16", False, True)
    guider_inferer = p.get_parsed_content("train#inferer")
    assert isinstance(guider_inferer, speed.AutocastDiffusionInferer) and guider_inferer.amp_dtype == torch.bfloat16
    assert p.get_parsed_content("train#guider#trainer#amp_kwargs") == {"dtype": torch.bfloat16}
    assert p.get_parsed_content("train#trainer#amp_kwargs") == {"dtype": torch.bfloat16}
    assert p.get_parsed_content("guider").out[2].conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert p["train#dataloader"]["pin_memory"] == "@pin_memory"
    assert p["validate#dataloader"]["persistent_workers"] == "@persistent_workers"
    off = parser("train", "smoke.json", amp=False, amp_dtype="bfloat16")
    assert off.get_parsed_content("inferer").amp_dtype is None  # amp off: float32 whatever amp_dtype says
    assert off.get_parsed_content("inferer").inference_mode is True  # the default
    for wf in ("train", "inference"):
        run_list = " ".join(parser(wf, "smoke.json")[{"train": "training", "inference": "inference"}[wf]])
        assert "check_amp(@amp, @amp_dtype, @device)" in run_list and "channels_last=@channels_last" in run_list
