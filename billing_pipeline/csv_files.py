"""The one way the project writes a CSV: formula-safe and atomic.

Why one function: our CSVs (reconciliation, quarantine, unrated usage, drift reports) carry text
that outsiders control: a gateway request's ``model`` field, a catalog id, a provider's line item.
A spreadsheet opening ``=HYPERLINK("http://evil","x")`` runs it as a formula (OWASP "CSV
Injection"). Every string cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is therefore written with a leading single quote (``'=HYPERLINK(...)``), which
spreadsheets show as text.

Numbers are not formulas. Numeric columns (integers, decimals, floats) are never touched, and a
*string* cell that is exactly a decimal number (``-1.00``, ``+5``, ``-2.5e3``) is kept as it is:
a spreadsheet reads it as that number, nothing runs, and our own readers (``runner._summarize``
reads ``cost`` with ``Decimal``) keep working. Anything else starting with a trigger character,
``-1+2`` or ``-cmd|...`` included, is prefixed. A cell that already begins with quotes before a
trigger (``'=x``) gets one more, so ``restore`` (for readers of our CSVs) undoes exactly what was
added and the round trip is lossless.

Atomic: the file is written to a unique temporary name in the same folder, flushed to disk, and
renamed over the target, so a reader (or a crash) never sees half a report.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from billing_pipeline.atomic import atomic_file

FORMULA_TRIGGERS = r"^'*[=+\-@\t\r]"  # quotes first too: a reader can then strip exactly one
PLAIN_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
PREFIX = "'"
WE_PREFIXED = r"^''*[=+\-@\t\r]"  # a quote, then what FORMULA_TRIGGERS matches


def neutralise_expr(column: str) -> pl.Expr:
    """The column with every formula-looking string cell prefixed by a single quote (nulls stay null)."""
    text = pl.col(column)
    risky = text.str.contains(FORMULA_TRIGGERS) & ~text.str.contains(PLAIN_NUMBER)
    return pl.when(risky).then(pl.lit(PREFIX) + text).otherwise(text).alias(column)


def restore_expr(column: str) -> pl.Expr:
    """For a reader of our CSVs: the original text (one leading quote removed where we added it)."""
    text = pl.col(column)
    return (
        pl.when(text.str.contains(WE_PREFIXED))
        .then(text.str.slice(1))
        .otherwise(text)
        .alias(column)
    )


def restore(cell: str | None) -> str | None:
    """``restore_expr`` for one cell (``csv.DictReader`` readers)."""
    if cell and re.match(WE_PREFIXED, cell):
        return cell[1:]
    return cell


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame as it goes to disk: string-like columns neutralised, every other column as is."""
    textual = [
        name
        for name, dtype in frame.schema.items()
        if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))
    ]
    if not textual:
        return frame
    return frame.with_columns(pl.col(textual).cast(pl.String)).with_columns(
        [neutralise_expr(name) for name in textual]
    )


def write_csv(frame: pl.DataFrame, path: Path | str) -> Path:
    """Write ``frame`` to ``path`` as CSV, formula-safe (see module docstring) and atomically."""
    with atomic_file(path) as fh:
        neutralised(frame).write_csv(fh)
    return Path(path)


__all__ = [
    "FORMULA_TRIGGERS",
    "neutralise_expr",
    "neutralised",
    "restore",
    "restore_expr",
    "write_csv",
]
