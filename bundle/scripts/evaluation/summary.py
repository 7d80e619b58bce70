"""Writing the evaluation report: ``metrics.json``, ``summary.md`` (the same content for people) and the pair grid."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from PIL import Image

from ..common.grid import pair_grid
from .mask_stats import STATISTICS
from .sets import PairSet

__all__ = ["OUTPUT_FILES", "save_grid", "summary_markdown", "write_report"]

#: the report files in ``output_dir``, in the order :func:`write_report` writes them.
OUTPUT_FILES = ("metrics.json", "summary.md", "pairs_grid.png")


def save_grid(generated: PairSet, real: PairSet, count: int, path: str) -> str:
    """PNG of ``count`` generated pairs (left) and real pairs (right), mask outlines in red; returns ``path``."""
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
        "each slice's recorded pixel spacing"
        + (f", and are left out here: {ms['area_mm2_unknown']} (areas compare in pixels)." if ms.get("area_mm2_unknown")
           else "."),
        "",
    ]


def _memorisation_lines(memo: dict | None) -> list[str]:
    """Markdown of the ``memorisation`` section (:mod:`.memorisation`)."""
    lines = ["## Memorisation audit (nearest training lesion)", ""]
    if not memo:
        return []
    if memo.get("status") == "skipped":
        return [*lines, f"Skipped: {memo['reason']}.", ""]
    lines += [
        f"{memo['n_generated']} generated and {memo['n_held_out']} held-out real pairs ({memo['held_out_patients']} "
        f"patients not trained on) against {memo['n_training_lesions']} training lesions ({memo['n_training_patches']}"
        f" patches). Flagged: closer to a training lesion than all but {memo['percentile']:g} % of the held-out pairs.",
        "",
        "| measure | closer is | threshold (held-out tail) | generated flagged | held-out flagged | binomial p "
        "| median generated | median held-out |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in memo["measures"].items():
        lines.append(
            f"| {name} | {m['closer_is']} | {_num(m['threshold'])} | {m['generated_flagged']} "
            f"({100 * m['generated_flagged_share']:.1f} %) | {100 * m['held_out_flagged_share']:.1f} % | "
            f"{m['binomial_p']:.3g} | {_num(m['generated_median'])} | {_num(m['held_out_median'])} |"
        )
    lines += ["", f"**Verdict:** {memo['verdict']}.", "",
              "![closest generated (left) / training (right) pairs](memorisation_grid.png)",
              "![nearest-lesion measures, generated vs held-out](memorisation_hist.png)", ""]  # fmt: skip
    return lines


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
        if r.get("fid_negative"):
            fid += " (< 0: numerical error)"
        if "kid_mean" in r:
            spread = "(no spread: subsets = whole sets)"
            if r.get("spread_estimable", True):
                spread = f"± {_num(r['kid_std'])}"
            kid = f"{_num(r['kid_mean'])} {spread}"
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
    lines += ["", *_memorisation_lines(metrics.get("memorisation"))]
    lines += [
        "## Pairs",
        "",
        "![generated (left) and real (right) pairs](pairs_grid.png)",
        "",
        "`pairs_grid.png`: generated pairs on the left, real pairs on the right, mask outlines in red.",
        "",
    ]
    return "\n".join(lines)


def write_report(output_dir: str, metrics: dict, generated: PairSet, real: PairSet, grid_pairs: int) -> list[str]:
    """Write :data:`OUTPUT_FILES` into ``output_dir`` (each opened exclusively: an existing file is an error).

    Returns:
        The paths written.

    Raises:
        FileExistsError: a report file exists (callers check with ``scripts.common.writer.check_free`` first).
    """
    paths = [os.path.join(output_dir, name) for name in OUTPUT_FILES]
    if os.path.exists(paths[2]):
        raise FileExistsError(f"refusing to overwrite {paths[2]}")
    save_grid(generated, real, grid_pairs, paths[2])
    with open(paths[0], "x", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
    with open(paths[1], "x", encoding="utf-8") as f:
        f.write(summary_markdown(metrics))
    return paths
