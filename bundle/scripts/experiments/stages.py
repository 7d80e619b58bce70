"""Resumable experiment stages: each stage is one ``python -m monai.bundle run`` process of the bundle's configs.

A stage is complete when ``<stage_dir>/stage_complete.json`` exists (written last, atomically; it holds the SHA-256
of the stage's overlay, its wall time and its command). Complete stages are skipped; a marker written for another
overlay is an error. Used by :mod:`scripts.experiments.seg_grid` and :mod:`scripts.experiments.compare_generators`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from scripts.common.configs import BUNDLE_ROOT, merged_config
from scripts.common.launch import LAUNCHERS, run_module

__all__ = [
    "BUNDLE_ROOT",
    "MARKER",
    "OVERLAY",
    "json_dict",
    "absolute",
    "check_runner_options",
    "add_launcher_option",
    "resolve_config",
    "write_json",
    "overlay_hash",
    "run_stage",
    "free_names",
]

logger = logging.getLogger("experiments")

MARKER = "stage_complete.json"
OVERLAY = "grid_overlay.json"


def json_dict(text: str) -> dict:
    """``argparse`` type of the runners' ``--*_overrides`` options: a JSON object of config id → value.

    Raises:
        argparse.ArgumentTypeError: the text is JSON but not an object.
        json.JSONDecodeError: the text is not JSON.
    """
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of id -> value, got {text!r}")
    return value


def add_launcher_option(parser: argparse.ArgumentParser) -> None:
    """The runners' ``--launcher`` option (:mod:`scripts.common.launch`): how each stage's process starts."""
    parser.add_argument(
        "--launcher", choices=LAUNCHERS, default="subprocess",
        help="subprocess: a new interpreter per stage; forkserver: a fork of a server that imported torch, MONAI and "
        "the bundle once (saves the start-up, several seconds per stage; not on Windows)",
    )  # fmt: skip


def absolute(path: str | None) -> str | None:
    """``path`` resolved to an absolute path (stages run from ``bundle/``), ``None`` kept."""
    return str(Path(path).resolve()) if path else None


def check_runner_options(parser: argparse.ArgumentParser, args: argparse.Namespace, runner_ids: Sequence[str]) -> None:
    """The runners' shared option checks: ``--overrides`` may not set an id the runner sets (``parser.error``), and
    ``--fid_extractor`` defaults to ``seg_unet_encoder`` with ``--seg_model_path``, else the sanity-only
    ``random_resnet18_seed0``.

    Raises:
        SystemExit: ``--overrides`` sets one of ``runner_ids``.
    """
    owned = sorted(set(args.overrides) & set(runner_ids))
    if owned:
        parser.error(f"--overrides may not set {owned}: the runner sets them (use its options)")
    if args.fid_extractor is None:
        args.fid_extractor = "seg_unet_encoder" if args.seg_model_path else "random_resnet18_seed0"


def resolve_config(
    workflow: str, overlays: Sequence[str], overrides: Mapping[str, object], ids: Sequence[str]
) -> dict:
    """Values of ``ids`` in ``workflow``'s merged configs + ``overlays`` + ``overrides`` (as ``monai.bundle run``
    would merge them; ``scripts.common.configs.merged_config``).

    Raises:
        KeyError: an id is missing from the merged config, or an unknown ``workflow``.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser(merged_config(workflow, overlays, overrides))
    return {i: parser.get_parsed_content(i) for i in ids}


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (``.tmp`` + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def overlay_hash(files: Sequence[str], overlay: dict, workflow: str) -> str:
    """SHA-256 of a stage's config file list, overlay and run id: what its completion marker must match."""
    blob = json.dumps({"files": list(files), "overlay": overlay, "workflow": workflow}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_stage(
    name: str, stage_dir: Path, log_path: Path, workflow: str, meta: str, files: Sequence[str], overlay: dict,
    resume_in_place: bool = False, launcher: str = "subprocess",
) -> dict:  # fmt: skip
    """Run one ``monai.bundle run <workflow>`` stage unless ``<stage_dir>/stage_complete.json`` says it is done.

    Writes ``<stage_dir>/grid_overlay.json`` (``overlay``, the last config file), the subprocess output into
    ``log_path``, then the marker ``{"stage", "overlay_sha256", "seconds", "finished"}``.

    Args:
        name: stage name for logs (``fold0/pig``).
        stage_dir: the stage's output folder.
        workflow: run id (``training``, ``inference``, ``evaluating``).
        meta: metadata file; files: config files before the overlay.
        overlay: ids → values set by the runner.
        resume_in_place: keep an unfinished ``stage_dir`` (the workflow resumes); else it is renamed aside.
        launcher: how the stage's process starts (``scripts.common.launch.run_module``).

    Returns:
        The marker content.

    Raises:
        ValueError: the marker (or, resuming in place, the unfinished stage's overlay) was written for another
            overlay (settings changed since the work dir was made).
        RuntimeError: the workflow failed (message names the log file and ends with its tail).
    """
    marker = stage_dir / MARKER
    digest = overlay_hash(files, overlay, workflow)
    if marker.is_file():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("overlay_sha256") != digest:
            raise ValueError(
                f"{marker}: stage {name} was completed with other settings (overlay hash {done.get('overlay_sha256')},"
                f" now {digest}); use a new --work_dir or delete {stage_dir}"
            )
        logger.info("stage %s: complete (%s), skipping", name, marker)
        return done
    overlay_path = stage_dir / OVERLAY
    if resume_in_place and overlay_path.is_file():
        before = json.loads(overlay_path.read_text(encoding="utf-8"))
        if json.dumps(before, sort_keys=True, default=str) != json.dumps(overlay, sort_keys=True, default=str):
            raise ValueError(
                f"{overlay_path}: unfinished stage {name} was started with other settings; it cannot resume with "
                f"these. Use a new --work_dir or delete {stage_dir}"
            )
    if stage_dir.exists() and any(stage_dir.iterdir()) and not resume_in_place:
        aside = stage_dir.with_name(f"{stage_dir.name}.incomplete-{datetime.now():%Y%m%d-%H%M%S-%f}")
        logger.warning("stage %s: unfinished %s moved to %s", name, stage_dir, aside)
        stage_dir.rename(aside)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json(overlay_path, overlay)
    config_files = [*files, str(overlay_path)]
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", workflow, "--meta_file", meta,
        "--config_file", repr(config_files), "--logging_file", str(BUNDLE_ROOT / "configs" / "logging.conf"),
    ]  # fmt: skip
    logger.info("stage %s: running (log %s)", name, log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n# {datetime.now().isoformat()} {shlex.join(cmd)}\n")
    returncode = run_module("monai.bundle", cmd[3:], cwd=BUNDLE_ROOT, stdout=log_path, launcher=launcher)
    seconds = round(time.monotonic() - start, 1)
    if returncode != 0:
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-40:])
        raise RuntimeError(f"stage {name} failed (exit {returncode}); see {log_path}:\n{tail}")
    done = {"stage": name, "workflow": workflow, "overlay_sha256": digest, "seconds": seconds,
            "finished": datetime.now().isoformat(), "command": cmd}  # fmt: skip
    write_json(marker, done)
    logger.info("stage %s: done in %.1f s", name, seconds)
    return done


def free_names(work_dir: Path, names: Sequence[str]) -> list[Path]:
    """``work_dir/<name>`` for each of ``names``, or ``<stem>_<timestamp><suffix>`` for all when the first exists.

    Results are never overwritten: a second run of a finished experiment writes a new set beside the first.
    """
    if not (work_dir / names[0]).exists():
        return [work_dir / n for n in names]
    while True:
        ts = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        paths = [work_dir / f"{Path(n).stem}_{ts}{Path(n).suffix}" for n in names]
        if not any(p.exists() for p in paths):
            return paths
