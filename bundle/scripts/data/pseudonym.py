"""Pseudonyms for patient identifiers read from the data (DICOM Patient ID), stable per site, not reversible.

A pseudonym is ``"P"`` + the first 16 hex digits of ``sha256(salt + "\\0" + identifier)``. The salt is a random
secret kept in one file per site (:func:`site_salt`): with it, the same identifier always gives the same pseudonym
(so the patient-wise split groups a patient's studies together, run after run); without it, a pseudonym cannot be
traced back by hashing candidate identifiers. Deleting the salt file changes every pseudonym (and so the split)
of data prepared afterwards.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path

from .case import DataError

__all__ = ["SALT_FILE_NAME", "default_salt_dir", "pseudonymise", "site_salt"]

#: name of the salt file inside the salt folder.
SALT_FILE_NAME = "pseudonym_salt"


def pseudonymise(identifier: str, salt: str) -> str:
    """``"P"`` + the first 16 hex digits (64 bits) of ``sha256((salt + "\\0" + identifier).encode("utf-8"))``.

    Args:
        identifier: the identifying value (e.g. DICOM Patient ID (0010,0020)), any string.
        salt: the site secret (:func:`site_salt`); ``""`` gives an unsalted hash, reversible by guessing.

    Returns:
        a 17-character string ``P[0-9a-f]{16}``; equal inputs give equal pseudonyms.
    """
    digest = hashlib.sha256(f"{salt}\0{identifier}".encode()).hexdigest()
    return "P" + digest[:16]


def default_salt_dir() -> Path:
    """The salt folder used when none is given: ``$XDG_CACHE_HOME/pig`` (default ``~/.cache/pig``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pig"


def site_salt(cache_dir: str | Path) -> str:
    """The site's pseudonym salt: the content of ``cache_dir/pseudonym_salt``, created on first use.

    The file is created once with ``secrets.token_hex(16)`` (32 hex digits, 128 random bits), mode 0600, and never
    overwritten: it is written to a temporary file and hard-linked into place (``os.link`` fails when the name
    exists, so concurrent first calls agree on one salt); where hard links are not supported,
    ``open(O_CREAT | O_EXCL)`` is used instead.

    Args:
        cache_dir: folder of the salt file (created if missing).

    Raises:
        DataError: the folder cannot be created or the file cannot be read or written, or the file is empty
            (names the file; do not delete it unless no pseudonym made with it is still in use).
    """
    folder = Path(cache_dir)
    path = folder / SALT_FILE_NAME
    if not path.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _create_once(path, secrets.token_hex(16))
        except OSError as err:
            raise DataError(f"{path}: cannot create the pseudonym salt file: {type(err).__name__}: {err}") from err
    try:
        salt = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the pseudonym salt file: {type(err).__name__}: {err}") from err
    if not salt:
        raise DataError(
            f"{path}: the pseudonym salt file is empty; restore it from a backup (or delete it to start new "
            "pseudonyms, which changes every patient id and the split)"
        )
    return salt


def _create_once(path: Path, salt: str) -> None:
    """Write ``salt`` to ``path`` unless it exists; never a half-written or replaced file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(salt + "\n")
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another process created it first: its salt wins
        except OSError:  # no hard links on this file system
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(salt + "\n")
    finally:
        os.unlink(tmp)
