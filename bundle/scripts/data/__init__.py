"""DBT data pipeline: format loaders (folder, Duke box table, phantom; file readers, DICOM) → ``Case`` → slice
transforms (selection, foreground, laterality, crops, intensity window) → cached 2-D slice set (``prepare``)."""

from . import (  # noqa: F401
    arrays,
    case,
    crops,
    dicom,
    duke,
    folder,
    foreground,
    intensity,
    laterality,
    phantom,
    prepare,
    readers,
    selection,
)
