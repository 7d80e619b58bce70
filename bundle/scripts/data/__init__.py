"""DBT data pipeline: format loaders (folder, Duke box table, phantom) -> ``Case`` -> cached 2-D slice set."""

from . import case, duke, folder, phantom, prepare, readers, transforms  # noqa: F401
