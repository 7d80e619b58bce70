"""scripts.common.launch: both launchers give a run its own process, cwd, environment, exit code and output files."""

import json
import os
import subprocess

import pytest
from helpers import TESTS

from scripts.common.launch import LAUNCHERS, run_module


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_run_sees_its_cwd_argv_environment_and_threads(tmp_path, launcher):
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "PROBE_MARKER": "m1",
           "PYTHONWARNINGS": "ignore"}  # fmt: skip
    out = tmp_path / "out.txt"
    code = run_module("launch_probe", ["a b", "--x"], cwd=tmp_path, stdout=out, env=env, launcher=launcher)
    seen = json.loads(out.read_text().strip().splitlines()[-1])
    assert code == 0
    assert seen == {"cwd": str(tmp_path), "argv": ["a b", "--x"], "threads": 1, "marker": "m1",
                    "ignore_warnings": True}  # fmt: skip


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_exit_codes_and_tracebacks_come_back(tmp_path, launcher):
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    assert run_module("launch_probe", ["--exit3"], tmp_path, out, err, env=env, launcher=launcher) == 3
    assert run_module("launch_probe", ["--fail"], tmp_path, out, err, env=env, launcher=launcher) == 1
    assert "RuntimeError: probe failed on purpose" in err.read_text()
    assert out.read_text().count('"cwd"') == 2  # appended, never overwritten


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_timeout_kills_the_run_and_unknown_launchers_are_refused(tmp_path, launcher):
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    with pytest.raises(subprocess.TimeoutExpired):
        run_module("launch_probe", ["--sleep"], tmp_path, tmp_path / "o", env=env, launcher=launcher, timeout=3)
    with pytest.raises(ValueError, match="launcher must be one of"):
        run_module("launch_probe", [], tmp_path, tmp_path / "o", launcher="thread")
