"""Downstream mass segmentation: lesion metrics, patient-wise folds, synthetic pairs as training items, inference
inputs and output names."""

from . import folds, inference, metrics, synthetic  # noqa: F401
