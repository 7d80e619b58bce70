"""Segmentation grid {real only, + PIG at several ratios, + other generators} over patient folds (paper Table 2).

Run from ``bundle/``::

    python -m scripts.experiments.seg_grid --work_dir runs/grid --folds 0,1,2 --num_folds 3 --ratios 0.3,0.6

Optional rows, for PIG and each ``--extra_generator``: ``--synthetic_only 1`` (``PIG only ×1``: trained on
``round(1 × n_real_train)`` PIG pairs alone, ``use_real_train`` false, tested on the real held-out patients) and
``--gate_ratios 0.3`` (``+ PIG ×0.3, gate k=3``: the same number of pairs, taken from those the quality gate
``synthetic_max_components`` keeps; ``--gate_max_components 1,3`` gives a row per k); and ``--seed_controls 1,2``
(``real only, seed 1``: the real-only training with another segmentation seed, the size of a difference that
training randomness alone makes).

Every stage is a ``python -m monai.bundle run`` subprocess of the bundle's own configs; the runner only writes a
JSON overlay per stage (``<stage_dir>/grid_overlay.json``, the last ``config_file``) with the ids it sets. Stages, per
fold ``k`` (``F = <work_dir>/fold{k}``):

1. PIG training (``train.json``) → ``F/pig/`` (its ``ckpt_dir``: ``guider.pt``, ``generator.pt``, ``dataset.json``).
   The ``datalist`` id is replaced by the fold's **training patients'** items of :func:`scripts.seg.folds.fold_split`
   (its ``train`` plus inner ``validation`` items; the held-out ``test`` fold never reaches PIG) with an empty PIG
   validation list (PIG then skips validation).
2. PIG sampling (``inference.json``) of ``ceil(max ratio × n_real_train)`` pairs → ``F/samples/`` (``manifest.csv``);
   each ratio ``r`` uses the first ``round(r × n_real_train)`` rows (``scripts.seg.synthetic.synthetic_items``);
   ``n_real_train`` counts the segmentation ``train`` items (inner validation excluded).
3. Segmentation training (``seg_train.json``) per setting → ``F/seg_<setting>/`` (``seg_model.pt``, ``folds.json``);
   the checkpoint is selected on the inner validation patients (``inner_val_fraction`` of the seg config).
4. Evaluation of the held-out fold (``seg_evaluate.json``, ``split['test']``) → ``F/seg_<setting>/eval/metrics.json``.

A stage is complete when its ``<stage_dir>/stage_complete.json`` exists (written last, atomically; it holds the
SHA-256 of the stage's overlay, its wall time and what it produced). Complete stages are skipped; a marker whose
overlay hash differs from the current one is an error (the work dir was made with other settings). An unfinished
PIG training is resumed in place (``train.json`` resumes from its checkpoints); other unfinished stage folders are
renamed ``<dir>.incomplete-<timestamp>`` and redone. Logs: ``F/logs/<stage>.log``.

Finally (5) ``<work_dir>/table.md``, ``table.csv``, ``config.json`` (command line, overlays, overrides, package
versions, per fold the patients PIG saw and the SHA-256 of its weights, per-fold metrics, what each setting trained
on and the gate's drops) and ``dice_vs_ratio.png`` (mean and per-fold Dice against the synthetic ratio). Each row's
Dice difference to real only is paired per held-out image, with a 95 % interval from resampling the held-out
patients within each fold (``scripts.experiments.grid_stats``; three folds alone are too few for a bootstrap). Tables
are never overwritten: when ``table.md`` exists, the files are written as ``table_<timestamp>.md`` and so on.

The segmentation data are prepared with the PIG config's data ids (:data:`DATA_IDS`: size, crop, selection,
phantom), so real slices and generated pairs share size and crop and both configs see the same patients; an explicit
``--seg_overrides`` value of a data id that differs from PIG's is an error.
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
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from scripts.common.checkpoint import file_sha256
from scripts.common.configs import config_files, data_ids, meta_file
from scripts.common.runinfo import environment
from scripts.common.writer import read_manifest
from scripts.data.prepare import prepare_dataset
from scripts.experiments.grid_stats import paired_patient_interval, per_image_by_patient, plot_dice_vs_ratio
from scripts.experiments.stages import (
    BUNDLE_ROOT,
    MARKER,
    add_launcher_option,
    free_names,
    json_dict,
    resolve_config,
    run_stage,
    write_json,
)
from scripts.seg.folds import fold_split
from scripts.seg.metrics import METRICS
from scripts.seg.synthetic import SYNTHETIC_HINT, quality_gate

__all__ = [
    "DATA_IDS",
    "Setting",
    "parse_args",
    "resolve_config",
    "pig_fold_datalist",
    "run_stage",
    "summarise_folds",
    "format_table",
    "main",
]

logger = logging.getLogger("seg_grid")

#: the data layer's slice-pipeline ids (``configs/data.json``), shared by ``train.json`` and ``seg_train.json``; the seg
#: runs get PIG's values.
DATA_IDS = data_ids()
DUKE_NOTE = (
    "The Duke reference masks are ellipses inscribed in the radiologists' bounding boxes, not lesion outlines, so "
    "these Dice/IoU values measure agreement with box-shaped approximations."
)


class Setting:
    """One row of the table: real only (``generator=None``) or + ``generator`` pairs at ``ratio`` per real item.

    Args:
        generator: ``None``, ``"PIG"`` or an ``--extra_generator`` name.
        ratio: synthetic pairs per real training item (0 for real only).
        pattern: for extra generators, the folder pattern (``{fold}`` replaced by the fold index).
        real: train on the real items too; ``False`` is the synthetic-only row (``use_real_train`` false: the
            ``round(ratio × n_real)`` pairs alone; the real inner validation patients still select the checkpoint).
        gate: the quality gate's ``synthetic_max_components`` k (``None``: no gate); the gated row takes the same
            number of pairs as the ungated one, from the pairs that pass.
        seed: the segmentation training's ``train_seed`` when it differs from the runner's ``--seed`` (``None``: the
            runner's); a real-only row with another seed is the training-noise control (the same prepared data and
            folds, another initialisation, batch order and augmentation draw).
    """

    def __init__(self, generator: str | None, ratio: float = 0.0, pattern: str | None = None, real: bool = True,
                 gate: int | None = None, seed: int | None = None) -> None:  # fmt: skip
        self.generator, self.ratio, self.pattern, self.real, self.gate = generator, float(ratio), pattern, real, gate
        self.seed = seed

    @property
    def key(self) -> str:
        """Folder-safe id: ``real``, ``real_seed1``, ``<generator>_r<ratio>`` (``pig_r0.5``), ``pig_only_r1`` or
        ``pig_r0.3_gate3``."""
        seed = "" if self.seed is None else f"_seed{self.seed}"
        if self.generator is None:
            return f"real{seed}"
        only = "" if self.real else "_only"
        gate = "" if self.gate is None else f"_gate{self.gate}"
        return f"{self.generator.lower()}{only}_r{self.ratio:g}{gate}{seed}"

    @property
    def label(self) -> str:
        """Row label: ``real only``, ``real only, seed 1``, ``+ PIG ×0.5``, ``PIG only ×1`` or
        ``+ PIG ×0.3, gate k=3``."""
        seed = "" if self.seed is None else f", seed {self.seed}"
        if self.generator is None:
            return f"real only{seed}"
        text = f"+ {self.generator} ×{self.ratio:g}" if self.real else f"{self.generator} only ×{self.ratio:g}"
        return (text if self.gate is None else f"{text}, gate k={self.gate}") + seed

    @property
    def is_reference(self) -> bool:
        """Whether this is the real-only row the differences are taken against."""
        return self.key == "real"


# ---------------------------------------------------------------- command line


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _extra(text: str) -> tuple[str, str]:
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern or not name.replace("_", "").replace("-", "").isalnum():
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER_PATTERN (NAME alphanumeric), got {text!r}")
    return name, pattern


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the runner's command line (see ``--help``).

    Raises:
        SystemExit: invalid options (argparse), fold indices out of range, negative ratios.
    """
    p = argparse.ArgumentParser(
        prog="python -m scripts.experiments.seg_grid",
        description="Segmentation with real / real + generated pairs over patient folds; writes a Table-2-style "
        "mean ± std table (Dice, IoU, precision, recall in %). Run from bundle/.",
    )
    p.add_argument("--work_dir", required=True, help="all stages and the table go here; rerun to resume")
    p.add_argument("--dataset_dir", default=None, help="Duke box table / folder layout; omit for the phantom")
    p.add_argument("--cache_dir", default=str(BUNDLE_ROOT / "cache"), help="prepared slices (default bundle/cache)")
    p.add_argument("--pig_overlay", default="configs/demo.json", help="overlay on train.json/inference.json")
    p.add_argument("--seg_overlay", default=None, help="overlay on seg_train.json (default none = full size)")
    p.add_argument("--pig_overrides", type=json_dict, default={}, help="JSON object id -> value for PIG runs")
    p.add_argument("--seg_overrides", type=json_dict, default={}, help="JSON object id -> value for seg runs")
    p.add_argument("--ratios", type=_floats, default=[0.3, 0.6], help="synthetic pairs per real item, e.g. 0.3,0.6")
    p.add_argument(
        "--extra_generator",
        type=_extra,
        action="append",
        default=[],
        metavar="NAME=FOLDER_PATTERN",
        help="another generator's output folder (manifest.csv layout); may contain {fold}; repeatable",
    )
    p.add_argument("--synthetic_only", type=_floats, default=[], metavar="RATIOS",
                   help="also train on PIG pairs alone (no real items), round(r x n_real) pairs, e.g. 1")
    p.add_argument("--gate_ratios", type=_floats, default=[], metavar="RATIOS",
                   help="also '+ PIG xr' with the quality gate on (same pair count, from the pairs that pass)")
    p.add_argument("--gate_max_components", type=_ints, default=None, metavar="K",
                   help="the gate's synthetic_max_components for --gate_ratios, e.g. 1,3: a row per k (default 3)")
    p.add_argument("--seed_controls", type=_ints, default=[], metavar="SEEDS",
                   help="also 'real only' with these segmentation seeds, e.g. 1,2: the training-noise control")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="B",
                   help="resamples of held-out patients per fold for the paired intervals (default 2000)")
    p.add_argument("--folds", type=_ints, default=None, help="folds to run, e.g. 0,1,2 (default all)")
    p.add_argument("--num_folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="seed of PIG, segmentation, data preparation and folds")
    add_launcher_option(p)
    args = p.parse_args(argv)
    args.folds = list(range(args.num_folds)) if args.folds is None else args.folds
    if args.num_folds < 2 or not args.folds or any(not 0 <= f < args.num_folds for f in args.folds):
        p.error(f"--folds {args.folds} must be non-empty indices in [0, {args.num_folds}) with --num_folds >= 2")
    if any(r < 0 for r in args.ratios):
        p.error(f"--ratios must be >= 0, got {args.ratios}")
    for name in ("synthetic_only", "gate_ratios"):  # 0 would be a row without pairs: refused, not dropped silently
        if any(r <= 0 for r in getattr(args, name)):
            p.error(f"--{name} takes ratios > 0, got {','.join(f'{r:g}' for r in getattr(args, name))} "
                    "(leave the option out for no such row)")
    if args.gate_max_components is not None and not args.gate_ratios:
        p.error("--gate_max_components needs --gate_ratios (the ratios of the gated rows)")
    args.gate_max_components = [3] if args.gate_max_components is None else args.gate_max_components
    if args.seed in args.seed_controls:
        p.error(f"--seed_controls {args.seed_controls} must differ from --seed {args.seed}")
    if not args.gate_max_components or min(args.gate_max_components) < 1:
        p.error(f"--gate_max_components must be >= 1, got {args.gate_max_components}")
    if args.bootstrap < 1:
        p.error(f"--bootstrap must be >= 1, got {args.bootstrap}")
    return args


# ---------------------------------------------------------------- configs


def pig_fold_datalist(datalist: dict, split: dict) -> dict:
    """The PIG ``datalist`` of one fold: only the fold's training patients' items, no PIG validation.

    The segmentation ``train`` and inner ``validation`` items are both the fold's training patients, so PIG trains on
    both; the held-out ``test`` fold never.

    Args:
        datalist: ``prepare_dataset`` output (for ``cache`` and ``counts``).
        split: ``fold_split`` output of the same datalist.

    Returns:
        ``{"train": split["train"] + split["validation"], "validation": [], "spacing_mm": median over the training
        items, "cache", "counts"}``.

    Raises:
        ValueError: a training patient is in the held-out fold (never expected from ``fold_split``).
    """
    held_out = {str(p) for p in split["folds"][split["fold"]]}
    train = list(split["train"]) + list(split["validation"])
    leaked = {str(it["patient_id"]) for it in train} & held_out
    if leaked:
        raise ValueError(f"held-out patients {sorted(leaked)} in the PIG training list of fold {split['fold']}")
    spacing = np.median([it["spacing_mm"] for it in train], axis=0).round(6).tolist() if train else None
    counts = dict(datalist.get("counts") or {}, fold=split["fold"], num_folds=split["num_folds"])
    counts.update(train_items=len(train), validation_items=0)
    return {"train": train, "validation": [], "spacing_mm": spacing, "cache": datalist.get("cache"), "counts": counts}


# ---------------------------------------------------------------- stages


def _pig_record(pig_dir: Path, held_out: set[str]) -> dict:
    """Patients PIG saw (from ``dataset.json``) and its weights' SHA-256; ValueError on a held-out patient."""
    summary_path = pig_dir / "dataset.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} not found: PIG training wrote no dataset summary")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    seen = sorted({str(p) for p in summary["train_patients"]} | {str(p) for p in summary["validation_patients"]})
    if set(seen) & held_out:
        raise ValueError(f"{summary_path}: PIG saw held-out patients {sorted(set(seen) & held_out)}")
    sha = {}
    for name in ("guider.pt", "generator.pt"):
        if not (pig_dir / name).is_file():
            raise FileNotFoundError(f"{pig_dir / name} not found after PIG training")
        sha[name] = file_sha256(str(pig_dir / name))
    return {"ckpt_dir": str(pig_dir), "patients": seen, "num_train_slices": summary["num_train_slices"],
            "sha256": sha}  # fmt: skip


def _seg_data_record(seg_dir: Path) -> dict:
    """What a segmentation training trained on: ``{"train": {"real", "synthetic", "total"}, "quality_gate": report}``.

    ``train`` is ``seg_data.json`` (the counts of the loader's dataset, ``DataCountLogger``); ``quality_gate`` is the
    gate report of the newest run record (``runs/*_seg_training.json``, ``None`` when the gate was off).
    """
    counts_path = seg_dir / "seg_data.json"
    if not counts_path.is_file():
        raise FileNotFoundError(f"{counts_path} not found after segmentation training")
    train = json.loads(counts_path.read_text(encoding="utf-8"))["train"]
    records = sorted((seg_dir / "runs").glob("*_seg_training.json"))
    synthetic = json.loads(records[-1].read_text(encoding="utf-8")).get("synthetic", {}) if records else {}
    return {"train": {k: train[k] for k in ("real", "synthetic", "total")},
            "quality_gate": synthetic.get("quality_gate")}  # fmt: skip


def gate_shortfall(synthetic_dir: Path, setting: Setting, real_items: list[dict]) -> dict | None:
    """Whether the quality gate keeps too few pairs for a gated row; checked before its training is started.

    Runs :func:`scripts.seg.synthetic.quality_gate` (the function the training calls, on the same manifest and the
    fold's real training items) and compares its ``kept`` with the ``round(ratio × n_real)`` pairs the row needs.

    Returns:
        ``None`` when enough pairs pass; otherwise the gate's report with ``"needed"`` added (the row is then left
        out of this fold and the table says so).
    """
    needed = int(round(setting.ratio * len(real_items)))
    _, report = quality_gate(read_manifest(str(synthetic_dir), hint=SYNTHETIC_HINT), setting.gate, real_items)
    return None if report["kept"] >= needed else {**report, "needed": needed}


def run_fold(args: argparse.Namespace, fold: int, settings: list[Setting], ctx: dict) -> dict:
    """Stages 1–4 of one fold; returns ``{"pig": record, "held_out_patients", "metrics": {setting key: means},
    "per_image": {setting key: {patient: [Dice]}}, "seg_data": {setting key: _seg_data_record}, ...}``.

    Raises:
        FileNotFoundError: a missing output (weights, ``metrics.json``, an extra generator's folder).
        ValueError, RuntimeError: see :func:`run_stage`.
    """
    fdir = Path(args.work_dir).resolve() / f"fold{fold}"
    split = fold_split(ctx["datalist"], args.num_folds, fold, args.seed, ctx["seg_common"]["inner_val_fraction"])
    held_out = {str(p) for p in split["folds"][fold]}
    n_real = len(split["train"])
    out: dict = {"held_out_patients": sorted(held_out), "inner_validation_patients": split["validation_patients"],
                 "num_real_train": n_real, "num_inner_validation": len(split["validation"]),
                 "num_held_out": len(split["test"]), "metrics": {}, "stages": {}}  # fmt: skip
    pig_ratios = [s.ratio for s in settings if s.generator == "PIG"]
    if pig_ratios:
        pig_dir = fdir / "pig"
        overlay = {**ctx["pig_common"], "ckpt_dir": str(pig_dir), "datalist": pig_fold_datalist(ctx["datalist"], split)}
        done = run_stage(f"fold{fold}/pig", pig_dir, fdir / "logs" / "pig.log", "training", ctx["pig_meta"],
                         ctx["pig_train_files"], overlay, resume_in_place=True, launcher=args.launcher)  # fmt: skip
        out["stages"]["pig"] = done["seconds"]
        out["pig"] = _pig_record(pig_dir, held_out)
        n_pairs = math.ceil(max(pig_ratios) * n_real)
        if n_pairs > 0:
            sample_dir = fdir / "samples"
            overlay = {**ctx["pig_common"], "ckpt_dir": str(pig_dir), "output_dir": str(sample_dir),
                       "num_samples": n_pairs}  # fmt: skip
            done = run_stage(f"fold{fold}/samples", sample_dir, fdir / "logs" / "samples.log", "inference",
                             ctx["pig_meta"], ctx["pig_infer_files"], overlay, launcher=args.launcher)  # fmt: skip
            out["stages"]["samples"] = done["seconds"]
            out["pig"]["num_samples"] = n_pairs
    for s in settings:
        seg_dir = fdir / f"seg_{s.key}"
        overlay = {**ctx["seg_common"], "ckpt_dir": str(seg_dir), "fold": fold}
        if s.generator is not None and s.ratio > 0:
            synth = fdir / "samples" if s.generator == "PIG" else Path(s.pattern.format(fold=fold)).resolve()
            if not (synth / "manifest.csv").is_file():
                raise FileNotFoundError(f"{synth / 'manifest.csv'} not found ({s.label}, fold {fold})")
            overlay.update(synthetic_dir=str(synth), synthetic_ratio=s.ratio)
            if not s.real:
                overlay["use_real_train"] = False
            if s.gate is not None:
                overlay["synthetic_max_components"] = s.gate
                # a finished stage had its pairs; skip re-reading every mask on reruns
                short = None if (seg_dir / MARKER).is_file() else gate_shortfall(synth, s, split["train"])
                if short is not None:
                    logger.warning("fold %d, %s: left out, the quality gate kept %d of %d pairs, %d needed", fold,
                                   s.label, short["kept"], short["listed"], short["needed"])  # fmt: skip
                    out.setdefault("seg_data", {})[s.key] = {"train": None, "quality_gate": short}
                    continue
        if s.seed is not None:
            overlay["train_seed"] = s.seed  # initialisation, sampling order, augmentation; not the data or the folds
        done = run_stage(f"fold{fold}/seg_{s.key}", seg_dir, fdir / "logs" / f"seg_{s.key}.log", "training",
                         ctx["seg_meta"], ctx["seg_train_files"], overlay, launcher=args.launcher)  # fmt: skip
        out["stages"][f"seg_{s.key}"] = done["seconds"]
        out.setdefault("seg_data", {})[s.key] = _seg_data_record(seg_dir)
        eval_dir = seg_dir / "eval"
        overlay = {**overlay, "output_dir": str(eval_dir)}
        done = run_stage(f"fold{fold}/seg_{s.key}/eval", eval_dir, fdir / "logs" / f"eval_{s.key}.log", "evaluating",
                         ctx["seg_meta"], ctx["seg_eval_files"], overlay, launcher=args.launcher)  # fmt: skip
        out["stages"][f"eval_{s.key}"] = done["seconds"]
        metrics_path = eval_dir / "metrics.json"
        if not metrics_path.is_file():
            raise FileNotFoundError(f"{metrics_path} not found after evaluation")
        result = json.loads(metrics_path.read_text(encoding="utf-8"))
        out["metrics"][s.key] = {m: float(result["mean"][m]) for m in METRICS}
        out.setdefault("per_image", {})[s.key] = per_image_by_patient(result, split["test"], metrics_path)
    return out


# ---------------------------------------------------------------- table


def summarise_folds(per_fold: dict[int, dict[str, dict[str, float]]], settings: Sequence[Setting]) -> list[dict]:
    """Mean and sample standard deviation (ddof = 1) over folds, in %, per setting and metric.

    Args:
        per_fold: ``{fold: {setting key: {metric: value in [0, 1]}}}``.
        settings: rows, in table order.

    Returns:
        Rows ``{"setting", "generator", "ratio", "folds", "<metric>_mean", "<metric>_std"}`` (std NaN for one fold).
    """
    rows = []
    for s in settings:
        folds = sorted(f for f in per_fold if s.key in per_fold[f])
        row = {"setting": s.label, "generator": s.generator or "", "ratio": s.ratio, "folds": len(folds)}
        for m in METRICS:
            values = np.array([100.0 * per_fold[f][s.key][m] for f in folds], dtype=float)
            row[f"{m}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        rows.append(row)
    return rows


def _pm(mean: float, std: float) -> str:
    """``"12.34 ± 5.67"``; ``"12.34 ± –"`` when the std is undefined (one fold); ``"–"`` for no fold."""
    if math.isnan(mean):
        return "–"
    return f"{mean:.2f} ± {'–' if math.isnan(std) else f'{std:.2f}'}"


def add_paired_intervals(rows: list[dict], per_image: Mapping[int, Mapping[str, Mapping]], settings: Sequence[Setting],
                         num_resamples: int, seed: int) -> dict:  # fmt: skip
    """Add ``dice_delta``, ``dice_delta_low``, ``dice_delta_high`` (points) and ``dice_delta_p_le_0`` to each row.

    The difference to real only, paired per held-out image, with the patient-resampled interval of
    :func:`scripts.experiments.grid_stats.paired_patient_interval`; NaN for the real-only row and for a row trained in
    no fold.

    Returns:
        ``{setting key: full interval record (per fold too), None for real only}`` for ``config.json``.
    """
    detail = {}
    for row, s in zip(rows, settings, strict=True):
        trained = any(s.key in d and "real" in d for d in per_image.values())  # a gated row may be left out
        iv = None if s.is_reference or not trained else paired_patient_interval(per_image, s.key, "real",
                                                                               num_resamples, seed)  # fmt: skip
        detail[s.key] = iv
        nan = float("nan")
        row.update(dice_delta=nan if iv is None else iv["delta"], dice_delta_low=nan if iv is None else iv["low"],
                   dice_delta_high=nan if iv is None else iv["high"],
                   dice_delta_p_le_0=nan if iv is None else iv["p_le_0"])  # fmt: skip
    return detail


def _delta(r: Mapping) -> str:
    """``"+1.23 [-0.45, +2.90]"`` (points); ``"–"`` for the real-only row or when no interval was computed."""
    if math.isnan(r.get("dice_delta", float("nan"))):
        return "–"
    return f"{r['dice_delta']:+.2f} [{r['dice_delta_low']:+.2f}, {r['dice_delta_high']:+.2f}]"


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of :func:`summarise_folds` rows: Dice, IoU, precision, recall as ``mean ± std`` (%), and the
    paired Dice difference to real only with its 95 % interval (points) when :func:`add_paired_intervals` ran."""
    head = "| setting | folds | Dice (%) | IoU (%) | precision (%) | recall (%) | Δ Dice vs real only [95 % interval] |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS] + [_delta(r)]
        lines.append(f"| {r['setting']} | {r['folds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_points(rows: Sequence[dict], per_fold: Mapping[int, Mapping[str, Mapping]], settings: Sequence[Setting]):
    """The PIG and real-only settings of the table as :func:`scripts.experiments.grid_stats.plot_dice_vs_ratio` points
    (extra generators stay in the table only)."""
    points = []
    for r, s in zip(rows, settings, strict=True):
        if s.generator not in (None, "PIG") or r["folds"] == 0:
            continue
        kind = ("seed_control" if s.seed is not None else "synthetic_only" if not s.real
                else "gated" if s.gate is not None else "curve")  # fmt: skip
        iv = None if s.is_reference else (r["dice_delta_low"], r["dice_delta_high"])
        fold_dice = {f: 100.0 * m[s.key]["dice"] for f, m in per_fold.items() if s.key in m}
        note = f"k={s.gate}" if s.gate is not None else f"seed {s.seed}" if s.seed is not None else None
        points.append({"label": s.label, "ratio": s.ratio, "kind": kind, "mean": r["dice_mean"],
                       "delta": 0.0 if s.is_reference else r["dice_delta"], "interval": iv,
                       "fold_dice": fold_dice, "note": note})  # fmt: skip
    return points


def _held_out_note(config: Mapping) -> str:
    """The held-out patients per fold, with a warning when a fold has too few for the interval to mean much."""
    counts = [len(d["held_out_patients"]) for d in config["folds_detail"].values()]
    text = "Held-out patients per fold: " + " / ".join(map(str, counts)) + "."
    if counts and min(counts) < 5:
        text += (" With fewer than 5 held-out patients in a fold the intervals rest on very few resampling units "
                 "(one patient: zero width); read them as descriptive only.")  # fmt: skip
    return text


def _gate_text(g: Mapping) -> str:
    """A quality-gate report (``scripts.seg.synthetic.quality_gate``) in words, for the table's notes."""
    lo, hi = g["area_range_px"]
    return (f"gate kept {g['kept']} of {g['listed']}: dropped {g['dropped_empty']} empty, {g['dropped_components']} "
            f"with > {g['max_components']} components, {g['dropped_area']} outside the real area range {lo}–{hi} px")


def _data_notes(config: Mapping) -> list[str]:
    """Markdown lines: per fold, what each synthetic-only and gated setting trained on (and the gate's drops)."""
    lines = []
    for st in config["settings"]:
        if st["real"] and st["gate"] is None:
            continue
        parts = []
        for fold, detail in config["folds_detail"].items():
            rec = detail.get("seg_data", {}).get(st["key"])
            if rec is None:
                continue
            t, g = rec["train"], rec["quality_gate"]
            if t is None:  # left out: too few pairs passed the gate
                parts.append(f"fold {fold}: not trained, {g['needed']} pairs needed ({_gate_text(g)})")
            else:
                parts.append(f"fold {fold}: {t['real']} real + {t['synthetic']} synthetic"
                             + (f" ({_gate_text(g)})" if g else ""))  # fmt: skip
        if parts:
            lines.append(f"- {st['label']}: " + "; ".join(parts) + ".")
    return [*lines, ""] if lines else []


def write_outputs(work_dir: Path, rows: list[dict], config: dict, is_duke: bool, points: list[dict]) -> dict[str, str]:
    """Write the Markdown table (with the configuration under it), the CSV, ``config.json`` and the Dice-vs-ratio
    PNG; never overwrites.

    Returns:
        ``{"table_md", "table_csv", "config", "png"}`` → paths written.
    """
    md_path, csv_path, cfg_path, png_path = free_names(work_dir, ("table.md", "table.csv", "config.json",
                                                                  "dice_vs_ratio.png"))  # fmt: skip
    title = (f"held-out Dice over folds {config['folds']} of {config['num_folds']}; intervals: "
             f"{config['bootstrap_resamples']} resamples of held-out patients per fold")  # fmt: skip
    plot_dice_vs_ratio(points, png_path, title)
    write_json(cfg_path, config)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) + [m for m in METRICS])
        w.writeheader()
        for r in rows:
            w.writerow({**r, **{m: _pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS}})
    text = [
        "# Segmentation of the held-out fold: real vs real + generated pairs",
        "",
        f"Mean ± sample std (ddof = 1) over folds {config['folds']} of {config['num_folds']} (patient-wise), "
        "per-image lesion metrics in %. Δ Dice: the paired difference to real only on the same held-out images "
        "(points), 95 % percentile interval from resampling the held-out patients within each fold "
        f"({config['bootstrap_resamples']} resamples; training randomness not included). Plot: `{png_path.name}`.",
        "",
        format_table(rows),
        _held_out_note(config),
        "",
    ]
    text += _data_notes(config)
    if is_duke:
        text += [DUKE_NOTE, ""]
    text += ["## Configuration", "", f"Full record: `{cfg_path.name}`.", "", "```json",
             json.dumps({k: v for k, v in config.items() if k not in ("folds_detail", "rows", "paired_intervals")},
                        indent=1, default=str),
             "```", ""]  # fmt: skip
    tmp = md_path.with_name(md_path.name + ".tmp")
    tmp.write_text("\n".join(text), encoding="utf-8")
    os.replace(tmp, md_path)
    return {"table_md": str(md_path), "table_csv": str(csv_path), "config": str(cfg_path), "png": str(png_path)}


# ---------------------------------------------------------------- main


def _settings(args: argparse.Namespace) -> list[Setting]:
    """Real only, then per generator (PIG, then each ``--extra_generator``) its ratio rows, synthetic-only rows and
    gated rows (every ``--gate_ratios`` value with every ``--gate_max_components`` k)."""
    out = [Setting(None)] + [Setting(None, seed=seed) for seed in args.seed_controls]
    for name, pattern in [("PIG", None), *args.extra_generator]:
        out += [Setting(name, r, pattern) for r in args.ratios if r > 0]
        out += [Setting(name, r, pattern, real=False) for r in args.synthetic_only if r > 0]
        out += [Setting(name, r, pattern, gate=k) for r in args.gate_ratios if r > 0 for k in args.gate_max_components]
    keys = [s.key for s in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate settings {keys}: repeated ratios or generator names")
    return out


def _context(args: argparse.Namespace) -> dict:
    """Config files, shared overlays and the prepared datalist; ValueError when seg data ids contradict PIG's."""
    pig_overlay = [args.pig_overlay] if args.pig_overlay else []
    seg_overlay = [args.seg_overlay] if args.seg_overlay else []
    cache_dir = str(Path(args.cache_dir).resolve())
    dataset_dir = str(Path(args.dataset_dir).resolve()) if args.dataset_dir else None
    pig_common = {**args.pig_overrides, "dataset_dir": dataset_dir, "cache_dir": cache_dir, "seed": args.seed}
    data = resolve_config("train", pig_overlay, pig_common, DATA_IDS)
    for k, v in args.seg_overrides.items():
        if k in data and v != data[k]:
            raise ValueError(f"--seg_overrides {k}={v!r} differs from the PIG config's {data[k]!r}; the segmentation "
                             "data must be prepared as PIG's (set it in --pig_overrides)")  # fmt: skip
    # Pinned in every seg overlay, so the runner's fold_split (PIG datalist, n_real_train) matches the seg runs'.
    inner = resolve_config("seg_train", seg_overlay, args.seg_overrides, ["inner_val_fraction"])
    seg_common = {**args.seg_overrides, **data, "dataset_dir": dataset_dir, "cache_dir": cache_dir,
                  "seed": args.seed, "fold_seed": args.seed, "num_folds": args.num_folds, **inner}  # fmt: skip
    datalist = prepare_dataset(dataset_dir, cache_dir, seed=args.seed, **data)
    return {
        "pig_meta": meta_file("train"),
        "seg_meta": meta_file("seg_train"),
        "pig_train_files": config_files("train", pig_overlay),
        "pig_infer_files": config_files("inference", pig_overlay),
        "seg_train_files": config_files("seg_train", seg_overlay),
        "seg_eval_files": config_files("seg_evaluate", seg_overlay),
        "pig_common": pig_common,
        "seg_common": seg_common,
        "data": data,
        "datalist": datalist,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    """Run the grid (resuming complete stages) and write the table; returns the written paths."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    settings = _settings(args)
    ctx = _context(args)
    start = time.monotonic()
    folds = {f: run_fold(args, f, settings, ctx) for f in args.folds}
    per_fold = {f: d["metrics"] for f, d in folds.items()}
    rows = summarise_folds(per_fold, settings)
    intervals = add_paired_intervals(rows, {f: d["per_image"] for f, d in folds.items()}, settings, args.bootstrap,
                                     args.seed)  # fmt: skip
    fmt = (ctx["datalist"].get("params") or {}).get("format")
    config = {
        "command": shlex.join([sys.executable, "-m", "scripts.experiments.seg_grid", *argv]),
        "cwd": os.getcwd(),
        "work_dir": str(work_dir),
        "dataset_dir": args.dataset_dir,
        "dataset_format": fmt,
        "cache": ctx["datalist"].get("cache"),
        "folds": args.folds,
        "num_folds": args.num_folds,
        "seed": args.seed,
        "ratios": args.ratios,
        "synthetic_only": args.synthetic_only,
        "gate_ratios": args.gate_ratios,
        "gate_max_components": args.gate_max_components,
        "seed_controls": args.seed_controls,
        "bootstrap_resamples": args.bootstrap,
        "paired_intervals": intervals,
        "settings": [
            {"key": s.key, "label": s.label, "generator": s.generator, "ratio": s.ratio, "pattern": s.pattern,
             "real": s.real, "gate": s.gate, "seed": s.seed}
            for s in settings
        ],  # fmt: skip
        "pig_config_files": ctx["pig_train_files"],
        "pig_inference_config_files": ctx["pig_infer_files"],
        "seg_config_files": ctx["seg_train_files"],
        "seg_evaluate_config_files": ctx["seg_eval_files"],
        "pig_overrides": args.pig_overrides,
        "seg_overrides": args.seg_overrides,
        "pig_common_overlay": ctx["pig_common"],
        "seg_common_overlay": ctx["seg_common"],
        "data_ids_from_pig": ctx["data"],
        "versions": environment(),
        "seconds_this_invocation": round(time.monotonic() - start, 1),
        "folds_detail": {str(f): d for f, d in folds.items()},
        "rows": rows,
    }
    paths = write_outputs(work_dir, rows, config, is_duke=fmt == "duke", points=plot_points(rows, per_fold, settings))
    logger.info("table written to %s\n%s", paths["table_md"], format_table(rows))
    return paths


if __name__ == "__main__":
    main()
