"""The evaluation report's measures, one function per section: FID/KID with controls, diversity, mask statistics,
pair consistency.

Each takes the loaded sets (:mod:`.sets`) and returns the JSON-ready dict stored under the section's key of
``metrics.json``; a measure that cannot apply (image-only sets have no masks) returns ``{"status": "skipped",
"reason": ...}``, never zeros.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from monai.transforms import GaussianSmooth

from ..common.checkpoint import file_sha256, load_weights
from ..common.value_range import unit_to_image
from ..seg.metrics import lesion_metrics
from .distances import frechet_distance, kernel_inception_distance
from .diversity import ms_ssim_settings, pairwise_dice, pairwise_ms_ssim
from .features import FeatureExtractor
from .mask_stats import compare_mask_statistics, mask_statistics
from .sets import PairSet, split_halves

__all__ = [
    "IMAGE_ONLY_REASON",
    "skipped",
    "feature_distances",
    "distance_section",
    "diversity_section",
    "mask_statistics_section",
    "pair_consistency",
]

logger = logging.getLogger(__name__)

#: reason recorded for every mask measure of an image-only generated set (a skip, never a zero).
IMAGE_ONLY_REASON = "image-only generator: no masks"


def skipped(reason: str) -> dict:
    """The record of a measure that was not computed: ``{"status": "skipped", "reason": reason}``."""
    return {"status": "skipped", "reason": reason}


def feature_distances(
    feats_a: torch.Tensor,
    feats_b: torch.Tensor,
    extractor: FeatureExtractor,
    label_a: str,
    label_b: str,
    kid_subset_size: int,
    kid_num_subsets: int,
    seed: int,
) -> dict:
    """FID and KID of two ``(N, D)`` feature sets, stamped with the extractor name, weights hash, input size and
    set sizes.

    Logs one line per number. Errors of either metric (e.g. a set of one image) are recorded as ``"fid_error"`` /
    ``"kid_error"`` instead of a number.
    """
    desc = extractor.describe()
    out = {
        "a": label_a,
        "b": label_b,
        "n_a": int(feats_a.shape[0]),
        "n_b": int(feats_b.shape[0]),
        "extractor": desc["name"],
        "extractor_weights_sha256": desc["weights_sha256"],
        "extractor_input_size_px": desc["input_size_px"],
    }
    tag = (
        f"[extractor {desc['name']}, weights sha256 {desc['weights_sha256'][:16]}…, {desc['input_size_px']} px; "
        f"N_{label_a}={out['n_a']}, N_{label_b}={out['n_b']}]"
    )
    try:
        fid = frechet_distance(feats_a, feats_b)
        out.update(fid=fid["fid"], feature_dim=fid["feature_dim"], rank_deficient=fid["rank_deficient"],
                   fid_negative=fid["negative"])  # fmt: skip
        logger.info("FID %s vs %s = %.4f %s", label_a, label_b, fid["fid"], tag)
        if fid["negative"]:
            logger.warning("FID %s vs %s is below 0 (%.4g): numerical error around a true 0, reported as computed",
                           label_a, label_b, fid["fid"])  # fmt: skip
    except ValueError as err:
        out["fid_error"] = str(err)
        logger.warning("FID %s vs %s not computed: %s", label_a, label_b, err)
    try:
        kid = kernel_inception_distance(feats_a, feats_b, kid_subset_size, kid_num_subsets, seed=seed)
        out.update({k: v for k, v in kid.items() if k not in ("n_a", "n_b", "feature_dim")})
        spread = f"± {kid['kid_std']:.6f}" if kid["spread_estimable"] else "(no spread: every subset is the whole set)"
        logger.info(
            "KID %s vs %s = %.6f %s (subsets of %d × %d) %s",
            label_a, label_b, kid["kid_mean"], spread, kid["subset_size"], kid["num_subsets"], tag,
        )  # fmt: skip
    except ValueError as err:
        out["kid_error"] = str(err)
        logger.warning("KID %s vs %s not computed: %s", label_a, label_b, err)
    return out


def distance_section(
    extractor: FeatureExtractor,
    real: PairSet,
    generated: PairSet,
    kid_subset_size: int = 1000,
    kid_num_subsets: int = 100,
    blur_sigma: float = 1.0,
    seed: int = 0,
    features: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict:
    """Section "FID and KID": generated vs real, and the controls that give the numbers a scale.

    ``features``: the extractor's ``(real, generated)`` features when the caller has them already (the evaluation
    computes them once for this section and the memorisation audit); else they are computed here.

    Controls: real half A vs half B (:func:`~.sets.split_halves`: the floor a perfect generator reaches at that N),
    real vs Gaussian-blurred real (MONAI ``GaussianSmooth``, ``blur_sigma`` px: a known degradation), and a seeded
    generated subset of half B's size vs half A (the same sizes as the half-half control).

    Returns:
        ``{"generated_vs_real": {...}, "controls": {...}, "half_split", "blur_sigma_px", "generated_subset_size"}``,
        each comparison as :func:`feature_distances` returns it.
    """
    blurred = GaussianSmooth(sigma=float(blur_sigma))(real.images[:, 0]).unsqueeze(1).clamp(0, 1)
    f_real, f_gen = features if features is not None else (extractor(real.images), extractor(generated.images))
    f_blur = extractor(torch.as_tensor(blurred))
    half_a, half_b, split_kind = split_halves(real.patients, seed)
    gen_sub = np.sort(np.random.default_rng(seed).permutation(len(generated))[: len(half_b)]).tolist()
    kid_args = (kid_subset_size, kid_num_subsets, seed)
    return {
        "generated_vs_real": feature_distances(f_gen, f_real, extractor, "generated", "real", *kid_args),
        "controls": {
            "real_half_a_vs_real_half_b": feature_distances(
                f_real[half_a], f_real[half_b], extractor, "real_half_a", "real_half_b", *kid_args
            ),
            "real_vs_blurred_real": feature_distances(
                f_real, f_blur, extractor, "real", f"real_blurred_sigma{blur_sigma:g}px", *kid_args
            ),
            "generated_subset_vs_real_half_a": feature_distances(
                f_gen[gen_sub], f_real[half_a], extractor, "generated_subset", "real_half_a", *kid_args
            ),
        },
        "half_split": split_kind,
        "blur_sigma_px": float(blur_sigma),
        "generated_subset_size": len(gen_sub),
    }


def diversity_section(real: PairSet, generated: PairSet, max_pairs: int = 1000, seed: int = 0) -> dict:
    """Section "Diversity": mean pairwise MS-SSIM of the images and Dice of the masks within each set.

    Returns:
        ``{"generated": {"ms_ssim", "mask_dice"}, "real": {...}, "ms_ssim_settings", "max_pairs"}``; ``mask_dice``
        is :func:`skipped` for an image-only set.
    """
    settings = ms_ssim_settings(min(real.images.shape[-2:]))
    out: dict = {
        side: {
            "ms_ssim": pairwise_ms_ssim(s.images, max_pairs, seed, settings),
            "mask_dice": skipped(IMAGE_ONLY_REASON) if s.masks is None else pairwise_dice(s.masks, max_pairs, seed),
        }
        for side, s in (("generated", generated), ("real", real))
    }
    out["ms_ssim_settings"] = settings
    out["max_pairs"] = int(max_pairs)
    return out


def mask_statistics_section(real: PairSet, generated: PairSet) -> dict:
    """Section "Mask statistics": area, components, eccentricity per set and their Wasserstein distances
    (:func:`~.mask_stats.compare_mask_statistics`); :func:`skipped` for an image-only generated set."""
    if generated.masks is None:
        return skipped(IMAGE_ONLY_REASON)
    note = _area_mm2_problem(real)
    real_sp = [None] * len(real.masks) if note else real.spacings
    gen_sp = [None] * len(generated.masks) if note else generated.spacings
    real_stats = [mask_statistics(m[0].numpy(), sp) for m, sp in zip(real.masks, real_sp, strict=True)]
    gen_stats = [mask_statistics(m[0].numpy(), sp) for m, sp in zip(generated.masks, gen_sp, strict=True)]
    out = compare_mask_statistics(real_stats, gen_stats)
    if note:
        out["area_mm2_unknown"] = note
        logger.info("mask statistics: area in mm² left out (%s); areas compared in pixels", note)
    return out


def _area_mm2_problem(real: PairSet) -> str | None:
    """Why areas in mm² would not compare like with like, or None: the real data carry no spacing (Duke JPEGs, 1 mm
    assumed), or their items differ in spacing (patch mode: every window has its own scale, while generated pairs
    get one median spacing)."""
    if real.description.get("format") == "duke":
        return "the Duke JPEGs carry no pixel spacing (1 mm assumed)"
    known = [tuple(float(v) for v in sp) for sp in real.spacings if sp is not None]
    if not known:
        return "the real slices carry no pixel spacing"
    rows, cols = zip(*known, strict=True)
    if max(rows) > 1.01 * min(rows) or max(cols) > 1.01 * min(cols):
        return (f"the real items' pixel spacings differ ({min(rows):.3g}–{max(rows):.3g} mm: each patch has its own "
                "scale), while generated pairs get one median spacing")  # fmt: skip
    return None


@torch.no_grad()
def pair_consistency(
    seg_network: torch.nn.Module | None,
    seg_model_path: str | None,
    generated: PairSet,
    real: PairSet | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> dict:
    """Section "Pair consistency": Dice between each generated mask and the segmenter's prediction on its slice.

    The segmenter (``seg.json``'s ``UNet``, 2-class softmax) is loaded from ``seg_model_path`` and applied to the
    slice mapped to [-1, 1]; the prediction is the argmax class. Dice per pair with
    ``scripts.seg.metrics.lesion_metrics`` (both empty = 1). The same on the real slices is given as a reference
    (optimistic when the segmenter was trained on them).

    Returns:
        ``{"status": "computed", "dice_mean", "dice_std", "n", "seg_model", "seg_model_sha256",
        "real_reference": {...} | None}``, or :func:`skipped` when the generated set has no masks, ``seg_model_path``
        is unset or not a file, or no network is given.

    Raises:
        ValueError: weights that do not fit ``seg_network`` (message names the file).
    """
    if generated.masks is None:
        return skipped(IMAGE_ONLY_REASON)
    if not seg_model_path:
        return skipped("seg_model_path is not set (pass --seg_model_path <seg_model.pt>)")
    if not os.path.isfile(seg_model_path):
        return skipped(f"seg_model_path {seg_model_path} does not exist")
    if seg_network is None:
        return skipped("no segmentation network definition given")
    seg_network = load_weights(seg_network, seg_model_path, "segmentation model").to(device).eval()

    def dice_of(pairs: PairSet) -> torch.Tensor:
        out = []
        for s in range(0, len(pairs), batch_size):
            x = unit_to_image(pairs.images[s : s + batch_size].to(device))
            pred = seg_network(x).argmax(dim=1, keepdim=True).float().cpu()
            out.append(lesion_metrics(pred, pairs.masks[s : s + batch_size])["dice"])
        return torch.cat(out).double()

    gen = dice_of(generated)
    result = {
        "status": "computed",
        "dice_mean": float(gen.mean()),
        "dice_std": float(gen.std(unbiased=False)),
        "n": len(generated),
        "seg_model": os.path.abspath(seg_model_path),
        "seg_model_sha256": file_sha256(seg_model_path),
        "real_reference": None,
    }
    if real is not None and len(real):
        ref = dice_of(real)
        result["real_reference"] = {"dice_mean": float(ref.mean()), "dice_std": float(ref.std(unbiased=False))}
        result["real_reference"]["n"] = len(real)
    return result
