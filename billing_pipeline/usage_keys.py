"""``usage_key``: the six columns a usage row is rated by, as one integer written at ingestion.

Rating groups the month's events by customer, provider, model, model family, meter and
dimensions. On six string columns that group-by is most of the month-end's rating time (10 M
events: ~1.8 s of CPU, against ~0.4 s on one integer column; benchmarks/RESULTS.md), so
``normalize`` writes the six columns' hash beside them, and each daily partition's **code book**
(``usage_codes``: one row per key with its six values) is stored beside it. Rating then groups by
the integer and reads the strings back from the code book, a few hundred thousand rows at most.

Money does not rest on one hash: a key the month's code books map to two different rows (a
collision, told by a second independent hash, ``check``), an entry whose values do not hash to
its key and check, or an event whose key no code book knows makes ``merge_code_books`` /
``rate_month`` fall back to grouping by the strings, so a collision costs time, never money
(unless two independent 64-bit hashes collide on the same pair of rows at once). The hashes are
polars' ``struct.hash``, stable within a polars version; books written under another version
fail the re-hash, and such a month is grouped by the strings.

Keys are below 2^59 so that ``key x 32 + day of month`` still fits 64 bits: rating and provider
cost group on that one integer (``pack_expr`` / ``unpack_exprs``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import polars as pl

KEY_COLUMNS = ["customer_id", "provider", "model", "model_family", "meter", "dimensions"]
DAY_BITS = 32  # key x DAY_BITS + (day of month - 1) packs a key and its day in one UInt64
KEY_LIMIT = 2**64 // DAY_BITS  # every key is below it; a larger one is not ours (never packed)
NO_DAY = DAY_BITS - 1  # the day index of a row summed over its month, not of one day
PACKED_DAYS = NO_DAY  # days a pack tells apart: the first day and the 30 after it (a month)


CODE_BOOK_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date,  # a daily partition's book; a key appears once per day it was used
    "usage_key": pl.UInt64,
    **{c: pl.String for c in KEY_COLUMNS},
    "check": pl.UInt64,  # a second, independent hash of the six values (``check_expr``)
}


def usage_key_expr() -> pl.Expr:
    """The row's key: a 59-bit hash of KEY_COLUMNS (nulls hash as nulls, not as "")."""
    return (pl.struct(KEY_COLUMNS).hash() // DAY_BITS).alias("usage_key")


def check_expr() -> pl.Expr:
    """A second hash of KEY_COLUMNS with other seeds: two rows under one key with different
    checks are a collision, found on integers without comparing or hashing strings again."""
    return pl.struct(KEY_COLUMNS).hash(seed=1, seed_1=2, seed_2=3, seed_3=4).alias("check")


def packable(usage: pl.DataFrame | pl.LazyFrame) -> bool:
    """Whether every usage_key of ``usage`` can be packed with a day without wrapping (a key at
    or past KEY_LIMIT was not written by ``usage_key_expr``: such usage is grouped by names)."""
    top = usage.lazy().select(pl.col("usage_key").max()).collect().item()
    return top is None or top < KEY_LIMIT


def pack_expr(first: dt.date, dated: pl.Expr | None = None) -> pl.Expr:
    """``_packed``: usage_key x DAY_BITS + the day's index counted from ``first`` (NO_DAY where
    ``dated`` is false), one integer to group on. Only for usage that is ``packable`` and whose
    days are fewer than PACKED_DAYS from ``first``: a larger key or index would land on another
    key's pack."""
    index = (pl.col("day") - pl.lit(first)).dt.total_days().cast(pl.UInt64)
    if dated is not None:
        index = pl.when(dated).then(index).otherwise(NO_DAY)
    return (pl.col("usage_key") * DAY_BITS + index).alias("_packed")


def unpack_exprs(first: dt.date) -> list[pl.Expr]:
    """``pack_expr``'s ``_packed`` back as ``usage_key`` and ``day`` (null for NO_DAY)."""
    index = pl.col("_packed") % DAY_BITS
    return [
        (pl.col("_packed") // DAY_BITS).alias("usage_key"),
        pl.when(index != NO_DAY)
        .then(pl.lit(first) + pl.duration(days=index.cast(pl.Int64)))
        .cast(pl.Date)
        .alias("day"),
    ]


def code_book(usage: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The distinct keys of ``usage`` per day with their six values, in (day, key) order.

    Where every key carries one check (no collision: the rule), a key's six values are the same
    on every day, so the book is the distinct (day, key) pairs, found and ordered on integers
    (day and key packed in one), joined with each key's values taken once, from its first row.
    No string is copied per event or per (day, key) pair from the month's frame: a month of
    normalized events is in many chunks (one per Parquet row group or source), and gathering
    strings across chunks cost ~10x gathering them from the small table of keys (10 M events:
    3.27 M pairs, 180,000 keys; benchmarks/RESULTS.md). A collision, or days more than a pack
    apart, takes the distinct (day, key, check) triples: both value sets of a collision stay in
    the book, where ``merge_code_books`` finds them, and without one the book is the same."""
    keyed = (  # the columns the book reads, not the whole month (a scan reads only these)
        usage.lazy()
        .select("day", "usage_key", *KEY_COLUMNS)
        .filter(pl.col("usage_key").is_not_null())
        .with_columns(check_expr())
        .collect()
    )
    key, check, day = pl.col("usage_key"), pl.col("check"), pl.col("day")
    first_day, last_day, undated, top = keyed.select(
        day.min().alias("first"), day.max().alias("last"), day.null_count(), key.max()
    ).row(0)
    one_check = not keyed.select((check != check.first().over("usage_key")).any()).item()
    if not (
        one_check and first_day is not None and not undated and _packs(first_day, last_day, top)
    ):
        return (
            keyed.lazy()
            .filter(pl.struct("day", "usage_key", "check").is_first_distinct())
            .sort("day", "usage_key", "check")
            .select(list(CODE_BOOK_SCHEMA))
            .collect()
            .cast(CODE_BOOK_SCHEMA)
        )
    # the day's index above the key's 59 bits: one integer in (day, key) order
    order = (day - pl.lit(first_day)).dt.total_days().cast(pl.UInt64) * KEY_LIMIT + key
    pairs = (
        keyed.lazy()
        .select("day", "usage_key", order.alias("_order"))
        .filter(key.is_first_distinct().over("day"))
        .sort("_order")
        .drop("_order")
    )
    values = keyed.lazy().filter(key.is_first_distinct()).drop("day")
    return (
        pairs.join(values, on="usage_key", how="left", maintain_order="left")
        .select(list(CODE_BOOK_SCHEMA))
        .collect()
        .cast(CODE_BOOK_SCHEMA)
    )


def _packs(first_day: dt.date, last_day: dt.date, top_key: int) -> bool:
    """Whether (day index x KEY_LIMIT + key) fits 64 bits for these days and keys."""
    return (last_day - first_day).days < DAY_BITS and top_key < KEY_LIMIT


def merge_code_books(books: Iterable[pl.DataFrame | None]) -> pl.DataFrame | None:
    """The code books of some days (a month's, for rating) as one; None, and the caller groups
    by the strings, when a day has none (ingested before keys existed), a key stands for two
    different rows (a collision), or an entry's six values do not hash to its key and check here
    (a book edited by hand, or written by a polars version that hashed differently): a book can
    only name what its key was computed from."""
    books = list(books)
    if not books or any(b is None for b in books):
        return None
    # A month repeats a key once per day it was used: every repetition must carry the same
    # check, and the first row of each key is the book, gathered from its day (the names of
    # ~1/30 of the rows are copied, not all); both from one group-by on integers. Its names
    # must hash to both its key and its check (so a repetition's names equal them, but for a
    # double collision of two independent 64-bit hashes).
    index = pl.concat(
        [
            b.select("usage_key", "check")
            .with_row_index("_row")
            .with_columns(pl.lit(i, dtype=pl.UInt32).alias("_book"))
            for i, b in enumerate(books)
        ]
    )
    first = index.group_by("usage_key").agg(
        (pl.col("check").min() != pl.col("check").max()).alias("_differs"),
        pl.col("_row").first(),  # in the books' order: the first day's row
        pl.col("_book").first(),
    )
    if first["_differs"].any():
        return None
    book = pl.concat(
        [
            b.select("usage_key", "check", *KEY_COLUMNS)[
                first.filter(pl.col("_book") == i)["_row"].sort()
            ]
            for i, b in enumerate(books)
        ]
    )
    rehashed = book.select(usage_key_expr(), check_expr())
    if (
        rehashed["usage_key"].ne(book["usage_key"]).any()
        or rehashed["check"].ne(book["check"]).any()
    ):
        return None
    return book.drop("check")
