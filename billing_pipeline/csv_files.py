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

Money is written as a spreadsheet should show it: the columns a caller names (``MoneyColumns``)
at the currency's minor unit ('9.35', '1200' for JPY), never with the twelve decimals a provider
cost share carries; where those decimals matter for reconciling (a cost, a margin), they follow in
full in an added ``<name>_exact`` column. The existing columns keep their names and places.

Atomic: the file is written to a unique temporary name in the same folder, flushed to disk, and
renamed over the target, so a reader (or a crash) never sees half a report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from billing_pipeline.atomic import atomic_file
from billing_pipeline.money import amount_text, exact, exact_text

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


EXACT_SUFFIX = "_exact"


@dataclass(frozen=True)
class MoneyColumns:
    """Which columns of a CSV are money: each is written at its currency's minor unit, and each of
    ``exact`` also with all its decimals in ``<name>_exact``, appended after the file's columns.
    ``currency``: one ISO code for the file, or one per row (a Series as long as the frame)."""

    columns: Sequence[str]
    exact: Sequence[str] = ()
    currency: str | pl.Series = "USD"

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The frame as written: money columns as text at the minor unit, ``*_exact`` added."""
        currencies = (
            [self.currency] * frame.height
            if isinstance(self.currency, str)
            else self.currency.to_list()
        )
        if len(currencies) != frame.height:
            raise ValueError(f"{len(currencies)} currencies for {frame.height} rows")

        def text(name: str, write) -> pl.Series:
            values = frame.get_column(name).to_list()
            return pl.Series(
                name,
                [
                    None if v is None else write(exact(v), c)
                    for v, c in zip(values, currencies, strict=True)
                ],
                dtype=pl.String,
            )

        rounded = [text(name, amount_text) for name in self.columns]
        precise = [text(name, exact_text).alias(name + EXACT_SUFFIX) for name in self.exact]
        return frame.with_columns(rounded).with_columns(precise)


def write_csv(frame: pl.DataFrame, path: Path | str, money: MoneyColumns | None = None) -> Path:
    """Write ``frame`` to ``path`` as CSV, formula-safe (see module docstring) and atomically;
    ``money``: its money columns, at the currency's minor unit (with ``*_exact`` where asked)."""
    if money is not None:
        frame = money.apply(frame)
    with atomic_file(path) as fh:
        neutralised(frame).write_csv(fh)
    return Path(path)


__all__ = [
    "EXACT_SUFFIX",
    "FORMULA_TRIGGERS",
    "MoneyColumns",
    "neutralise_expr",
    "neutralised",
    "restore",
    "restore_expr",
    "write_csv",
]
