"""``usage_key``: the six columns a usage row is rated by, as one integer written at ingestion.

Rating groups the month's events by customer, provider, model, model family, meter and
dimensions. On six string columns that group-by is most of the month-end's rating time (10 M
events: ~1.8 s of CPU, against ~0.4 s on one integer column; benchmarks/RESULTS.md), so
``normalize`` writes the six columns' hash beside them, and each daily partition's **code book**
(``usage_codes``: one row per key with its six values) is stored beside it. Rating then groups by
the integer and reads the strings back from the code book, a few hundred thousand rows at most.

Exactness does not rest on the hash: a key the month's code books map to two different rows (a
collision) or a row whose key no code book knows makes ``month_code_book`` / ``rate_month`` fall
back to grouping by the strings, so a collision costs time, never money. The hash is polars'
``struct.hash``, stable within a polars version; a new polars version may give the same row a new
key, which the code book simply lists twice (rating re-groups such rows by their strings).

Keys are below 2^59 so that ``key x 32 + day of month`` still fits 64 bits: the daily chart
groups on that one integer.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

KEY_COLUMNS = ["customer_id", "provider", "model", "model_family", "meter", "dimensions"]
DAY_BITS = 32  # key x DAY_BITS + (day of month - 1) packs a key and its day in one UInt64
CODE_BOOK_SCHEMA: dict[str, pl.DataType] = {
    "usage_key": pl.UInt64,
    **{c: pl.String for c in KEY_COLUMNS},
}


def usage_key_expr() -> pl.Expr:
    """The row's key: a 59-bit hash of KEY_COLUMNS (nulls hash as nulls, not as "")."""
    return (pl.struct(KEY_COLUMNS).hash() // DAY_BITS).alias("usage_key")


def code_book(usage: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The distinct keys of ``usage`` with their six values, sorted by key (deterministic files)."""
    return (
        usage.lazy()
        .filter(pl.col("usage_key").is_not_null())
        .select(list(CODE_BOOK_SCHEMA))
        .unique()
        .sort(pl.all())
        .collect()
        .cast(CODE_BOOK_SCHEMA)
    )


def month_code_book(books: Iterable[pl.DataFrame | None]) -> pl.DataFrame | None:
    """The code books of a month's days as one, or None when one day has none (written before
    keys existed) or a key stands for two different rows: the caller groups by the strings."""
    books = list(books)
    if not books or any(b is None for b in books):
        return None
    merged = pl.concat([b.select(list(CODE_BOOK_SCHEMA)) for b in books]).unique()
    if merged["usage_key"].is_duplicated().any():
        return None
    return merged
