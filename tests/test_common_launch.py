"""scripts.common.launch: both launchers give a run its own process, cwd, environment, exit code and output files."""

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import BUNDLE, TESTS

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


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone); Linux ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_killing_the_runner_kills_its_run(tmp_path, launcher):
    """``kill <runner pid>`` (SIGTERM) while a run is in flight ends the run too, not only the runner."""
    pidfile = tmp_path / "run.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(BUNDLE)]), "PROBE_PIDFILE": str(pidfile)}
    code = ("from scripts.common.launch import run_module; run_module('launch_probe', ['--sleep'], "
            f"{str(tmp_path)!r}, {str(tmp_path / 'o')!r}, launcher={launcher!r})")  # fmt: skip
    runner = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120  # the forkserver imports torch and MONAI first
        while not pidfile.exists():
            assert runner.poll() is None and time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        run_pid = int(pidfile.read_text())
        assert _alive(run_pid)
        runner.terminate()
        assert runner.wait(timeout=30) != 0
        deadline = time.monotonic() + 20
        while _alive(run_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(run_pid), "the run outlived its runner"
    finally:
        runner.kill()
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), 9)
