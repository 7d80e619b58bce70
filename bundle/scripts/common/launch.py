"""Run ``python -m <module> ...`` command lines (``monai.bundle run``, the experiment runners) in a process of
their own.

Two launchers, the same process boundary (own exit code, own output files, a crash or SIGKILL ends only that run):

* ``"subprocess"`` — a new interpreter (``subprocess.run([sys.executable, "-m", module, *args])``);
* ``"forkserver"`` — a fork of a server process that imported torch, MONAI and the bundle's ``scripts`` once
  (:mod:`multiprocessing`'s forkserver with preloaded modules). Importing that stack costs several seconds of CPU per
  interpreter (about 9 s on this project's 2-core machines), which dominates short runs; a fork skips it. The server
  never runs a tensor operation or touches CUDA, so its children start as clean as a new interpreter. Not available
  on Windows.

The child gets ``cwd``, ``env`` (``OMP_NUM_THREADS``, ``PYTHONPATH`` and a simple ``PYTHONWARNINGS`` action are
applied as a new interpreter would apply them at start-up) and ``sys.argv = [module, *args]``, then runs the module as
``__main__`` (:func:`runpy.run_module`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence

__all__ = ["LAUNCHERS", "PRELOAD", "run_module"]

LAUNCHERS = ("subprocess", "forkserver")
#: what the forkserver imports once, before it forks a child per run.
PRELOAD = ("torch", "ignite", "monai", "monai.bundle", "fire", "nibabel", "scripts")

_context: multiprocessing.context.BaseContext | None = None


def _forkserver() -> multiprocessing.context.BaseContext:
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        _context = ctx
    return _context


def _child(module: str, args: Sequence[str], cwd: str, env: Mapping[str, str], stdout: str, stderr: str) -> None:
    """Body of a forked run: redirect fds 1 and 2, apply the start-up environment, run ``module`` as ``__main__``."""
    for fd, path in ((1, stdout), (2, stderr)):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, fd)
        os.close(out)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # line-buffered: a kill loses no line
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    if env.get("PYTHONPATH"):
        sys.path[:0] = [p for p in env["PYTHONPATH"].split(os.pathsep) if p]
    if env.get("PYTHONWARNINGS") in ("ignore", "default", "error", "always", "module", "once"):
        warnings.simplefilter(env["PYTHONWARNINGS"])
    if env.get("OMP_NUM_THREADS"):  # read by the OpenMP runtime when torch was imported (in the server): apply it
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except Exception:  # as the interpreter ends an uncaught error: through sys.excepthook, exit code 1
        sys.excepthook(*sys.exc_info())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While a run is in flight, make SIGTERM raise ``SystemExit(143)`` here instead of ending this process at once,
    so that the run is killed with it (``kill <runner pid>`` would otherwise leave the stage running, and a restarted
    runner would redo it beside the orphan). Only in the main thread, and only where SIGTERM has its default action."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_module(
    module: str,
    args: Sequence[str],
    cwd: str | os.PathLike,
    stdout: str | os.PathLike,
    stderr: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    launcher: str = "subprocess",
    timeout: float | None = None,
) -> int:
    """Run ``python -m module *args`` in ``cwd`` with its output appended to files; return its exit code.

    Args:
        module: e.g. ``"monai.bundle"``.
        args: the command line after ``-m module`` (``["run", "training", "--meta_file", ...]``).
        cwd: working directory of the run.
        stdout, stderr: files the run's output is appended to (``stderr`` defaults to ``stdout``).
        env: the run's environment (default: this process's).
        launcher: one of :data:`LAUNCHERS`.
        timeout: seconds before the run is killed (``None``: no limit).

    Returns:
        The exit code: 0 on success, 1 for an uncaught exception, ``-N`` for a run ended by signal N. When this
        process gets SIGTERM (or Ctrl-C) while the run is in flight, the run is killed first and ``SystemExit``
        (``KeyboardInterrupt``) propagates.

    Raises:
        ValueError: unknown ``launcher``.
        subprocess.TimeoutExpired: the run took longer than ``timeout`` (it was killed).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    env = dict(os.environ if env is None else env)
    stderr = stdout if stderr is None else stderr
    if launcher == "subprocess":
        with (open(stdout, "a", encoding="utf-8") as out, open(stderr, "a", encoding="utf-8") as err,
              _sigterm_as_exit()):  # fmt: skip
            cmd = [sys.executable, "-m", module, *map(str, args)]
            # subprocess.run kills the child on any exception, SystemExit and KeyboardInterrupt included
            return subprocess.run(cmd, cwd=cwd, stdout=out, stderr=err, env=env, timeout=timeout).returncode
    proc = _forkserver().Process(
        target=_child, args=(module, [str(a) for a in args], str(cwd), env, str(stdout), str(stderr))
    )
    with _sigterm_as_exit():
        proc.start()
        try:
            proc.join(timeout)
        except BaseException:
            proc.kill()
            proc.join()
            raise
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise subprocess.TimeoutExpired([module, *map(str, args)], timeout)
    return proc.exitcode
