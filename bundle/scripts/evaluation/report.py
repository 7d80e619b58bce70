"""The ``evaluating`` workflow: a real slice set against a generated folder → ``metrics.json``, ``summary.md``, grid.

Real set: the **training** split of the prepared datalist (``scripts.data.prepare.prepare_dataset``, the same
``dataset_dir`` / ``image_size`` / ``crop_mode`` pipeline as ``train.json``), slices mapped from [-1, 1] to [0, 1].
Generated set: the pairs listed in ``<generated_dir>/manifest.csv`` (``scripts.seg.synthetic.read_manifest``), slices
in [0, 1], masks {0, 1}, pixel spacing from the NIfTI header. A folder of an image-only generator (DDPM/DDIM
baselines: every manifest ``label`` empty) is evaluated on its images (FID/KID, MS-SSIM diversity); its mask
measures (mask Dice diversity, mask statistics, pair consistency) are reported as skipped with
:data:`IMAGE_ONLY_REASON`, never as zeros.

Outputs in ``output_dir`` (refused, before anything is computed, if any of them exists —
``scripts.pig.writer.check_free``): ``metrics.json``, ``summary.md``, ``pairs_grid.png`` (generated pairs left,
real pairs right, mask outlines in red; ``scripts.pig.preview.pair_grid``) and ``runs/<time>_evaluating.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
import torch
from monai.transforms import GaussianSmooth
from PIL import Image

from ..pig.checkpoint import file_sha256
from ..pig.preview import pair_grid
from ..pig.runinfo import record_run
from ..pig.writer import check_free
from ..seg.folds import patient_folds
from ..seg.metrics import lesion_metrics
from ..seg.synthetic import read_manifest
from .distances import frechet_distance, kernel_inception_distance
from .diversity import ms_ssim_settings, pairwise_dice, pairwise_ms_ssim
from .features import FeatureExtractor, build_extractor
from .mask_stats import STATISTICS, compare_mask_statistics, mask_statistics

__all__ = [
    "OUTPUT_FILES",
    "IMAGE_ONLY_REASON",
    "SMALL_SAMPLE_NOTE",
    "PairSet",
    "load_real_set",
    "load_generated_set",
    "split_halves",
    "feature_distances",
    "pair_consistency",
    "run_evaluation",
    "summary_markdown",
]

logger = logging.getLogger(__name__)

OUTPUT_FILES = ("metrics.json", "summary.md", "pairs_grid.png")

#: reason recorded for every mask measure of an image-only generated set (a skip, never a zero).
IMAGE_ONLY_REASON = "image-only generator: no masks"

SMALL_SAMPLE_NOTE = (
    "FID is biased upward for small sets (its expected value falls as N grows) and depends on the feature "
    "extractor: compare FID values only at equal set sizes and with the same extractor (name and weights hash). "
    "KID is an unbiased estimate, but its spread over subsets is large for small sets. "
    "The 'generated subset vs real half A' row has the same sizes as the 'real half A vs real half B' control, "
    "so those two rows can be compared directly; the real-vs-real control is the floor a perfect generator would "
    "reach at that N."
)


class PairSet:
    """A set of (slice, mask) pairs in memory.

    Attributes:
        images: (N, 1, H, W) float32 in [0, 1].
        masks: (N, 1, H, W) float32 in {0, 1}, or None for an image-only set (``masks=None``).
        spacings: N (row_mm, col_mm) pixel spacings, or None where unknown.
        patients: N patient ids (generated pairs: their manifest id).
        description: where the set came from (reported).
    """

    def __init__(self, images, masks, spacings, patients, description: dict) -> None:
        self.images = torch.as_tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)
        self.masks = (
            None if masks is None else torch.as_tensor((np.asarray(masks) > 0.5).astype(np.float32)).unsqueeze(1)
        )
        self.spacings = list(spacings)
        self.patients = [str(p) for p in patients]
        self.description = description

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: Sequence[int]) -> PairSet:
        """The pairs at ``index`` (same description)."""
        idx = list(index)
        out = PairSet.__new__(PairSet)
        out.images, out.masks = self.images[idx], None if self.masks is None else self.masks[idx]
        out.spacings = [self.spacings[i] for i in idx]
        out.patients = [self.patients[i] for i in idx]
        out.description = self.description
        return out


def _limit(n: int, max_images: int | None) -> int:
    return n if max_images is None else min(n, int(max_images))


def load_real_set(datalist: dict, split: str = "train", max_images: int | None = None) -> PairSet:
    """The prepared real slices of ``datalist[split]`` (first ``max_images``), slices mapped [-1, 1] → [0, 1].

    Raises:
        ValueError: the split is empty.
    """
    items = list(datalist.get(split) or [])[: _limit(len(datalist.get(split) or []), max_images)]
    if not items:
        raise ValueError(f"the real datalist has no '{split}' items to compare with")
    images, masks = [], []
    for it in items:
        img = np.asarray(nib.load(it["image"]).get_fdata(), dtype=np.float32)
        images.append(np.clip((img + 1.0) / 2.0, 0.0, 1.0))  # windowing gives exactly [-1, 1]; clip rounding only
        masks.append(np.asarray(nib.load(it["label"]).get_fdata()))
    desc = {
        "kind": "real",
        "split": split,
        "cache": datalist.get("cache"),
        "format": (datalist.get("params") or {}).get("format"),
        "n": len(items),
        "patients": len({str(it.get("patient_id")) for it in items}),
    }
    return PairSet(images, masks, [it.get("spacing_mm") for it in items], [it.get("patient_id") for it in items], desc)


def load_generated_set(generated_dir: str, image_size: int | None = None, max_images: int | None = None) -> PairSet:
    """The generated pairs of ``generated_dir`` through its ``manifest.csv`` (first ``max_images`` rows).

    An image-only folder (every ``label`` empty, as the DDPM/DDIM baselines write it) gives a set with
    ``masks=None`` and ``description["image_only"] = True``.

    Raises:
        FileNotFoundError / ValueError: see ``scripts.seg.synthetic.read_manifest``; also an empty manifest, a
            slice that is not ``(image_size, image_size)`` or not in [0, 1], or a manifest that mixes rows with
            and without a label file (neither a pair set nor an image-only set).
    """
    if not generated_dir:
        raise ValueError("generated_dir is not set: pass --generated_dir <PIG inference output folder>")
    rows = read_manifest(generated_dir)
    rows = rows[: _limit(len(rows), max_images)]
    if not rows:
        raise ValueError(f"{generated_dir}/manifest.csv lists no pairs")
    with_label = [bool(row["label"]) for row in rows]
    if any(with_label) and not all(with_label):
        raise ValueError(
            f"{generated_dir}/manifest.csv: {with_label.count(False)} of {len(rows)} rows have no label file; a folder "
            "must hold either (image, mask) pairs or image-only samples, not both"
        )
    image_only = not any(with_label)
    images, masks, spacings = [], [], []
    for row in rows:
        nii = nib.load(row["image"])
        img = np.asarray(nii.get_fdata(), dtype=np.float32)
        if image_size is not None and img.shape != (image_size, image_size):
            raise ValueError(f"{row['image']}: generated slice of shape {img.shape}, expected {image_size}² pixels")
        if not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
            raise ValueError(f"{row['image']}: generated slice values outside [0, 1]")
        images.append(img)
        if not image_only:
            masks.append(np.asarray(nib.load(row["label"]).get_fdata()))
        spacings.append([float(z) for z in nii.header.get_zooms()[:2]])
    desc = {"kind": "generated", "dir": os.path.abspath(generated_dir), "n": len(rows), "image_only": image_only}
    return PairSet(
        images, None if image_only else masks, spacings, [row.get("id", str(i)) for i, row in enumerate(rows)], desc
    )


def split_halves(patients: Sequence[str], seed: int = 0) -> tuple[list[int], list[int], str]:
    """Split item indices into two halves for the real-vs-real control.

    Patient-wise when there are at least 2 patients (``scripts.seg.folds.patient_folds`` with 2 folds and ``seed``,
    so no patient is in both halves — slices of one patient look alike and would flatter the control), otherwise a
    seeded item-wise split.

    Returns:
        ``(indices of half A, indices of half B, "patient-wise" | "item-wise")``.
    """
    ids = sorted({str(p) for p in patients})
    if len(ids) >= 2:
        folds = patient_folds(ids, num_folds=2, seed=seed)
        in_a = set(folds[0])
        a = [i for i, p in enumerate(patients) if str(p) in in_a]
        b = [i for i, p in enumerate(patients) if str(p) not in in_a]
        return a, b, "patient-wise"
    order = np.random.default_rng(seed).permutation(len(patients)).tolist()
    half = len(order) // 2
    return sorted(order[:half]), sorted(order[half:]), "item-wise"


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
    """FID and KID of two feature sets, stamped with the extractor name, weights hash, input size and set sizes.

    Logs one line per number. Errors of either metric (e.g. a set of one image) are recorded as ``"error"``
    instead of a number.
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
        out.update(fid=fid["fid"], feature_dim=fid["feature_dim"], rank_deficient=fid["rank_deficient"])
        logger.info("FID %s vs %s = %.4f %s", label_a, label_b, fid["fid"], tag)
    except ValueError as err:
        out["fid_error"] = str(err)
        logger.warning("FID %s vs %s not computed: %s", label_a, label_b, err)
    try:
        kid = kernel_inception_distance(feats_a, feats_b, kid_subset_size, kid_num_subsets, seed=seed)
        out.update({k: v for k, v in kid.items() if k not in ("n_a", "n_b", "feature_dim")})
        logger.info(
            "KID %s vs %s = %.6f ± %.6f (subsets of %d × %d) %s",
            label_a,
            label_b,
            kid["kid_mean"],
            kid["kid_std"],
            kid["subset_size"],
            kid["num_subsets"],
            tag,
        )
    except ValueError as err:
        out["kid_error"] = str(err)
        logger.warning("KID %s vs %s not computed: %s", label_a, label_b, err)
    return out


@torch.no_grad()
def pair_consistency(
    seg_network: torch.nn.Module | None,
    seg_model_path: str | None,
    generated: PairSet,
    real: PairSet | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> dict:
    """Dice between each generated mask and the segmenter's prediction on the generated slice.

    The segmenter (``seg_train.json``'s ``UNet``, 2-class softmax) is loaded from ``seg_model_path`` and applied to
    the slice mapped to [-1, 1]; the prediction is the argmax class. Dice per pair with
    ``scripts.seg.metrics.lesion_metrics`` (both empty = 1). The same on the real training slices is given as a
    reference (optimistic when the segmenter was trained on them).

    Returns:
        ``{"status": "computed", "dice_mean", "dice_std", "n", "seg_model", "seg_model_sha256",
        "real_reference": {...} | None}`` or ``{"status": "skipped", "reason": str}`` when ``seg_model_path`` is
        unset or not a file.
    """
    if not seg_model_path:
        return {"status": "skipped", "reason": "seg_model_path is not set (pass --seg_model_path <seg_model.pt>)"}
    if not os.path.isfile(seg_model_path):
        return {"status": "skipped", "reason": f"seg_model_path {seg_model_path} does not exist"}
    if seg_network is None:
        return {"status": "skipped", "reason": "no segmentation network definition given"}
    seg_network.load_state_dict(torch.load(seg_model_path, map_location="cpu", weights_only=True))
    seg_network = seg_network.to(device).eval()

    def dice_of(pairs: PairSet) -> torch.Tensor:
        out = []
        for s in range(0, len(pairs), batch_size):
            x = pairs.images[s : s + batch_size].to(device) * 2.0 - 1.0
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


def _save_grid(generated: PairSet, real: PairSet, count: int, path: str) -> str:
    k = max(1, min(int(count), len(generated), len(real)))
    size = generated.images.shape[-1]
    scale = max(1, 128 // size)
    columns = min(4, k)
    # An image-only set has no outlines to draw: an all-zero mask draws none.
    tiles = [
        pair_grid(
            list(s.images[:k, 0].numpy()),
            list((torch.zeros_like(s.images) if s.masks is None else s.masks)[:k, 0].numpy()),
            columns=columns,
            scale=scale,
        )
        for s in (generated, real)
    ]
    gap = np.full((tiles[0].shape[0], 8 * scale, 3), 255, dtype=np.uint8)  # white band between the two grids
    Image.fromarray(np.concatenate([tiles[0], gap, tiles[1]], axis=1)).save(path)
    return path


def run_evaluation(
    datalist: dict,
    generated_dir: str,
    output_dir: str,
    fid_extractor: str,
    fid_weights_path: str | None = None,
    seg_network: torch.nn.Module | None = None,
    seg_model_path: str | None = None,
    image_size: int | None = None,
    extractor_image_size: int | None = None,
    kid_subset_size: int = 1000,
    kid_num_subsets: int = 100,
    max_pairs: int = 1000,
    blur_sigma: float = 1.0,
    grid_pairs: int = 8,
    max_images: int | None = None,
    real_split: str = "train",
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> dict:
    """Evaluate a generated folder against the real training slices; write the report files; return the metrics.

    Steps: build the extractor (a missing weights file fails here, before anything is written); refuse an existing
    report in ``output_dir``; load both sets; features of real, generated and Gaussian-blurred real slices (MONAI
    ``GaussianSmooth``, ``blur_sigma`` px); FID/KID for generated vs real and the controls (real half A vs half B,
    real vs blurred real, a generated subset of half B's size vs half A); diversity (pairwise MS-SSIM and mask
    Dice, ≤ ``max_pairs`` seeded pairs per set); mask statistics; pair consistency (when ``seg_model_path`` exists);
    a PNG grid of ``grid_pairs`` generated and real pairs.

    Args:
        datalist: ``prepare_dataset``'s output (``@datalist``).
        generated_dir: PIG inference output folder with ``manifest.csv``.
        output_dir: report folder.
        fid_extractor, fid_weights_path, extractor_image_size: see ``features.build_extractor``.
        seg_network, seg_model_path: the segmentation ``UNet`` and its weights (seg encoder, pair consistency).
        image_size: side of the prepared real slices; generated slices must match it.
        kid_subset_size, kid_num_subsets: KID subsets (capped at the smaller set; flagged).
        max_pairs: pair cap of the diversity measures.
        blur_sigma: Gaussian sigma in pixels of the blurred-real control.
        grid_pairs: pairs per side in ``pairs_grid.png``.
        max_images: use at most this many pairs of each set (None: all).
        real_split: datalist split used as the real reference (``"train"``: what the generator learned from).

    Returns:
        The dict written to ``metrics.json``.

    Raises:
        FileNotFoundError: missing weights or generated folder; FileExistsError: an earlier report in
        ``output_dir``; ValueError: bad inputs (see the loaders).
    """
    if not generated_dir:
        raise ValueError("generated_dir is not set: pass --generated_dir <PIG inference output folder>")
    extractor = build_extractor(
        fid_extractor,
        weights_path=fid_weights_path,
        seg_network=seg_network,
        seg_model_path=seg_model_path,
        seg_image_size=image_size,
        image_size=extractor_image_size,
        batch_size=batch_size,
        device=device,
    )
    targets = [os.path.join(output_dir, name) for name in OUTPUT_FILES]
    check_free(targets)
    real = load_real_set(datalist, real_split, max_images)
    generated = load_generated_set(generated_dir, image_size, max_images)
    logger.info("evaluating %d generated pairs against %d real %s pairs", len(generated), len(real), real_split)
    if extractor.sanity_only:
        logger.warning("extractor %s has random weights: its FID/KID only check the pipeline", extractor.name)

    blurred = GaussianSmooth(sigma=float(blur_sigma))(real.images[:, 0]).unsqueeze(1).clamp(0, 1)
    f_real, f_gen, f_blur = extractor(real.images), extractor(generated.images), extractor(torch.as_tensor(blurred))
    half_a, half_b, split_kind = split_halves(real.patients, seed)
    gen_sub = np.sort(np.random.default_rng(seed).permutation(len(generated))[: len(half_b)]).tolist()
    kid_args = (kid_subset_size, kid_num_subsets, seed)
    distances = {
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
    settings = ms_ssim_settings(min(real.images.shape[-2:]))
    skipped = {"status": "skipped", "reason": IMAGE_ONLY_REASON}
    diversity = {
        side: {
            "ms_ssim": pairwise_ms_ssim(s.images, max_pairs, seed, settings),
            "mask_dice": dict(skipped) if s.masks is None else pairwise_dice(s.masks, max_pairs, seed),
        }
        for side, s in (("generated", generated), ("real", real))
    }
    diversity["ms_ssim_settings"] = settings
    diversity["max_pairs"] = int(max_pairs)
    if generated.masks is None:
        mask_stats, consistency = dict(skipped), dict(skipped)
    else:
        real_stats = [mask_statistics(m[0].numpy(), sp) for m, sp in zip(real.masks, real.spacings, strict=True)]
        gen_stats = [
            mask_statistics(m[0].numpy(), sp) for m, sp in zip(generated.masks, generated.spacings, strict=True)
        ]
        mask_stats = compare_mask_statistics(real_stats, gen_stats)
        consistency = pair_consistency(seg_network, seg_model_path, generated, real, batch_size, device)
    if consistency["status"] == "skipped":
        logger.info("pair consistency skipped: %s", consistency["reason"])

    main = distances["generated_vs_real"]
    metrics = {
        "headline": {
            "extractor": extractor.name,
            "sanity_only": extractor.sanity_only,
            "fid": main.get("fid"),
            "kid_mean": main.get("kid_mean"),
            "kid_std": main.get("kid_std"),
            "n_generated": len(generated),
            "n_real": len(real),
            "image_only": generated.masks is None,
        },
        "extractor": extractor.describe(),
        "sets": {"real": real.description, "generated": generated.description},
        "distances": distances,
        "diversity": diversity,
        "mask_statistics": mask_stats,
        "pair_consistency": consistency,
        "notes": {"small_sample_bias": SMALL_SAMPLE_NOTE},
        "settings": {
            "image_size": image_size,
            "kid_subset_size": int(kid_subset_size),
            "kid_num_subsets": int(kid_num_subsets),
            "max_pairs": int(max_pairs),
            "max_images": max_images,
            "seed": int(seed),
            "real_split": real_split,
        },
    }
    _save_grid(generated, real, grid_pairs, targets[2])
    with open(targets[0], "x", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
    with open(targets[1], "x", encoding="utf-8") as f:
        f.write(summary_markdown(metrics))
    record_run(output_dir, "evaluating", seed, {"metrics": targets[0]})
    logger.info("evaluation written to %s", output_dir)
    return metrics


def _num(x, nd: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not np.isfinite(x):
        return "nan"
    if abs(x) < 1e-12:  # e.g. KID's std when every subset is the whole set: float rounding, not spread
        return "0"
    return f"{x:.{nd}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{nd}f}"


def _mask_statistics_lines(ms: dict) -> list[str]:
    """Markdown rows of ``compare_mask_statistics``'s output (one per statistic, then the empty-mask share)."""
    lines = [
        "| statistic | real mean ± std (n) | generated mean ± std (n) | Wasserstein distance |",
        "|---|---|---|---|",
    ]
    for key, unit in STATISTICS.items():
        e = ms[key]
        cells = [
            "—" if e[s] is None else f"{_num(e[s]['mean'], 3)} ± {_num(e[s]['std'], 3)} ({e[s]['n']})"
            for s in ("real", "generated")
        ]
        lines.append(f"| {key} ({unit}) | {cells[0]} | {cells[1]} | {_num(e['wasserstein'], 3)} |")
    ef = ms["empty_mask_fraction"]
    return lines + [
        f"| empty masks (share) | {_num(ef['real'], 3)} | {_num(ef['generated'], 3)} | |",
        "",
        "Components are 8-connected; eccentricity is that of the largest component (empty masks left out); mm² use "
        "each slice's recorded pixel spacing (for inputs without spacing, e.g. JPEG, the pipeline assumes 1 mm at "
        "the source, so mm² are nominal).",
        "",
    ]


def summary_markdown(metrics: dict) -> str:
    """The human-readable report of ``metrics.json``'s content (Markdown)."""
    ex, d, h = metrics["extractor"], metrics["distances"], metrics["headline"]
    lines = ["# Generation quality: generated pairs vs real training pairs", ""]
    if ex["sanity_only"]:
        lines += [
            f"> **Sanity check only:** extractor `{ex['name']}` has random weights. Its FID/KID values test the "
            "pipeline (a set against itself ≈ 0, blur > 0) and say nothing about image quality.",
            "",
        ]
    lines += [
        f"Sets: **{h['n_generated']} generated** pairs (`{metrics['sets']['generated']['dir']}`) and "
        f"**{h['n_real']} real** pairs ({metrics['sets']['real'].get('format')} data, "
        f"'{metrics['sets']['real']['split']}' split, {metrics['sets']['real']['patients']} patients).",
        "",
        "## Feature extractor",
        "",
        "| name | weights file | SHA-256 | input | features | preprocessing |",
        "|---|---|---|---|---|---|",
        f"| `{ex['name']}` | {ex['weights_file'] or '(none: seeded random)'} | `{ex['weights_sha256']}` | "
        f"{ex['input_size_px']} px | {ex['feature_dim']} | {ex['preprocessing']} |",
        "",
        "## FID and KID",
        "",
        "| comparison | N_a | N_b | FID | KID mean ± std | KID subsets |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("generated vs real", d["generated_vs_real"])]
    names = {
        "real_half_a_vs_real_half_b": f"control: real half A vs real half B ({d['half_split']})",
        "real_vs_blurred_real": f"control: real vs Gaussian-blurred real (sigma {d['blur_sigma_px']:g} px)",
        "generated_subset_vs_real_half_a": "generated subset vs real half A (same N as the half-half control)",
    }
    rows += [(names[k], v) for k, v in d["controls"].items()]
    for name, r in rows:
        fid = _num(r.get("fid"), 3) if "fid" in r else f"error: {r.get('fid_error')}"
        if "kid_mean" in r:
            kid = f"{_num(r['kid_mean'])} ± {_num(r['kid_std'])}"
            sub = f"{r['subset_size']} × {r['num_subsets']}" + (" (capped)" if r["subset_capped"] else "")
        else:
            kid, sub = f"error: {r.get('kid_error')}", "—"
        lines.append(f"| {name} | {r['n_a']} | {r['n_b']} | {fid} | {kid} | {sub} |")
    rd = [r for _, r in rows if r.get("rank_deficient")]
    lines += [
        "",
        f"All rows: extractor `{ex['name']}` (weights SHA-256 `{ex['weights_sha256'][:16]}…`, "
        f"{ex['input_size_px']} px input).",
        "",
    ]
    if rd:
        lines += [
            f"Some sets are smaller than the feature dimension ({ex['feature_dim']}): their covariances are "
            "singular, FID is defined but noisy and strongly inflated.",
            "",
        ]
    lines += [f"**Small-sample bias.** {metrics['notes']['small_sample_bias']}", ""]

    div = metrics["diversity"]
    st = div["ms_ssim_settings"]
    lines += [
        "## Diversity (within each set; lower = more diverse)",
        "",
        "| set | mean pairwise MS-SSIM | mean pairwise mask Dice | pairs used |",
        "|---|---|---|---|",
    ]
    for side in ("generated", "real"):
        ms, dc = div[side]["ms_ssim"], div[side]["mask_dice"]
        if ms is None:
            lines.append(f"| {side} | — (fewer than 2 images) | — | 0 |")
            continue
        used = f"{ms['pairs']} of {ms['all_pairs']}" + (" (seeded random subset)" if ms["pairs_subsampled"] else "")
        dice = f"skipped: {dc['reason']}" if dc.get("status") == "skipped" else f"{dc['mean']:.4f} ± {dc['std']:.4f}"
        lines.append(f"| {side} | {ms['mean']:.4f} ± {ms['std']:.4f} | {dice} | {used} |")
    lines += [
        "",
        f"MS-SSIM (MONAI `MultiScaleSSIMMetric`, data range 1): {st['scales']} scales with weights "
        f"{tuple(round(w, 4) for w in st['weights'])}, Gaussian window {st['kernel_size']} px, sigma "
        f"{st['kernel_sigma']:.3g} — MONAI's default 5 scales with an 11 px window need images over 160 px, so "
        "smaller images use fewer scales (the finest weights, renormalised) and, if needed, a smaller window. "
        f"At most {div['max_pairs']} pairs per set.",
        "",
        "## Mask statistics",
        "",
    ]
    ms = metrics["mask_statistics"]
    lines += _mask_statistics_lines(ms) if ms.get("status") != "skipped" else [f"Skipped: {ms['reason']}.", ""]
    lines += ["## Pair consistency", ""]
    pc = metrics["pair_consistency"]
    if pc["status"] == "skipped":
        lines.append(f"Skipped: {pc['reason']}.")
    else:
        ref = pc.get("real_reference")
        lines.append(
            f"Dice between generated masks and the segmenter's prediction on the generated slices: "
            f"{pc['dice_mean']:.4f} ± {pc['dice_std']:.4f} (n = {pc['n']}; segmenter `{pc['seg_model']}`, "
            f"SHA-256 `{pc['seg_model_sha256'][:16]}…`)."
            + (
                f" Same on the real slices: {ref['dice_mean']:.4f} ± {ref['dice_std']:.4f} (n = {ref['n']}; "
                "optimistic if the segmenter was trained on them)."
                if ref
                else ""
            )
        )
    lines += [
        "",
        "## Pairs",
        "",
        "![generated (left) and real (right) pairs](pairs_grid.png)",
        "",
        "`pairs_grid.png`: generated pairs on the left, real pairs on the right, mask outlines in red.",
        "",
    ]
    return "\n".join(lines)
