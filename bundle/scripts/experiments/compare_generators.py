"""Generator comparison on the same data (paper Table 1 protocol): PIG vs DDPM, DDIM, mask-concat and ControlNet.

Run from ``bundle/``::

    python -m scripts.experiments.compare_generators --work_dir runs/compare --overlay configs/demo.json \\
        --num_samples 256 --generators pig,ddpm,ddim,concat,controlnet --ddim_steps 50

``pig_image_first`` (opt-in: ``--generators pig,pig_image_first``) adds the guidance-direction ablation: PIG trained
and sampled with ``guidance_order = image_first`` (the first network denoises the image, the second the mask), the
same networks and budget.

Every stage is a ``python -m monai.bundle run`` subprocess of the bundle's own configs with a JSON overlay
(:func:`scripts.experiments.stages.run_stage`); all stages share ``dataset_dir``, ``cache_dir``, ``--overlay``,
``--overrides`` and ``seed``, so every generator is trained on the same prepared slices and evaluated against the same
real reference set (the training split, ``evaluate.json``). Stages (``W = --work_dir``):

1. Training (resumed in place when unfinished: the workflows resume from their checkpoints) → ``W/train/<model>``:
   ``pig`` (``train.json``: guider + generator), ``image`` (``baseline_train.json``, one unconditional image model
   that **both** DDPM and DDIM sample, and that ControlNet keeps frozen), ``concat``, ``controlnet``.
2. Sampling of ``--num_samples`` N images per generator → ``W/samples/<generator>`` (PIG: ``inference.json`` with
   ``--ddim_steps`` DDIM steps; DDPM: ``baseline_inference.json`` with every one of the T training steps; DDIM,
   concat, ControlNet: DDIM with ``--ddim_steps``). ``--num_samples_ddpm`` may give DDPM fewer samples (it costs
   T network evaluations per image); the table's N column says so.
3. Evaluation (``evaluate.json``, workflow ``evaluating``) of each folder → ``W/eval/<generator>``, all with the same
   extractor (``--fid_extractor``; default ``seg_unet_encoder`` when ``--seg_model_path`` is given, else the
   sanity-only ``random_resnet18_seed0``) and weights.
4. ``W/table.md``, ``table.csv``, ``config.json`` (command, settings, versions, checkpoint SHA-256, per-stage
   seconds); never overwritten (:func:`scripts.experiments.stages.free_names` writes ``table_<time>.md`` etc. beside).

A rerun skips every complete stage (``stage_complete.json``) and only writes a new table.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from scripts.common.checkpoint import file_sha256
from scripts.common.configs import config_files, meta_file
from scripts.common.runinfo import environment
from scripts.evaluation.report import SMALL_SAMPLE_NOTE
from scripts.experiments import stages as st
from scripts.experiments.seg_grid import DUKE_NOTE

__all__ = ["GENERATORS", "COLUMNS", "parse_args", "table_rows", "format_cell", "format_table", "write_outputs", "main"]

logger = logging.getLogger("compare_generators")

#: generator key → (row label, trained model it samples, sampler). DDPM and DDIM share the one image model.
GENERATORS = {
    "pig": ("PIG", "pig", "ddim"),
    "pig_image_first": ("PIG, image first (ablation)", "pig_image_first", "ddim"),
    "ddpm": ("DDPM", "image", "ddpm"),
    "ddim": ("DDIM", "image", "ddim"),
    "concat": ("concat (SegGuidedDiff-style)", "concat", "ddim"),
    "controlnet": ("ControlNet", "controlnet", "ddim"),
}
#: checkpoint files of each trained model (hashed into config.json).
WEIGHTS = {"pig": ("guider.pt", "generator.pt"), "pig_image_first": ("guider.pt", "generator.pt"),
           "image": ("image.pt",), "concat": ("concat.pt",),
           "controlnet": ("controlnet.pt",)}  # fmt: skip
#: ids the runner sets per stage; ``--overrides`` may not set them.
RUNNER_IDS = ("ckpt_dir", "output_dir", "generated_dir", "eval_dir", "num_samples", "generator_type", "sampler",
              "num_inference_steps", "dataset_dir", "cache_dir", "seed", "image_model_path", "fid_extractor",
              "fid_weights_path", "extractor_image_size", "seg_model_path", "guidance_order")  # fmt: skip
#: Markdown columns: (header, row key); a row lacking a key shows "—", a skipped measure "skipped".
COLUMNS = (
    ("generator", "generator"), ("sampler", "sampler"), ("steps", "steps"), ("N", "n"), ("FID ↓", "fid"),
    ("KID ↓ (mean ± std)", "kid"), ("MS-SSIM ↓ (diversity)", "ms_ssim"), ("mask Dice ↓ (diversity)", "mask_dice"),
    ("W₁ area (px)", "w_area_px"), ("W₁ components", "w_components"), ("W₁ eccentricity", "w_eccentricity"),
    ("pair consistency Dice ↑", "pair_dice"), ("s / image", "s_per_image"),
)  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the runner's command line (see ``--help``).

    Raises:
        SystemExit: invalid options, an unknown generator, N < 2, or ``--overrides`` setting a runner-owned id.
    """
    p = argparse.ArgumentParser(prog="python -m scripts.experiments.compare_generators",
                                description="Train, sample and evaluate PIG and the baselines on the same data; "
                                "writes a Table-1-style comparison. Run from bundle/.")  # fmt: skip
    p.add_argument("--work_dir", required=True, help="all stages and the table go here; rerun to resume")
    p.add_argument("--dataset_dir", default=None, help="Duke box table / folder layout; omit for the phantom")
    p.add_argument("--cache_dir", default=str(st.BUNDLE_ROOT / "cache"), help="prepared slices (default bundle/cache)")
    p.add_argument("--overlay", default="configs/demo.json", help="overlay on every config (size, U-Net, epochs)")
    p.add_argument("--overrides", type=st.json_dict, default={}, help="JSON ids -> values for every stage")
    p.add_argument("--eval_overrides", type=st.json_dict, default={}, help="JSON ids for evaluate.json only")
    p.add_argument("--generators", default="pig,ddpm,ddim,concat,controlnet", help=f"subset of {list(GENERATORS)}")
    p.add_argument("--num_samples", type=int, default=256, help="N generated images per generator (>= 2)")
    p.add_argument("--num_samples_ddpm", type=int, default=None, help="N for DDPM only (default: --num_samples)")
    p.add_argument("--ddim_steps", type=int, default=None, help="DDIM steps (default: the overlay's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fid_extractor", default=None, help="evaluate.json extractor (default: see module doc)")
    p.add_argument("--fid_weights_path", default=None, help="weights of inception_v3 / radimagenet_resnet50")
    p.add_argument("--extractor_image_size", type=int, default=None, help="side fed to the extractor")
    p.add_argument("--seg_model_path", default=None, help="seg_model.pt: seg_unet_encoder and pair consistency")
    st.add_launcher_option(p)
    args = p.parse_args(argv)
    args.generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    unknown = [g for g in args.generators if g not in GENERATORS]
    if unknown or not args.generators or len(set(args.generators)) != len(args.generators):
        p.error(f"--generators {args.generators}: give distinct names out of {list(GENERATORS)}")
    args.num_samples_ddpm = args.num_samples if args.num_samples_ddpm is None else args.num_samples_ddpm
    if min(args.num_samples, args.num_samples_ddpm) < 2:
        p.error("--num_samples / --num_samples_ddpm must be >= 2 (FID needs two images at least)")
    st.check_runner_options(p, args, RUNNER_IDS)
    return args


def _run_all(args: argparse.Namespace, work: Path) -> dict:
    """Stages 1–3; returns ``{"stages": {name: marker}, "checkpoints": {...}, "steps": {...}, "metrics": {...}}``."""
    overlay = [args.overlay] if args.overlay else []
    meta = meta_file("train")
    common = {**args.overrides, "dataset_dir": st.absolute(args.dataset_dir), "cache_dir": st.absolute(args.cache_dir),
              "seed": args.seed}  # fmt: skip
    files = {name: config_files(name, overlay)
             for name in ("train", "inference", "baseline_train", "baseline_inference", "evaluate")}  # fmt: skip
    T = st.resolve_config("baseline_inference", overlay, common, ["num_train_timesteps"])["num_train_timesteps"]
    ddim = args.ddim_steps or st.resolve_config("inference", overlay, common, ["num_inference_steps"])[
        "num_inference_steps"
    ]
    stages, ckpts = {}, {}

    def stage(name, workflow, cfg, ov, resume=False):
        stages[name] = st.run_stage(name, work / name, work / "logs" / f"{name.replace('/', '_')}.log", workflow, meta,
                                 files[cfg], ov, resume_in_place=resume, launcher=args.launcher)  # fmt: skip

    needed = {GENERATORS[g][1] for g in args.generators} | ({"image"} if "controlnet" in args.generators else set())
    models = [m for m in WEIGHTS if m in needed]  # image before controlnet: ControlNet needs the frozen image model
    image_pt = str(work / "train" / "image" / "image.pt")
    # baselines: which network; ControlNet: the frozen image model trained in train/image
    own = {"pig": {}, "pig_image_first": {"guidance_order": "image_first"},
           "image": {"generator_type": "image"}, "concat": {"generator_type": "concat"},
           "controlnet": {"generator_type": "controlnet", "image_model_path": image_pt}}  # fmt: skip
    for m in models:
        ov = {**common, "ckpt_dir": str(work / "train" / m), **own[m]}
        stage(f"train/{m}", "training", "train" if m.startswith("pig") else "baseline_train", ov, resume=True)
        ckpts[m] = {f: file_sha256(str(work / "train" / m / f)) for f in WEIGHTS[m]}
    steps = {}
    for g in args.generators:
        _, m, sampler = GENERATORS[g]
        steps[g] = T if sampler == "ddpm" else ddim
        n = args.num_samples_ddpm if g == "ddpm" else args.num_samples
        pig = m.startswith("pig")
        ov = {**common, "ckpt_dir": str(work / "train" / m), "output_dir": str(work / "samples" / g), "num_samples": n,
              "num_inference_steps": steps[g], **own[m], **({} if pig else {"sampler": sampler})}  # fmt: skip
        stage(f"samples/{g}", "inference", "inference" if pig else "baseline_inference", ov)
    metrics = {}
    for g in args.generators:
        ov = {**common, **args.eval_overrides, "generated_dir": str(work / "samples" / g),
              "eval_dir": str(work / "eval" / g), "fid_extractor": args.fid_extractor,
              "fid_weights_path": st.absolute(args.fid_weights_path), "extractor_image_size": args.extractor_image_size,
              "seg_model_path": st.absolute(args.seg_model_path)}  # fmt: skip
        stage(f"eval/{g}", "evaluating", "evaluate", ov)
        metrics[g] = json.loads((work / "eval" / g / "metrics.json").read_text(encoding="utf-8"))
    return {"stages": stages, "checkpoints": ckpts, "steps": steps, "num_train_timesteps": T, "ddim_steps": ddim,
            "metrics": metrics, "config_files": files, "common_overlay": common}  # fmt: skip


def _skip_or(entry: dict | None, key: str):
    """``entry[key]``, ``"skipped"`` for a skipped measure, ``None`` when absent."""
    if entry is None:
        return None
    return "skipped" if entry.get("status") == "skipped" else entry.get(key)


def table_rows(metrics: dict[str, dict], steps: dict[str, int], seconds: dict[str, float]) -> list[dict]:
    """One row per generator plus the reference rows, from the ``metrics.json`` of each evaluation.

    Args:
        metrics: generator key → its ``metrics.json`` content (``scripts.evaluation.report.run_evaluation``).
        steps: generator key → sampling steps; seconds: generator key → sampling stage wall time (s).

    Returns:
        Rows with the :data:`COLUMNS` keys (numbers, ``"skipped"`` or ``None``; ``kid`` a ``(mean, std)`` tuple).

    Raises:
        ValueError: the evaluations do not share the real reference set or the extractor (name, weights hash, size),
            so their numbers are not comparable.
    """
    first = next(iter(metrics.values()))

    def reference(m: dict) -> tuple:  # what every evaluation must share: real set, extractor, real-only controls
        ctl = m["distances"]["controls"]
        return m["sets"]["real"], m["extractor"], ctl["real_half_a_vs_real_half_b"], ctl["real_vs_blurred_real"]

    for g, m in metrics.items():
        if reference(m) != reference(first):
            raise ValueError(f"evaluation of {g} used another real set or extractor than the first: not comparable")
    rows = []
    for g, m in metrics.items():
        d, ms = m["distances"]["generated_vs_real"], m["mask_statistics"]
        n = m["headline"]["n_generated"]
        rows.append({
            "key": g, "generator": GENERATORS[g][0], "sampler": GENERATORS[g][2].upper(), "steps": steps[g], "n": n,
            "fid": d.get("fid"), "kid": (d["kid_mean"], d["kid_std"]) if "kid_mean" in d else None,
            "ms_ssim": _skip_or(m["diversity"]["generated"]["ms_ssim"], "mean"),
            "mask_dice": _skip_or(m["diversity"]["generated"]["mask_dice"], "mean"),
            # a skipped mask_statistics has no per-statistic entries: .get(stat, ms) gives "skipped" for each
            **{f"w_{k}": _skip_or(ms.get(k, ms), "wasserstein") for k in ("area_px", "components", "eccentricity")},
            "pair_dice": _skip_or(m["pair_consistency"], "dice_mean"), "s_per_image": seconds[g] / n,
        })  # fmt: skip
    ctl = first["distances"]["controls"]
    labels = {
        "real_half_a_vs_real_half_b": f"control: real half A vs half B ({first['distances']['half_split']})",
        "real_vs_blurred_real": f"control: real vs blurred real (σ {first['distances']['blur_sigma_px']:g} px)",
    }
    for key, label in labels.items():
        c = ctl[key]
        rows.append({"key": key, "generator": label, "n": f"{c['n_a']} vs {c['n_b']}", "fid": c.get("fid"),
                     "kid": (c["kid_mean"], c["kid_std"]) if "kid_mean" in c else None})  # fmt: skip
    real = first["diversity"]["real"]
    rows.append({"key": "real", "generator": "real training set (diversity reference)",
                 "n": first["headline"]["n_real"], "ms_ssim": _skip_or(real["ms_ssim"], "mean"),
                 "mask_dice": _skip_or(real["mask_dice"], "mean")})  # fmt: skip
    return rows


def format_cell(value) -> str:
    """One table cell: "—" for None, "a ± b" for a (mean, std) tuple, 3 decimals (3 significant digits below 0.01)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return f"{format_cell(value[0])} ± {format_cell(value[1])}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan"
        if abs(value) < 1e-12:  # e.g. KID's std when every subset is the whole set: float rounding, not spread
            return "0"
        return f"{value:.3g}" if value != 0 and abs(value) < 1e-2 else f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of :func:`table_rows` rows over :data:`COLUMNS` (3 decimals, 3 significant digits below 0.01)."""
    lines = ["| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(format_cell(r.get(k)) for _, k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_outputs(work_dir: Path, rows: list[dict], config: dict) -> dict[str, str]:
    """Write ``table.md`` (header, table, notes), ``table.csv`` and ``config.json``; never overwrites (``free_names``).

    Returns:
        ``{"table_md", "table_csv", "config"}`` → paths written.
    """
    md_path, csv_path, cfg_path = st.free_names(work_dir, ("table.md", "table.csv", "config.json"))
    st.write_json(cfg_path, config)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key"] + [k for _, k in COLUMNS if k != "kid"] + ["kid_mean", "kid_std"])
        for r in rows:
            kid = r.get("kid") or ("", "")
            w.writerow([r["key"]] + ["" if r.get(k) is None else r[k] for _, k in COLUMNS if k != "kid"] + list(kid))
    ex, real, args = config["extractor"], config["real_set"], config["arguments"]
    text = [
        "# Generator comparison (paper Table 1 protocol)", "",
        f"Feature extractor `{ex['name']}` (weights SHA-256 `{ex['weights_sha256']}`, {ex['input_size_px']} px input)"
        + (" — **random weights: a pipeline check only, not a quality measure**." if ex["sanity_only"] else "."),
        f"Real reference: {real['n']} slices of the '{real['split']}' split ({real.get('format')} data, "
        f"{real['patients']} patients). Generated: N = {args['num_samples']} per generator"
        + (f" (DDPM: {args['num_samples_ddpm']})" if args["num_samples_ddpm"] != args["num_samples"] else "")
        + f"; every generator was trained on the same prepared slices (seed {config['seed']}).", "",
        format_table(rows),
        "FID/KID: generated vs the whole real set; the control rows give the floor (two real halves) and a known "
        "degradation (Gaussian blur) for the same extractor. Diversity: mean pairwise MS-SSIM of the images and "
        "Dice of the masks within the set (lower = more diverse). W₁: Wasserstein distance between the real and "
        "generated distributions of lesion area, connected-component count and eccentricity. Pair consistency: Dice "
        "between each generated mask and a segmenter's prediction on its image (needs --seg_model_path). s / image: "
        "the sampling stage's wall time (process start-up and writing included) over N. 'skipped': image-only "
        "generators have no masks. concat and ControlNet draw their masks from the training masks, so their mask "
        "columns measure resampling of real masks, not mask generation.", "",
        f"**Small-sample bias.** {SMALL_SAMPLE_NOTE} (That row is in each generator's `eval/<key>/summary.md`.)", "",
    ]  # fmt: skip
    if real.get("format") == "duke":
        text += [DUKE_NOTE + " The same holds for the real masks the mask statistics compare with.", ""]
    text += [f"Full record (command, settings, versions, checkpoint SHA-256, stage seconds): `{cfg_path.name}`.", ""]
    tmp = md_path.with_name(md_path.name + ".tmp")
    tmp.write_text("\n".join(text), encoding="utf-8")
    os.replace(tmp, md_path)
    return {"table_md": str(md_path), "table_csv": str(csv_path), "config": str(cfg_path)}


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    """Run (or resume) every stage and write the comparison table; returns the written paths."""
    start = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)  # before logging: --help and usage errors print nothing else
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    (work := Path(args.work_dir).resolve()).mkdir(parents=True, exist_ok=True)
    run = _run_all(args, work)
    seconds = {g: run["stages"][f"samples/{g}"]["seconds"] for g in args.generators}
    rows = table_rows(run["metrics"], run["steps"], seconds)
    first = run["metrics"][args.generators[0]]
    config = {
        "command": shlex.join([sys.executable, "-m", "scripts.experiments.compare_generators", *argv]),
        "cwd": os.getcwd(), "work_dir": str(work), "arguments": vars(args), "seed": args.seed,
        "num_train_timesteps": run["num_train_timesteps"], "ddim_steps": run["ddim_steps"], "steps": run["steps"],
        "config_files": run["config_files"], "common_overlay": run["common_overlay"],
        "extractor": first["extractor"], "real_set": first["sets"]["real"],
        "checkpoints_sha256": run["checkpoints"],
        "stages": {k: {"seconds": v["seconds"], "finished": v["finished"], "command": v.get("command")}
                   for k, v in run["stages"].items()},
        "versions": environment(), "seconds_this_invocation": round(time.monotonic() - start, 1), "rows": rows,
    }  # fmt: skip
    paths = write_outputs(work, rows, config)
    logger.info("table written to %s\n%s", paths["table_md"], format_table(rows))
    return paths


if __name__ == "__main__":
    main()
