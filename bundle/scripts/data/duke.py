"""Loader for the Duke BCS-DBT box-table layout: ``annotations.csv`` + ``images/*.jpg``, one JPEG slice per row group.

Layout (see ``shared/data/duke_dbt_slices/PROVENANCE.md``): each CSV row is one radiologist's box on one exported
DBT slice. Required columns are ``file, PatientID, View, X, Y, Width, Height, AD``; ``Class, Slice, VolumeSlices,
StudyUID, image_width, image_height`` are used when present. ``file`` is relative to the CSV's folder (or absolute).
``X, Y`` is the top-left corner and ``Width, Height`` the size of the box, in pixels of the JPEG (x = column,
y = row). ``AD`` is 1 for an architectural distortion, 0 for a mass.

Masks. Duke released boxes, not outlines. Each mass box is turned into the filled ellipse inscribed in it, and the
boxes of one file are united. **An ellipse in a radiologist's box only approximates the lesion outline**: it is
too large for irregular or spiculated lesions, misses spicules that leave the box, and the boxes are drawn
loosely. Treat Dice/IoU against these masks as approximate.

Architectural distortions (AD) are neither masses nor lesion-free tissue, so by default:

- a file whose boxes are all AD is skipped (the count is logged);
- a file with both mass and AD boxes is kept and only its mass boxes are drawn (the AD region stays 0 in
  the mask although it is not normal tissue);
- with ``include_architectural_distortion=True`` AD boxes are drawn like masses and no file is skipped.

Images. The JPEGs are 8-bit with three identical channels (a window/level-rescaled DICOM slice saved through
matplotlib), read as gray float32 in 0..255. They carry **no pixel spacing**, so cases get spacing
``(1.0, 1.0, 1.0)`` (unknown, not mm). Laterality is **not** normalised: right views (``View`` starting with
``r``) show the breast on the right of the image; ``Case.breast_side`` says so and the common pipeline flips image
and mask together later.

The input folder is only read, never written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .case import Case, DataError

__all__ = ["REQUIRED_COLUMNS", "ellipse_mask", "load_duke_cases", "read_box_table"]

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("file", "PatientID", "View", "X", "Y", "Width", "Height", "AD")
_BOX_COLUMNS = ("X", "Y", "Width", "Height")
# Columns that describe the image, not the box: all rows of one file must agree on them.
_IMAGE_ID_COLUMNS = ("PatientID", "View", "StudyUID", "Slice", "image_width", "image_height")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def read_box_table(csv_path: str | Path) -> pd.DataFrame:
    """Read and validate a Duke-style box table.

    Args:
        csv_path: the CSV (``annotations.csv``).

    Returns:
        The table, one row per box, in file order, with ``X, Y, Width, Height`` as float, ``AD`` as int (0/1) and
        an added column ``path`` (absolute :class:`~pathlib.Path` of the image; ``file`` is resolved relative to
        the CSV's folder).

    Raises:
        DataError: naming the CSV (and the row number, 2-based as in a spreadsheet, or the file) when the CSV is
            missing/unreadable/empty, a required column is missing, a box value is non-numeric, negative or a size
            is zero, a box leaves the image (checked against ``image_width``/``image_height`` when present), ``AD``
            is not 0/1, ``file``/``PatientID``/``View`` is empty, a listed file does not exist, or one ``file`` is
            listed with different ``PatientID``/``View`` (or ``StudyUID``/``Slice``/image size) — the same id for
            two different images.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: box table not found")
    try:
        table = pd.read_csv(csv_path, dtype={"file": str, "PatientID": str, "View": str, "StudyUID": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{csv_path}: cannot read box table: {err}") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{csv_path}: missing required column(s) {missing}; required: {list(REQUIRED_COLUMNS)}")
    if table.empty:
        raise DataError(f"{csv_path}: box table has no rows")

    def row_error(idx: int, problem: str) -> DataError:
        return DataError(f"{csv_path}, row {idx + 2} (file {table.at[idx, 'file']!r}): {problem}")

    for col in ("file", "PatientID", "View"):
        for idx in table.index[table[col].isna() | (table[col].astype(str).str.strip() == "")]:
            raise row_error(idx, f"empty {col}")
        table[col] = table[col].astype(str).str.strip()

    numeric_cols = [*_BOX_COLUMNS, "AD"] + [c for c in ("image_width", "image_height") if c in table.columns]
    for col in numeric_cols:
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.astype(float))
        for idx in table.index[bad]:
            raise row_error(idx, f"{col}={table.at[idx, col]!r} is not a number")
        table[col] = values.astype(float)
    for idx in table.index[(table["X"] < 0) | (table["Y"] < 0)]:
        x, y = table.at[idx, "X"], table.at[idx, "Y"]
        raise row_error(idx, f"box corner X={x}, Y={y} is negative (outside the image)")
    for idx in table.index[(table["Width"] <= 0) | (table["Height"] <= 0)]:
        raise row_error(idx, f"box size Width={table.at[idx, 'Width']}, Height={table.at[idx, 'Height']} must be > 0")
    for idx in table.index[~table["AD"].isin([0, 1])]:
        raise row_error(idx, f"AD={table.at[idx, 'AD']} must be 0 (mass) or 1 (architectural distortion)")
    table["AD"] = table["AD"].astype(int)
    if "image_width" in table.columns and "image_height" in table.columns:
        for idx in table.index[(table["image_width"] <= 0) | (table["image_height"] <= 0)]:
            raise row_error(idx, "image_width/image_height must be > 0")
        outside = (table["X"] + table["Width"] > table["image_width"]) | (
            table["Y"] + table["Height"] > table["image_height"]
        )
        for idx in table.index[outside]:
            r = table.loc[idx]
            raise row_error(
                idx,
                f"box X={r.X}, Y={r.Y}, Width={r.Width}, Height={r.Height} extends outside the "
                f"{r.image_width:g}x{r.image_height:g} (W x H) image",
            )

    for file, rows in table.groupby("file", sort=False):
        for col in _IMAGE_ID_COLUMNS:
            if col in rows.columns and rows[col].nunique(dropna=False) > 1:
                raise DataError(
                    f"{csv_path}, rows {[i + 2 for i in rows.index]}: file {file!r} is listed with different {col} "
                    f"{sorted(map(str, rows[col].unique()))} (same id for two different images)"
                )

    base = csv_path.resolve().parent
    table["path"] = [base / f for f in table["file"]]  # an absolute `file` stays absolute
    for file, path in zip(table["file"].unique(), table.drop_duplicates("file")["path"], strict=True):
        if not path.is_file():
            raise DataError(f"{csv_path}: image file {file!r} not found (looked for {path})")
    return table


def ellipse_mask(shape: tuple[int, int], boxes: Iterable[tuple[float, float, float, float]]) -> np.ndarray:
    """Union of the filled ellipses inscribed in axis-aligned boxes.

    A pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``; it is set when its centre lies in the
    ellipse with centre ``(x + w/2, y + h/2)`` and semi-axes ``w/2, h/2``. So each ellipse has about
    ``pi * w * h / 4`` pixels and lies inside its box's pixels ``[x, x + w) x [y, y + h)`` for integer boxes.

    Args:
        shape: ``(H, W)`` of the mask.
        boxes: ``(x, y, w, h)`` per box in pixels: top-left corner (x = column, y = row) and size.

    Returns:
        ``(H, W)`` uint8 mask in {0, 1}.

    Raises:
        ValueError: a box with non-positive size or not inside ``[0, W] x [0, H]``.
    """
    height, width = shape
    mask = np.zeros((height, width), dtype=np.uint8)
    for box in boxes:
        x, y, w, h = (float(v) for v in box)
        if not (w > 0 and h > 0):
            raise ValueError(f"box {box}: width and height must be > 0")
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise ValueError(f"box {box} is not inside the {width}x{height} (W x H) image")
        r0, r1 = int(np.floor(y)), int(np.ceil(y + h))
        c0, c1 = int(np.floor(x)), int(np.ceil(x + w))
        rows = (np.arange(r0, r1) + 0.5 - (y + h / 2)) / (h / 2)
        cols = (np.arange(c0, c1) + 0.5 - (x + w / 2)) / (w / 2)
        inside = rows[:, None] ** 2 + cols[None, :] ** 2 <= 1.0
        mask[r0:r1, c0:c1] |= inside.astype(np.uint8)
    return mask


def _breast_side(view: str, where: str) -> str:
    first = view.strip().lower()[:1]
    if first == "r":
        return "right"
    if first == "l":
        return "left"
    raise DataError(f"{where}: View {view!r} does not start with 'r' or 'l' (laterality unknown)")


def _read_gray(path: Path, csv_path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            # "L" of three identical channels is that channel (ITU-R 601 weights sum to 1).
            return np.asarray(img.convert("L"), dtype=np.float32)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # truncated/corrupt files
        raise DataError(f"{csv_path}: cannot read image {path} (truncated or corrupt?): {err}") from err


def _optional_int(rows: pd.DataFrame, col: str) -> int | None:
    value = pd.to_numeric(rows[col].iloc[0], errors="coerce") if col in rows.columns else None
    return None if value is None or pd.isna(value) else int(value)


def _joined(values: pd.Series) -> str:
    return "+".join(dict.fromkeys(str(v) for v in values))  # unique, in row order


def load_duke_cases(dataset_dir: str | Path, include_architectural_distortion: bool = False) -> Iterator[Case]:
    """Yield one :class:`Case` per image of a Duke box-table folder, in CSV order.

    Args:
        dataset_dir: folder holding ``annotations.csv`` (and the images it lists). Only read.
        include_architectural_distortion: draw AD boxes like masses (and keep AD-only files) instead of skipping
            AD-only files and leaving AD boxes out of the mask.

    Yields:
        Case with ``image`` ``(1, H, W)`` float32 gray values in 0..255, ``label`` ``(1, H, W)`` uint8 {0, 1}
        (ellipses inscribed in the drawn boxes, united), ``spacing`` ``(1.0, 1.0, 1.0)`` (the JPEGs give none),
        ``case_id`` the file-system-safe file stem, ``patient_id`` = ``PatientID``, ``breast_side`` from the
        view's first letter, ``source`` the JPEG path, ``lossy_mask`` False (masks are drawn, not decoded) and
        ``meta`` = ``view, class, slice, volume_slices, study_uid, ad`` (any AD box on the file), ``n_mass_boxes``,
        ``n_ad_boxes`` (absent columns give ``None``).

    Raises:
        DataError: everything :func:`read_box_table` raises (checked on the first ``next()``, before any case); a view
            without laterality; two files with the same safe case id; and, while iterating, an unreadable image,
            an image whose size differs from ``image_width``/``image_height``, or a box outside the real image.
    """
    dataset_dir = Path(dataset_dir)
    csv_path = dataset_dir / "annotations.csv"
    if not dataset_dir.is_dir():
        raise DataError(f"{dataset_dir}: Duke data folder not found")
    table = read_box_table(csv_path)

    groups = list(table.groupby("file", sort=False))
    seen_ids: dict[str, str] = {}
    for file, rows in groups:
        _breast_side(rows["View"].iloc[0], f"{csv_path}, file {file!r}")
        case_id = _UNSAFE.sub("_", Path(file).stem)
        if case_id in seen_ids:
            raise DataError(f"{csv_path}: files {seen_ids[case_id]!r} and {file!r} give the same case id {case_id!r}")
        seen_ids[case_id] = file

    skipped = 0
    for file, rows in groups:
        drawn = rows if include_architectural_distortion else rows[rows["AD"] == 0]
        if drawn.empty:
            skipped += 1
            continue
        first = rows.iloc[0]
        path = first["path"]
        image = _read_gray(path, csv_path)
        height, width = image.shape
        if "image_width" in rows.columns and "image_height" in rows.columns:
            if (first["image_width"], first["image_height"]) != (width, height):
                raise DataError(
                    f"{csv_path}, file {file!r}: image is {width}x{height} (W x H) but the table says "
                    f"{first['image_width']:g}x{first['image_height']:g}"
                )
        for idx, r in rows.iterrows():
            if r.X + r.Width > width or r.Y + r.Height > height:
                raise DataError(
                    f"{csv_path}, row {idx + 2} (file {file!r}): box X={r.X}, Y={r.Y}, Width={r.Width}, "
                    f"Height={r.Height} extends outside the {width}x{height} (W x H) image"
                )
        label = ellipse_mask((height, width), drawn[list(_BOX_COLUMNS)].to_numpy())

        def opt(col: str, rows=rows):
            return _joined(rows[col]) if col in rows.columns else None

        slice_index = _optional_int(rows, "Slice")
        volume_slices = _optional_int(rows, "VolumeSlices")
        yield Case(
            case_id=_UNSAFE.sub("_", Path(file).stem),
            patient_id=str(first["PatientID"]),
            image=image[None],
            label=label[None],
            spacing=(1.0, 1.0, 1.0),
            breast_side=_breast_side(first["View"], f"{csv_path}, file {file!r}"),
            source=str(path),
            lossy_mask=False,
            meta={
                "view": str(first["View"]),
                "class": opt("Class"),
                "slice": slice_index,
                "volume_slices": volume_slices,
                "study_uid": opt("StudyUID"),
                "ad": bool((rows["AD"] == 1).any()),
                "n_mass_boxes": int((rows["AD"] == 0).sum()),
                "n_ad_boxes": int((rows["AD"] == 1).sum()),
            },
        )
    if skipped:
        log.warning(
            "%s: skipped %d file(s) whose boxes are all architectural distortions "
            "(include_architectural_distortion=False)",
            csv_path,
            skipped,
        )
