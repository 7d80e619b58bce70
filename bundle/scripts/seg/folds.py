"""Patient-wise K-fold cross-validation of the prepared slice datalist, with an inner validation split.

Fold ``k`` is the held-out **test** set (scored by ``seg_evaluate.json``, never seen in training or model
selection). The other folds are the fold's training patients; a patient-wise inner validation split of them
(``inner_val_fraction``) selects the checkpoint, and the rest train. Patients, not slices, are assigned, so no
patient's slices are in two of ``train`` / ``validation`` / ``test``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable

import numpy as np

from ..common.distributed import is_main_process

__all__ = ["patient_folds", "inner_validation_patients", "fold_split", "write_folds", "check_folds"]

logger = logging.getLogger(__name__)


def patient_folds(patients: Iterable[str], num_folds: int = 5, seed: int = 0) -> list[list[str]]:
    """Assign the unique patient ids to ``num_folds`` folds.

    The sorted unique ids are permuted with ``numpy.random.default_rng(seed)`` and dealt round-robin, so the split
    depends only on the set of ids and the seed (not on item order, process or platform), fold sizes differ by at
    most one patient, and every patient is in exactly one fold.

    Args:
        patients: patient ids (duplicates allowed, e.g. one per slice); converted with ``str``.
        num_folds: K ≥ 2.
        seed: permutation seed; the same seed gives the same folds.

    Returns:
        ``num_folds`` lists of patient ids, each sorted.

    Raises:
        ValueError: ``num_folds < 2`` or fewer patients than folds (a fold would be empty).
    """
    ids = sorted({str(p) for p in patients})
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    if len(ids) < num_folds:
        raise ValueError(f"{len(ids)} patient(s) cannot fill {num_folds} folds; lower num_folds or add patients")
    order = np.random.default_rng(seed).permutation(len(ids))
    return [sorted(ids[i] for i in order[k::num_folds]) for k in range(num_folds)]


def inner_validation_patients(
    patients: Iterable[str], inner_val_fraction: float = 0.15, seed: int = 0, fold: int = 0
) -> list[str]:
    """Draw the inner validation patients from a fold's training patients.

    ``n = round(inner_val_fraction × N)`` of the ``N`` unique patients, at least 1 when ``inner_val_fraction > 0``
    and ``N >= 2``, and at most ``N - 1`` (at least one patient always trains). The sorted ids are permuted with
    ``numpy.random.default_rng([seed, fold])``, so the draw depends only on the ids, the seed and the fold.

    Args:
        patients: the fold's training patient ids (duplicates allowed); converted with ``str``.
        inner_val_fraction: in ``[0, 1)``; 0 → no inner validation (empty list).
        seed: the fold seed.
        fold: the held-out fold (different folds draw independently).

    Returns:
        The inner validation patient ids, sorted.

    Raises:
        ValueError: ``inner_val_fraction`` outside ``[0, 1)``.
    """
    f = float(inner_val_fraction)
    if not 0.0 <= f < 1.0:
        raise ValueError(f"inner_val_fraction must be in [0, 1), got {inner_val_fraction}")
    ids = sorted({str(p) for p in patients})
    if f == 0.0 or len(ids) < 2:
        if f > 0.0:
            logger.warning("%d training patient(s): too few for an inner validation split", len(ids))
        return []
    n = min(max(1, int(round(f * len(ids)))), len(ids) - 1)
    order = np.random.default_rng([int(seed), int(fold)]).permutation(len(ids))
    return sorted(ids[i] for i in order[:n])


def fold_split(
    datalist: dict, num_folds: int = 5, fold: int = 0, seed: int = 0, inner_val_fraction: float = 0.15
) -> dict:
    """Re-split all items of a :func:`scripts.data.prepare.prepare_dataset` datalist by patient folds.

    The ``train`` and ``validation`` items are pooled (nothing is lost), then split with :func:`patient_folds`:
    fold ``fold`` is the held-out ``test`` set; the other folds' patients are split by
    :func:`inner_validation_patients` into ``validation`` (model selection) and ``train``.

    Args:
        datalist: ``{"train": [items], "validation": [items], ...}``; every item has a ``patient_id``.
        num_folds: K ≥ 2.
        fold: the held-out fold, ``0 <= fold < num_folds``.
        seed: fold seed (independent of the training seed, so repeated trainings share folds); also seeds the
            inner validation draw.
        inner_val_fraction: share of the fold's training patients used for inner validation (at least one patient
            when > 0 and there are ≥ 2 training patients); 0 → ``validation`` is empty (``seg_train.json`` then
            keeps the final-epoch model).

    Returns:
        ``{"train": items of the training patients minus inner validation, "validation": items of the inner
        validation patients, "test": items of fold ``fold``, "train_patients", "validation_patients",
        "test_patients": sorted ids, "folds": [[patients], ...], "fold": fold, "num_folds": K, "seed": seed,
        "inner_val_fraction": fraction}``.

    Raises:
        ValueError: ``fold`` out of range, an item without ``patient_id``, a bad ``inner_val_fraction``, or see
            :func:`patient_folds`.
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    items = list(datalist.get("train", [])) + list(datalist.get("validation", []))
    missing = [it.get("image") for it in items if it.get("patient_id") in (None, "")]
    if missing:
        raise ValueError(f"{len(missing)} item(s) without patient_id, e.g. {missing[0]}: cannot split by patient")
    folds = patient_folds([it["patient_id"] for it in items], num_folds, seed)
    held_out = set(folds[fold])
    training = sorted({p for k, f in enumerate(folds) if k != fold for p in f})
    inner = set(inner_validation_patients(training, inner_val_fraction, seed, fold))
    return {
        "train": [it for it in items if str(it["patient_id"]) not in held_out | inner],
        "validation": [it for it in items if str(it["patient_id"]) in inner],
        "test": [it for it in items if str(it["patient_id"]) in held_out],
        "train_patients": [p for p in training if p not in inner],
        "validation_patients": sorted(inner),
        "test_patients": list(folds[fold]),
        "folds": folds,
        "fold": int(fold),
        "num_folds": int(num_folds),
        "seed": int(seed),
        "inner_val_fraction": float(inner_val_fraction),
    }


def write_folds(ckpt_dir: str, split: dict) -> str:
    """Write ``<ckpt_dir>/folds.json``: seed, K, held-out fold, patients per fold, the training / inner validation /
    held-out test patients and item counts of the split.

    Returns:
        The path written (replaced atomically on a rerun; rank 0 alone writes it in a ``torchrun`` run).
    """
    path = os.path.join(ckpt_dir, "folds.json")
    if not is_main_process():
        return path
    record = {
        "num_folds": split["num_folds"],
        "fold": split["fold"],
        "seed": split["seed"],
        "inner_val_fraction": split.get("inner_val_fraction"),
        "folds": split["folds"],
        "train_patients": sorted({str(it["patient_id"]) for it in split["train"]}),
        "validation_patients": sorted({str(it["patient_id"]) for it in split["validation"]}),
        "test_patients": sorted({str(it["patient_id"]) for it in split["test"]}),
        "num_train_items": len(split["train"]),
        "num_validation_items": len(split["validation"]),
        "num_test_items": len(split["test"]),
    }
    os.makedirs(ckpt_dir, exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)
    logger.info(
        "fold %d/%d (seed %d): %d train patients (%d items), %d inner validation patients (%d items), "
        "%d held-out test patients (%d items); split in %s",
        split["fold"], split["num_folds"], split["seed"], len(record["train_patients"]), record["num_train_items"],
        len(record["validation_patients"]), record["num_validation_items"], len(record["test_patients"]),
        record["num_test_items"], path,
    )  # fmt: skip
    if not split["validation"]:
        logger.info("no inner validation patients: the final-epoch model is saved as seg_model.pt")
    return path


def check_folds(ckpt_dir: str, split: dict) -> None:
    """Refuse to evaluate a fold other than the one the checkpoint in ``ckpt_dir`` was trained against.

    Compares ``split`` (folds, held-out fold, inner validation patients) with ``<ckpt_dir>/folds.json`` written by
    the ``training`` workflow, so that evaluation never scores a model on patients it trained or was selected on.
    Logs a warning when there is no record.

    Raises:
        ValueError: other patients (another dataset: the message names them and the external run), the same
            patients in other folds (``num_folds`` or ``fold_seed`` changed), a different held-out fold,
            or a record without ``test_patients`` (written before the inner validation split: retrain), or
            held-out test patients the record lists as training or inner validation patients.
    """
    path = os.path.join(ckpt_dir, "folds.json")
    if not os.path.isfile(path):
        logger.warning("%s not found: cannot check that fold %d was held out in training", path, split["fold"])
        return
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    if record.get("folds") != split["folds"]:
        # name what differs: usually the patients (another dataset), else num_folds / fold_seed
        trained = {str(p) for fold in record.get("folds") or [] for p in fold}
        now = {str(p) for fold in split["folds"] for p in fold}
        if trained != now:
            only_now, only_trained = sorted(now - trained), sorted(trained - now)
            shown = ", ".join(only_now[:3]) + (" ..." if len(only_now) > 3 else "")
            raise ValueError(
                f"{path}: this dataset's patients differ from the ones the checkpoint's folds were made of "
                f"({len(only_now)} new{': ' + shown if shown else ''}; {len(only_trained)} of the training dataset "
                "missing); to score the model on another dataset use the external run: "
                "`run external --eval_dataset_dir <dataset>`"
            )
        raise ValueError(
            f"{path}: the same patients, dealt into other folds (trained with num_folds {record.get('num_folds')}, "
            f"fold_seed {record.get('seed')}; now num_folds {split['num_folds']}, fold_seed {split['seed']}); pass "
            "the training's num_folds and fold_seed"
        )
    if record.get("fold") != split["fold"]:
        raise ValueError(
            f"{path}: the checkpoint was trained with fold {record.get('fold')} held out, but fold {split['fold']} is "
            f"being evaluated (its patients trained or selected the model); pass --fold {record.get('fold')}"
        )
    if "test_patients" not in record:
        raise ValueError(
            f"{path}: written before the inner validation split (its checkpoint was selected on the held-out fold); "
            "retrain to evaluate"
        )
    test = {str(it["patient_id"]) for it in split["test"]}
    seen = test & (set(record.get("train_patients", [])) | set(record.get("validation_patients", [])))
    if seen:
        raise ValueError(f"{path}: held-out patients {sorted(seen)} were used in training or model selection")
