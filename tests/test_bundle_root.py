"""Bundle commands run from any working directory: ``scripts`` is importable and the default folders are the bundle's.

MONAI puts the bundle root on ``sys.path`` only in ``ConfigWorkflow.run()``, and the configs' ``$import`` lines are
evaluated at the first resolved id; a workflow therefore must resolve nothing before ``run`` (no ``initialize`` id),
and ``bundle_root`` is derived from the imported ``scripts`` package, not the working directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import BUNDLE, CONFIGS
from monai.bundle import ConfigParser

from scripts.common.configs import WORKFLOW_CONFIGS, config_files, meta_file


def test_training_runs_from_outside_the_bundle(tmp_path):
    """A new interpreter in an empty folder (not the forkserver, which has ``scripts`` preloaded): the run gets past
    the imports to the first guard, whose message it prints last, and writes nothing into the working folder."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--meta_file",
        meta_file("train"),
        "--config_file",
        json.dumps(config_files("train", ["configs/smoke.json"])),
        "--image_size",
        "250",
    ]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "No module named 'scripts'" not in text
    assert text.strip().splitlines()[-1].startswith("ERROR: image_size 250 does not fit the diffusion U-Nets")
    assert list(cwd.iterdir()) == []


def test_no_workflow_resolves_ids_before_run():
    """An ``initialize`` id would evaluate ``$import scripts`` before MONAI adds the bundle root to ``sys.path``."""
    for name, files in WORKFLOW_CONFIGS.items():
        for f in files:
            assert "initialize" not in json.loads((CONFIGS / f).read_text()), f"{f} ({name})"


def test_bundle_root_is_the_bundle_folder():
    parser = ConfigParser(ConfigParser.load_config_files(config_files("train")))
    assert parser.get_parsed_content("bundle_root") == str(BUNDLE.resolve())
    assert parser.get_parsed_content("ckpt_dir") == str(BUNDLE.resolve() / "models")
