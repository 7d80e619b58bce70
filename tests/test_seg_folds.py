"""Patient-wise K-fold split with inner validation: disjoint, complete, seeded and stable, evaluated fold checked."""

import json

import pytest

from scripts.seg.folds import check_folds, fold_split, inner_validation_patients, patient_folds, write_folds


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


def patients_of(items):
    return {it["patient_id"] for it in items}


def test_fold_split_holds_out_one_fold_and_loses_nothing():
    dl, items = datalist()
    seen_test = []
    for k in range(4):
        split = fold_split(dl, num_folds=4, fold=k, seed=1)
        train_p, val_p, test_p = (patients_of(split[key]) for key in ("train", "validation", "test"))
        assert test_p == set(split["folds"][k]) == set(split["test_patients"])
        assert train_p == set(split["train_patients"]) and val_p == set(split["validation_patients"])
        assert train_p | val_p == {p for j, f in enumerate(split["folds"]) if j != k for p in f}
        assert len(split["train"]) + len(split["validation"]) + len(split["test"]) == len(items)
        seen_test += [it["image"] for it in split["test"]]
    # Every item is held out exactly once over the K folds.
    assert sorted(seen_test) == sorted(it["image"] for it in items)


@pytest.mark.parametrize("fraction", [0.15, 0.5])
def test_inner_validation_is_disjoint_from_training_and_held_out_patients(fraction):
    dl, _ = datalist(n_patients=23)
    for k in range(5):
        split = fold_split(dl, num_folds=5, fold=k, seed=2, inner_val_fraction=fraction)
        train_p, val_p, test_p = (patients_of(split[key]) for key in ("train", "validation", "test"))
        assert val_p and train_p and test_p
        assert not val_p & train_p and not val_p & test_p and not train_p & test_p
        n_training = len(train_p) + len(val_p)
        assert len(val_p) == max(1, round(fraction * n_training))
        # Deterministic: same seed, same inner split; the held-out fold does not depend on the fraction.
        again = fold_split(dl, num_folds=5, fold=k, seed=2, inner_val_fraction=fraction)
        assert again["validation_patients"] == split["validation_patients"]
        assert fold_split(dl, num_folds=5, fold=k, seed=2, inner_val_fraction=0.0)["test"] == split["test"]


def test_inner_validation_sizes_and_zero_fraction():
    assert len(inner_validation_patients(["a", "b"], 0.15)) == 1  # at least one patient from 2 on
    assert len(inner_validation_patients(["a", "b", "c"], 0.9)) == 2  # at least one patient always trains
    assert inner_validation_patients(["a"], 0.15) == []
    assert inner_validation_patients(["a", "b", "c"] * 2, 0.0) == []
    assert inner_validation_patients(list("abcdefgh"), 0.25, seed=4) == inner_validation_patients(
        list("hgfedcba"), 0.25, seed=4
    )
    dl, items = datalist()
    split = fold_split(dl, num_folds=4, fold=2, seed=1, inner_val_fraction=0.0)
    assert split["validation"] == [] and split["validation_patients"] == []
    assert len(split["train"]) + len(split["test"]) == len(items)
    with pytest.raises(ValueError, match="inner_val_fraction"):
        fold_split(dl, num_folds=4, fold=0, inner_val_fraction=1.0)
    with pytest.raises(ValueError, match="inner_val_fraction"):
        inner_validation_patients(["a", "b"], -0.1)


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
    assert record["test_patients"] == split["folds"][1] == split["test_patients"]
    assert record["validation_patients"] == split["validation_patients"] and record["validation_patients"]
    assert record["train_patients"] == split["train_patients"]
    assert not set(record["validation_patients"]) & (set(record["train_patients"]) | set(record["test_patients"]))
    assert record["num_test_items"] == len(split["test"]) and record["inner_val_fraction"] == 0.15
    check_folds(str(tmp_path), split)  # same split: accepted
    with pytest.raises(ValueError, match="trained with fold 1 held out, but fold 0 .* pass --fold 1"):
        check_folds(str(tmp_path), fold_split(dl, num_folds=3, fold=0, seed=0))
    with pytest.raises(ValueError, match="same patients, dealt into other folds .*fold_seed 0; now .*fold_seed 5"):
        check_folds(str(tmp_path), fold_split(dl, num_folds=3, fold=1, seed=5))
    # Another dataset: the message names the patients that differ and the external run, not fold numbers.
    other = {"train": [dict(it, patient_id="X" + it["patient_id"]) for it in dl["train"]], "validation": []}
    with pytest.raises(ValueError, match=r"patients differ .*\(\d+ new: X.*missing\).*run external --eval_dataset_dir"):
        check_folds(str(tmp_path), fold_split(other, num_folds=3, fold=1, seed=0))
    check_folds(str(tmp_path / "elsewhere"), split)  # no record: warns only
    # A record from before the inner validation split (model selected on the held-out fold) is refused.
    old = {k: v for k, v in record.items() if k != "test_patients"}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "folds.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="retrain"):
        check_folds(str(tmp_path / "old"), split)
