"""Result files that open in 3D Slicer and PACS: `.seg.nrrd` segmentations, DICOM SEG, synthetic DICOM images.

* :mod:`.formats` — output format names, the mass segment's codes and colour, the atomic no-overwrite write;
* :mod:`.nifti` — masks as NIfTI on a source image's grid;
* :mod:`.seg_nrrd` — 3D Slicer segmentation files (slicerio);
* :mod:`.dicom_seg` — DICOM Segmentation objects on DBT or single-frame source images (highdicom);
* :mod:`.synthetic_dicom` — generated slices as Secondary Capture images marked synthetic, with their SEG.
"""

from .dicom_seg import read_dicom_seg, write_dicom_seg
from .formats import MASS_SEGMENT, OUTPUT_FORMATS, SegmentInfo, check_output_formats
from .nifti import grid_affine, nifti_affine, write_nifti_mask
from .seg_nrrd import read_seg_nrrd, write_seg_nrrd
from .synthetic_dicom import synthetic_patient_id, write_synthetic_image, write_synthetic_pair

__all__ = [
    "OUTPUT_FORMATS",
    "MASS_SEGMENT",
    "SegmentInfo",
    "check_output_formats",
    "grid_affine",
    "nifti_affine",
    "write_nifti_mask",
    "write_seg_nrrd",
    "read_seg_nrrd",
    "write_dicom_seg",
    "read_dicom_seg",
    "write_synthetic_image",
    "write_synthetic_pair",
    "synthetic_patient_id",
]
