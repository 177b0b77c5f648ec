"""usage_key: rating groups the month by one integer and its code book, and bills exactly what
grouping by the six names bills; any doubt about the book sends the month back to the names."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from billing_pipeline.catalog import load_catalog
from billing_pipeline.rating import rate_month
from billing_pipeline.rating.billing_source import split_billing_source
from billing_pipeline.reconcile import provider_cost
from billing_pipeline.usage_keys import (
    CODE_BOOK_SCHEMA,
    KEY_COLUMNS,
    KEY_LIMIT,
    PACKED_DAYS,
    check_expr,
    code_book,
    merge_code_books,
    pack_expr,
    packable,
    unpack_exprs,
    usage_key_expr,
)
from billing_pipeline_tests.support.demo import MONTH


def _stored(demo_month, asset: str) -> list[pl.DataFrame | None]:
    folder = demo_month.out / ".storage" / asset
    days = [dt.date(2026, 10, 1) + dt.timedelta(days=i) for i in range(31)]
    return [
        pl.read_parquet(folder / f"{d}.parquet") if (folder / f"{d}.parquet").exists() else None
        for d in days
    ]


@pytest.fixture(scope="module")
def month(demo_month):
    """The demo month as the month-end rates it: the stored usage_events days (the billable
    source of each customer and provider), the stored code books and the catalog."""
    catalog = load_catalog(demo_month.catalog)
    usage = pl.concat([d for d in _stored(demo_month, "usage_events") if d is not None])
    billable = split_billing_source(usage, catalog).billable
    return billable, _stored(demo_month, "usage_codes"), catalog


def _same(a, b) -> None:
    assert a.lines.equals(b.lines)
    assert a.unrated.equals(b.unrated)
    assert a.at_risk.equals(b.at_risk)


def test_ingestion_writes_a_code_book_for_every_day_and_each_event_carries_its_key(month):
    usage, books, _ = month
    assert all(b is not None for b in books)
    assert usage["usage_key"].null_count() == 0
    rehashed = usage.select(usage_key_expr())["usage_key"]
    assert rehashed.equals(usage["usage_key"])
    assert merge_code_books(books) is not None


@pytest.mark.parametrize("daily", [True, False], ids=["with chart", "without chart"])
def test_the_demo_month_bills_the_same_by_key_as_by_names(month, daily):
    """The demo month has every pricing model, allowances, mid-month plan and price changes,
    cost-plus lines and unrated usage: every line, word and chart point must be equal."""
    usage, books, catalog = month
    by_names = rate_month(usage, catalog, MONTH, daily=daily)
    by_key = rate_month(usage, catalog, MONTH, daily=daily, code_book=merge_code_books(books))
    assert by_names.lines.height > 50 and by_names.unrated.height > 0
    _same(by_names, by_key)


def test_a_key_two_rows_share_sends_the_month_back_to_the_names(month):
    """A collision: another day's book lists one of the month's keys for other names (with
    those names' own check, as ingestion would write it)."""
    _, books, _ = month
    day = next(b for b in books if b.height)
    other = day.head(1).with_columns(pl.lit("someone-else").alias("customer_id"))
    assert merge_code_books([*books, other.with_columns(check_expr())]) is None


def test_a_book_entry_that_does_not_hash_to_its_key_is_refused(month):
    """A book edited by hand to bill a key's usage to another customer is not believed."""
    _, books, _ = month
    book = merge_code_books(books)
    forged = book.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("someone-else"))
        .otherwise(pl.col("customer_id"))
        .alias("customer_id"),
        pl.lit(dt.date(2026, 10, 1)).alias("day"),
        pl.lit(0, dtype=pl.UInt64).alias("check"),
    ).with_columns(check_expr())  # the forger computes the check: the key still gives it away
    assert merge_code_books([forged]) is None


def test_a_day_without_a_code_book_sends_the_month_back_to_the_names(month):
    _, books, _ = month
    assert merge_code_books([*books[:-1], None]) is None


def test_an_event_whose_key_the_book_does_not_know_is_still_billed(month):
    """A book missing a key (a day re-ingested after its book was written) cannot lose usage:
    rating sees the unknown key and groups the month by the names."""
    usage, books, catalog = month
    book = merge_code_books(books)
    busiest = usage.group_by("usage_key").len().sort("len", "usage_key").row(-1)[0]
    partial = book.filter(pl.col("usage_key") != busiest)
    _same(
        rate_month(usage, catalog, MONTH),
        rate_month(usage, catalog, MONTH, code_book=partial),
    )


def test_events_without_keys_are_grouped_by_names(month):
    """Partitions written before usage_key existed read back with the key null."""
    usage, books, catalog = month
    unkeyed = usage.with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.col("usage_key")).alias("usage_key")
    )
    _same(
        rate_month(usage, catalog, MONTH),
        rate_month(unkeyed, catalog, MONTH, code_book=merge_code_books(books)),
    )


def test_the_code_book_lists_each_key_once_a_day_with_the_names_it_stands_for():
    usage = pl.DataFrame(
        {
            "day": [dt.date(2026, 10, 1)] * 3 + [dt.date(2026, 10, 2)],
            "customer_id": ["acme", "acme", "beta", "acme"],
            "provider": ["openai"] * 4,
            "model": ["gpt-4o"] * 4,
            "model_family": ["gpt-4o"] * 4,
            "meter": ["input_tokens"] * 4,
            "dimensions": ["{}"] * 4,
        }
    ).with_columns(usage_key_expr())
    book = code_book(usage)
    assert book.height == 3
    assert book.group_by("day").len().sort("day")["len"].to_list() == [2, 1]
    assert book.select(KEY_COLUMNS).unique().height == 2
    assert (book["usage_key"] < 2**59).all()


def _rows(days: list[dt.date], customers: list[str], keys: list[int] | None = None) -> pl.DataFrame:
    """Usage rows of one model and meter; ``keys`` set by hand stand in for a hash collision."""
    n = len(days)
    usage = pl.DataFrame(
        {
            "day": days,
            "customer_id": customers,
            "provider": ["openai"] * n,
            "model": ["gpt-4o"] * n,
            "model_family": ["gpt-4o"] * n,
            "meter": ["input_tokens"] * n,
            "dimensions": ["{}"] * n,
        }
    )
    if keys is None:
        return usage.with_columns(usage_key_expr())
    return usage.with_columns(pl.Series("usage_key", keys, dtype=pl.UInt64))


def _book_by_hand(usage: pl.DataFrame) -> list[tuple]:
    """Each (day, key, check) once, with the names of its first row, in (day, key, check) order."""
    rows = usage.with_columns(check_expr()).select(list(CODE_BOOK_SCHEMA))
    first: dict[tuple, tuple] = {}
    for row in rows.iter_rows():
        first.setdefault((row[0], row[1], row[-1]), row)
    return [first[k] for k in sorted(first)]


@pytest.mark.parametrize(
    "case",
    [
        "one check per key",
        "a month in several chunks",
        "two names under one key",
        "days further apart than a pack",
        "no usage",
    ],
)
def test_the_code_book_is_each_days_distinct_keys_in_day_and_key_order(case):
    """The book is found on (day, key) alone while every key has one check, and on (day, key,
    check) when two names share a key: either way each value set of a day is listed once, in
    (day, key, check) order, over a month or over a backfill longer than a month."""
    oct1, oct2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)
    days = [oct2, oct1, oct2, oct1, oct1, oct2]
    customers = ["zeta", "acme", "acme", "beta", "acme", "zeta"]
    if case == "one check per key":
        usage = _rows(days, customers)
    elif case == "a month in several chunks":  # as read from a Parquet file's row groups
        whole = _rows(days, customers)
        usage = pl.concat([whole[:2], whole[2:5], whole[5:]], rechunk=False)
        assert usage.n_chunks() == 3
    elif case == "two names under one key":
        usage = _rows(days, customers, keys=[5, 5, 5, 9, 5, 5])
    elif case == "days further apart than a pack":
        usage = _rows([*days[:3], dt.date(2026, 12, 30), *days[4:]], customers)
    else:
        usage = _rows(days, customers).head(0)
    book = code_book(usage)
    assert book.rows() == _book_by_hand(usage)
    if case == "two names under one key":  # acme and zeta both under key 5, on each day
        assert book.filter(pl.col("usage_key") == 5).height == 3


def test_a_key_packed_with_its_day_unpacks_to_the_same_key_and_day():
    """Rating and provider cost group on one integer: key and day must come back as they were,
    from the first day of the month to its last, for the largest key ingestion can write; a row
    packed without its day (rating's month sums) comes back with none."""
    first = dt.date(2026, 10, 1)
    rows = pl.DataFrame(
        {
            "usage_key": [0, 7, KEY_LIMIT - 1, KEY_LIMIT - 1],
            "day": [first, first + dt.timedelta(days=PACKED_DAYS - 1), first, dt.date(2026, 10, 9)],
            "dated": [True, True, True, False],
        },
        schema={"usage_key": pl.UInt64, "day": pl.Date, "dated": pl.Boolean},
    )
    assert packable(rows)
    unpacked = rows.select(pack_expr(first)).select(unpack_exprs(first))
    assert unpacked.equals(rows.select("usage_key", "day"))
    undated = rows.select(pack_expr(first, pl.col("dated"))).select(unpack_exprs(first))
    assert undated["usage_key"].equals(rows["usage_key"])
    assert undated["day"].to_list() == [*rows["day"][:3], None]


def test_usage_with_a_key_at_or_past_the_limit_is_not_packed():
    """Such a key would wrap onto another key's pack: rating and provider cost group by names."""

    def keys(*values: int) -> pl.DataFrame:
        return pl.DataFrame({"usage_key": values}, schema={"usage_key": pl.UInt64})

    assert packable(keys(1, KEY_LIMIT - 1))
    assert not packable(keys(1, KEY_LIMIT))
    assert not packable(keys(1, 2**64 - 1).lazy())


def test_provider_cost_is_the_same_by_key_as_by_names(month):
    usage, books, catalog = month
    by_names = provider_cost(usage, catalog)
    assert by_names.height > 50
    assert provider_cost(usage, catalog, code_book=merge_code_books(books)).equals(by_names)
    partial = merge_code_books(books).tail(-1)  # a key the book does not know: by the names
    assert provider_cost(usage, catalog, code_book=partial).equals(by_names)


def test_a_key_past_the_packing_limit_is_never_wrapped_onto_another_customers_key(month):
    """key x 32 + day must not wrap: a key of 2^59 or more (not one ingestion writes) would wrap
    onto a real key and bill its usage under that key's names; such a month is grouped by names."""
    usage, books, catalog = month
    book = merge_code_books(books)
    assert (usage["usage_key"] < KEY_LIMIT).all()
    customers = usage["customer_id"].drop_nulls().unique().sort()
    victim_key = usage.filter(pl.col("customer_id") == customers[0])["usage_key"][0]
    forged = usage.with_columns(
        pl.when(pl.col("customer_id") == customers[1])
        .then(pl.lit(victim_key + KEY_LIMIT, dtype=pl.UInt64))
        .otherwise(pl.col("usage_key"))
        .alias("usage_key")
    )
    _same(rate_month(forged, catalog, MONTH), rate_month(forged, catalog, MONTH, code_book=book))
    assert provider_cost(forged, catalog, code_book=book).equals(provider_cost(forged, catalog))


def test_a_day_stored_before_usage_keys_existed_still_gets_its_provider_cost(demo_month, tmp_path):
    """The provider_cost asset reads only the usage columns it prices from; a day written before
    usage_key (and its code book) existed has no such column and is costed by the names, to the
    same amounts, rather than failing the step."""
    import dagster as dg

    from billing_pipeline.defs import build_definitions
    from billing_pipeline.runner import month_end_resources, open_instance

    copy = demo_month.copy_to(tmp_path)
    day = "2026-10-05"
    events = copy.out / ".storage" / "usage_events" / f"{day}.parquet"
    stored = pl.read_parquet(events)
    stored.drop("usage_key").write_parquet(events)
    (copy.out / ".storage" / "usage_codes" / f"{day}.parquet").unlink()
    defs = build_definitions(month_end_resources(copy.landing, copy.catalog, copy.out))
    with open_instance(copy.out) as instance:
        result = defs.get_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("provider_cost")],
            partition_key=day,
        )
    assert result.success
    costed = pl.read_parquet(copy.out / ".storage" / "provider_cost" / f"{day}.parquet")
    catalog = load_catalog(copy.catalog)
    expected = provider_cost(split_billing_source(stored, catalog).billable, catalog)
    assert costed.height > 0
    assert costed.equals(expected)
