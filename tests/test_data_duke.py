"""Duke BCS-DBT box-table loader: real folder (``duke_dir``) plus tiny synthetic tables for every error case."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from scripts.data.case import DataError
from scripts.data.duke import REQUIRED_COLUMNS, ellipse_mask, load_duke_cases, read_box_table

IMG_W, IMG_H = 64, 48


def _write_jpeg(path: Path, width: int = IMG_W, height: int = IMG_H) -> np.ndarray:
    """Gray ramp saved like the Duke export: 8-bit JPEG, three identical channels."""
    gray = np.tile(np.linspace(20, 230, width, dtype=np.uint8), (height, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(path, quality=95)
    return gray


def _row(file="images/a.jpg", pid="P1", view="rcc", x=10, y=8, w=20, h=16, ad=0, **extra) -> dict:
    return {"file": file, "PatientID": pid, "View": view, "X": x, "Y": y, "Width": w, "Height": h, "AD": ad, **extra}


def _make_folder(root: Path, rows: list[dict], images: tuple[str, ...] = ("images/a.jpg",)) -> Path:
    for name in images:
        _write_jpeg(root / name)
    pd.DataFrame(rows).to_csv(root / "annotations.csv", index=False)
    return root


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# ---------------------------------------------------------------- ellipse_mask


@pytest.mark.parametrize(("w", "h"), [(20, 16), (31, 9), (64, 55), (218, 105), (93, 85), (12, 40)])
def test_ellipse_area_matches_pi_a_b(w, h):
    """Pixel count of the inscribed ellipse vs pi*a*b: within 3 % + 3 px (lattice-point error ~ perimeter)."""
    mask = ellipse_mask((h + 10, w + 7), [(3, 5, w, h)])
    expected = math.pi * (w / 2) * (h / 2)
    assert abs(int(mask.sum()) - expected) <= 0.03 * expected + 3


@pytest.mark.parametrize("box", [(3, 5, 20, 16), (0, 0, 64, 48), (40, 30, 24, 18), (7, 2, 1, 1), (10, 11, 33, 7)])
def test_ellipse_inside_its_box_and_inscribed(box):
    x, y, w, h = box
    mask = ellipse_mask((IMG_H, IMG_W), [box])
    rows, cols = np.nonzero(mask)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert rows.min() >= y and rows.max() <= y + h - 1
    assert cols.min() >= x and cols.max() <= x + w - 1
    # inscribed: it reaches all four sides of the box
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (y, y + h - 1, x, x + w - 1)


def test_ellipse_union_of_boxes():
    a, b = (2, 2, 20, 14), (30, 20, 16, 20)
    both = ellipse_mask((IMG_H, IMG_W), [a, b])
    np.testing.assert_array_equal(both, ellipse_mask((IMG_H, IMG_W), [a]) | ellipse_mask((IMG_H, IMG_W), [b]))
    assert both.max() == 1


@pytest.mark.parametrize("box", [(-1, 0, 5, 5), (60, 0, 5, 5), (0, 45, 5, 5), (0, 0, 0, 5), (0, 0, 5, -2)])
def test_ellipse_rejects_bad_box(box):
    with pytest.raises(ValueError):
        ellipse_mask((IMG_H, IMG_W), [box])


# ---------------------------------------------------------------- synthetic tables: valid


def test_two_boxes_on_one_file_are_united(tmp_path):
    boxes = [(4, 4, 20, 16), (36, 20, 24, 20)]
    rows = [_row(x=x, y=y, w=w, h=h) for x, y, w, h in boxes]
    (case,) = load_duke_cases(_make_folder(tmp_path, rows))
    assert case.image.shape == case.label.shape == (1, IMG_H, IMG_W)
    np.testing.assert_array_equal(case.label[0], ellipse_mask((IMG_H, IMG_W), boxes))
    assert case.label[0, 14, 14] == 1 and case.label[0, 30, 48] == 1  # both centres
    assert case.meta["n_mass_boxes"] == 2


def test_case_fields(tmp_path):
    folder = _make_folder(tmp_path, [_row(file="images/my scan#1.jpg", pid="P7", view="lmlo", Class="cancer")], ())
    gray = _write_jpeg(folder / "images/my scan#1.jpg")
    (case,) = load_duke_cases(folder)
    assert case.case_id == "my_scan_1"
    assert case.patient_id == "P7"
    assert case.breast_side == "left"
    assert case.spacing == (1.0, 1.0, 1.0)
    assert case.lossy_mask is False
    assert Path(case.source) == (folder / "images/my scan#1.jpg").resolve()
    assert case.meta["view"] == "lmlo" and case.meta["class"] == "cancer" and case.meta["ad"] is False
    assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
    assert np.abs(case.image[0] - gray).max() <= 4  # gray read, JPEG loss only


@pytest.mark.parametrize(("view", "side"), [("rcc", "right"), ("RMLO1", "right"), ("lcc2", "left"), ("lmlo", "left")])
def test_breast_side_from_view(tmp_path, view, side):
    (case,) = load_duke_cases(_make_folder(tmp_path, [_row(view=view)]))
    assert case.breast_side == side


def test_ad_only_file_skipped_and_logged(tmp_path, caplog):
    rows = [_row(file="images/a.jpg"), _row(file="images/ad.jpg", ad=1), _row(file="images/ad.jpg", ad=1, x=30)]
    folder = _make_folder(tmp_path, rows, ("images/a.jpg", "images/ad.jpg"))
    with caplog.at_level(logging.INFO, logger="scripts.data.duke"):
        cases = list(load_duke_cases(folder))
    assert [c.case_id for c in cases] == ["a"]
    assert "skipped 1 file" in caplog.text
    with_ad = list(load_duke_cases(folder, include_architectural_distortion=True))
    assert [c.case_id for c in with_ad] == ["a", "ad"]
    assert with_ad[1].label.sum() > 0 and with_ad[1].meta["ad"] is True


def test_mixed_file_masks_only_the_mass(tmp_path):
    mass, ad = (4, 4, 20, 16), (36, 20, 24, 20)
    rows = [_row(x=mass[0], y=mass[1], w=mass[2], h=mass[3]), _row(x=ad[0], y=ad[1], w=ad[2], h=ad[3], ad=1)]
    folder = _make_folder(tmp_path, rows)
    (case,) = load_duke_cases(folder)
    np.testing.assert_array_equal(case.label[0], ellipse_mask((IMG_H, IMG_W), [mass]))
    assert case.meta["ad"] is True and case.meta["n_ad_boxes"] == 1
    (case,) = load_duke_cases(folder, include_architectural_distortion=True)
    np.testing.assert_array_equal(case.label[0], ellipse_mask((IMG_H, IMG_W), [mass, ad]))


def test_input_folder_not_written(tmp_path):
    folder = _make_folder(tmp_path, [_row(), _row(x=30)])
    before = _snapshot(folder)
    list(load_duke_cases(folder))
    list(load_duke_cases(folder, include_architectural_distortion=True))
    assert _snapshot(folder) == before


# ---------------------------------------------------------------- synthetic tables: errors


def _expect_error(folder: Path, *fragments: str) -> DataError:
    with pytest.raises(DataError) as info:
        list(load_duke_cases(folder))
    message = str(info.value)
    assert "annotations.csv" in message
    for fragment in fragments:
        assert fragment in message
    return info.value


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_missing_column(tmp_path, column):
    row = _row()
    del row[column]
    _expect_error(_make_folder(tmp_path, [row]), "missing required column", column)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [("Width", -5, "must be > 0"), ("Height", 0, "must be > 0"), ("X", "abc", "not a number"), ("AD", 2, "AD=")],
)
def test_bad_box_values(tmp_path, field, value, fragment):
    rows = [_row(), _row(**{field: value})]
    _expect_error(_make_folder(tmp_path, rows), "row 3", fragment)


def test_negative_corner(tmp_path):
    _expect_error(_make_folder(tmp_path, [_row(x=-3)]), "row 2", "negative")


def test_box_outside_real_image(tmp_path):
    _expect_error(_make_folder(tmp_path, [_row(x=50, w=20)]), "row 2", "outside", f"{IMG_W}x{IMG_H}")


def test_box_outside_image_size_columns(tmp_path):
    rows = [_row(y=40, h=20, image_width=IMG_W, image_height=IMG_H)]
    with pytest.raises(DataError, match="row 2.*outside"):
        read_box_table(_make_folder(tmp_path, rows) / "annotations.csv")


def test_image_size_columns_disagree_with_image(tmp_path):
    rows = [_row(image_width=IMG_W + 1, image_height=IMG_H)]
    _expect_error(_make_folder(tmp_path, rows), "a.jpg", "table says")


def test_missing_file(tmp_path):
    rows = [_row(), _row(file="images/gone.jpg")]
    _expect_error(_make_folder(tmp_path, rows), "gone.jpg", "not found")


@pytest.mark.parametrize(("field", "value"), [("pid", "P2"), ("view", "rmlo")])
def test_same_file_two_identities(tmp_path, field, value):
    rows = [_row(), _row(x=30, **{field: value})]
    _expect_error(_make_folder(tmp_path, rows), "a.jpg", "same id for two different images")


def test_view_without_laterality(tmp_path):
    _expect_error(_make_folder(tmp_path, [_row(view="cc")]), "laterality")


def test_missing_table(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list(load_duke_cases(tmp_path))


# ---------------------------------------------------------------- the real folder


@pytest.fixture(scope="module")
def real_cases(duke_dir):
    before = _snapshot(duke_dir)
    cases = list(load_duke_cases(duke_dir, include_architectural_distortion=True))
    assert _snapshot(duke_dir) == before, "the loader wrote under the data folder"
    return cases


def test_real_counts(duke_dir, real_cases):
    table = read_box_table(duke_dir / "annotations.csv")
    n_files = table["file"].nunique()
    n_mass_files = table.loc[table["AD"] == 0, "file"].nunique()
    assert len(real_cases) == n_files
    assert len(list(load_duke_cases(duke_dir))) == n_mass_files
    assert len({c.case_id for c in real_cases}) == n_files
    # PROVENANCE.md: 96 slices, 58 with masses, 43 patients (checks the copy is the one documented)
    assert (n_files, n_mass_files, table["PatientID"].nunique()) == (96, 58, 43)


def test_real_cases_well_formed(duke_dir, real_cases):
    table = read_box_table(duke_dir / "annotations.csv")
    by_file = {Path(f).stem: rows for f, rows in table.groupby("file")}
    for case in real_cases:
        rows = by_file[case.case_id]
        _, h, w = case.image.shape
        assert case.image.shape[0] == 1 and (w, h) == (rows["image_width"].iloc[0], rows["image_height"].iloc[0])
        assert case.image.dtype == np.float32 and 0 <= case.image.min() and case.image.max() <= 255
        assert set(np.unique(case.label)) == {0, 1}
        assert case.spacing == (1.0, 1.0, 1.0) and case.lossy_mask is False and Path(case.source).is_file()
        assert case.breast_side == ("right" if case.meta["view"].startswith("r") else "left")
        boxes = rows[["X", "Y", "Width", "Height"]].to_numpy()
        area = sum(math.pi * bw * bh / 4 for _, _, bw, bh in boxes)
        assert int(case.label.sum()) <= area * 1.02 + 3  # union <= sum, all boxes drawn
        assert int(case.label.sum()) >= max(math.pi * bw * bh / 4 for _, _, bw, bh in boxes) * 0.98


def test_real_breast_on_the_stated_side(real_cases):
    """The JPEGs are not laterality-normalised: the breast (bright) really lies on ``breast_side``."""
    sides = set()
    for case in real_cases:
        w = case.image.shape[2]
        left, right = case.image[0, :, : w // 2].mean(), case.image[0, :, w // 2 :].mean()
        assert (right > left) == (case.breast_side == "right"), case.source
        sides.add(case.breast_side)
    assert sides == {"left", "right"}


def test_real_two_boxes_on_one_slice(real_cases):
    """DBT-P01826: two mass boxes on one slice (PROVENANCE.md) give one case with both ellipses."""
    multi = [c for c in real_cases if c.meta["n_mass_boxes"] == 2]
    assert len(multi) == 1 and multi[0].patient_id == "DBT-P01826"


@pytest.mark.skipif(os.name != "posix", reason="permission bits")
def test_real_folder_read_only_input(tmp_path, duke_dir):
    """Loading from a read-only copy works (nothing is cached next to the data)."""
    table = pd.read_csv(duke_dir / "annotations.csv").head(3)
    for f in table["file"]:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes((duke_dir / f).read_bytes())
    table.to_csv(tmp_path / "annotations.csv", index=False)
    for p in [*tmp_path.rglob("*"), tmp_path]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert len(list(load_duke_cases(tmp_path, include_architectural_distortion=True))) >= 1
    finally:
        for p in [tmp_path, *tmp_path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_a_view_that_contradicts_the_pixels_is_logged_and_the_pixels_side_used(tmp_path, caplog):
    """A breast on the right half only; a View saying left must not leave it there."""
    from scripts.data.prepare import prepare_dataset

    folder = _make_folder(tmp_path / "duke", [_row(view="lcc", x=40)])
    gray = np.full((IMG_H, IMG_W), 10, np.uint8)
    gray[:, IMG_W // 2 :] = np.random.default_rng(0).integers(150, 220, (IMG_H, IMG_W - IMG_W // 2))  # textured
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(folder / "images" / "a.jpg", quality=95)
    with caplog.at_level(logging.WARNING):
        result = prepare_dataset(str(folder), str(tmp_path / "cache"), 16, val_fraction=0)
    (item,) = result["train"]
    assert item["flipped"]  # moved to the left, as the pixels require
    assert "recorded breast side 'left' disagrees with the pixels (breast on the right" in caplog.text
    assert "a.jpg" in caplog.text
