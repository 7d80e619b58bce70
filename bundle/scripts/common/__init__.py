"""The bundle's shared machinery, used by every package: checkpoints and atomic writes, run guards, true/false
flag checks, run records, the generated-pair writer and manifest reader, PNG pair grids, the value-range convention,
the speed options (mixed precision, inference mode, channels-last), the list of config files that make up each
workflow, and the launcher of ``python -m`` runs."""

from . import checkpoint, configs, flags, grid, guards, launch, runinfo, speed, value_range, writer  # noqa: F401
