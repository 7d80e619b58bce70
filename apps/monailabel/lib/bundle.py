"""Where the app finds the PIG bundle, and how it reads one of the bundle's workflows as a single config.

The app runs the bundle's own configs and Python (``bundle/configs``, ``bundle/scripts``); nothing is copied. The
bundle root goes on ``sys.path`` as ``python -m monai.bundle run`` puts it there, so that ``scripts.*`` imports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["BUNDLE_ROOT", "use_bundle", "split_list", "workflow_parser", "resolve_overlays", "run_stamp"]

#: ``<repository>/bundle`` (this file is ``<repository>/apps/monailabel/lib/bundle.py``); ``PIG_BUNDLE`` overrides it.
BUNDLE_ROOT = Path(os.environ.get("PIG_BUNDLE") or Path(__file__).resolve().parents[3] / "bundle")


def use_bundle() -> Path:
    """Put the bundle root first on ``sys.path`` (idempotent) and return it.

    Raises:
        FileNotFoundError: no ``configs/seg.json`` under the bundle root (set ``PIG_BUNDLE``).
    """
    if not (BUNDLE_ROOT / "configs" / "seg.json").is_file():
        raise FileNotFoundError(f"PIG bundle not found at {BUNDLE_ROOT}: set PIG_BUNDLE to the bundle folder")
    if str(BUNDLE_ROOT) not in sys.path:
        sys.path.insert(0, str(BUNDLE_ROOT))
    return BUNDLE_ROOT


def run_stamp() -> str:
    """A folder name for one run: local time plus nanoseconds (``20261204-011500-123456789``), unique per call."""
    import time

    return time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"


def split_list(value: str | Sequence[str] | None) -> list[str]:
    """``"a,b"`` / ``["a", "b"]`` / ``None`` → ``["a", "b"]`` / ``[]`` (``--conf`` values are strings)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s and s.strip()]


def resolve_overlays(conf_value: str | None, ckpt_dir: str, default: Sequence[str] = ()) -> list[str]:
    """The overlay configs of a checkpoint folder: the ``--conf`` value when given, else those of the newest training
    run record in ``<ckpt_dir>/runs/`` (``scripts.common.runinfo.training_overlays``), else ``default``.

    Returns:
        Paths relative to ``bundle/`` (``configs/demo.json``) or absolute.
    """
    use_bundle()
    from scripts.common.runinfo import training_overlays

    given = split_list(conf_value)
    if given:
        return given
    recorded, _ = training_overlays(ckpt_dir)
    if recorded:
        return [f"configs/{name}" if (BUNDLE_ROOT / "configs" / name).is_file() else name for name in recorded]
    return list(default)


def workflow_parser(workflow: str, overlays: Sequence[str] = (), overrides: Mapping[str, object] | None = None):
    """A ``monai.bundle.ConfigParser`` over ``workflow``'s layers + ``overlays`` + ``overrides``, merged as
    ``monai.bundle run`` merges them (``scripts.common.configs.merged_config``); ``bundle_root`` is the bundle.

    Raises:
        KeyError: unknown workflow; FileNotFoundError: a missing overlay.
    """
    use_bundle()
    from monai.bundle import ConfigParser

    from scripts.common.configs import merged_config

    config = merged_config(workflow, overlays, {"bundle_root": str(BUNDLE_ROOT), **(overrides or {})})
    return ConfigParser(config)
