"""Shared pytest fixtures: put the bundle root on ``sys.path`` (as ``monai.bundle run`` does), locate shared data."""

import os
import sys
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs on pytest-xdist workers (``-n 2`` in pyproject.toml), one per core: one torch thread each, set
    # before torch is imported and inherited by the bundle runs they start, so two workers never share a core.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_ROOT = REPO_ROOT / "bundle"
SHARED_DATA = Path(os.environ.get("PIG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
DUKE_DIR = SHARED_DATA / "duke_dbt_slices"

if str(BUNDLE_ROOT) not in sys.path:
    sys.path.insert(0, str(BUNDLE_ROOT))


@pytest.fixture(scope="session")
def duke_dir() -> Path:
    """The Duke BCS-DBT slice folder; in CI (``CI`` set) its absence is a failure, elsewhere a skip."""
    if not (DUKE_DIR / "annotations.csv").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"shared Duke data missing at {DUKE_DIR}: CI must run beside ../shared/data")
        pytest.skip(f"shared Duke data not found at {DUKE_DIR}")
    return DUKE_DIR


@pytest.fixture(scope="session")
def duke_cache(tmp_path_factory, duke_dir) -> Path:
    """One prepared-slice cache of the Duke slices for the whole session: workflows run with the same smoke data
    settings share its folder (``prepare_dataset`` reuses a finished key), so the slices are prepared once."""
    return tmp_path_factory.mktemp("duke_cache")
