"""The bundle's shared machinery, used by every package: checkpoints and atomic writes, run guards, true/false
flag checks, run records, the generated-pair writer and manifest reader, PNG pair grids, the value-range convention
and the list of config files that make up each workflow."""

from . import checkpoint, configs, flags, grid, guards, runinfo, value_range, writer  # noqa: F401
