"""Reconciliation rules: margins, metering drift and provider cost drift, on small hand-made months."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.rating import rate_month
from billing_pipeline.reconcile import cost_drift, metering_drift, provider_cost, reconcile
from billing_pipeline.schema import conform
from billing_pipeline.usage_keys import code_book, merge_code_books, usage_key_expr
from billing_pipeline_tests.support.usage import usage_frame, usage_row

MONTH = "2026-10"
PRICE_BOOK = [
    {
        "provider": "openai",
        "models": ["gpt-4o"],
        "meter": "input_tokens",
        "unit_size": 1_000_000,
        "unit_price": "1.00",
        "from": "2024-01-01",
    },
    {
        "provider": "openai",
        "models": ["gpt-4o"],
        "meter": "output_tokens",
        "unit_size": 1_000_000,
        "unit_price": "8.00",
        "from": "2024-01-01",
    },
]
CATALOG = {
    "issuer": {"name": "Example AI GmbH"},
    "plans": {
        "payg": {
            "name": "Pay as you go",
            "charges": [
                {
                    "id": "in",
                    "meter": "input_tokens",
                    "models": ["gpt-4o"],
                    "unit_size": 1000,
                    "unit_price": "0.0025",
                },
                {
                    "id": "out",
                    "meter": "output_tokens",
                    "models": ["gpt-4o"],
                    "unit_size": 1000,
                    "unit_price": "0.010",
                },
            ],
        }
    },
    "customers": {
        "acme": {
            "name": "Acme",
            "subscriptions": [{"plan": "payg", "from": "2026-01-01"}],
            "keys": ["gateway:acme", "openai:proj_acme"],
        },
        "initech": {
            "name": "Initech",
            "subscriptions": [{"plan": "payg", "from": "2026-01-01"}],
            "keys": ["gateway:initech", "openai:proj_initech"],
        },
    },
    "price_book": PRICE_BOOK,
}


def usage(rows: list[tuple], source: str = "gateway_log") -> pl.DataFrame:
    """rows: (customer_id, account_key, meter, quantity, day-of-October)."""
    return usage_frame(
        usage_row(
            event_id=f"{source}{i}",
            source=source,
            account_key=key,
            customer_id=c,
            meter=meter,
            quantity=q,
            day=dt.date(2026, 10, d),
            origin=f"{source}:{i}",
        )
        for i, (c, key, meter, q, d) in enumerate(rows)
    )


def gateway_short_by_15_percent() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(our gateway log, OpenAI's usage report) of a month in which our meter missed 15 % of
    acme's tokens and 0.25 % of initech's."""
    billed = usage(
        [
            ("acme", "gateway:acme", "input_tokens", 1_000_000, 5),
            ("acme", "gateway:acme", "output_tokens", 200_000, 5),
            ("initech", "gateway:initech", "input_tokens", 400_000, 6),
        ]
    )
    report = usage(
        [
            ("acme", "openai:proj_acme", "input_tokens", 1_150_000, 5),
            ("acme", "openai:proj_acme", "output_tokens", 230_000, 5),
            ("initech", "openai:proj_initech", "input_tokens", 401_000, 6),
        ],
        source="openai_usage_api",
    )
    return billed, report


def test_a_gateway_log_undercounting_by_15_percent_is_flagged_with_the_revenue_at_stake():
    catalog = parse_catalog(CATALOG)
    billed, report = gateway_short_by_15_percent()
    drift = metering_drift(billed, report, catalog, MONTH)
    acme = drift.filter(pl.col("customer_id") == "acme").row(0, named=True)
    assert (acme["metered_tokens"], acme["reported_tokens"], acme["missing_tokens"]) == (
        1_200_000,
        1_380_000,
        180_000,
    )
    # input 1,000,000 -> 1,150,000 at $0.0025/1K: $2.50 -> $2.88; output 200,000 -> 230,000 at $0.010/1K: $2.00 -> $2.30
    assert acme["flagged"] and acme["amount_at_stake"] == Decimal("0.68")
    initech = drift.filter(pl.col("customer_id") == "initech").row(0, named=True)
    assert not initech["flagged"] and initech["amount_at_stake"] is None  # 0.25 % is within 0.5 %

    table = reconcile(
        rate_month(billed, catalog, MONTH).lines, provider_cost(billed, catalog), drift
    )
    flagged = table.filter(pl.col("flags").str.contains("metering_drift"))
    assert flagged.select("customer_id", "reported_tokens", "at_stake").rows() == [
        ("acme", 1_380_000, Decimal("0.68"))
    ]


def test_a_report_only_differing_by_less_than_half_a_percent_is_not_drift_but_more_is():
    catalog = parse_catalog(CATALOG)
    billed = usage([("acme", "gateway:acme", "input_tokens", 995_000, 5)])
    within = usage(
        [("acme", "openai:proj_acme", "input_tokens", 1_000_000, 5)], source="openai_usage_api"
    )
    beyond = usage(
        [("acme", "openai:proj_acme", "input_tokens", 1_006_000, 5)], source="openai_usage_api"
    )
    assert not metering_drift(billed, within, catalog, MONTH)["flagged"].any()
    assert metering_drift(billed, beyond, catalog, MONTH)["flagged"].all()


def test_a_price_book_change_that_makes_a_model_unprofitable_flags_a_negative_margin():
    raised = [
        PRICE_BOOK[0],
        {**PRICE_BOOK[1], "to": "2026-10-14"},
        {**PRICE_BOOK[1], "unit_price": "15.00", "from": "2026-10-15"},
    ]  # we sell output at $10/1M
    catalog = parse_catalog({**CATALOG, "price_book": raised})
    month = usage(
        [
            ("acme", "gateway:acme", "input_tokens", 2_000_000, 3),
            ("acme", "gateway:acme", "output_tokens", 1_000_000, 3),
            ("acme", "gateway:acme", "output_tokens", 1_000_000, 20),
        ]
    )
    table = reconcile(rate_month(month, catalog, MONTH).lines, provider_cost(month, catalog))
    row = table.row(0, named=True)
    # revenue 2M in x $2.50/1M + 2M out x $10/1M = $25; cost $2 + $8 + $15 = $25: margin 0 ...
    assert (row["revenue"], row["cost"], row["margin"]) == (Decimal(25), Decimal(25), Decimal(0))
    assert "negative_margin" not in row["flags"]
    more = usage(
        [
            ("acme", "gateway:acme", "input_tokens", 2_000_000, 3),
            ("acme", "gateway:acme", "output_tokens", 1_000_000, 3),
            ("acme", "gateway:acme", "output_tokens", 1_000_000, 20),
            ("acme", "gateway:acme", "output_tokens", 1_000_000, 25),
        ]
    )
    table = reconcile(rate_month(more, catalog, MONTH).lines, provider_cost(more, catalog))
    row = table.row(0, named=True)  # ... and every output token after Oct 15 loses $5 per 1M
    assert row["margin"] == Decimal(-5) and row["flags"] == "negative_margin"


def test_unattributed_usage_is_reconciled_with_its_cost_and_flagged():
    catalog = parse_catalog(CATALOG)
    month = usage(
        [
            ("acme", "gateway:acme", "input_tokens", 1_000_000, 3),
            (None, "gateway:ghost", "input_tokens", 3_000_000, 3),
        ]
    )
    table = reconcile(rate_month(month, catalog, MONTH).lines, provider_cost(month, catalog))
    ghost = table.filter(pl.col("customer_id").is_null()).row(0, named=True)
    assert (ghost["cost"], ghost["flags"]) == (Decimal(3), "unattributed")


def test_cost_drift_flags_the_day_a_provider_charged_more_than_the_price_book_beyond_tolerance():
    catalog = parse_catalog(CATALOG)
    month = usage(
        [
            ("acme", "gateway:acme", "input_tokens", 1_000_000, 3),
            ("acme", "gateway:acme", "input_tokens", 1_000_000, 4),
        ]
    )
    reported = pl.DataFrame(
        {
            "provider": ["openai", "openai"],
            "model": ["gpt-4o-2024-08-06", "gpt-4o-2024-08-06"],
            "amount": [Decimal("1.005"), Decimal("1.30")],
            "day": [dt.date(2026, 10, 3), dt.date(2026, 10, 4)],
        }
    )
    drift = cost_drift(provider_cost(month, catalog), reported, tolerance=Decimal("0.01"))
    assert drift.select("day", "status", "difference").rows() == [
        (dt.date(2026, 10, 3), "ok", Decimal("-0.005")),
        (dt.date(2026, 10, 4), "drift", Decimal("-0.30")),
    ]


def test_the_finance_summary_shows_totals_a_margin_chart_and_the_flagged_customers(tmp_path):
    from pypdf import PdfReader

    from billing_pipeline.reconcile.summary import NEGATIVE, SummaryRenderer, summary_context

    raised = [
        PRICE_BOOK[0],
        {**PRICE_BOOK[1], "unit_price": "15.00"},
    ]  # output sold at $10/1M, bought at $15
    catalog = parse_catalog({**CATALOG, "price_book": raised})
    billed = usage(
        [
            ("acme", "gateway:acme", "output_tokens", 1_000_000, 5),
            ("initech", "gateway:initech", "input_tokens", 4_000_000, 6),
        ]
    )
    report = usage(
        [("acme", "openai:proj_acme", "output_tokens", 1_150_000, 5)], source="openai_usage_api"
    )
    drift = metering_drift(billed, report, catalog, MONTH)
    table = reconcile(
        rate_month(billed, catalog, MONTH).lines, provider_cost(billed, catalog), drift
    )
    paths = SummaryRenderer().write(summary_context(table, MONTH, drift), tmp_path)
    html = paths["html"].read_text()
    assert "Reconciliation, 2026-10" in html and "<svg" in html
    assert f'fill="{NEGATIVE}"' in html  # acme: $10.00 revenue, $15.00 cost
    assert (
        "negative_margin, metering_drift" in html and "$1.50" in html
    )  # 150,000 missing tokens at $10/1M
    pdf = PdfReader(paths["pdf"])
    assert len(pdf.pages) == 1 and "acme" in pdf.pages[0].extract_text()


def test_a_provider_key_we_do_not_meter_at_all_is_billed_from_the_report_and_is_not_drift():
    catalog = parse_catalog(CATALOG)
    billed = usage([("acme", "gateway:acme", "input_tokens", 1_000_000, 5)])
    report = usage(
        [("initech", "openai:proj_initech", "input_tokens", 5_000_000, 5)],
        source="openai_usage_api",
    )
    assert metering_drift(pl.concat([billed, report]), report, catalog, MONTH).is_empty()


def test_without_cost_pages_cost_drift_compares_the_cost_the_usage_rows_carried_with_the_price_book():
    catalog = parse_catalog(CATALOG)
    month = usage([("acme", "gateway:acme", "input_tokens", 1_000_000, 3)]).with_columns(
        pl.lit(Decimal("1.50")).cast(pl.Decimal(38, 12)).alias("reported_cost")
    )  # the price book says $1.00
    drift = cost_drift(provider_cost(month, catalog))
    assert drift.select("status", "computed_cost", "reported_cost").rows() == [
        ("drift", Decimal(1), Decimal("1.5"))
    ]


def test_a_months_reconciliation_writes_its_table_the_drift_reports_and_the_summary(tmp_path):
    from billing_pipeline.reconcile.month import reconcile_month
    from billing_pipeline.schema import QUARANTINE_SCHEMA

    catalog = parse_catalog(CATALOG)
    billed = usage([("acme", "gateway:acme", "output_tokens", 1_000_000, 5)])
    report = usage(
        [("acme", "openai:proj_acme", "output_tokens", 1_150_000, 5)], source="openai_usage_api"
    )
    held = conform(
        pl.DataFrame(
            {
                "origin": ["gateway/2026-10-07.jsonl", "gateway/2026-10-08.jsonl:4"],
                "reason": ["truncated_file", "unknown_model"],
                "kind": ["money_at_risk", "not_billable"],
            }
        ),
        QUARANTINE_SCHEMA,
    )
    result = reconcile_month(
        MONTH,
        tmp_path,
        catalog,
        rate_month(billed, catalog, MONTH).lines,
        provider_cost(billed, catalog),
        pl.DataFrame(),  # no cost pages landed: cost drift against the usage rows' own cost
        pl.concat([billed, report]),
        held,
        [],
    )
    assert pl.read_csv(result.files["csv"]).height == result.table.height == 1
    assert result.metering_drift["flagged"].to_list() == [True]  # 150,000 tokens our meter missed
    assert pl.read_csv(result.files["metering_drift"]).height == 1
    assert result.files["cost_drift"].exists() and result.files["pdf"].exists()
    html = result.files["html"].read_text()
    assert "gateway/2026-10-07.jsonl" in html  # money at risk is listed as not billed
    assert "gateway/2026-10-08.jsonl:4" not in html  # not billable by design is not


def test_a_month_read_as_a_parquet_scan_reconciles_exactly_as_the_month_in_memory(tmp_path):
    """The month-end asset hands reconciliation a scan of the month's file, so that 10 M events
    are summed as they are read instead of held: the table, the drift with its revenue at stake
    and the files are the same as from the month in memory."""
    from billing_pipeline.reconcile.month import reconcile_month
    from billing_pipeline.schema import QUARANTINE_SCHEMA

    # acme is billed from our gateway log, so the tokens it missed are revenue at stake; initech
    # from OpenAI's report (the default)
    acme = {**CATALOG["customers"]["acme"], "billing_source": {"openai": "gateway_log"}}
    catalog = parse_catalog({**CATALOG, "customers": {**CATALOG["customers"], "acme": acme}})
    billed, report = gateway_short_by_15_percent()
    month = pl.concat([billed, report])
    month.write_parquet(tmp_path / "month.parquet")
    results = {}
    for form, frame in (("memory", month), ("scan", pl.scan_parquet(tmp_path / "month.parquet"))):
        folder = tmp_path / form
        folder.mkdir()
        results[form] = reconcile_month(
            MONTH,
            folder,
            catalog,
            rate_month(billed, catalog, MONTH).lines,
            provider_cost(billed, catalog),
            pl.DataFrame(),
            frame,
            pl.DataFrame(schema=QUARANTINE_SCHEMA),
            [],
        )
    memory, scan = results["memory"], results["scan"]
    assert scan.table.equals(memory.table) and scan.metering_drift.equals(memory.metering_drift)
    # acme: input 1,000,000 -> 1,150,000 at $0.0025/1K ($2.50 -> $2.88), output 200,000 ->
    # 230,000 at $0.010/1K ($2.00 -> $2.30); initech's 0.25 % is within the 0.5 % tolerance
    assert scan.metering_drift.select("customer_id", "flagged", "amount_at_stake").rows() == [
        ("acme", True, Decimal("0.68")),
        ("initech", False, None),
    ]
    for name in ("csv", "metering_drift", "cost_drift"):
        assert scan.files[name].read_bytes() == memory.files[name].read_bytes()


def _both_ways(month: pl.DataFrame, catalog) -> pl.DataFrame:
    """provider_cost summed by the names and by the usage key + code book: the same frame."""
    keyed = month.with_columns(usage_key_expr())
    by_names = provider_cost(month, catalog)
    assert provider_cost(keyed, catalog, code_book=merge_code_books([code_book(keyed)])).equals(
        by_names
    )
    return by_names


def test_models_of_one_family_on_one_price_are_one_daily_cost_row_and_another_price_its_own():
    snapshot_price = {
        "provider": "openai",
        "models": ["gpt-4o-2024-05-13"],
        "meter": "input_tokens",
        "unit_size": 1_000_000,
        "unit_price": "5.00",
        "from": "2024-01-01",
    }
    catalog = parse_catalog(CATALOG | {"price_book": [*PRICE_BOOK, snapshot_price]})
    day = dt.date(2026, 10, 3)
    month = usage_frame(
        usage_row(event_id=f"e{i}", model=model, meter="input_tokens", quantity=q, day=day)
        for i, (model, q) in enumerate(
            [("gpt-4o", 600_000), ("gpt-4o-2024-08-06", 400_000), ("gpt-4o-2024-05-13", 200_000)]
        )
    )
    costs = _both_ways(month, catalog)
    # 1,000,000 tokens at $1.00 per 1M; 200,000 at $5.00 per 1M
    assert costs.select("model_family", "events", "quantity", "cost_basis", "cost").rows() == [
        ("gpt-4o", 2, 1_000_000, "price_book", Decimal("1.00")),
        ("gpt-4o", 1, 200_000, "price_book", Decimal("1.00")),
    ]


def test_a_cost_reported_on_some_events_of_a_day_is_that_days_cost():
    catalog = parse_catalog(CATALOG)
    gpu = {"provider": "aws", "model": "g5.xlarge", "meter": "gpu_seconds", "quantity": 3600}
    month = usage_frame(
        usage_row(event_id=f"g{i}", reported_cost=cost, day=dt.date(2026, 10, d), **gpu)
        for i, (cost, d) in enumerate(
            [(Decimal("0.30"), 3), (None, 3), (Decimal("0.45"), 3), (None, 4)]
        )
    )
    costs = _both_ways(month, catalog)
    assert costs.select("day", "events", "cost_basis", "reported_cost", "cost").rows() == [
        (dt.date(2026, 10, 3), 3, "reported", Decimal("0.75"), Decimal("0.75")),
        (dt.date(2026, 10, 4), 1, "unpriced", None, Decimal(0)),
    ]
