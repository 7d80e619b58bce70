"""The ``evaluating`` workflow (``evaluate.json``): a real slice set against a generated folder → the report.

Steps of :func:`run_evaluation`: refuse an existing report in ``output_dir`` (before anything is computed); load the
real training slices and the generated pairs (:mod:`.sets`); compute each section (:mod:`.sections`); write
``metrics.json``, ``summary.md`` and ``pairs_grid.png`` (:mod:`.summary`) and ``runs/<time>_evaluating.json``.
The feature extractor is built by the config (``extractor``: :func:`~.features.build_extractor`) before the data
are loaded, so a missing weights file fails first.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

import torch

from ..common.runinfo import record_run
from ..common.writer import check_free
from .features import FeatureExtractor
from .memorisation import lesion_keys, memorisation_audit, write_figures
from .sections import distance_section, diversity_section, mask_statistics_section, pair_consistency, skipped
from .sets import load_generated_set, load_real_set
from .summary import OUTPUT_FILES, write_report

__all__ = ["OUTPUT_FILES", "SMALL_SAMPLE_NOTE", "EvaluationSettings", "run_evaluation"]

logger = logging.getLogger(__name__)

#: the memorisation audit's figures (:mod:`.memorisation`), written beside :data:`OUTPUT_FILES`.
MEMORISATION_FILES = ("memorisation_grid.png", "memorisation_hist.png")

SMALL_SAMPLE_NOTE = (
    "FID is biased upward for small sets (its expected value falls as N grows) and depends on the feature "
    "extractor: compare FID values only at equal set sizes and with the same extractor (name and weights hash). "
    "KID is an unbiased estimate, but its spread over subsets is large for small sets. "
    "The 'generated subset vs real half A' row has the same sizes as the 'real half A vs real half B' control, "
    "so those two rows can be compared directly; the real-vs-real control is the floor a perfect generator would "
    "reach at that N."
)


@dataclass
class EvaluationSettings:
    """The evaluation's settings (``evaluate.json`` ids of the same names).

    Attributes:
        image_size: side of the prepared real slices; generated slices must match it (None: not checked).
        kid_subset_size, kid_num_subsets: KID subsets (capped at the smaller set; flagged).
        max_pairs: pair cap of the diversity measures.
        blur_sigma: Gaussian sigma in pixels of the blurred-real control.
        grid_pairs: pairs per side in ``pairs_grid.png``.
        max_images: use at most this many pairs of each set (None: all).
        real_split: datalist split used as the real reference (``"train"``: what the generator learned from;
            ``"validation"``; ``"all"``: both).
        seed: seeds the half split, the generated subset, KID subsets and diversity pairs.
        batch_size: images per segmenter pass (pair consistency).
    """

    image_size: int | None = None
    kid_subset_size: int = 1000
    kid_num_subsets: int = 100
    max_pairs: int = 1000
    blur_sigma: float = 1.0
    grid_pairs: int = 8
    max_images: int | None = None
    real_split: str = "train"
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("kid_subset_size", "kid_num_subsets", "max_pairs", "grid_pairs", "seed", "batch_size"):
            setattr(self, name, int(getattr(self, name)))
        self.blur_sigma = float(self.blur_sigma)


def run_evaluation(
    extractor: FeatureExtractor,
    datalist: dict,
    generated_dir: str,
    output_dir: str,
    settings: EvaluationSettings | None = None,
    seg_network: torch.nn.Module | None = None,
    seg_model_path: str | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Evaluate a generated folder against the real training slices; write the report files; return the metrics.

    Args:
        extractor: the feature extractor of FID/KID (``features.build_extractor``).
        datalist: ``prepare_dataset``'s output (``@datalist``).
        generated_dir: PIG (or baseline) inference output folder with ``manifest.csv``.
        output_dir: report folder.
        settings: sizes, counts and seed (:class:`EvaluationSettings`; defaults when None).
        seg_network, seg_model_path: the segmentation ``UNet`` and its weights (pair consistency).
        device: where the segmenter runs.

    Returns:
        The dict written to ``metrics.json``.

    Raises:
        FileNotFoundError: missing generated folder or manifest; FileExistsError: an earlier report in
        ``output_dir``; ValueError: bad inputs (see :mod:`.sets`).
    """
    s = settings or EvaluationSettings()
    if not generated_dir:
        raise ValueError("generated_dir is not set: pass --generated_dir <PIG inference output folder>")
    check_free([os.path.join(output_dir, name) for name in (*OUTPUT_FILES, *MEMORISATION_FILES)])
    real = load_real_set(datalist, s.real_split, s.max_images)
    generated = load_generated_set(generated_dir, s.image_size, s.max_images)
    logger.info("evaluating %d generated pairs against %d real %s pairs", len(generated), len(real), s.real_split)
    if extractor.sanity_only:
        logger.warning("extractor %s has random weights: its FID/KID only check the pipeline", extractor.name)

    features = extractor(real.images), extractor(generated.images)  # once, for FID/KID and the memorisation audit
    distances = distance_section(extractor, real, generated, s.kid_subset_size, s.kid_num_subsets, s.blur_sigma, s.seed,
                                 features)  # fmt: skip
    consistency = pair_consistency(seg_network, seg_model_path, generated, real, s.batch_size, device)
    memo_files = [os.path.join(output_dir, n) for n in MEMORISATION_FILES]
    if s.real_split == "train" and datalist.get("validation"):
        held_out = load_real_set(datalist, "validation", s.max_images)
        lesions = lesion_keys(datalist["train"][: len(real)])
        memorisation, per_pair = memorisation_audit(extractor, real, lesions, held_out, generated, features=features)
    else:
        memorisation = skipped("needs real_split 'train' and held-out (validation) patients to compare with")
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
        "diversity": diversity_section(real, generated, s.max_pairs, s.seed),
        "mask_statistics": mask_statistics_section(real, generated),
        "pair_consistency": consistency,
        "memorisation": memorisation,
        "notes": {"small_sample_bias": SMALL_SAMPLE_NOTE},
        "settings": {k: v for k, v in asdict(s).items() if k not in ("blur_sigma", "grid_pairs", "batch_size")},
    }
    paths = write_report(output_dir, metrics, generated, real, s.grid_pairs)
    if memorisation["status"] == "ok":
        paths += write_figures(memorisation, per_pair, generated, real, *memo_files, count=s.grid_pairs)
    record_run(output_dir, "evaluating", s.seed, {"metrics": paths[0]})
    logger.info("evaluation written to %s", output_dir)
    return metrics
