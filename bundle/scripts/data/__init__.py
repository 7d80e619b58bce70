"""DBT data pipeline: format loaders (folder, raw datalist, Duke box table, phantom; file readers, DICOM, patient
pseudonyms) → ``Case`` → slice transforms (selection, foreground, laterality, crops, intensity window) → cached 2-D
slice set (``prepare``); the same steps on a raw file at inference, and their inverse (``source``)."""

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
    pseudonym,
    readers,
    selection,
    source,
)
