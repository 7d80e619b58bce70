"""Generation-quality evaluation of PIG output folders (``configs/evaluate.json``, workflow ``evaluating``).

* :mod:`.features` — named, pluggable feature extractors (FID Inception through torch-fidelity, RadImageNet
  ResNet-50 and the segmentation U-Net's encoder through MONAI, a seeded random ResNet-18 for sanity runs);
* :mod:`.distances` — FID (MONAI ``FIDMetric``) and KID (unbiased polynomial-kernel MMD², Bińkowski et al. 2018);
* :mod:`.diversity` — mean pairwise MS-SSIM of images and Dice of masks within one set;
* :mod:`.mask_stats` — lesion area, connected components, eccentricity and their real-vs-generated distances;
* :mod:`.report` — loads the real and generated sets, runs everything, writes ``metrics.json``, ``summary.md`` and
  a PNG grid.
"""

from . import distances, diversity, features, mask_stats, report  # noqa: F401  (``$import scripts.evaluation``)
