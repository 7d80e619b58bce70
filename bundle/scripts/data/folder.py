"""Loaders for explicit image/mask pairs: the folder layout ``images/<case>.<ext>`` with ``labels/<case>.<ext>``
(+ optional ``patients.csv``), and a datalist of raw ``{image, label}`` items (:func:`load_datalist_cases`).

* Extensions may differ between an image and its mask (e.g. ``.dcm`` image, ``.nii.gz`` mask); accepted are
  ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``, ``.dcm``, ``.png``, ``.jpg``, ``.jpeg``.
* A single-frame DICOM series is a sub-folder ``images/<case>/`` of ``.dcm`` files; its mask is ``labels/<case>.<ext>``
  or a sub-folder ``labels/<case>/``.
* ``patients.csv`` (columns ``case,patient``) maps cases to patients. A case it does not list whose image is DICOM
  with a Patient ID (0010,0020) belongs to the pseudonym of that ID (:mod:`scripts.data.pseudonym`), so the studies
  of one patient in a PACS export stay on one side of the split; the ID itself (and the Patient Name) never reaches a
  case, the datalist, a log line or an error. Any other case is its own patient.
* Hidden files, ``Thumbs.db`` / ``desktop.ini`` and side files (``.raw``/``.zraw`` next to ``.mhd`` headers,
  ``.txt``, ``.json``, ``.csv``, ``.md``) are ignored (:func:`is_ignored`).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

from .case import Case, DataError
from .dicom import DICOM_EXTENSIONS, dicom_patient_id
from .pseudonym import default_salt_dir, pseudonymise, site_salt
from .readers import IMAGE_EXTENSIONS, read_case, split_extension

__all__ = ["is_folder_layout", "list_folder_pairs", "load_folder_cases", "list_datalist_pairs", "load_datalist_cases"]

logger = logging.getLogger(__name__)
IGNORED_SUFFIXES = (".raw", ".zraw", ".txt", ".json", ".csv", ".md")
#: files operating systems leave in folders (Windows thumbnails, folder settings); hidden files count too.
JUNK_NAMES = ("thumbs.db", "ehthumbs.db", "desktop.ini")


def is_ignored(path: Path) -> bool:
    """The one rule for files that are not data: hidden (``.DS_Store``, ``._x``), operating-system junk
    (:data:`JUNK_NAMES`), or side files (:data:`IGNORED_SUFFIXES`: ``.raw`` data of ``.mhd`` headers, notes, tables)."""
    name = path.name.lower()
    return name.startswith(".") or name in JUNK_NAMES or (path.is_file() and path.suffix.lower() in IGNORED_SUFFIXES)


def is_folder_layout(dataset_dir: str | Path) -> bool:
    """True when ``dataset_dir`` has ``images/`` and ``labels/`` sub-folders."""
    root = Path(dataset_dir)
    return (root / "images").is_dir() and (root / "labels").is_dir()


def _entries(folder: Path) -> dict[str, Path]:
    """Map stem → path for the images (files with a known extension, or DICOM series folders) in ``folder``."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if is_ignored(path):
            continue
        if path.is_dir():
            stem = path.name
        else:
            stem, ext = split_extension(path)
            if ext not in IMAGE_EXTENSIONS:
                raise DataError(f"{path}: unsupported file type; expected one of {', '.join(IMAGE_EXTENSIONS)}")
        if stem in found:
            raise DataError(f"{folder}: two entries for case {stem!r}: {found[stem].name} and {path.name}")
        found[stem] = path
    return found


def _patients(root: Path) -> dict[str, str]:
    """``case → patient`` from ``root/patients.csv`` (empty when absent).

    Raises:
        DataError: naming the CSV (and its 2-based row): missing columns, an empty patient, or one case listed with
            two different patients (a case listed twice with the same patient is accepted).
    """
    table = root / "patients.csv"
    if not table.is_file():
        return {}
    mapping: dict[str, str] = {}
    with open(table, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"case", "patient"} <= set(reader.fieldnames):
            raise DataError(f"{table}: expected columns 'case,patient', got {reader.fieldnames}")
        for row_number, row in enumerate(reader, start=2):
            case, patient = (row.get("case") or "").strip(), (row.get("patient") or "").strip()
            if not case:
                continue
            if not patient:
                raise DataError(f"{table}, row {row_number}: case {case!r} has an empty patient")
            if mapping.get(case, patient) != patient:
                # a wrong patient id would put one case on both sides of the patient-wise split
                raise DataError(
                    f"{table}, row {row_number}: case {case!r} is listed with two patients, {mapping[case]!r} and "
                    f"{patient!r}; keep one row per case"
                )
            mapping[case] = patient
    return mapping


def _is_dicom(path: Path) -> bool:
    return path.is_dir() or split_extension(path)[1] in DICOM_EXTENSIONS


def _dicom_patients(cases: dict[str, Path], salt: str | None) -> dict[str, str]:
    """``case → pseudonym`` of the DICOM Patient ID of each image in ``cases`` that has one (salt read lazily)."""
    found: dict[str, str] = {}
    for stem, image in sorted(cases.items()):
        if not _is_dicom(image):
            continue
        identifier = dicom_patient_id(image)
        if identifier is None:
            continue
        if salt is None:
            salt = site_salt(default_salt_dir())
        found[stem] = pseudonymise(identifier, salt)
    if found:
        logger.info("%d case(s) grouped into %d patient(s) by DICOM Patient ID (pseudonymised)", len(found),
                    len(set(found.values())))  # fmt: skip
        if len(found) > 1 and len(set(found.values())) == 1:
            # e.g. IDs blanked to one constant by an anonymiser: a split needs at least two patients
            logger.warning(
                "all %d DICOM cases have the same Patient ID, so they form one patient (%s); if they are different "
                "patients, list them in patients.csv",
                len(found),
                next(iter(found.values())),
            )
    return found


def list_folder_pairs(dataset_dir: str | Path, salt: str | None = None) -> list[tuple[str, str, Path, Path]]:
    """``(case_id, patient_id, image_path, mask_path)`` for every case of the folder layout, sorted by case.

    ``patient_id``: the ``patients.csv`` row of the case; else, for a DICOM image with a Patient ID (0010,0020),
    ``pseudonymise(PatientID, salt)`` (``"P"`` + 16 hex digits, :func:`scripts.data.pseudonym.pseudonymise`); else
    the case id.

    Args:
        salt: pseudonym salt, normally ``scripts.data.pseudonym.site_salt(cache_dir)``; ``None``: the salt file in
            :func:`~scripts.data.pseudonym.default_salt_dir` (``$XDG_CACHE_HOME/pig``, default ``~/.cache/pig``),
            read or created only when a DICOM Patient ID is used.

    Raises:
        DataError: no ``images/``/``labels/`` folder, no case, an image without a mask or a mask without an image,
            two files for one case, an unsupported file, a malformed ``patients.csv``, an unreadable DICOM header or
            a series of several Patient IDs, or an unusable salt file (names the path, never a Patient ID).
    """
    root = Path(dataset_dir)
    if not is_folder_layout(root):
        raise DataError(f"{root}: expected 'images/' and 'labels/' sub-folders")
    images, labels = _entries(root / "images"), _entries(root / "labels")
    if not images and not labels:
        raise DataError(f"{root}: 'images/' and 'labels/' hold no image files")
    for stem in sorted(images.keys() - labels.keys()):
        raise DataError(f"{images[stem]}: image without a mask (expected labels/{stem}.<ext>)")
    for stem in sorted(labels.keys() - images.keys()):
        raise DataError(f"{labels[stem]}: mask without an image (expected images/{stem}.<ext>)")
    patients = _patients(root)
    dicom = _dicom_patients({stem: path for stem, path in images.items() if stem not in patients}, salt)
    patients = {**dicom, **patients}
    _warn_own_patients(sorted(set(images) - set(patients)), root / "patients.csv")
    return [(stem, patients.get(stem, stem), images[stem], labels[stem]) for stem in sorted(images)]


def _warn_own_patients(cases: list[str], table: Path) -> None:
    """Say that ``cases`` (no ``patients.csv`` row, no DICOM Patient ID) each count as their own patient."""
    if len(cases) > 1:
        logger.warning(
            "%d case(s) have no patient (no row in %s, no DICOM Patient ID): each counts as its own patient, so two "
            "images of one patient can fall on both sides of a split; list them in patients.csv (columns case,patient)",
            len(cases), table,
        )  # fmt: skip


def load_folder_cases(dataset_dir: str | Path, salt: str | None = None) -> Iterator[Case]:
    """Yield one :class:`Case` per image/mask pair of the folder layout (read lazily, one at a time).

    ``breast_side`` is ``None`` (detected later from intensities); ``meta`` gets the DICOM laterality/view if any;
    ``patient_id`` and ``salt`` as in :func:`list_folder_pairs`.

    Raises:
        DataError: see :func:`list_folder_pairs` and :func:`scripts.data.readers.read_case`.
    """
    for case_id, patient_id, image_path, mask_path in list_folder_pairs(dataset_dir, salt):
        yield read_case(image_path, mask_path, case_id=case_id, patient_id=patient_id)


def _listed_items(datalist) -> tuple[list[dict], Path | None, str]:
    """The ``{image, label}`` items of a datalist (JSON file path, or a list), their base folder, and its name."""
    import json

    if isinstance(datalist, str | Path):
        path = Path(datalist)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot read the datalist JSON: {err}") from err
        if isinstance(data, dict):
            key = next((k for k in ("training", "train", "items") if k in data), None)
            if key is None:
                raise DataError(f"{path}: a datalist JSON is a list of {{image, label}} items or has a 'training' list")
            data = data[key]
        return data, path.resolve().parent, str(path)
    return list(datalist), None, "the datalist"


def list_datalist_pairs(datalist, salt: str | None = None) -> list[tuple[str, str, Path, Path]]:
    """``(case_id, patient_id, image_path, mask_path)`` for every item of a list of raw image/label pairs.

    This is how MONAI Label's datastore hands training data to a bundle: ``[{"image": path, "label": path}, ...]``
    (or a JSON file holding that list, or a dict with a ``"training"`` list; relative paths are relative to the
    file). ``case_id``: the image's file stem, made unique with ``_2``, ``_3``...; ``patient_id``: the item's
    ``"patient"`` (or ``"patient_id"``), else the pseudonymised DICOM Patient ID (as :func:`list_folder_pairs`),
    else the case id.

    Raises:
        DataError: unreadable JSON, an item without ``image``/``label``, or a listed file that does not exist (names
            the datalist and the item number).
    """
    items, base, where = _listed_items(datalist)
    if not items:
        raise DataError(f"{where}: the datalist holds no item")
    rows, seen, listed = [], {}, {}
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or not item.get("image") or not item.get("label"):
            raise DataError(f"{where}, item {n}: expected {{'image': path, 'label': path}}, got {item!r}")
        paths = []
        for key in ("image", "label"):
            p = Path(item[key])
            p = p if p.is_absolute() or base is None else base / p
            if not p.exists():
                raise DataError(f"{where}, item {n}: {key} {p} not found")
            paths.append(p)
        stem = paths[0].name if paths[0].is_dir() else split_extension(paths[0])[0]
        seen[stem] = seen.get(stem, 0) + 1
        case_id = stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"
        patient = item.get("patient") or item.get("patient_id")
        if patient:
            listed[case_id] = str(patient)
        rows.append((case_id, paths[0], paths[1]))
    dicom = _dicom_patients({c: image for c, image, _ in rows if c not in listed}, salt)
    patients = {**dicom, **listed}
    _warn_own_patients([c for c, _, _ in rows if c not in patients], Path(where))
    return [(c, patients.get(c, c), image, mask) for c, image, mask in rows]


def load_datalist_cases(datalist, salt: str | None = None) -> Iterator[Case]:
    """Yield one :class:`Case` per item of :func:`list_datalist_pairs` (read lazily, one at a time).

    Raises:
        DataError: see :func:`list_datalist_pairs` and :func:`scripts.data.readers.read_case`.
    """
    for case_id, patient_id, image_path, mask_path in list_datalist_pairs(datalist, salt):
        yield read_case(image_path, mask_path, case_id=case_id, patient_id=patient_id)
