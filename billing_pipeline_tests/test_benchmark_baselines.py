"""The benchmark's baselines bill exactly what the engine bills, or the benchmark is void.

benchmarks/month_end.py times billing_pipeline against a pandas and a DuckDB implementation of the
same rating and refuses to report numbers when their invoice totals differ by a cent. These tests
make that refusal meaningful: on a small synthetic month (graduated tiers crossed, half-cent
lines) all three agree per customer, and a baseline with one wrong price is caught.
"""

from __future__ import annotations

import copy
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest

from benchmarks.baselines import (
    Disagreement,
    Totals,
    charge_tables,
    compare,
    duckdb_keyed_rating,
    duckdb_rating,
    pandas_rating,
    pipeline_totals,
    polars_float_floor,
)
from benchmarks.generate import MONTH, codes_path, comparison_catalog, month_usage
from benchmarks.rating import catalog_document
from billing_pipeline.catalog.loader import parse_catalog
from billing_pipeline.rating import rate_month
from billing_pipeline.usage_keys import code_book, merge_code_books

EVENTS = 20_000
CUSTOMERS = 200
# Low graduated bounds so the biggest customers cross both of them in a 20,000-event month.
TIERS = [
    {"up_to": 100_000, "unit_price": "0.010", "flat_fee": "0"},
    {"up_to": 500_000, "unit_price": "0.008", "flat_fee": "0"},
    {"up_to": None, "unit_price": "0.006", "flat_fee": "0"},
]


def _catalog_doc() -> dict:
    doc = comparison_catalog(CUSTOMERS)
    doc["plans"]["growth"]["charges"][0]["tiers"] = copy.deepcopy(TIERS)
    return doc


def _pipeline(parquet: Path, doc: dict) -> Totals:
    return pipeline_totals(
        rate_month(pl.scan_parquet(parquet), parse_catalog(doc), MONTH, daily=False).lines
    )


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> tuple[Path, dict]:
    parquet = tmp_path_factory.mktemp("bench_month") / "usage.parquet"
    month_usage(EVENTS, CUSTOMERS).write_parquet(parquet)
    code_book(pl.scan_parquet(parquet)).write_parquet(codes_path(parquet))
    return parquet, _catalog_doc()


def test_the_month_crosses_graduated_tiers(month):
    """Precondition of the agreement test: some growth customer's tokens reach the top tier."""
    parquet, doc = month
    growth = [c for c, v in doc["customers"].items() if v["subscriptions"][0]["plan"] == "growth"]
    per_customer = (
        pl.read_parquet(parquet)
        .filter(
            pl.col("customer_id").is_in(growth)
            & pl.col("meter").is_in(["input_tokens", "output_tokens"])
        )
        .group_by("customer_id")
        .agg(pl.sum("quantity"))
    )
    assert per_customer["quantity"].max() > TIERS[1]["up_to"]
    assert per_customer.filter(pl.col("quantity") < TIERS[0]["up_to"]).height > 0


def test_pandas_and_duckdb_bill_every_customer_what_the_engine_bills(month):
    parquet, doc = month
    engine = _pipeline(parquet, doc)
    assert len(engine.by_customer) > CUSTOMERS // 2
    for name, run in (
        ("pandas", pandas_rating),
        ("duckdb", duckdb_rating),
        ("duckdb on usage_key", duckdb_keyed_rating),
    ):
        baseline = run(str(parquet), doc, MONTH)
        compare(engine, baseline, name)  # raises on the first customer a cent apart
        assert baseline.by_customer == engine.by_customer


def test_the_engine_bills_the_same_with_the_code_book_beside_the_file(month):
    """benchmarks.month_end times the keyed rating: it must be the rating it claims to be."""
    parquet, doc = month
    book = merge_code_books([pl.read_parquet(codes_path(parquet))])
    assert book is not None
    keyed = rate_month(
        pl.scan_parquet(parquet), parse_catalog(doc), MONTH, daily=False, code_book=book
    )
    assert pipeline_totals(keyed.lines) == _pipeline(parquet, doc)


def test_the_float_floor_prices_the_same_month_within_a_cent_per_line(month):
    """The floor is timed beside the exact implementations, so it must do the same work: the
    same customers, each within the float rounding of one cent per invoice line."""
    parquet, doc = month
    lines = rate_month(pl.scan_parquet(parquet), parse_catalog(doc), MONTH, daily=False).lines
    exact = pipeline_totals(lines).by_customer
    per_customer = dict(lines.group_by("customer_id").len().iter_rows())
    floor = polars_float_floor(str(parquet), doc, MONTH)
    assert set(floor) == set(exact)
    for customer, total in exact.items():
        assert (
            abs(Decimal(repr(floor[customer])) - total) <= Decimal("0.01") * per_customer[customer]
        ), customer


def test_a_wrong_price_in_one_baseline_is_reported_with_the_customer(month):
    parquet, doc = month
    engine = _pipeline(parquet, doc)
    wrong = copy.deepcopy(doc)
    charge = next(
        c for c in wrong["plans"]["payg"]["charges"] if c["id"] == "gpt-4o-mini-input_tokens"
    )
    charge["unit_price"] = "0.0026"  # 0.0025 in the catalog the engine rates with
    baseline = duckdb_rating(str(parquet), wrong, MONTH)
    with pytest.raises(Disagreement, match=r"customer c\d{5}: billing_pipeline \S+, duckdb \S+"):
        compare(engine, baseline, "duckdb")


def test_a_single_cent_on_one_customer_is_a_disagreement():
    engine = Totals({"c00001": Decimal("10.00"), "c00002": Decimal("3.40")}, 5)
    off = Totals({"c00001": Decimal("10.00"), "c00002": Decimal("3.41")}, 5)
    with pytest.raises(Disagreement, match="customer c00002"):
        compare(engine, off, "pandas")
    with pytest.raises(Disagreement, match="customer c00003"):
        compare(engine, Totals({**engine.by_customer, "c00003": Decimal("0.00")}, 6), "pandas")


def test_half_cent_lines_round_half_up_in_all_three(tmp_path):
    """One 2,000-token event per customer, model and meter: each per-unit input line is exactly
    $0.005 (0.0025 per 1K), the tie that tells half up from half even."""
    events = (
        month_usage(2_000, 20)
        .unique(["customer_id", "provider", "model_family", "meter"], keep="first")
        .with_columns(pl.lit(2_000, dtype=pl.Int64).alias("quantity"))
    )
    parquet = tmp_path / "usage.parquet"
    events.write_parquet(parquet)
    doc = comparison_catalog(20)
    plan_of = {c: v["subscriptions"][0]["plan"] for c, v in doc["customers"].items()}
    price = {(pid, c["id"]): c for pid, p in doc["plans"].items() for c in p["charges"]}
    cent = Decimal("0.01")
    expected: dict[str, Decimal] = {}
    ties = 0
    for (customer,), rows in events.group_by(["customer_id"]):
        plan = plan_of[customer]
        total = Decimal(0)
        graduated = 0
        for family, meter, quantity in rows.select("model_family", "meter", "quantity").iter_rows():
            if plan == "growth" and meter in ("input_tokens", "output_tokens"):
                graduated += quantity  # stays inside the first tier: 0.010 per 1K
                continue
            charge = price[plan, f"{family}-{meter}"] if plan == "payg" else price[plan, "cached"]
            exact = Decimal(quantity) * Decimal(charge["unit_price"]) / charge["unit_size"]
            ties += exact.scaleb(2) % 1 == Decimal("0.5")
            total += exact.quantize(cent, ROUND_HALF_UP)
        if graduated:
            total += (Decimal(graduated) * Decimal("0.010") / 1000).quantize(cent, ROUND_HALF_UP)
        expected[customer] = total
    assert ties > 0
    engine = _pipeline(parquet, doc)
    assert engine.by_customer == expected
    assert pandas_rating(str(parquet), doc, MONTH).by_customer == expected
    assert duckdb_rating(str(parquet), doc, MONTH).by_customer == expected


def test_baselines_refuse_pricing_they_do_not_implement():
    """A catalog outside per-unit + graduated must fail loudly, not produce a different "result"."""
    doc = catalog_document(8)  # has volume pricing and a hybrid plan with base fee and allowance
    with pytest.raises(ValueError, match=r"plans\.(scale|hybrid)"):
        charge_tables(doc, MONTH)
