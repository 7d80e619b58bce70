"""A DICOMweb datastore whose labels go back to the PACS as DICOM SEG written by the bundle (highdicom).

MONAI Label's ``DICOMWebDatastore.save_label`` converts a label with dcmqi's ``itkimage2segimage`` (downloaded from
GitHub at start, which these machines cannot reach) or pydicom-seg, reading the series with SimpleITK. For DBT
(multi-frame Breast Tomosynthesis Image Storage, or one file per slice) this datastore writes the SEG with the
bundle's :func:`scripts.export.dicom_seg.write_dicom_seg` from the series as the bundle reads it, so that the mask
frames reference the source instances and frames they were predicted on, and stores it with STOW-RS.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.utils.dicom import dicom_web_upload_dcm
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException

logger = logging.getLogger(__name__)

__all__ = ["BundleDICOMWebDatastore"]


class BundleDICOMWebDatastore(DICOMWebDatastore):
    """``DICOMWebDatastore`` with :meth:`save_label` writing and storing the SEG through the bundle (see module)."""

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], label_id: str = ""
    ) -> str:
        """Store a ``final`` label as a DICOM SEG in the PACS (the PACS is the record; nothing is cached locally).

        Args:
            image_id: the Series Instance UID of the source.
            label_filename: a mask on the source grid (NIfTI/NRRD, as ``mass_seg`` returns it or Slicer submits it).

        Returns:
            The SEG's Series Instance UID (the label id).

        Raises:
            DataError: a mask that does not fit the series (names both); MONAILabelException: a tag other than
                ``final``.
        """
        from scripts.data.dicom import read_dicom_datasets
        from scripts.data.readers import read_mask
        from scripts.export.dicom_seg import write_dicom_seg

        if label_tag != DefaultLabelTag.FINAL:
            # the PACS keeps submitted (final) labels only; MONAI Label's own datastore fails here the same way
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT,
                f"a DICOMweb datastore stores final labels only (as DICOM SEG), not tag {label_tag!r}",
            )
        image_dir = self.get_image_uri(image_id)
        mask = read_mask(label_filename)[0]
        fd, seg_path = tempfile.mkstemp(suffix="_seg.dcm")
        os.close(fd)
        os.unlink(seg_path)  # write_dicom_seg never overwrites
        try:
            write_dicom_seg(mask, read_dicom_datasets(image_dir), seg_path)
            series_uid = dicom_web_upload_dcm(seg_path, self._client)
        finally:
            if os.path.exists(seg_path):
                os.unlink(seg_path)
        logger.info("stored the DICOM SEG of %s in the PACS (series %s)", image_id, series_uid)
        return series_uid
