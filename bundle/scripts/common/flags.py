"""Checks of the configs' true/false ids, because ``monai.bundle run`` passes ``--flag false`` as the string "false".

Python truthiness would read that string as *true* (``not "false"`` is ``False``), silently turning an option on.
"""

from __future__ import annotations

__all__ = ["FlagError", "check_flags"]


class FlagError(TypeError, ValueError):
    """A true/false id that is not a ``bool``: a ``TypeError`` by nature, and a ``ValueError`` so that the bundle's
    error summary (``scripts.common.guards``) prints its message as the run's last line, as for other bad settings."""


def check_flags(**flags: object) -> None:
    """Raise unless every value is a real ``bool``.

    Raises:
        FlagError: (a ``TypeError`` and a ``ValueError``) names each offending id and tells how to write it on the
            command line (``--use_ema False``).
    """
    bad = {name: value for name, value in flags.items() if not isinstance(value, bool)}
    if bad:
        shown = ", ".join(f"{k}={v!r}" for k, v in bad.items())
        raise FlagError(
            f"true/false options must be Python booleans, got {shown}; on the command line write "
            f"--{next(iter(bad))} True or --{next(iter(bad))} False (capitalised; 'false' is read as a string)"
        )
