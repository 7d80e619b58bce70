"""Patient-wise K-fold split: disjoint, complete, seeded and stable, evaluated fold checked against training."""

import json

import pytest

from scripts.seg.folds import check_folds, fold_split, patient_folds, write_folds


def datalist(n_patients=11, slices=(1, 2, 3)):
    """Prepared-datalist-like dict: patient i has slices[i % len(slices)] items, spread over train and validation."""
    items = [
        {"image": f"p{i:02d}_s{s}_image.nii.gz", "label": f"p{i:02d}_s{s}_label.nii.gz", "patient_id": f"P{i:02d}"}
        for i in range(n_patients)
        for s in range(slices[i % len(slices)])
    ]
    return {"train": items[::2], "validation": items[1::2]}, items


def test_folds_are_disjoint_cover_every_patient_once_and_balanced():
    patients = [f"P{i:02d}" for i in range(23)] * 3  # duplicates, as one id per slice
    folds = patient_folds(patients, num_folds=5, seed=7)
    assert len(folds) == 5
    flat = [p for f in folds for p in f]
    assert sorted(flat) == sorted(set(patients))  # each patient exactly once
    assert len(flat) == len(set(flat))
    sizes = sorted(len(f) for f in folds)
    assert sizes[-1] - sizes[0] <= 1


def test_same_seed_same_split_regardless_of_order_and_other_seeds_differ():
    patients = [f"P{i:02d}" for i in range(30)]
    a = patient_folds(patients, 5, seed=3)
    assert a == patient_folds(list(reversed(patients)), 5, seed=3)
    assert a == patient_folds(patients * 2, 5, seed=3)
    assert any(patient_folds(patients, 5, seed=s) != a for s in range(4, 8))
    # Pinned: the split must not change between runs, processes or library updates without notice.
    assert patient_folds([f"P{i}" for i in range(6)], 3, seed=0) == [["P3", "P4"], ["P0", "P2"], ["P1", "P5"]]


def test_fold_split_holds_out_one_fold_and_loses_nothing():
    dl, items = datalist()
    seen_validation = []
    for k in range(4):
        split = fold_split(dl, num_folds=4, fold=k, seed=1)
        train_p = {it["patient_id"] for it in split["train"]}
        val_p = {it["patient_id"] for it in split["validation"]}
        assert not train_p & val_p
        assert val_p == set(split["folds"][k])
        assert len(split["train"]) + len(split["validation"]) == len(items)
        seen_validation += [it["image"] for it in split["validation"]]
    # Every item is held out exactly once over the K folds.
    assert sorted(seen_validation) == sorted(it["image"] for it in items)


def test_invalid_requests_are_refused():
    dl, _ = datalist(n_patients=3)
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        fold_split(dl, num_folds=5, fold=0)
    with pytest.raises(ValueError, match="fold must be in"):
        fold_split(dl, num_folds=3, fold=3)
    with pytest.raises(ValueError, match="num_folds must be >= 2"):
        patient_folds(["a", "b"], 1)
    with pytest.raises(ValueError, match="without patient_id"):
        fold_split({"train": [{"image": "x"}], "validation": []}, num_folds=2, fold=0)


def test_folds_record_and_evaluation_check(tmp_path):
    dl, _ = datalist()
    split = fold_split(dl, num_folds=3, fold=1, seed=0)
    record = json.loads(open(write_folds(str(tmp_path), split)).read())
    assert record["fold"] == 1 and record["folds"] == split["folds"]
    assert record["validation_patients"] == split["folds"][1]
    check_folds(str(tmp_path), split)  # same split: accepted
    with pytest.raises(ValueError, match="held-out fold 1"):
        check_folds(str(tmp_path), fold_split(dl, num_folds=3, fold=0, seed=0))
    with pytest.raises(ValueError, match="fold_seed"):
        check_folds(str(tmp_path), fold_split(dl, num_folds=3, fold=1, seed=5))
    check_folds(str(tmp_path / "elsewhere"), split)  # no record: warns only
