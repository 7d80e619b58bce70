"""The memorisation audit (``scripts.evaluation.memorisation``): a generated set that copies training patches is
flagged, held-out real data is not, and the nearest-lesion measures are what they say.

Synthetic data: each "lesion" is a bright disc at its own place on its own smooth texture, with 4 jittered patches
(shifted by up to 2 px) per lesion as the patch mode prepares them. Features: 8 × 8 average-pooled pixels (a plain,
deterministic stand-in for the evaluation extractor: the audit only needs a distance that is 0 for a copy).
"""

import numpy as np
import pytest
import torch

from scripts.evaluation.memorisation import lesion_keys, memorisation_audit, nearest_training_lesion
from scripts.evaluation.sets import PairSet

S = 32


def _lesions(n: int, seed: int, jitter: int = 4) -> tuple[PairSet, list[str]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    images, masks, keys = [], [], []
    for k in range(n):
        cy, cx, r = rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(3, 7)
        texture = rng.normal(0, 1, (S // 4, S // 4)).repeat(4, 0).repeat(4, 1)
        for _ in range(jitter):
            dy, dx = rng.integers(-2, 3, size=2)
            disc = (yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 < r**2
            img = np.clip(0.4 + 0.1 * np.roll(texture, (dy, dx), (0, 1)) + 0.4 * disc, 0, 1)
            images.append(img)
            masks.append(disc.astype(np.float32))
            keys.append(f"case{seed}-{k}:s0")
    return PairSet(images, masks, [None] * len(images), [k.split(":")[0] for k in keys], {}), keys


def features(images: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(images, 4).flatten(1)


@pytest.fixture(scope="module")
def sets():
    train, keys = _lesions(30, seed=1)
    held, _ = _lesions(10, seed=2)
    fresh, _ = _lesions(16, seed=3, jitter=2)  # unseen real-like pairs, same distribution as held-out
    return train, keys, held, fresh


def test_copies_of_the_training_set_are_flagged(sets):
    train, keys, held, _ = sets
    copies = train.subset(range(0, len(train), 3))  # 40 patches copied, jitter partners included
    section, per_pair = memorisation_audit(features, train, keys, held, copies)
    assert section["memorising"] and "reproduces training lesions" in section["verdict"]
    for name in ("feature_distance", "ssim", "mask_iou"):
        m = section["measures"][name]
        assert m["generated_flagged_share"] == 1.0 and m["binomial_p"] < 1e-10, name
    assert np.allclose(per_pair["generated"]["feature_distance"], 0) and np.allclose(per_pair["generated"]["ssim"], 1)
    assert section["n_training_lesions"] == 30 and section["n_training_patches"] == 120


def test_held_out_real_data_is_not_flagged(sets):
    train, keys, held, fresh = sets
    section, _ = memorisation_audit(features, train, keys, held, fresh)
    assert not section["memorising"] and "no sign of copying" in section["verdict"]
    for m in section["measures"].values():
        assert m["binomial_p"] >= 0.01 and m["generated_flagged_share"] < 0.25
        assert m["held_out_flagged_share"] <= 0.1  # 5th percentile of 40 values: 2 below, by construction


def test_nearest_lesion_measures_by_hand(sets):
    train, keys, _, _ = sets
    query = train.subset([5])  # lesion 1, patch 1
    query.masks = query.masks.clone()
    out = nearest_training_lesion(query, features(query.images), train, features(train.images), keys,
                                  ssim_candidates=None)  # fmt: skip
    assert out["feature_distance"][0] == 0 and out["nearest_patch"][0] == 5 and out["mask_iou"][0] == 1
    # a shifted copy: its best IoU is the jitter partner or itself, never below IoU with the shift
    shifted = PairSet(np.roll(query.images[:, 0].numpy(), 1, axis=2), np.roll(query.masks[:, 0].numpy(), 1, axis=2),
                      [None], ["q"], {})  # fmt: skip
    out = nearest_training_lesion(shifted, features(shifted.images), train, features(train.images), keys)
    m = query.masks[0, 0].bool()
    r = torch.roll(m, 1, dims=1)
    assert out["mask_iou"][0] >= float((m & r).sum() / (m | r).sum()) - 1e-12
    assert lesion_keys([{"case_id": "c", "slice_index": 3, "image": "a"}, {"image": "b"}]) == ["c:s3", "b"]
