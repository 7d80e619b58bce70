"""Turn ``dataset_dir`` into a cached set of prepared 2-D slice pairs and a patient-wise train/validation datalist.

Per case (:class:`~scripts.data.case.Case`, from the phantom, the Duke box table or the folder layout), with the
slice transforms' dictionary versions:

1. laterality: image and mask volumes flipped together so the breast lies on the left
   (:class:`~.laterality.NormalizeLateralityd`, from ``Case.breast_side`` or intensity detection);
2. slice selection (:func:`~.selection.select_lesion_slices`);
3. per kept slice: breast crop (:class:`~.crops.CropBreastRegiond`, never cutting the lesion), percentile window to
   [-1, 1] (:class:`~.intensity.PercentileWindowd`), then the square outputs (:func:`~.crops.square_outputs`:
   ``crop_mode="slice"`` whole breast, ``"patch"`` lesion-centred windows).

Outputs are 2-D NIfTI files (image float32 ``(n, n)`` in [-1, 1], label uint8 ``(n, n)`` in {0, 1}, affine
``diag(row_mm, col_mm, 1, 1)``) under ``cache_dir/<key>/`` with ``datalist.json``; ``key`` hashes every parameter
and the input file list (names, sizes, mtimes), so a changed input or setting gives a new folder and an unchanged one
is reused as is. Nothing is ever written under ``dataset_dir``.

Every item records how it was cut from its source slice ``slice_index`` (shape ``source_shape`` = ``[H, W]``):
``flipped`` (columns reversed first), ``crop_bbox`` ``[r0, r1, c0, c1]`` (the breast box in the flipped slice),
``window`` ``[r0, c0, side]`` (the square in crop coordinates, possibly beyond the crop: padded) and ``scale``
(``side / image_size``, source pixels per output pixel). Output pixel ``(i, j)`` comes from the flipped slice's
``(crop r0 + window r0 + (i + 0.5) scale - 0.5, crop c0 + window c0 + (j + 0.5) scale - 0.5)``; unflip a column
``c`` as ``W - 1 - c``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .case import Case, DataError
from .crops import CROP_MODES, CropBreastRegiond, square_outputs
from .folder import is_folder_layout, list_datalist_pairs, load_datalist_cases, load_folder_cases
from .intensity import PercentileWindowd
from .laterality import NormalizeLateralityd
from .selection import select_lesion_slices

__all__ = [
    "PIPELINE_VERSION",
    "discover_cases",
    "input_fingerprint",
    "split_patients",
    "read_datalist",
    "prepare_dataset",
]

logger = logging.getLogger(__name__)

#: bump when the preparation code changes its output, so that old caches are not reused (2: items record their
#: flip, crop box, window and scale; 3: DICOM VOI LUT applied, DICOM patients pseudonymised, a recorded breast side
#: that the pixels contradict gives way to them).
PIPELINE_VERSION = 3


def _format(dataset_dir) -> str:
    """``"phantom"``, ``"duke"``, ``"folder"`` or ``"datalist"``; DataError for a missing/empty/unknown folder."""
    if isinstance(dataset_dir, list | tuple):
        return "datalist"
    if not dataset_dir:
        return "phantom"
    root = Path(dataset_dir)
    if root.is_file() and root.name.lower().endswith(".json"):
        return "datalist"
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if not any(root.iterdir()):
        raise DataError(f"{root}: dataset folder is empty")
    if (root / "annotations.csv").is_file():
        return "duke"
    if is_folder_layout(root):
        return "folder"
    raise DataError(
        f"{root}: unknown dataset layout; expected 'annotations.csv' (Duke box table) or 'images/' + 'labels/' "
        "sub-folders, a .json datalist file of {image, label} items, or no dataset_dir for the embedded phantom"
    )


def discover_cases(
    dataset_dir: str | None, include_architectural_distortion: bool = False, phantom_cases: int = 16, seed: int = 0
) -> Iterator[Case]:
    """Yield the cases of ``dataset_dir`` in its detected layout (``None``/``""`` → the embedded phantom).

    Raises:
        DataError: missing or empty folder, unknown layout, or any error of the layout's loader.
    """
    kind = _format(dataset_dir)
    if kind == "phantom":
        from .phantom import make_phantom_cases

        return make_phantom_cases(phantom_cases, seed)
    if kind == "duke":
        from .duke import load_duke_cases

        return load_duke_cases(dataset_dir, include_architectural_distortion=include_architectural_distortion)
    if kind == "datalist":
        return load_datalist_cases(dataset_dir)
    return load_folder_cases(dataset_dir)


def input_fingerprint(dataset_dir) -> list:
    """What the cache key hashes for the input: ``[relative path, size, mtime_ns]`` of every file, sorted; for a
    datalist ``[case, patient, absolute path, size, mtime_ns]`` of every listed file, in list order.

    The phantom is identified by its generator's source text instead (so an edited phantom is regenerated).
    """
    if _format(dataset_dir) == "datalist":  # the listed files themselves (their names, sizes, mtimes)
        entries = []
        for case_id, patient, image, mask in list_datalist_pairs(dataset_dir):
            for p in (image, mask):
                files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
                entries += [[case_id, patient, str(q.resolve()), q.stat().st_size, q.stat().st_mtime_ns] for q in files]
        return entries
    if not dataset_dir:
        from . import phantom

        return ["phantom", hashlib.sha256(Path(phantom.__file__).read_bytes()).hexdigest()]
    root = Path(dataset_dir)
    entries = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            st = path.stat()
            entries.append([path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    return sorted(entries)


def split_patients(patients, val_fraction: float, seed: int) -> set[str]:
    """Validation patients: a seeded permutation of the sorted unique ids, the first ``round(val_fraction × n)``.

    At least one and at most ``n - 1`` validation patients when ``n ≥ 2`` and ``val_fraction > 0``; none otherwise.
    """
    ids = sorted(set(patients))
    n = len(ids)
    if n < 2 or val_fraction <= 0:
        return set()
    n_val = min(max(int(round(val_fraction * n)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return {ids[i] for i in order[:n_val]}


def _save(path: Path, array: np.ndarray, spacing: tuple[float, float]) -> None:
    nib.save(nib.Nifti1Image(array, np.diag([spacing[0], spacing[1], 1.0, 1.0])), str(path))


def _prepare_case(case: Case, out_dir: Path, params: dict, rng: np.random.Generator, counts: Counter) -> list[dict]:
    """Write the prepared slices of one case into ``out_dir``; returns their datalist items (relative paths)."""
    volume = NormalizeLateralityd(keys=("image", "label"))(
        {"image": case.image, "label": case.label, "breast_side": case.breast_side, "source": case.source}
    )
    image, label, flip = volume["image"], volume["label"], volume["flipped"]
    keep = select_lesion_slices(
        label, params["min_lesion_area"], params["neighbour_slices"], params["lesion_free_fraction"], rng
    )
    counts["slices_seen"] += image.shape[0]
    crop = CropBreastRegiond(keys=("image", "label"))
    lower, upper = params["window_percentiles"]
    window = PercentileWindowd(keys="image", lower=lower, upper=upper)
    items = []
    for s in keep:
        try:
            sl = window(crop({"image": image[s], "label": label[s]}))
        except DataError as err:
            logger.warning("%s, slice %d skipped: %s", case.source or case.case_id, s, err)
            counts["skipped_constant_slice"] += 1
            continue
        img, lab = sl["image"], sl["label"]
        had_lesion = bool(lab.any())
        outputs = square_outputs(
            img, lab, params["image_size"], case.spacing[1:], params["crop_mode"], params["patches_per_lesion"],
            params["context_factor"], params["jitter"], params["min_patch_size"], rng,
            min_component_area=max(params["min_lesion_area"], 1),
        )  # fmt: skip
        if params["crop_mode"] == "patch" and had_lesion:
            components, n = ndimage.label(lab > 0)
            small = int((np.bincount(components.ravel(), minlength=n + 1)[1:] < params["min_lesion_area"]).sum())
            counts["skipped_small_components"] += small  # no patch of their own (still inside others' windows)
        for j, (out_img, out_lab, spacing, win) in enumerate(outputs):
            if had_lesion and not out_lab.any():  # lesion thinner than an output pixel: the pair would lie
                logger.warning(
                    "%s, slice %d skipped: the lesion vanishes when resized to %d px (increase image_size or use "
                    'crop_mode="patch")',
                    case.source or case.case_id,
                    s,
                    params["image_size"],
                )
                counts["skipped_lesion_lost_in_resize"] += 1
                continue
            stem = f"{case.case_id}_s{s:04d}_{j:02d}"
            _save(out_dir / f"{stem}_image.nii.gz", out_img.astype(np.float32), spacing)
            _save(out_dir / f"{stem}_label.nii.gz", out_lab.astype(np.uint8), spacing)
            counts["lesion_items" if out_lab.any() else "lesion_free_items"] += 1
            items.append(
                {
                    "image": f"{stem}_image.nii.gz",
                    "label": f"{stem}_label.nii.gz",
                    "case_id": case.case_id,
                    "patient_id": str(case.patient_id),
                    "slice_index": int(s),
                    "source": case.source,
                    "spacing_mm": [float(spacing[0]), float(spacing[1])],
                    "flipped": bool(flip),
                    "source_shape": [int(n) for n in image.shape[1:]],
                    "crop_bbox": [int(v) for v in sl["crop_bbox"]],
                    "window": [int(v) for v in win],
                    "scale": float(win[2]) / float(params["image_size"]),
                }
            )
    counts["slices_kept"] += len(keep)
    return items


def _absolute(datalist: dict, folder: Path) -> dict:
    out = dict(datalist, cache=str(folder))
    for split in ("train", "validation"):
        out[split] = [dict(it, image=str(folder / it["image"]), label=str(folder / it["label"])) for it in out[split]]
    return out


def read_datalist(path: str | Path) -> dict:
    """A prepared set's ``<cache>/<key>/datalist.json`` as :func:`prepare_dataset` returns it (absolute paths).

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path).resolve()
    return _absolute(json.loads(path.read_text(encoding="utf-8")), path.parent)


def prepare_dataset(
    dataset_dir: str | None,
    cache_dir: str,
    image_size: int,
    crop_mode: str = "slice",
    min_lesion_area: int = 10,
    neighbour_slices: int = 0,
    lesion_free_fraction: float = 0.0,
    context_factor: float = 2.0,
    jitter: float = 0.1,
    min_patch_size: int = 64,
    patches_per_lesion: int = 1,
    window_percentiles: tuple = (0.5, 99.5),
    include_architectural_distortion: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
    phantom_cases: int = 16,
) -> dict:
    """Prepare (or reuse) the square slice pairs of ``dataset_dir`` and return the train/validation datalist.

    Args:
        dataset_dir: Duke box-table folder (``annotations.csv``), folder layout (``images/`` + ``labels/``), a
            datalist of raw ``{image, label}`` items (a ``.json`` file or a list, as MONAI Label hands them:
            :func:`~.folder.list_datalist_pairs`), or ``None``/``""`` for the embedded phantom. Only read, never
            written.
        cache_dir: where ``<key>/`` (files + ``datalist.json``) is written; must not lie inside ``dataset_dir``.
        image_size: output side ``n`` (pixels) of every prepared slice.
        crop_mode: ``"slice"`` (whole breast, padded square) or ``"patch"`` (lesion-centred windows).
        min_lesion_area, neighbour_slices, lesion_free_fraction: slice selection (:func:`select_lesion_slices`);
            in patch mode also the smallest lesion component that gets a window of its own.
        context_factor, jitter, min_patch_size, patches_per_lesion: patch mode (:func:`lesion_patch`); lesion-free
            slices give ``patches_per_lesion`` random breast windows of ``min_patch_size`` pixels.
        window_percentiles: ``(lower, upper)`` percentiles of :class:`PercentileWindow`.
        include_architectural_distortion: Duke only: keep architectural-distortion boxes.
        val_fraction: fraction of patients in validation (:func:`split_patients`).
        seed: seeds the split, the lesion-free draw, jitter and the phantom.
        phantom_cases: number of phantom cases when ``dataset_dir`` is empty.

    Returns:
        ``{"train": [items], "validation": [items], "spacing_mm": [row_mm, col_mm] (median over items),
        "cache": folder, "counts": {...}, "params": {...}}``; each item has ``image``/``label`` (absolute paths),
        ``case_id``, ``patient_id``, ``slice_index``, ``source``, ``spacing_mm``, ``flipped``. No patient is on both
        sides.

    Raises:
        DataError: bad ``dataset_dir`` (missing, empty, unknown layout, unpaired files, unreadable data), a
            ``cache_dir`` inside ``dataset_dir``, or no slice left after selection.
        ValueError: unknown ``crop_mode`` or invalid sizes.
    """
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
    if image_size < 1 or min_patch_size < 1 or patches_per_lesion < 1:
        raise ValueError("image_size, min_patch_size and patches_per_lesion must be ≥ 1")
    kind = _format(dataset_dir)
    where = "the datalist" if kind == "datalist" and not isinstance(dataset_dir, str | Path) else dataset_dir
    where = where or f"phantom ({phantom_cases} cases)"
    cache_root = Path(cache_dir).resolve()
    if kind in ("duke", "folder") and cache_root.is_relative_to(Path(dataset_dir).resolve()):
        raise DataError(f"{cache_root}: cache_dir lies inside dataset_dir {dataset_dir}, which must stay untouched")
    params = {
        "version": PIPELINE_VERSION,
        "format": kind,
        "image_size": int(image_size),
        "crop_mode": crop_mode,
        "min_lesion_area": int(min_lesion_area),
        "neighbour_slices": int(neighbour_slices),
        "lesion_free_fraction": float(lesion_free_fraction),
        "context_factor": float(context_factor),
        "jitter": float(jitter),
        "min_patch_size": int(min_patch_size),
        "patches_per_lesion": int(patches_per_lesion),
        "window_percentiles": [float(p) for p in window_percentiles],
        "include_architectural_distortion": bool(include_architectural_distortion),
        "val_fraction": float(val_fraction),
        "seed": int(seed),
        "phantom_cases": int(phantom_cases) if kind == "phantom" else None,
    }
    blob = json.dumps({"params": params, "inputs": input_fingerprint(dataset_dir)}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    final = cache_root / key
    if (final / "datalist.json").is_file():
        logger.info("reusing cache %s", final)
        return _absolute(json.loads((final / "datalist.json").read_text(encoding="utf-8")), final)

    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=cache_root))
    try:
        rng = np.random.default_rng(seed)
        counts: Counter = Counter()
        items = []
        for case in discover_cases(dataset_dir, include_architectural_distortion, phantom_cases, seed):
            counts["cases"] += 1
            case_items = _prepare_case(case, tmp, params, rng, counts)
            if not case_items:
                counts["cases_without_kept_slice"] += 1
                # e.g. an all-zero (lesion-free) mask, or a lesion smaller than min_lesion_area on every slice
                logger.warning(
                    "%s: case %r gives no slice (no slice with ≥ %d lesion pixels, or all its slices skipped); "
                    "it is left out",
                    case.source or case.case_id,
                    case.case_id,
                    max(int(min_lesion_area), 1),
                )
            items.extend(case_items)
        skipped = {k: v for k, v in sorted(counts.items()) if k.startswith(("skipped_", "cases_without")) and v}
        if skipped:  # one summary line, so the count is in the run log even when the per-item warnings scroll away
            notes = []
            if set(skipped) - {"skipped_small_components"}:  # those have a warning of their own above
                notes.append("the warnings above name each skipped case or slice")
            if "skipped_small_components" in skipped:  # counted per slice, no warning of their own
                notes.append("skipped_small_components: mask components smaller than min_lesion_area, which get no "
                             "patch of their own")  # fmt: skip
            logger.warning("%s: skipped items %s (%s)", where, skipped, "; ".join(notes))
        if not items:
            raise DataError(
                f"{where}: no slice kept from {counts['cases']} case(s) "
                f"(min_lesion_area={min_lesion_area}); nothing to train on. Check that the masks are not all empty "
                "and that min_lesion_area is not larger than the lesions"
            )
        val_patients = split_patients([it["patient_id"] for it in items], val_fraction, seed)
        datalist = {
            "train": [it for it in items if it["patient_id"] not in val_patients],
            "validation": [it for it in items if it["patient_id"] in val_patients],
            "spacing_mm": np.median([it["spacing_mm"] for it in items], axis=0).round(6).tolist(),
            "params": params,
        }
        counts["patients"] = len({it["patient_id"] for it in items})
        counts["validation_patients"] = len(val_patients)
        counts["train_items"], counts["validation_items"] = len(datalist["train"]), len(datalist["validation"])
        datalist["counts"] = dict(sorted(counts.items()))
        (tmp / "datalist.json").write_text(json.dumps(datalist, indent=1, ensure_ascii=False), encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same key first: keep its result
            if not (final / "datalist.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("prepared %s in %s: %s", where, final, datalist["counts"])
    return _absolute(json.loads((final / "datalist.json").read_text(encoding="utf-8")), final)
