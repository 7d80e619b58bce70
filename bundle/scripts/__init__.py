"""Python the PIG bundle configs import (``$import scripts``): data pipeline and the PIG-specific engines."""

from . import data, pig  # noqa: F401
