"""The Parquet IO manager: a run over several partitions stores each partition's rows in its own
file, so a single-run backfill writes what one run per partition would have written."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from billing_pipeline.defs.partitions import daily_partitions, monthly_partitions
from billing_pipeline.defs.resources import PolarsParquetIOManager

KEY = dg.AssetKey("usage")


def frame(days: list[dt.date]) -> pl.DataFrame:
    return pl.DataFrame({"day": days, "quantity": list(range(1, len(days) + 1))})


def store_range(store, partitions, first: str, last: str, obj: pl.DataFrame) -> None:
    store.handle_output(
        dg.build_output_context(
            asset_key=KEY,
            asset_partitions_def=partitions,
            asset_partition_key_range=dg.PartitionKeyRange(first, last),
        ),
        obj,
    )


def stored(store, key: str) -> list[tuple]:
    return pl.read_parquet(store.partition_path(KEY, key)).rows()


def test_a_run_over_two_months_stores_every_day_of_each_month_in_its_months_file(tmp_path):
    store = PolarsParquetIOManager(base_dir=str(tmp_path))
    days = [dt.date(2026, 9, 1), dt.date(2026, 9, 30), dt.date(2026, 10, 1), dt.date(2026, 10, 31)]
    store_range(store, monthly_partitions, "2026-09-01", "2026-10-01", frame(days))
    assert stored(store, "2026-09-01") == [(dt.date(2026, 9, 1), 1), (dt.date(2026, 9, 30), 2)]
    assert stored(store, "2026-10-01") == [(dt.date(2026, 10, 1), 3), (dt.date(2026, 10, 31), 4)]


def test_a_run_over_three_days_stores_each_days_rows_in_that_days_file(tmp_path):
    store = PolarsParquetIOManager(base_dir=str(tmp_path))
    days = [dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 2), dt.date(2026, 10, 3)]
    store_range(store, daily_partitions, "2026-10-01", "2026-10-03", frame(days))
    assert [len(stored(store, f"2026-10-0{d}")) for d in (1, 2, 3)] == [1, 2, 1]


@pytest.mark.parametrize(
    "stray",
    [dt.date(2026, 10, 9), None],
    ids=["a day outside the run's partitions", "a row without a day"],
)
def test_a_row_in_none_of_the_runs_partitions_stops_the_output_instead_of_vanishing(
    tmp_path, stray
):
    """Every row lands in a file or the run fails naming it: usage (money) is never dropped."""
    store = PolarsParquetIOManager(base_dir=str(tmp_path))
    days = [dt.date(2026, 10, 1), stray, dt.date(2026, 10, 2)]
    with pytest.raises(
        ValueError, match=r"usage: 1 row\(s\) fall in none of this run's 3 partitions"
    ):
        store_range(store, daily_partitions, "2026-10-01", "2026-10-03", frame(days))
    assert not any(store.partition_path(KEY, f"2026-10-0{d}").exists() for d in (1, 2, 3))
