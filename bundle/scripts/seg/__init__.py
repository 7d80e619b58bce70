"""Downstream mass segmentation: lesion metrics, patient-wise folds, synthetic PIG pairs, inference inputs."""

from . import folds, inference, metrics, synthetic  # noqa: F401
