"""Generation-quality evaluation of generated folders (``configs/evaluate.json``, workflow ``evaluating``).

* :mod:`.sets` — loading: the real slice set and a generated folder as in-memory pair sets;
* :mod:`.features` — named, pluggable feature extractors (FID Inception through torch-fidelity, RadImageNet
  ResNet-50 and the segmentation U-Net's encoder through MONAI, a seeded random ResNet-18 for sanity runs);
* :mod:`.distances` — FID (MONAI ``FIDMetric``) and KID (unbiased polynomial-kernel MMD², Bińkowski et al. 2018);
* :mod:`.diversity` — mean pairwise MS-SSIM of images and Dice of masks within one set;
* :mod:`.mask_stats` — lesion area, connected components, eccentricity and their real-vs-generated distances;
* :mod:`.sections` — computing: one function per section of the report;
* :mod:`.summary` — writing: ``metrics.json``, ``summary.md`` and the PNG grid;
* :mod:`.report` — the workflow: load, compute, write;
* :mod:`.pair_stats` — quick feature-free pair statistics (area, components, contrast) with a command line.
"""

# pair_stats is a command-line module: importing it here made ``python -m scripts.evaluation.pair_stats`` warn that
# the module was already imported (runpy); import it by name.
from . import (  # noqa: F401
    distances,
    diversity,
    features,
    mask_stats,
    report,
    sections,
    sets,
    summary,
)
