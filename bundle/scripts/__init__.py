"""Python the bundle configs import (``$import scripts``): only what MONAI lacks, one package per concern.

* :mod:`.common` — shared machinery: checkpoints, run guards and records, the pair writer, value ranges, config lists,
  speed options, torchrun (DDP) support;
* :mod:`.data` — the DBT data pipeline: readers and loaders, slice transforms, the cached slice set, and the same
  steps on a raw file at inference with their inverse;
* :mod:`.pig` — the method: paired DDIM sampling, the guider's and generator's training steps;
* :mod:`.seg` — downstream mass segmentation: metrics, patient-wise folds, synthetic pairs, raw-image inference;
* :mod:`.export` — result files for 3D Slicer and PACS: ``.seg.nrrd``, DICOM SEG, synthetic DICOM images;
* :mod:`.baselines` — DDPM / DDIM, mask-concat and ControlNet generators;
* :mod:`.evaluation` — FID/KID with named extractors, diversity, mask statistics, memorisation audit, the report;
* :mod:`.experiments` — resumable runners over the workflows (imported on demand, not here);
* :mod:`.perf` — the benchmark and the GPU check (imported on demand, not here).
"""

from . import baselines, common, data, evaluation, export, pig, seg  # noqa: F401

# every bundle run imports ``scripts`` first (the configs' ``$import scripts``): its uncaught errors end with the
# bundle's one-line message, printed last
common.guards.install_error_summary()
