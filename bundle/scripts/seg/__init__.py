"""Downstream mass segmentation: lesion metrics, patient-wise folds, synthetic pairs as training items, inference on
raw images (inputs, training settings, masks on the source grid), scores of such masks, external validation."""

from . import external, folds, inference, metrics, synthetic  # noqa: F401  (score: a command, imported on demand)
