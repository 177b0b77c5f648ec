"""Output paths that cannot leave their folder, whatever id names the file.

Invoice, receipt, statement and .eml file names are made from catalog ids (customer ids, invoice
numbers built from ``issuer.invoice_prefix``). The catalog refuses unsafe ids at load
(catalog/model.py ``ID_PATTERN``); this is the second wall, at the point of writing: every such
path is built by ``inside``, which refuses a name that is absolute, climbs out with ``..``, has a
separator or NUL, or would resolve (symlinks followed) outside the folder. One helper, so no
writer can forget the check.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path


class UnsafePath(ValueError):
    """An output path that would not stay inside its folder: the message names both."""


def inside(base: str | os.PathLike, *parts: str) -> Path:
    """``base / parts`` after checking it stays inside ``base``.

    Each part is ONE path segment: a folder name made by the code (``"2026-10"``, ``"invoices"``)
    or a file name derived from an id (``f"{customer_id}.pdf"``). Refused, with UnsafePath: an
    empty part, ``.`` or ``..``, a ``/`` or ``\\`` (so no absolute path either), a NUL, and any
    result that resolves outside ``base`` (a symlink planted inside it). The path is returned as
    ``Path(base).joinpath(*parts)``, in the caller's own form."""
    base = Path(base)
    for part in parts:
        text = os.fspath(part)
        if text in ("", ".", "..") or any(c in text for c in ("/", "\\", "\x00")):
            raise UnsafePath(f"{text!r}: not a safe file name under {base}")
    path = base.joinpath(*parts)
    text = os.fspath(path)
    root = _real(os.fspath(base))
    real = os.path.join(
        _real(os.path.dirname(text)), os.path.basename(text)
    )  # folders: resolved once
    if os.path.islink(text):  # one lstat: a link planted where the file goes is followed to its end
        real = os.path.realpath(text)
    if not real.startswith(root.rstrip(os.sep) + os.sep):
        raise UnsafePath(f"{path}: resolves to {real}, outside {root}")
    return path


@lru_cache(maxsize=256)
def _real(folder: str) -> str:
    """A folder's real path (10^4 invoices share a handful of folders: resolved once each)."""
    return os.path.realpath(folder)
