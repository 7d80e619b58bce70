"""How the tests run the bundle: ``python -m monai.bundle run`` of a workflow's configs, and its merged config parser.

The config file lists come from ``scripts.common.configs`` (the layers, then the workflow's file), so the tests run
exactly what the documented commands run. Overlays default to the tiny ones: ``smoke.json`` for the generator bundle,
``seg_smoke.json`` for the segmenter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from monai.bundle import ConfigParser

from scripts.common.configs import config_files, meta_file

TESTS = Path(__file__).resolve().parent
BUNDLE = TESTS.parent / "bundle"
CONFIGS = BUNDLE / "configs"


def smoke_overlay(workflow: str) -> str:
    """The tiny overlay of ``workflow``'s family (``configs/seg_smoke.json`` or ``configs/smoke.json``)."""
    return "configs/seg_smoke.json" if workflow.startswith("seg_") else "configs/smoke.json"


def bundle_command(run_id: str, workflow: str, *args, overlays: Sequence[str] | None = None) -> list[str]:
    """The ``python -m monai.bundle run`` command line of ``workflow`` (+ ``overlays``, default the smoke one)."""
    files = config_files(workflow, [smoke_overlay(workflow)] if overlays is None else list(overlays))
    return [
        sys.executable, "-m", "monai.bundle", "run", run_id, "--meta_file", meta_file(workflow),
        "--config_file", repr(files), "--logging_file", str(CONFIGS / "logging.conf"), *map(str, args),
    ]  # fmt: skip


def bundle_run(
    run_id: str,
    workflow: str,
    *args,
    overlays: Sequence[str] | None = None,
    check: bool = True,
    one_thread: bool = False,
    cwd: Path = BUNDLE,
) -> subprocess.CompletedProcess:
    """Run ``workflow``'s ``run_id`` in a subprocess from ``bundle/`` as a user does; ``tests/`` on PYTHONPATH (for
    the test-only handlers of ``reliability_helpers``).

    Args:
        one_thread: pin torch to one thread (bit-identical runs need the same thread count).
        check: raise AssertionError with the output's tail when the run fails.
    """
    cmd = bundle_command(run_id, workflow, *args, overlays=overlays)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if one_thread:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def parser(workflow: str, *overlays: str, **overrides) -> ConfigParser:
    """MONAI ``ConfigParser`` of ``workflow``'s configs + ``overlays`` (names in ``configs/``) + ``overrides``."""
    p = ConfigParser()
    p.read_config(config_files(workflow, [f"configs/{o}" for o in overlays]))
    for k, v in overrides.items():
        p[k] = v
    return p
