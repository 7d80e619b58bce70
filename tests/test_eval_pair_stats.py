"""Pair statistics against hand-computed values."""

import json
import math

import numpy as np
import pytest

from scripts.evaluation.pair_stats import main, pair_statistics, set_summary, training_datalist


def test_pair_statistics_hand_computed():
    image = np.zeros((12, 12))
    mask = np.zeros((12, 12), dtype=np.uint8)
    mask[4:7, 4:7] = 1  # 9 px, one component
    mask[10, 10] = 1  # second component
    image[mask > 0] = 2.0
    s = pair_statistics(image, mask, ring_px=1)
    assert s["area_px"] == 10 and s["components"] == 2 and s["touches_border"] is False  # row/col 10 of 0..11
    assert s["contrast"] == 2.0  # inside 2, ring 0
    assert s["eccentricity"] == 0.0  # the largest component is a 3 x 3 square: equal second moments
    assert math.isclose(s["contrast_std_units"], 2.0 / image.std())


def test_empty_mask_gives_nan_contrast_and_counts_as_empty():
    s = pair_statistics(np.random.default_rng(0).random((8, 8)), np.zeros((8, 8)))
    assert s["area_px"] == 0 and s["components"] == 0 and math.isnan(s["contrast"])
    summary = set_summary([s, {"area_px": 4, "components": 1, "contrast": 1.0, "contrast_std_units": 2.0}])
    assert summary["empty_mask_fraction"] == 0.5 and summary["contrast_mean"] == 1.0 and summary["area_px_mean"] == 2.0


@pytest.mark.parametrize("where", [(0, 5), (11, 5), (5, 0), (5, 11)], ids=["top", "bottom", "left", "right"])
def test_a_mask_on_any_edge_touches_the_border(where):
    mask = np.zeros((12, 12), dtype=np.uint8)
    mask[4:7, 4:7] = 1
    assert pair_statistics(np.zeros((12, 12)), mask)["touches_border"] is False
    mask[where] = 1
    assert pair_statistics(np.zeros((12, 12)), mask)["touches_border"] is True


def test_summary_medians_and_border_share():
    stats = [
        {"area_px": a, "components": c, "contrast": 0.1, "contrast_std_units": 1.0, "touches_border": b}
        for a, c, b in [(10, 1, False), (20, 3, True), (600, 3, True), (30, 1, False)]
    ]
    s = set_summary(stats)
    assert s["area_px_median"] == 25.0 and s["area_px_mean"] == 165.0  # median of 10, 20, 30, 600
    assert s["components_median"] == 2.0 and s["touches_border_fraction"] == 0.5


def test_ckpt_dir_names_the_training_datalist(tmp_path, capsys):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "datalist.json").write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="no training record"):
        training_datalist(str(run))
    (run / "dataset.json").write_text(json.dumps({"cache": str(tmp_path / "cache")}))
    assert training_datalist(str(run)) == str(tmp_path / "cache" / "datalist.json")
    (tmp_path / "cache" / "datalist.json").unlink()
    with pytest.raises(FileNotFoundError, match="are gone"):
        training_datalist(str(run))
    # on the command line: argparse's one-line error, last, exit status 2
    with pytest.raises(SystemExit) as exc:
        main(["--ckpt_dir", str(tmp_path / "nowhere"), "--generated", str(tmp_path)])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m scripts.evaluation.pair_stats: error: ") and "no training record" in last


@pytest.mark.parametrize("module", ["scripts.evaluation.pair_stats", "scripts.seg.score"])
def test_command_line_modules_start_without_runpy_warnings(module):
    """A package that imports its command-line module makes ``python -m`` warn that it was imported twice."""
    import subprocess
    import sys

    from helpers import BUNDLE

    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=BUNDLE, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "found in sys.modules" not in proc.stderr  # runpy's RuntimeWarning
