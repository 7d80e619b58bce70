"""Python the bundle configs import (``$import scripts``): data pipeline, PIG engines, downstream segmentation."""

from . import data, pig, seg  # noqa: F401
