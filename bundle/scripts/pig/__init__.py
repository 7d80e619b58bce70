"""PIG-specific parts: paired DDIM sampling, guider/generator training steps, checkpoints, output writing."""

from . import (  # noqa: F401
    binarize,
    checkpoint,
    flags,
    generator_iteration,
    inferer,
    pair_stats,
    prepare_batch,
    preview,
    runinfo,
    sampling,
    schedule,
    writer,
)
