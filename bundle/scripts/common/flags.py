"""Checks of the configs' true/false ids, because ``monai.bundle run`` passes ``--flag false`` as the string "false".

Python truthiness would read that string as *true* (``not "false"`` is ``False``), silently turning an option on.
"""

from __future__ import annotations

__all__ = ["check_flags"]


def check_flags(**flags: object) -> None:
    """Raise unless every value is a real ``bool``.

    Raises:
        TypeError: names each offending id and tells how to write it on the command line (``--use_ema False``).
    """
    bad = {name: value for name, value in flags.items() if not isinstance(value, bool)}
    if bad:
        shown = ", ".join(f"{k}={v!r}" for k, v in bad.items())
        raise TypeError(
            f"true/false options must be Python booleans, got {shown}; on the command line write "
            f"--{next(iter(bad))} True or --{next(iter(bad))} False (capitalised; 'false' is read as a string)"
        )
