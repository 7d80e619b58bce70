"""Make ``pydicom-seg`` 0.4.1 importable under pydicom 3, which MONAI Label 0.8.5 imports at start-up.

pydicom 3 removed ``pydicom._storage_sopclass_uids`` (its storage SOP class UIDs now live in ``pydicom.uid``), and
``pydicom_seg/reader.py`` still imports ``SegmentationStorage`` from there, so ``monailabel start_server`` stops with
``ModuleNotFoundError: No module named 'pydicom._storage_sopclass_uids'`` (MONAILabel issue #1841, pydicom-seg issue
#60; the upstream fix, MONAILabel PR #1879, is in no release yet). This module answers that one import with
``pydicom.uid``. It must be in place before ``monailabel.app`` is imported, in the server process and in the
background train / scoring processes it starts, hence a ``.pth`` start-up hook in the environment:

    python apps/monailabel/lib/pydicom3_compat.py install     # once per environment, after pip install

The hook costs nothing at start-up: the alias is a meta-path finder consulted only when that module name is imported
and no real module of that name exists (pydicom 2 keeps its own). ``PIG_NO_PYDICOM3_ALIAS=1`` turns it off.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path

__all__ = ["OLD_MODULE", "install", "install_hook", "remove_hook"]

#: the module pydicom 3 removed and pydicom-seg 0.4.1 still imports.
OLD_MODULE = "pydicom._storage_sopclass_uids"
#: the names the start-up hook has in ``site-packages``.
_HOOK_MODULE = "pig_pydicom3_compat"
_PTH = "pig_pydicom3_compat.pth"


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import pydicom._storage_sopclass_uids`` → the ``pydicom.uid`` module (last on ``sys.meta_path``)."""

    def find_spec(self, name, path=None, target=None):
        if name != OLD_MODULE:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        import pydicom.uid

        return pydicom.uid

    def exec_module(self, module) -> None:
        pass


def install() -> bool:
    """Put the alias on ``sys.meta_path`` in this process (idempotent). Returns whether it is active."""
    if os.environ.get("PIG_NO_PYDICOM3_ALIAS") == "1":
        return False
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())  # last: a real module of that name (pydicom 2) is found first
    return True


def install_hook(site_packages: str | None = None) -> Path:
    """Install the start-up hook into ``site_packages`` (default: this interpreter's): a copy of this module as
    ``pig_pydicom3_compat.py`` and ``pig_pydicom3_compat.pth`` that imports it. Replaces an older copy.

    Returns:
        The ``.pth`` path.
    """
    target = Path(site_packages or sysconfig.get_paths()["purelib"])
    shutil.copyfile(__file__, target / f"{_HOOK_MODULE}.py")
    pth = target / _PTH
    pth.write_text(f"import {_HOOK_MODULE}; {_HOOK_MODULE}.install()\n", encoding="utf-8")
    return pth


def remove_hook(site_packages: str | None = None) -> None:
    """Remove what :func:`install_hook` wrote (missing files are ignored)."""
    target = Path(site_packages or sysconfig.get_paths()["purelib"])
    for name in (_PTH, f"{_HOOK_MODULE}.py"):
        (target / name).unlink(missing_ok=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        print(f"installed the pydicom 3 alias for pydicom-seg: {install_hook()}")
    elif sys.argv[1:] == ["remove"]:
        remove_hook()
        print("removed the pydicom 3 alias hook")
    else:
        sys.exit(f"usage: python {sys.argv[0]} install|remove")
