"""Patient-wise K-fold cross-validation of the prepared slice datalist.

Fold ``k`` is the held-out set (validation while training, the evaluated set in ``seg_evaluate.json``); the other
folds train. Patients, not slices, are assigned to folds, so no patient's slices are on both sides.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable

import numpy as np

__all__ = ["patient_folds", "fold_split", "write_folds", "check_folds"]

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


def fold_split(datalist: dict, num_folds: int = 5, fold: int = 0, seed: int = 0) -> dict:
    """Re-split all items of a :func:`scripts.data.prepare.prepare_dataset` datalist by patient folds.

    The ``train`` and ``validation`` items are pooled (nothing is lost), then split with :func:`patient_folds`.

    Args:
        datalist: ``{"train": [items], "validation": [items], ...}``; every item has a ``patient_id``.
        num_folds: K ≥ 2.
        fold: the held-out fold, ``0 <= fold < num_folds``.
        seed: fold seed (independent of the training seed, so repeated trainings share folds).

    Returns:
        ``{"train": items of the other folds, "validation": items of fold ``fold``, "folds": [[patients], ...],
        "fold": fold, "num_folds": K, "seed": seed}``.

    Raises:
        ValueError: ``fold`` out of range, an item without ``patient_id``, or see :func:`patient_folds`.
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    items = list(datalist.get("train", [])) + list(datalist.get("validation", []))
    missing = [it.get("image") for it in items if it.get("patient_id") in (None, "")]
    if missing:
        raise ValueError(f"{len(missing)} item(s) without patient_id, e.g. {missing[0]}: cannot split by patient")
    folds = patient_folds([it["patient_id"] for it in items], num_folds, seed)
    held_out = set(folds[fold])
    return {
        "train": [it for it in items if str(it["patient_id"]) not in held_out],
        "validation": [it for it in items if str(it["patient_id"]) in held_out],
        "folds": folds,
        "fold": int(fold),
        "num_folds": int(num_folds),
        "seed": int(seed),
    }


def write_folds(ckpt_dir: str, split: dict) -> str:
    """Write ``<ckpt_dir>/folds.json``: seed, K, held-out fold, patients per fold and item counts of the split.

    Returns:
        The path written (replaced atomically on a rerun).
    """
    record = {
        "num_folds": split["num_folds"],
        "fold": split["fold"],
        "seed": split["seed"],
        "folds": split["folds"],
        "train_patients": sorted({str(it["patient_id"]) for it in split["train"]}),
        "validation_patients": sorted({str(it["patient_id"]) for it in split["validation"]}),
        "num_train_items": len(split["train"]),
        "num_validation_items": len(split["validation"]),
    }
    os.makedirs(ckpt_dir, exist_ok=True)
    path = os.path.join(ckpt_dir, "folds.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)
    logger.info(
        "fold %d/%d (seed %d): %d train patients (%d items), %d held-out patients (%d items); split in %s",
        split["fold"], split["num_folds"], split["seed"], len(record["train_patients"]), record["num_train_items"],
        len(record["validation_patients"]), record["num_validation_items"], path,
    )  # fmt: skip
    return path


def check_folds(ckpt_dir: str, split: dict) -> None:
    """Refuse to evaluate a fold other than the one the checkpoint in ``ckpt_dir`` was trained against.

    Compares ``split`` (folds, held-out fold) with ``<ckpt_dir>/folds.json`` written by the ``training`` workflow,
    so that evaluation never scores a model on its own training patients. Logs a warning when there is no record.

    Raises:
        ValueError: a different held-out fold or different patients per fold (data, ``num_folds`` or seed changed).
    """
    path = os.path.join(ckpt_dir, "folds.json")
    if not os.path.isfile(path):
        logger.warning("%s not found: cannot check that fold %d was held out in training", path, split["fold"])
        return
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    if record.get("fold") != split["fold"] or record.get("folds") != split["folds"]:
        raise ValueError(
            f"{path}: the checkpoint was trained with held-out fold {record.get('fold')} of {record.get('num_folds')} "
            f"(seed {record.get('seed')}), but fold {split['fold']} of {split['num_folds']} (seed {split['seed']}) "
            "is being evaluated; pass the same dataset, num_folds, fold and fold_seed as in training"
        )
