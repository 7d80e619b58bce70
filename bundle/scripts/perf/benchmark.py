"""Benchmark of PIG's sampling and training, with the networks the bundle's configs build.

Run from ``bundle/``: ``python -m scripts.perf.benchmark [--preset demo|paper|smoke] [--device cpu|cuda] ...``
(``--help`` lists every option). Prints a Markdown table and writes ``benchmark.json``, ``benchmark.md`` and
``growth.png`` into ``--out``. Every figure is the median of ``--repeats`` timed runs after ``--warmup`` untimed ones,
and carries its device, dtype, image size, batch, steps and the torch / MONAI versions. Speed options are ratios
against the plain path measured in the same process (float32, ``torch.no_grad``, contiguous memory, not compiled).

Sections (``--sections``):

* ``sampling``: PIG's paired DDIM sampler (``scripts.pig.PairedDDIMInferer``) per pair, and its ratio to two runs of
  MONAI's ``DiffusionInferer.sample`` with a ``DDIMScheduler`` (same U-Nets, steps, batch; ``mode="concat"`` feeds
  the second input channel) — the cost of pairing against sampling each stream with MONAI's own loop;
* ``overhead``: the share of a sampling run spent outside the two networks: the sampler run with both networks
  replaced by a stub returning a cached eps, over the real run (the same measure for MONAI's loop beside it);
* ``training``: samples/s of the guider and generator iterations through MONAI's ``SupervisedTrainer`` with the
  bundle's prepare-batch, inferer and ``GeneratorIteration`` (a loss metric and a ``StatsHandler`` attached, as in
  ``train.json``), the engine's time over a bare forward/backward/step loop on the same U-Net and batches, and the
  generator's step time over the guider's;
* ``options``: ``inference_mode`` vs ``torch.no_grad``, bfloat16 vs float32, channels-last vs contiguous, and with
  ``--compile`` ``torch.compile`` of both networks, for sampling and training; the DataLoader's ``pin_memory`` /
  ``persistent_workers``;
* ``memory``: peak memory of each configuration, each in a process of its own (CPU: a fork of the benchmark, its
  peak RSS ``VmHWM`` reset at the start, so "above the loaded state" is the run's own; CUDA: a fresh interpreter,
  ``torch.cuda.max_memory_allocated``);
* ``growth``: one sampling step's time against batch and image size, and a sampling run's against the step count
  (table and ``growth.png``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import monai
import torch
from monai.bundle import ConfigParser
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler, from_engine
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import DDIMScheduler

from ..common import speed
from ..common.configs import merged_config
from ..pig import GeneratorIteration, PairedDDIMInferer, predict_x0

__all__ = ["PRESETS", "Bench", "build", "main", "parse_args"]

logger = logging.getLogger(__name__)

#: preset → (overlays on the ``train`` workflow's configs, default image size, batch, steps). ``demo``'s defaults
#: are the headline settings of the bundle README (64 px, batch 8, 10 steps); ``paper`` is diffusion.json's U-Net
#: at 512 px and 256 steps; ``smoke`` is ``smoke.json``'s U-Net (for the CI test).
PRESETS: dict[str, tuple[tuple[str, ...], int, int, int]] = {
    "demo": (("configs/demo.json",), 64, 8, 10),
    "paper": ((), 512, 6, 256),
    "smoke": (("configs/smoke.json",), 16, 2, 2),
}
#: FLOPs of one forward pass of the paper U-Net at 512 px (multiply-adds counted as 2), the floor figures compare to.
PAPER_FLOP_PER_FORWARD = 124e9
SECTIONS = ("sampling", "overhead", "training", "options", "memory", "growth")
#: why low-precision rows shrink on a CPU without native bfloat16 kernels (measured: 45 x slower than float32).
SLOW_LOW_PRECISION = (
    "CPU without oneDNN bfloat16 (no AVX-512 BF16 / AMX): convolutions run aten::_slow_conv2d; measured at batch 1, "
    "1 step / 1 iteration to keep the run short"
)
#: rows of the ``options`` section (``--options``).
OPTION_ROWS = ("inference_mode", "amp", "channels_last", "compile", "loader")
#: memory-probe configurations (each measured in its own subprocess).
PROBES = ("sample_fp32", "sample_bf16", "sample_channels_last", "train_guider", "train_generator", "train_guider_bf16")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--help``)."""
    p = argparse.ArgumentParser(
        prog="python -m scripts.perf.benchmark",
        description="Benchmark PIG sampling and training with the bundle's own networks; prints a Markdown table "
        "and writes benchmark.json / benchmark.md / growth.png into --out.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="network and default sizes (demo)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--image-size", type=int, help="side in px (preset default: demo 64, paper 512, smoke 16)")
    p.add_argument("--batch", type=int, help="pairs per sampling / training batch (demo 8, paper 6, smoke 2)")
    p.add_argument("--steps", type=int, help="DDIM steps (demo 10, paper 256, smoke 2)")
    p.add_argument("--train-iters", type=int, default=3, help="training iterations per timed run (3)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the median is reported (3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones (1)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--growth-batches", default="1,2,4,8", help="batches of the growth table (1,2,4,8)")
    p.add_argument("--growth-sizes", default=None, help="image sizes of the growth table (default: --image-size "
                   "x 1, 2, 4, e.g. 64,128,256 for the demo preset)")  # fmt: skip
    p.add_argument("--growth-size-batch", type=int, default=1, help="batch of the image-size growth rows (1)")
    p.add_argument("--growth-steps", default="2,5,10", help="step counts of the growth table (2,5,10)")
    p.add_argument("--growth-repeats", type=int, default=1, help="timed runs per growth point, after warm-up (1)")
    p.add_argument("--probes", default=",".join(PROBES), help=f"memory configurations ({','.join(PROBES)})")
    p.add_argument(
        "--options", default=",".join(OPTION_ROWS), help=f"rows of the options section ({','.join(OPTION_ROWS)})"
    )
    p.add_argument("--probe-steps", type=int, help="DDIM steps of the sampling memory probes (default: --steps)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile of both networks (slow start)")
    p.add_argument("--amp-dtype", default="bfloat16", choices=sorted(speed.AMP_DTYPES), help="the low precision")
    p.add_argument("--out", default="runs/perf", help="output folder (runs/perf)")
    p.add_argument("--tag", default="", help="label stored in the JSON (e.g. the machine)")
    p.add_argument("--probe", help=argparse.SUPPRESS)  # internal: one memory configuration, in a subprocess
    return p.parse_args(argv)


def _sizes(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build(preset: str, device: str | torch.device, overrides: dict | None = None) -> dict[str, Any]:
    """The bundle's components for ``preset``: guider, generator, schedulers, sampler, prepare-batch, inferer.

    Parsed from the ``train`` workflow's merged configs (``scripts.common.configs.merged_config``) plus the preset's
    overlays and ``overrides``, so the benchmark measures the networks and steps the bundle runs. The networks are
    built once and copied (seeded: ``torch.manual_seed(0)``), float32, on ``device``, in eval mode.

    Raises:
        KeyError: unknown ``preset``.
    """
    overlays = PRESETS[preset][0]
    cfg = ConfigParser(merged_config("train", overlays, {"device": f"$torch.device('{device}')", **(overrides or {})}))
    torch.manual_seed(0)
    guider = cfg.get_parsed_content("guider_def").to(device).eval()
    generator = cfg.get_parsed_content("network_def").to(device).eval()
    return {
        "cfg": cfg,
        "guider": guider,
        "generator": generator,
        "noise_scheduler": cfg.get_parsed_content("noise_scheduler"),
        "ddim_kwargs": {k: v for k, v in cfg["ddim_scheduler"].items() if k != "_target_"},
        "prepare_batch": cfg.get_parsed_content("train#prepare_batch"),
        "params": sum(p.numel() for p in guider.parameters()),
    }


def _resolve(cfg: ConfigParser, kwargs: dict) -> dict:
    # the DDIM scheduler's arguments are "@id" references into the config
    return {
        k: cfg.get_parsed_content(v[1:]) if isinstance(v, str) and v.startswith("@") else v for k, v in kwargs.items()
    }


class CachedEps(torch.nn.Module):
    """Stand-in for a U-Net that returns one cached eps (B, 1, H, W): a sampler run with it costs only what lies
    outside the networks."""

    def __init__(self, eps: torch.Tensor) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.eps


class Bench:
    """Timed runs and the figure list of one benchmark process.

    Args:
        args: the parsed options (:func:`parse_args`).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
        _, size, batch, steps = PRESETS[args.preset]
        self.size = args.image_size or size
        self.batch = args.batch or batch
        self.steps = args.steps or steps
        self.parts = build(args.preset, self.device, {"image_size": self.size})
        self.cfg = self.parts["cfg"]
        self.figures: list[dict] = []
        self.growth: dict[str, list[tuple[int, float]]] = {}
        #: called after each figure (main: rewrite benchmark.json, so a run stopped by a time limit keeps its figures)
        self.on_figure: Callable[[], Any] | None = None

    # --- timing -----------------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Wait for the device (CUDA work is asynchronous)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], Any], repeats: int | None = None) -> float:
        """Median wall time in s of ``repeats`` runs of ``fn`` after ``--warmup`` untimed runs."""
        for _ in range(self.args.warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats or self.args.repeats):
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def time_ab(self, a: Callable[[], Any], b: Callable[[], Any], repeats: int | None = None) -> tuple[float, float]:
        """Median wall times in s of ``a`` and ``b``, timed alternately (a b, b a, a b, ...) after ``--warmup``
        untimed runs of each, so that a machine whose speed drifts (other jobs) biases neither side of a ratio."""
        for _ in range(self.args.warmup):
            a()
            b()
        self.sync()
        times: dict[int, list[float]] = {0: [], 1: []}
        for i in range(repeats or self.args.repeats):
            for k in (0, 1) if i % 2 == 0 else (1, 0):
                start = time.perf_counter()
                (a, b)[k]()
                self.sync()
                times[k].append(time.perf_counter() - start)
        return statistics.median(times[0]), statistics.median(times[1])

    def figure(self, section: str, name: str, value: float, unit: str, **meta: Any) -> dict:
        """Record one figure with its metadata (the run's defaults, overridden by ``meta``)."""
        row = {
            "section": section,
            "name": name,
            "value": value,
            "unit": unit,
            "device": self.device_name(),
            "dtype": "float32",
            "image_size": self.size,
            "batch": self.batch,
            "steps": self.steps,
            "repeats": self.args.repeats,
            "warmup": self.args.warmup,
            "preset": self.args.preset,
            "params_per_network": self.parts["params"],
            "torch": torch.__version__,
            "monai": monai.__version__,
            "threads": torch.get_num_threads(),
        }
        row.update(meta)
        self.figures.append(row)
        if self.on_figure is not None:
            self.on_figure()
        logger.info("%s %s = %.4g %s", section, name, value, unit)
        return row

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"

    # --- sampling ---------------------------------------------------------------------------------------------

    def noise(self, batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        x_T = torch.randn(batch, 1, size, size, generator=g).to(self.device)
        y_T = torch.randn(batch, 1, size, size, generator=g).to(self.device)
        return x_T, y_T

    def ddim(self) -> DDIMScheduler:
        return DDIMScheduler(**_resolve(self.cfg, self.parts["ddim_kwargs"]))

    def pig(self, steps: int, **options: Any) -> PairedDDIMInferer:
        return PairedDDIMInferer(self.ddim(), num_inference_steps=steps, binarize_x0=True, **options)

    def nets(self, channels_last: bool = False, compiled: bool = False) -> tuple[torch.nn.Module, torch.nn.Module]:
        guider = speed.place(copy.deepcopy(self.parts["guider"]), self.device, channels_last).eval()
        generator = speed.place(copy.deepcopy(self.parts["generator"]), self.device, channels_last).eval()
        if compiled:
            return torch.compile(guider), torch.compile(generator)
        return guider, generator

    def pig_run(self, batch: int, size: int, steps: int, nets=None, **options: Any) -> Callable[[], Any]:
        """One paired sampling run (``options``: the inferer's ``amp_dtype`` / ``inference_mode`` /
        ``channels_last``; default the plain path: no_grad, float32)."""
        options = {"inference_mode": False, **options}
        guider, generator = nets or (self.parts["guider"], self.parts["generator"])
        inferer = self.pig(steps, **options)
        x_T, y_T = self.noise(batch, size)
        return lambda: inferer.sample(x_T, y_T, guider, generator)

    def time_pig(self, batch: int, size: int, steps: int, repeats: int | None = None) -> float:
        """Median s of one plain paired sampling run."""
        return self.time(self.pig_run(batch, size, steps), repeats)

    def monai_run(self, batch: int, size: int, steps: int, nets=None) -> Callable[[], None]:
        """Two MONAI ``DiffusionInferer.sample`` runs (one per network), each over ``steps`` DDIM steps with the
        second channel given as a ``concat`` condition."""
        guider, generator = nets or (self.parts["guider"], self.parts["generator"])
        scheduler = self.ddim()
        scheduler.set_timesteps(steps)
        inferer = DiffusionInferer(scheduler)
        x_T, y_T = self.noise(batch, size)

        def run() -> None:
            inferer.sample(x_T, guider, scheduler, conditioning=y_T, mode="concat", verbose=False)
            inferer.sample(y_T, generator, scheduler, conditioning=x_T, mode="concat", verbose=False)

        return run

    def section_sampling(self) -> None:
        b, s, n = self.batch, self.size, self.steps
        pig, monai_t = self.time_ab(self.pig_run(b, s, n), self.monai_run(b, s, n))
        self.figure("sampling", "PIG paired sampling per pair", pig / b, "s/pair", path="plain (no_grad, float32)")
        self.figure("sampling", "2 x MONAI DiffusionInferer.sample per pair", monai_t / b, "s/pair")
        self.figure("sampling", "PIG / (2 x MONAI DiffusionInferer.sample)", pig / monai_t, "ratio", target="<= 1.05")
        self.figure("sampling", "network evaluations per s", 2 * n * b / pig, "1/s")
        if self.args.preset == "paper" and s == 512:
            tflops = PAPER_FLOP_PER_FORWARD * 2 * n * b / pig / 1e12
            self.figure("sampling", "achieved TFLOP/s (124 GFLOP per forward)", tflops, "TFLOP/s")

    def section_overhead(self) -> None:
        b, s, n = self.batch, self.size, self.steps
        eps = torch.randn(b, 1, s, s, generator=torch.Generator().manual_seed(1)).to(self.device)
        stub = (CachedEps(eps), CachedEps(eps))
        full, outside = self.time_ab(self.pig_run(b, s, n), self.pig_run(b, s, n, nets=stub))
        self.figure(
            "overhead",
            "PIG step time outside the networks",
            outside / full,
            "share",
            target="<= 0.03",
            method="sampler with cached-eps stubs / real run",
        )
        self.figure("overhead", "PIG sampler time outside the networks per step", outside / n, "s/step")
        scheduler = self.ddim()
        scheduler.set_timesteps(n)
        x_T, y_T = self.noise(b, s)

        def monai_run(net) -> Callable[[], None]:
            inferer = DiffusionInferer(scheduler)
            return lambda: inferer.sample(x_T, net, scheduler, conditioning=y_T, mode="concat", verbose=False)

        m_full, m_out = self.time_ab(monai_run(self.parts["guider"]), monai_run(CachedEps(eps)))
        self.figure(
            "overhead",
            "MONAI DiffusionInferer.sample time outside the network",
            m_out / m_full,
            "share",
            method="cached-eps stub / real run, one stream",
        )

    # --- training ---------------------------------------------------------------------------------------------

    def loader(self, batch: int, size: int, iters: int, **loader_kwargs: Any) -> torch.utils.data.DataLoader:
        g = torch.Generator().manual_seed(2)
        n = batch * iters
        label = torch.where(torch.rand(n, 1, size, size, generator=g) > 0.8, 1.0, -1.0)
        image = torch.rand(n, 1, size, size, generator=g) * 2 - 1
        data = [{"image": image[i], "label": label[i]} for i in range(n)]
        return torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False, **loader_kwargs)

    def trainer(self, stage: str, loader, amp_dtype: str | None = None, channels_last: bool = False, compiled=False):
        """A ``SupervisedTrainer`` of ``stage`` ("guider" / "generator") wired as ``train.json`` wires it."""
        net = speed.place(copy.deepcopy(self.parts[stage]), self.device, channels_last).train()
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-4)
        network = torch.compile(net) if compiled else net
        common = {
            "device": self.device,
            "max_epochs": 1,
            "train_data_loader": loader,
            "network": network,
            "optimizer": optimizer,
            "loss_function": torch.nn.MSELoss(),
            "prepare_batch": self.parts["prepare_batch"],
            "key_train_metric": {"train_loss": _average_loss()},
            "train_handlers": [StatsHandler(name=f"bench_{stage}", output_transform=from_engine(["loss"], first=True))],
            "amp": amp_dtype is not None,
            "amp_kwargs": speed.amp_kwargs(amp_dtype or "float16"),
        }
        if stage == "guider":
            inferer = speed.AutocastDiffusionInferer(self.parts["noise_scheduler"], amp_dtype, channels_last)
            return SupervisedTrainer(inferer=inferer, **common)
        frozen = speed.place(copy.deepcopy(self.parts["guider"]), self.device, channels_last)
        iteration = GeneratorIteration(torch.compile(frozen) if compiled else frozen, self.parts["noise_scheduler"])
        return SupervisedTrainer(iteration_update=iteration, **common)

    def train_run(self, stage: str, batch: int, iters: int | None = None, **options: Any) -> Callable[[], None]:
        """One engine run of ``iters`` (``--train-iters``) iterations of ``stage`` (the trainer restarts from epoch 0
        each time)."""
        return self.trainer(stage, self.loader(batch, self.size, iters or self.args.train_iters), **options).run

    def fast_low_precision(self) -> bool:
        """Whether ``--amp-dtype`` has native kernels here: always on CUDA; on the CPU, bfloat16 only where oneDNN
        supports it (AVX-512 BF16 / AMX), else PyTorch's convolutions fall back to ``aten::_slow_conv2d``."""
        if self.device.type == "cuda":
            return True
        return self.args.amp_dtype == "bfloat16" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())

    def bare_run(self, stage: str, batch: int) -> Callable[[], None]:
        """A bare loop of ``--train-iters`` iterations: prepare-batch, add_noise, forward, MSE, backward, Adam step."""
        iters = self.args.train_iters
        batches = list(self.loader(batch, self.size, iters))
        net = copy.deepcopy(self.parts[stage]).to(self.device).train()
        frozen = copy.deepcopy(self.parts["guider"]).to(self.device).eval().requires_grad_(False)
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-4)
        sched, prep = self.parts["noise_scheduler"], self.parts["prepare_batch"]

        def run() -> None:
            for data in batches:
                inputs, target, _, kw = prep(data, self.device)
                noisy = sched.add_noise(inputs, kw["noise"], kw["timesteps"])
                if stage == "generator":
                    with torch.no_grad():
                        x0_hat = predict_x0(sched, noisy[:, :1], frozen(noisy, kw["timesteps"]), kw["timesteps"])
                    noisy, target = torch.cat([noisy[:, 1:], x0_hat], 1), kw["noise"][:, 1:]
                optimizer.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(net(noisy, kw["timesteps"]), target)
                loss.backward()
                optimizer.step()
                loss.item()  # the engine's loss metric reads it each iteration too

        return run

    def section_training(self) -> None:
        b, iters = self.batch, self.args.train_iters
        per = {}
        for stage in ("guider", "generator"):
            engine, bare = self.time_ab(self.train_run(stage, b), self.bare_run(stage, b))
            per[stage], bare = engine / iters, bare / iters
            self.figure("training", f"{stage} iteration, SupervisedTrainer", b / per[stage], "samples/s", steps=None)
            self.figure("training", f"{stage} engine / bare loop", per[stage] / bare, "ratio", steps=None)
            if self.args.preset == "paper" and self.size == 512:
                forwards = 3 if stage == "guider" else 4  # forward + backward ~ 3 forwards; + the frozen guider
                self.figure(
                    "training",
                    f"{stage} achieved TFLOP/s (124 GFLOP per forward, x{forwards})",
                    PAPER_FLOP_PER_FORWARD * forwards * b / per[stage] / 1e12,
                    "TFLOP/s",
                    steps=None,
                )
        guider, generator = self.time_ab(self.train_run("guider", b), self.train_run("generator", b))
        self.figure(
            "training",
            "generator step / guider step",
            generator / guider,
            "ratio",
            target="<= 1.4",
            steps=None,
        )

    # --- options ----------------------------------------------------------------------------------------------

    def option_rows(self) -> list[str]:
        """The ``--options`` rows to measure (``compile`` only with ``--compile``; ``amp`` not for CPU float16)."""
        rows = [r for r in self.args.options.split(",") if r]
        unknown = sorted(set(rows) - set(OPTION_ROWS))
        if unknown:
            raise ValueError(f"unknown --options {unknown}; known: {', '.join(OPTION_ROWS)}")
        if not self.args.compile:
            rows = [r for r in rows if r != "compile"]
        elif "compile" not in rows:
            rows.append("compile")
        if self.args.amp_dtype == "float16" and self.device.type != "cuda":
            rows = [r for r in rows if r != "amp"]  # refused on the CPU (scripts.common.speed)
        return rows

    def section_options(self) -> None:
        b, s, n, low = self.batch, self.size, self.steps, self.args.amp_dtype
        rows = self.option_rows()
        sampling = {
            "inference_mode": ("inference_mode vs no_grad", {"inference_mode": True}, None, "float32"),
            "amp": (f"{low} vs float32", {"amp_dtype": low}, None, low),
            "channels_last": ("channels_last vs contiguous", {"channels_last": True}, "channels_last", "float32"),
            "compile": ("torch.compile vs eager", {}, "compiled", "float32"),
        }
        training = {
            "amp": (f"{low} vs float32", {"amp_dtype": low}, low),
            "channels_last": ("channels_last vs contiguous", {"channels_last": True}, "float32"),
            "compile": ("torch.compile vs eager", {"compiled": True}, "float32"),
        }
        slow = not self.fast_low_precision()
        note = {"note": SLOW_LOW_PRECISION} if slow else {}
        for row in [r for r in rows if r in sampling]:
            name, options, nets, dtype = sampling[row]
            net_pair = None if nets is None else self.nets(**{nets: True})
            bb, nn = (1, 1) if row == "amp" and slow else (b, n)  # emulated bfloat16: one step of one pair
            t, plain = self.time_ab(self.pig_run(bb, s, nn, nets=net_pair, **options), self.pig_run(bb, s, nn))
            extra = note if row == "amp" else {}
            self.figure("options", f"sampling: {name}", t / plain, "ratio", dtype=dtype, batch=bb, steps=nn, **extra)
        for stage in ("guider", "generator"):
            for row in [r for r in rows if r in training]:
                name, options, dtype = training[row]
                bb, it = (1, 1) if row == "amp" and slow else (b, self.args.train_iters)
                t, base = self.time_ab(self.train_run(stage, bb, it, **options), self.train_run(stage, bb, it))
                extra = {**note, "train_iters": it} if row == "amp" else {}
                self.figure(
                    "options",
                    f"training {stage}: {name}",
                    t / base,
                    "ratio",
                    dtype=dtype,
                    batch=bb,
                    steps=None,
                    **extra,
                )
        if "loader" in rows:
            self.section_loader()

    def section_loader(self) -> None:
        """DataLoader settings over two passes (persistent workers matter from the second), per batch."""
        b, s, iters = self.batch, self.size, max(self.args.train_iters, 4)
        cuda = self.device.type == "cuda"

        def passes(**kwargs: Any) -> Callable[[], None]:
            loader = self.loader(b, s, iters, **kwargs)

            def run() -> None:
                for _ in range(2):
                    for data in loader:
                        data["image"].to(self.device, non_blocking=True)

            return run

        variants = [("num_workers 2 + persistent_workers vs 0", {"num_workers": 2, "persistent_workers": True})]
        if cuda:  # pinned memory needs an accelerator to pin for
            variants.append(("pin_memory vs not", {"num_workers": 0, "pin_memory": True}))
        for k, (name, kwargs) in enumerate(variants):
            t, base = self.time_ab(passes(**kwargs), passes(num_workers=0))
            if k == 0:
                self.figure("options", "loader: num_workers 0, per batch", base / (2 * iters), "s/batch", steps=None)
            self.figure("options", f"loader: {name}", t / base, "ratio", steps=None)

    # --- memory -----------------------------------------------------------------------------------------------

    def run_probe(self, probe: str) -> dict:
        """:meth:`probe` in a process of its own: a fork of this one on the CPU (no second import of torch and
        MONAI), a fresh interpreter on CUDA (CUDA does not survive a fork)."""
        if self.device.type != "cuda" and hasattr(os, "fork"):
            ctx = multiprocessing.get_context("fork")
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_probe_child, args=(self, probe, send))
            proc.start()
            send.close()
            try:
                result = receive.recv()
            except EOFError:
                result = None
            proc.join()
            if proc.exitcode != 0 or result is None:
                raise RuntimeError(f"memory probe {probe} failed (exit code {proc.exitcode})")
            return result
        cmd = [sys.executable, "-m", "scripts.perf.benchmark", *self.forwarded(), "--probe", probe]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe {probe} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def section_memory(self) -> None:
        for probe in [p for p in self.args.probes.split(",") if p]:
            if probe not in PROBES:
                raise ValueError(f"unknown memory probe {probe!r}; known: {', '.join(PROBES)}")
            if probe.endswith("bf16") and not self.fast_low_precision():
                logger.info("memory probe %s skipped: %s", probe, SLOW_LOW_PRECISION.split(":")[0])
                continue
            result = self.run_probe(probe)
            dtype = self.args.amp_dtype if probe.endswith("bf16") else "float32"
            steps = (self.args.probe_steps or self.steps) if probe.startswith("sample") else None
            self.figure(
                "memory",
                f"peak memory: {probe}",
                result["peak_mib"],
                "MiB",
                dtype=dtype,
                steps=steps,
                measure=result["measure"],
                baseline_mib=result["baseline_mib"],
            )
            self.figure(
                "memory",
                f"peak above the loaded state: {probe}",
                result["peak_mib"] - result["baseline_mib"],
                "MiB",
                dtype=dtype,
                steps=steps,
                measure="peak - memory after imports and networks",
            )

    def forwarded(self) -> list[str]:
        a = self.args
        out = ["--preset", a.preset, "--device", a.device, "--image-size", str(self.size), "--batch", str(self.batch)]
        out += ["--steps", str(self.steps), "--train-iters", str(a.train_iters), "--amp-dtype", a.amp_dtype]
        return out + ([] if a.probe_steps is None else ["--probe-steps", str(a.probe_steps)])

    def probe(self, name: str) -> dict:
        """Run configuration ``name`` once and return its peak memory (called in a subprocess of its own)."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            baseline = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            baseline = _status_mib("VmRSS")
            _reset_peak_rss()
        low = self.args.amp_dtype
        if name.startswith("sample"):
            nets = self.nets(channels_last=name.endswith("channels_last"))
            options = {"amp_dtype": low} if name.endswith("bf16") else {}
            self.pig(
                self.args.probe_steps or self.steps, channels_last=name.endswith("channels_last"), **options
            ).sample(*self.noise(self.batch, self.size), *nets)
        else:
            stage = "guider" if "guider" in name else "generator"
            amp_dtype = low if name.endswith("bf16") else None
            self.trainer(stage, self.loader(self.batch, self.size, self.args.train_iters), amp_dtype=amp_dtype).run()
        self.sync()
        if cuda:
            return {
                "peak_mib": torch.cuda.max_memory_allocated(self.device) / 2**20,
                "baseline_mib": baseline,
                "measure": "torch.cuda.max_memory_allocated",
            }
        peak = _status_mib("VmHWM")  # the peak since _reset_peak_rss, when the kernel allowed the reset
        if peak <= 0:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "peak_mib": peak,
            "baseline_mib": baseline,
            "measure": "peak RSS of the process (VmHWM after a reset; imports and the networks included)",
        }

    # --- growth -----------------------------------------------------------------------------------------------

    def section_growth(self) -> None:
        one = self.args.growth_repeats
        for b in _sizes(self.args.growth_batches):
            t = self.time_pig(b, self.size, 1, repeats=one)
            self.growth.setdefault("batch", []).append((b, t))
            self.figure("growth", f"sampling step, batch {b}", t, "s/step", batch=b, steps=1, repeats=one)
        bs = self.args.growth_size_batch
        multiple = 2 ** (len(self.cfg["channels"]) - 1)
        sizes = self.args.growth_sizes or ",".join(str(self.size * k) for k in (1, 2, 4))
        for s in _sizes(sizes):
            if s % multiple:
                logger.warning("growth size %d skipped: not a multiple of %d", s, multiple)
                continue
            t = self.time_pig(bs, s, 1, repeats=one)
            self.growth.setdefault("image_size", []).append((s, t))
            self.figure("growth", f"sampling step, {s} px", t, "s/step", image_size=s, batch=bs, steps=1, repeats=one)
        for n in _sizes(self.args.growth_steps):
            t = self.time_pig(self.batch, self.size, n, repeats=one)
            self.growth.setdefault("steps", []).append((n, t))
            self.figure("growth", f"sampling run, {n} steps", t, "s/run", steps=n, repeats=one)

    def plot(self, path: Path) -> Path | None:
        """``growth.png``: time against batch, image size and steps (log-log), with a linear reference."""
        if not self.growth:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = {"batch": "batch (1 step)", "image_size": "image size, px (1 step)", "steps": "DDIM steps"}
        fig, axes = plt.subplots(1, len(self.growth), figsize=(4.2 * len(self.growth), 3.4), squeeze=False)
        for ax, (key, points) in zip(axes[0], self.growth.items(), strict=True):
            xs, ys = zip(*points, strict=True)
            ax.loglog(xs, ys, "o-", label="measured")
            power = 2 if key == "image_size" else 1  # pixels grow with the square of the side
            ax.loglog(xs, [ys[0] * (x / xs[0]) ** power for x in xs], "--", color="gray", label=f"∝ x^{power}")
            ax.set_xlabel(labels[key])
            ax.set_ylabel("s")
            ax.legend(fontsize=8)
        fig.suptitle(f"PIG sampling, {self.args.preset} U-Net, {self.device_name()}", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _probe_child(bench: Bench, probe: str, conn) -> None:
    conn.send(bench.probe(probe))
    conn.close()


def _average_loss():
    from ignite.metrics import Average

    return Average(output_transform=from_engine(["loss"], first=True))


def _status_mib(field: str) -> float:
    """``field`` (``VmRSS``: now, ``VmHWM``: peak) of Linux ``/proc/self/status`` in MiB; 0 where unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux: ``5`` into ``clear_refs``), so the
    peak read after a run is the run's own, not the imports'."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def markdown(figures: Sequence[dict]) -> str:
    """The figures as one Markdown table (value, unit, target, and the settings that vary between rows)."""
    lines = [
        "| section | figure | value | unit | target | dtype | size | batch | steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        steps = "" if f["steps"] is None else f["steps"]
        lines.append(
            f"| {f['section']} | {f['name']} | {f['value']:.4g} | {f['unit']} | {f.get('target', '')} | "
            f"{f['dtype']} | {f['image_size']} | {f['batch']} | {steps} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON document it writes (``{"meta": ..., "figures": [...]}``).

    Raises:
        ValueError: an unknown section; RuntimeError: CUDA asked for but not available, or a memory probe failed.
    """
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*GradScaler.*")  # MONAI creates a CUDA scaler; disabled on the CPU
    warnings.filterwarnings("ignore", message=".*CUDA is not available.*")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch sees no CUDA device")
    bench = Bench(args)
    if args.probe:
        print(json.dumps(bench.probe(args.probe)))
        return {}
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the engines' own INFO lines stay quiet
    logger.setLevel(logging.INFO)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])

    def save(png: Path | None = None, complete: bool = False) -> dict:
        doc = {
            "meta": {
                "command": f"python -m scripts.perf.benchmark {argv_text}",
                "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "device": bench.device_name(),
                "preset": args.preset,
                "image_size": bench.size,
                "batch": bench.batch,
                "steps": bench.steps,
                "repeats": args.repeats,
                "warmup": args.warmup,
                "torch": torch.__version__,
                "monai": monai.__version__,
                "python": platform.python_version(),
                "threads": torch.get_num_threads(),
                "tag": args.tag,
                "wall_s": time.perf_counter() - start,
                "png": None if png is None else str(png),
                "complete": complete,
            },
            "figures": bench.figures,
        }
        (out / "benchmark.json").write_text(json.dumps(doc, indent=1))
        return doc

    bench.on_figure = save
    for section in SECTIONS:
        if section in sections:
            began = time.perf_counter()
            getattr(bench, f"section_{section}")()
            logger.info("section %s took %.1f s", section, time.perf_counter() - began)
    png = bench.plot(out / "growth.png")
    doc = save(png, complete=True)
    table = markdown(bench.figures)
    (out / "benchmark.md").write_text(table + "\n")
    print(table)
    print(f"\nwritten: {out / 'benchmark.json'}, {out / 'benchmark.md'}" + (f", {png}" if png else ""))
    return doc


if __name__ == "__main__":
    main()
