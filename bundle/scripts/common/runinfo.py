"""Run records: what configuration, packages, seed and data a training or inference run used."""

from __future__ import annotations

import ast
import datetime
import glob
import json
import logging
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from .checkpoint import file_sha256
from .distributed import is_main_process

__all__ = [
    "PACKAGES",
    "environment",
    "cli_config",
    "record_run",
    "check_guidance_order",
    "read_dataset_summary",
    "training_spacing",
    "write_dataset_summary",
    "check_image_size",
    "training_overlays",
    "report_outputs",
    "FreshStartLogFilter",
    "word_fresh_engine_starts",
]

logger = logging.getLogger(__name__)

#: packages whose installed versions every run record and experiment record lists (``None`` when not installed).
PACKAGES = (
    "torch", "monai", "pytorch-ignite", "numpy", "scipy", "nibabel", "itk-io", "pydicom", "pillow", "pandas",
    "scikit-image", "torch-fidelity",
)  # fmt: skip
_BUNDLE_ROOT = Path(__file__).resolve().parents[2]
#: ids whose resolved values (paths, device) are recorded besides the raw merged config; they are cheap, side-effect
#: free expressions (``$@bundle_root + '/models'``), unlike e.g. ``datalist``, which would prepare the data again.
_RESOLVED_IDS = (
    "bundle_root", "ckpt_dir", "output_dir", "cache_dir", "dataset_dir", "tb_dir", "input_dir", "synthetic_dir",
    "guider_path", "generator_path", "ckpt_path", "device",
)  # fmt: skip


def environment(packages: Sequence[str] = PACKAGES) -> dict:
    """What a result depends on besides its config: Python, platform, package versions and the bundle's git commit.

    Returns:
        ``{"python": "3.11.7", "platform": ..., "packages": {name: version or None}, "git_commit": sha or None}``
        (``git_commit`` is None outside a git checkout or without ``git``).
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_BUNDLE_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "git_commit": commit or None}  # fmt: skip


def cli_config(argv: Sequence[str] | None = None) -> dict:
    """The merged config of a ``python -m monai.bundle run`` command line, with its ``--id value`` overrides.

    Reads ``--config_file`` (one file or a list) with MONAI ``ConfigParser.load_config_files`` and applies every
    other ``--key value`` pair as an override, as ``monai.bundle run`` does. Returns ``{}`` when there is no
    ``--config_file`` (e.g. a run started from Python).
    """
    from monai.bundle import ConfigParser

    args = list(sys.argv[1:] if argv is None else argv)
    pairs: dict[str, str] = {}
    i = 0
    while i < len(args):
        if args[i].startswith("--") and i + 1 < len(args):
            pairs[args[i][2:]] = args[i + 1]
            i += 2
        else:
            i += 1
    files = pairs.pop("config_file", None)
    if files is None:
        return {}
    files = ast.literal_eval(files) if files.strip().startswith("[") else files
    config = ConfigParser.load_config_files(files)
    for key in ("meta_file", "logging_file", "args_file", "init_id", "run_id", "final_id", "tracking"):
        pairs.pop(key, None)
    parser = ConfigParser(config)
    for key, value in pairs.items():
        try:
            parser[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parser[key] = value
    return parser.get()


def _resolve_paths(config: dict) -> dict:
    """Values of ``_RESOLVED_IDS`` present in ``config``, evaluated by MONAI ``ConfigParser`` (failures skipped)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(config)
    out = {}
    for key in _RESOLVED_IDS:
        if key in config:
            try:
                out[key] = parser.get_parsed_content(key)
            except Exception as e:  # noqa: BLE001 - a record must never stop the run
                out[key] = f"<not resolved: {e}>"
    return out


def record_run(
    run_dir: str, workflow: str, seed: int, extra: dict | None = None, checkpoints: Sequence[str] = ()
) -> str:
    """Write ``<run_dir>/runs/<UTC time>_<workflow>.json``: what the run used.

    Fields: ``workflow``, ``seed``, ``argv``, ``cwd``, ``python``, ``platform``, ``packages`` and ``git_commit``
    (:func:`environment`),
    ``config`` (the merged config files with the command-line overrides applied, as ``monai.bundle run`` resolves
    it; ``{}`` when not started by ``monai.bundle run``), ``resolved`` (the resolved paths and device),
    ``checkpoints`` (``{path: sha256}`` of each existing file in ``checkpoints``) and ``extra``'s keys.

    Returns:
        The path written (a new file each run, opened with mode ``"x"``; earlier records are kept); ``""`` on ranks
        other than 0 of a ``torchrun`` run, where rank 0 alone records it.
    """
    if not is_main_process():
        return ""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = os.path.join(run_dir, "runs", f"{stamp}_{workflow}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    config = cli_config()
    record = {
        "workflow": workflow,
        "seed": seed,
        "argv": sys.argv,
        "cwd": os.getcwd(),
        **environment(),
        "config": config,
        "resolved": _resolve_paths(config),
        "checkpoints": {str(p): file_sha256(p) for p in checkpoints if os.path.isfile(p)},
        **(extra or {}),
    }
    with open(path, "x", encoding="utf-8") as f:
        json.dump(record, f, indent=2, default=str)
    logger.info(f"run record written to {path}")
    return path


def report_outputs(
    folder: str, names: Sequence[str], workflow: str, pattern: str | Sequence[str] | None = None
) -> list[str]:
    """Log, as a workflow's last line, what it wrote where: the number of files matching each glob ``pattern`` that
    matches any (``16 × *_image.nii.gz``), then each of ``names`` found in ``folder``.

    Returns:
        The paths of ``names`` found (rank 0 alone logs them in a ``torchrun`` run).
    """
    import glob

    found = [os.path.join(folder, n) for n in names if os.path.exists(os.path.join(folder, n))]
    patterns = [pattern] if isinstance(pattern, str) else list(pattern or ())
    counts = [(len(glob.glob(os.path.join(folder, pat))), pat) for pat in patterns]
    parts = [f"{n} × {pat}" for n, pat in counts if n] + [os.path.basename(p) for p in found]
    if is_main_process():
        logger.info("%s finished: wrote %s in %s", workflow, ", ".join(parts) or "nothing", os.path.abspath(folder))
    return found


class FreshStartLogFilter(logging.Filter):
    """Words ignite's ``Engine run resuming from iteration 0, epoch E until M epochs`` as the fresh start it is.

    MONAI's engines set ``state.max_epochs`` when they are built, which ignite's ``Engine.run`` reads as a run to
    resume, so every fresh training (and every validation round) announced a resume. Iteration 0 means nothing ran
    yet; a real resume (iteration > 0) keeps ignite's wording. The bundle's own line says where a stage resumes from.
    """

    _PATTERN = re.compile(r"Engine run resuming from iteration 0, epoch (\d+) until (\d+) epochs")

    def filter(self, record: logging.LogRecord) -> bool:
        match = self._PATTERN.fullmatch(record.getMessage())
        if match:
            done, until = int(match[1]), int(match[2])
            if record.name.endswith("Evaluator"):
                record.msg = f"Engine run starting (evaluation {until})" if done else "Engine run starting"
            else:
                record.msg = f"Engine run starting: epochs {done + 1} to {until}"
            record.args = ()
        return True


#: the loggers of MONAI's engines (ignite names an engine's logger after its module and class).
_ENGINE_LOGGERS = ("ignite.engine.engine.SupervisedTrainer", "ignite.engine.engine.SupervisedEvaluator")


def word_fresh_engine_starts() -> None:
    """Install :class:`FreshStartLogFilter` on the loggers of MONAI's ``SupervisedTrainer`` and
    ``SupervisedEvaluator`` (once per process; called at the start of the workflows that run engines)."""
    for name in _ENGINE_LOGGERS:
        engine_logger = logging.getLogger(name)
        if not any(isinstance(f, FreshStartLogFilter) for f in engine_logger.filters):
            engine_logger.addFilter(FreshStartLogFilter())


def training_spacing(ckpt_dir: str, default: float = 1.0) -> list[float]:
    """(row, column) pixel spacing in mm of the training slices, read from ``<ckpt_dir>/dataset.json``.

    Falls back to ``[default, default]`` (1 mm) when training recorded none (e.g. JPEG inputs without spacing).
    """
    path = os.path.join(ckpt_dir, "dataset.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            spacing = json.load(f).get("spacing_mm")
        if spacing:
            return [float(s) for s in spacing]
    return [float(default), float(default)]


def write_dataset_summary(ckpt_dir: str, datalist: dict, filename: str = "dataset.json") -> str:
    """Write ``<ckpt_dir>/<filename>``: counts, spacing, image size, the preparation settings, cache folder and the
    patients of each split.

    ``image_size`` (from ``datalist["params"]``) lets inference and later training runs refuse weights trained at
    another size (:func:`check_image_size`): conv weights alone load at any size. ``params`` (every preparation
    setting: ``crop_mode``, ``window_percentiles``, ...) and ``spacing_mm`` (median mm per network pixel) let
    inference on raw images repeat the training's preprocessing (:func:`read_dataset_summary`). The segmenter writes
    ``seg_preparation.json``, so that it can share a ``ckpt_dir`` with the diffusion networks. In a ``torchrun``
    run rank 0 alone writes it (the path is returned on every rank).
    """
    path = os.path.join(ckpt_dir, filename)
    if not is_main_process():
        return path
    summary = {
        "image_size": (datalist.get("params") or {}).get("image_size"),
        "spacing_mm": datalist.get("spacing_mm"),
        "params": datalist.get("params"),
        "cache": datalist.get("cache"),
        "counts": datalist.get("counts"),
        "train_patients": sorted({d.get("patient_id") for d in datalist.get("train", [])}),
        "validation_patients": sorted({d.get("patient_id") for d in datalist.get("validation", [])}),
        "num_train_slices": len(datalist.get("train", [])),
        "num_validation_slices": len(datalist.get("validation", [])),
    }
    os.makedirs(ckpt_dir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    os.replace(tmp, path)
    return path


def read_dataset_summary(ckpt_dir: str, filename: str = "dataset.json") -> dict | None:
    """The summary :func:`write_dataset_summary` wrote into ``ckpt_dir``, or ``None`` when there is none."""
    path = os.path.join(ckpt_dir, filename)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_image_size(ckpt_dir: str, image_size: int, files: Sequence[str]) -> None:
    """Refuse weights trained at another image size than the configured ``image_size``.

    U-Net weights do not depend on the image size, so ``load_state_dict`` accepts a 64-px guider in a 512-px run
    and sampling would silently work at a size the networks never saw. Training records the size in
    ``<ckpt_dir>/dataset.json`` (:func:`write_dataset_summary`); this compares it. Nothing is checked when no file of
    ``files`` exists (nothing trained yet) or when ``dataset.json`` records no size (older runs).

    Args:
        ckpt_dir: the folder with ``dataset.json`` and the weights.
        image_size: the configured side in pixels.
        files: the weights / resume checkpoints that would be used (named in the message).

    Raises:
        ValueError: names the existing weight file, ``dataset.json``, both sizes and the option to change.
    """
    existing = [f for f in files if os.path.isfile(f)]
    path = os.path.join(ckpt_dir, "dataset.json")
    if not existing or not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        trained = json.load(f).get("image_size")
    if trained is not None and int(trained) != int(image_size):
        overlays, record = training_overlays(ckpt_dir)
        if overlays:  # the overlay sets the image size and the network sizes together: --image_size alone would not
            listed = ", ".join(f"'configs/{o}'" for o in overlays)
            raise ValueError(
                f"{existing[0]} was trained at image_size {trained} with the overlay {listed} (see {record}); this run "
                f"is configured for {image_size}: add {listed} at the end of --config_file (it also sets the network "
                f"sizes), or use another --ckpt_dir to train at {image_size}"
            )
        raise ValueError(
            f"{existing[0]} was trained at image_size {trained} (see {path}), this run is configured for "
            f"{image_size}: pass --image_size {trained} (and the training's network sizes), or use another "
            f"--ckpt_dir to train at {image_size}"
        )


def check_guidance_order(ckpt_dir: str, guidance_order: str) -> None:
    """Refuse to sample with another ``guidance_order`` than the networks in ``ckpt_dir`` were trained with.

    The two orders use the two weight files in swapped roles (``scripts.pig.PairedDDIMInferer``), so a mismatch gives
    wrong pairs without any error. Reads the newest ``<ckpt_dir>/runs/*_training.json`` (:func:`record_run`); without
    a record (weights from elsewhere) nothing is checked.

    Raises:
        ValueError: the record says another order; the message names the record and the option to set.
    """
    records = sorted(glob.glob(os.path.join(ckpt_dir, "runs", "*_training.json")))
    if not records:
        return
    with open(records[-1], encoding="utf-8") as f:
        config = json.load(f).get("config") or {}
    trained = config.get("guidance_order", "mask_first")
    if trained != guidance_order:
        raise ValueError(
            f"{ckpt_dir} was trained with guidance_order {trained!r} (see {records[-1]}), not {guidance_order!r}: "
            f"sample with --guidance_order {trained}"
        )


def training_overlays(ckpt_dir: str) -> tuple[list[str], str | None]:
    """The overlay config files (``demo.json``, ``smoke.json``, your own: every ``--config_file`` entry that is not a
    layer or workflow file of the bundle) of the newest training run record in ``<ckpt_dir>/runs/``, by file name,
    and that record's path; ``([], None)`` without a record or overlays."""
    import ast
    import glob

    from .configs import WORKFLOW_CONFIGS

    records = sorted(glob.glob(os.path.join(ckpt_dir, "runs", "*_training*.json")))
    if not records:
        return [], None
    try:
        with open(records[-1], encoding="utf-8") as f:
            argv = json.load(f).get("argv") or []
        files = argv[argv.index("--config_file") + 1]
        files = ast.literal_eval(files) if files.startswith("[") else [files]
    except (OSError, ValueError, IndexError, SyntaxError, AttributeError):
        return [], records[-1]
    known = {name for names in WORKFLOW_CONFIGS.values() for name in names}
    return [os.path.basename(f) for f in files if os.path.basename(f) not in known], records[-1]
