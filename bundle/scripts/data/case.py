"""The record every input format is turned into before the common slice pipeline runs.

A *case* is one DBT volume (or one 2-D slice, as a volume of one slice) with its lesion mask, in a fixed
array layout so that the format loaders (folder of volumes/slices, Duke box table, embedded phantom) and the
slice pipeline (``scripts.data.prepare``) meet in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Case", "DataError"]


class DataError(ValueError):
    """Bad input data: the message names the file (or folder) and the problem."""


@dataclass
class Case:
    """One image volume with its lesion mask.

    Attributes:
        case_id: unique, file-system-safe id (used in cache file names).
        patient_id: patient the case belongs to (patient-wise splits use it).
        image: ``(S, H, W)`` float32 raw intensities (any range; ``S = 1`` for a 2-D slice). Axis 0 runs
            through the slices (DBT reconstruction planes), axes 1 and 2 are the in-plane rows and columns.
        label: ``(S, H, W)`` uint8 lesion mask with values in {0, 1}, same shape as ``image``.
        spacing: ``(slice, row, column)`` spacing in mm; ``1.0`` where the source gives none.
        breast_side: image side (``"left"`` = low column indices, ``"right"``) on which the breast lies, if the
            source says so (DICOM laterality, Duke view); ``None`` lets the pipeline detect it from intensities.
        source: the file(s) the case came from, quoted in every error and in the datalist.
        lossy_mask: True when the mask came from a lossy format (JPEG) and was thresholded.
        meta: free-form extras (view, class, ...), copied into the datalist.
    """

    case_id: str
    patient_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    breast_side: str | None = None
    source: str = ""
    lossy_mask: bool = False
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.label.ndim != 3:
            raise DataError(
                f"{self.source or self.case_id}: expected (S, H, W) image and mask, got image {self.image.shape} "
                f"and mask {self.label.shape}"
            )
        if self.image.shape != self.label.shape:
            raise DataError(
                f"{self.source or self.case_id}: image shape {self.image.shape} and mask shape "
                f"{self.label.shape} differ"
            )
        if self.breast_side not in (None, "left", "right"):
            raise DataError(f"{self.source or self.case_id}: breast_side must be 'left', 'right' or None")
