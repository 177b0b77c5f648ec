"""One source bills: a customer's gateway log and the provider's usage report describe the same
traffic, and the catalog's ``billing_source`` says which of the two is on the invoice.

The other source is set aside (still compared by the metering-drift report); when the chosen
source has nothing for the customer and provider in the month, the other is billed and reported.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest
import yaml

from billing_pipeline.catalog import CatalogError, parse_catalog
from billing_pipeline.defs.month_end import AUDIT_COLUMNS, RATED_CHECK, billed_usage, rated_charges
from billing_pipeline.defs.resources import CatalogResource, OutputFiles, UsageStore
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.rating import rate_month
from billing_pipeline.rating.billing_source import split_billing_source
from billing_pipeline.reconcile.drift import REPORT_SOURCES, metering_drift
from billing_pipeline.schema import USAGE_SCHEMA, conform, model_family_expr

MONTH = "2026-10"
PLANS = {
    "payg": {
        "name": "Pay as you go",
        "charges": [
            {
                "id": "gpt-in",
                "meter": "input_tokens",
                "models": ["gpt-4o"],
                "unit_size": 1000,
                "unit_price": "0.0025",
            },
            {
                "id": "gpt-out",
                "meter": "output_tokens",
                "models": ["gpt-4o"],
                "unit_size": 1000,
                "unit_price": "0.010",
            },
            {
                "id": "claude-in",
                "meter": "input_tokens",
                "models": ["claude-sonnet-4-5"],
                "unit_size": 1000,
                "unit_price": "0.003",
            },
            {
                "id": "mistral-in",
                "meter": "input_tokens",
                "models": ["mistral-large"],
                "unit_size": 1000,
                "unit_price": "0.002",
            },
        ],
    }
}


def catalog(default: dict | None = None, acme: dict | None = None, initech: dict | None = None):
    return parse_catalog(catalog_document(default, acme, initech))


def catalog_document(
    default: dict | None = None, acme: dict | None = None, initech: dict | None = None
) -> dict:
    def customer(name, keys, choice):
        return {
            "name": name,
            "subscriptions": [{"plan": "payg", "from": "2026-01-01"}],
            "keys": keys,
            **({"billing_source": choice} if choice else {}),
        }

    return {
        "issuer": {"name": "Example AI GmbH"},
        "plans": PLANS,
        "customers": {
            "acme": customer(
                "Acme", ["gateway:acme", "openai:proj_acme", "anthropic:apikey_acme"], acme
            ),
            "initech": customer("Initech", ["gateway:initech", "openai:proj_initech"], initech),
        },
        **({"billing_source": default} if default is not None else {}),
    }


def usage(rows: list[tuple]) -> pl.DataFrame:
    """rows: (source, provider, customer_id, account_key, model, meter, quantity, day-of-October)."""
    frame = pl.DataFrame(
        [
            {
                "event_id": f"{src}{i}",
                "record_id": f"{src}{i}",
                "source": src,
                "provider": provider,
                "account_key": key,
                "customer_id": c,
                "model": model,
                "meter": meter,
                "dimensions": "{}",
                "quantity": q,
                "start": dt.datetime(2026, 10, d, tzinfo=dt.UTC),
                "end": dt.datetime(2026, 10, d, 1, tzinfo=dt.UTC),
                "origin": f"{src}:{i}",
                "day": dt.date(2026, 10, d),
            }
            for i, (src, provider, c, key, model, meter, q, d) in enumerate(rows)
        ]
    ).with_columns(model_family_expr().alias("model_family"))
    return conform(frame, USAGE_SCHEMA)


# acme's OpenAI traffic seen twice: 1,000,000 input + 200,000 output tokens in the gateway log,
# 1,100,000 input + 220,000 output in OpenAI's usage report (the gateway log undercounts by 10 %).
ACME_GATEWAY = [
    ("gateway_log", "openai", "acme", "gateway:acme", "gpt-4o", "input_tokens", 1_000_000, 5),
    ("gateway_log", "openai", "acme", "gateway:acme", "gpt-4o", "output_tokens", 200_000, 5),
]
INITECH_GATEWAY = [
    ("gateway_log", "openai", "initech", "gateway:initech", "gpt-4o", "input_tokens", 400_000, 8)
]
ACME_REPORT = [
    (
        "openai_usage_api",
        "openai",
        "acme",
        "openai:proj_acme",
        "gpt-4o",
        "input_tokens",
        1_100_000,
        5,
    ),
    (
        "openai_usage_api",
        "openai",
        "acme",
        "openai:proj_acme",
        "gpt-4o",
        "output_tokens",
        220_000,
        5,
    ),
]


def invoice_total(frame: pl.DataFrame, cat, customer: str) -> str:
    lines = rate_month(frame, cat, MONTH).lines
    (doc,) = [d for d in build_documents(lines, cat, MONTH) if d["customer_id"] == customer]
    return doc["total"]


def test_by_default_the_provider_report_bills_and_the_gateway_log_is_set_aside():
    cat = catalog()
    month = usage(ACME_GATEWAY + ACME_REPORT)
    split = split_billing_source(month, cat)
    assert sorted(split.billable["source"].unique()) == ["openai_usage_api"]
    assert split.set_aside["quantity"].sum() == 1_200_000  # the gateway's 1,000,000 + 200,000
    # report: 1,100,000 input at $0.0025/1K = $2.75; 220,000 output at $0.010/1K = $2.20; total $4.95
    # (both sources billed, today's double billing, would be $2.50 + $2.00 + $4.95 = $9.45)
    assert invoice_total(split.billable, cat, "acme") == "4.95"
    (decision,) = split.decisions.to_dicts()
    assert decision == {
        "customer_id": "acme",
        "provider": "openai",
        "authoritative": "provider_report",
        "billed_from": "provider_report",
        "fallback": False,
        "gateway_units": 1_200_000,
        "report_units": 1_320_000,
        "set_aside_units": 1_200_000,
    }


def test_a_customer_billed_from_the_gateway_log_is_not_billed_from_the_report():
    cat = catalog(acme={"openai": "gateway_log"})
    split = split_billing_source(usage(ACME_GATEWAY + ACME_REPORT), cat)
    assert sorted(split.billable["source"].unique()) == ["gateway_log"]
    assert split.set_aside["source"].unique().to_list() == ["openai_usage_api"]
    # gateway: 1,000,000 input at $0.0025/1K = $2.50; 200,000 output at $0.010/1K = $2.00; total $4.50
    assert invoice_total(split.billable, cat, "acme") == "4.50"
    assert split.decisions.row(0, named=True)["set_aside_units"] == 1_320_000


def test_the_catalog_default_is_per_provider_and_a_customer_override_wins():
    cat = catalog(
        default={"openai": "gateway_log", "anthropic": "provider_report"},
        initech={"openai": "provider_report"},
    )
    month = usage(
        ACME_GATEWAY
        + ACME_REPORT
        + [
            (
                "gateway_log",
                "anthropic",
                "acme",
                "gateway:acme",
                "claude-sonnet-4-5",
                "input_tokens",
                500_000,
                6,
            ),
            (
                "anthropic_usage_report",
                "anthropic",
                "acme",
                "anthropic:apikey_acme",
                "claude-sonnet-4-5",
                "input_tokens",
                510_000,
                6,
            ),
            (
                "gateway_log",
                "openai",
                "initech",
                "gateway:initech",
                "gpt-4o",
                "input_tokens",
                2_000_000,
                7,
            ),
            (
                "openai_usage_api",
                "openai",
                "initech",
                "openai:proj_initech",
                "gpt-4o",
                "input_tokens",
                2_040_000,
                7,
            ),
        ]
    )
    split = split_billing_source(month, cat)
    assert split.decisions.select("customer_id", "provider", "billed_from").rows() == [
        ("acme", "anthropic", "provider_report"),
        ("acme", "openai", "gateway_log"),
        ("initech", "openai", "provider_report"),
    ]
    # acme: gateway openai $2.50 + $2.00, anthropic report 510,000 at $0.003/1K = $1.53; total $6.03
    assert invoice_total(split.billable, cat, "acme") == "6.03"
    # initech: report 2,040,000 input at $0.0025/1K = $5.10
    assert invoice_total(split.billable, cat, "initech") == "5.10"


def test_when_the_authoritative_source_has_no_usage_the_other_is_billed_and_reported():
    """Money is not dropped because the chosen source is silent: initech's report has nothing
    for October (its report is authoritative), so its gateway log bills, flagged as a fallback."""
    cat = catalog()
    month = usage(ACME_GATEWAY + ACME_REPORT + INITECH_GATEWAY)
    split = split_billing_source(month, cat)
    fallback = split.fallbacks.to_dicts()
    assert fallback == [
        {
            "customer_id": "initech",
            "provider": "openai",
            "authoritative": "provider_report",
            "billed_from": "gateway_log",
            "fallback": True,
            "gateway_units": 400_000,
            "report_units": 0,
            "set_aside_units": 0,
        }
    ]
    # 400,000 input at $0.0025/1K = $1.00
    assert invoice_total(split.billable, cat, "initech") == "1.00"
    assert invoice_total(split.billable, cat, "acme") == "4.95"  # acme still from its report


def test_other_sources_and_unattributed_usage_are_never_set_aside():
    cat = catalog()
    month = usage(
        ACME_REPORT
        + [
            # mistral has no provider usage report we read: its gateway log is the only source, no fallback
            (
                "gateway_log",
                "mistral",
                "acme",
                "gateway:acme",
                "mistral-large",
                "input_tokens",
                300_000,
                9,
            ),
            ("outcomes", "openai", "acme", "outcome:acme", "gpt-4o", "input_tokens", 7, 9),
            ("gateway_log", "openai", None, "gateway:unknown", "gpt-4o", "input_tokens", 50_000, 9),
        ]
    )
    split = split_billing_source(month, cat)
    assert split.set_aside.is_empty() and split.billable.height == month.height
    assert split.fallbacks.is_empty()
    assert split.decisions.filter(pl.col("provider") == "mistral")["billed_from"].to_list() == [
        "gateway_log"
    ]


def test_a_catalog_naming_an_unknown_source_or_an_upper_case_provider_is_refused():
    with pytest.raises(
        CatalogError,
        match=r"billing_source\.openai: Input should be 'provider_report' or 'gateway_log'",
    ):
        catalog(default={"openai": "gateway"})
    with pytest.raises(CatalogError, match=r"customers\.acme\.billing_source: provider 'OpenAI'"):
        catalog(acme={"OpenAI": "gateway_log"})


def test_metering_drift_still_compares_the_set_aside_gateway_log_with_the_billed_report():
    cat = catalog()
    month = usage(ACME_GATEWAY + ACME_REPORT)
    drift = metering_drift(month, month.filter(pl.col("source").is_in(REPORT_SOURCES)), cat, MONTH)
    row = drift.row(0, named=True)
    assert (row["metered_tokens"], row["reported_tokens"], row["missing_tokens"]) == (
        1_200_000,
        1_320_000,
        120_000,
    )
    # the report bills acme: the 120,000 tokens the gateway missed are on the invoice, none at stake
    assert row["flagged"] and row["amount_at_stake"] == Decimal("0")


def test_where_the_gateway_log_bills_the_tokens_it_missed_are_revenue_at_stake():
    cat = catalog(acme={"openai": "gateway_log"})
    month = usage(ACME_GATEWAY + ACME_REPORT)
    drift = metering_drift(month, month.filter(pl.col("source").is_in(REPORT_SOURCES)), cat, MONTH)
    row = drift.row(0, named=True)
    # missing 100,000 input at $0.0025/1K = $0.25 and 20,000 output at $0.010/1K = $0.20: $0.45
    assert row["flagged"] and row["amount_at_stake"] == Decimal("0.45")


def test_the_month_end_steps_read_the_month_without_its_audit_trail_and_bill_the_same():
    """rated_charges and reconciliation read the month's usage without where each row was read
    (``billed_usage``): the same lines, the same units set aside, the same revenue at stake."""
    cat = catalog(acme={"openai": "gateway_log"})
    month = usage(ACME_GATEWAY + ACME_REPORT)
    billed = billed_usage(month.lazy())
    assert not set(AUDIT_COLUMNS) & set(billed.collect_schema().names())

    def reported(frame):
        return frame.lazy().filter(pl.col("source").is_in(REPORT_SOURCES)).collect()

    assert metering_drift(billed, reported(billed), cat, MONTH).equals(
        metering_drift(month, reported(month), cat, MONTH)
    )
    whole, narrow = split_billing_source(month, cat), split_billing_source(billed, cat)
    assert (
        narrow.set_aside_by_source()
        == whole.set_aside_by_source()
        == {"openai_usage_api": 1_320_000}
    )
    assert rate_month(narrow.billable, cat, MONTH).lines.equals(
        rate_month(whole.billable, cat, MONTH).lines
    )


def test_a_month_no_pair_has_on_both_sides_is_rated_from_its_scan_and_never_read_whole(tmp_path):
    """With nothing to set aside, rating is handed the month's scan (summed as it is read, so a
    month of 10 M events is not held in memory by the step): the same lines, and the rated check
    counts every attributed unit from the scan."""
    from billing_pipeline.rating.checks import units_accounted_check

    cat = catalog(acme={"openai": "gateway_log"})
    month = usage(ACME_GATEWAY + INITECH_GATEWAY)
    month.write_parquet(tmp_path / "month.parquet")
    scan = billed_usage(pl.scan_parquet(tmp_path / "month.parquet"))
    lazy, eager = split_billing_source(scan, cat), split_billing_source(month, cat)
    assert isinstance(lazy.billable, pl.LazyFrame) and lazy.set_aside_by_source() == {}
    assert lazy.decisions.equals(eager.decisions)
    rated = rate_month(lazy.billable, cat, MONTH)
    assert rated.lines.equals(rate_month(eager.billable, cat, MONTH).lines)
    # 1,000,000 + 200,000 (acme) + 400,000 (initech) attributed units, all rated
    check = units_accounted_check(scan, lazy, rated)
    assert check.passed and check.metadata["attributed_units"] == 1_600_000


def test_month_end_rates_only_the_billing_source_and_the_rated_check_accounts_for_the_set_aside_units(
    tmp_path,
):
    (tmp_path / "catalog.yaml").write_text(
        yaml.safe_dump(catalog_document(initech={"openai": "gateway_log"}))
    )
    month = usage(
        ACME_GATEWAY
        + ACME_REPORT
        + [
            (
                "gateway_log",
                "openai",
                "initech",
                "gateway:initech",
                "gpt-4o",
                "input_tokens",
                2_000_000,
                7,
            ),
            (
                "openai_usage_api",
                "openai",
                "initech",
                "openai:proj_initech",
                "gpt-4o",
                "input_tokens",
                2_040_000,
                7,
            ),
        ]
    )
    results = list(
        rated_charges(
            context=dg.build_asset_context(partition_key="2026-10-01"),
            monthly_usage=month.lazy(),  # as the IO manager hands it: a scan
            catalog=CatalogResource(path=str(tmp_path / "catalog.yaml")),
            output=OutputFiles(path=str(tmp_path / "out")),
            usage_store=UsageStore(base_dir=str(tmp_path / "storage")),  # no code books: by names
        )
    )
    lines = next(
        r.value for r in results if isinstance(r, dg.Output) and r.output_name == "rated_charges"
    )
    revenue = {c: sum(Decimal(a) for a in g["amount"]) for (c,), g in lines.group_by("customer_id")}
    # acme from its report: $2.75 + $2.20 = $4.95; initech from its gateway log: 2,000,000 at $0.0025/1K = $5.00
    assert revenue == {"acme": Decimal("4.95"), "initech": Decimal("5.00")}
    (check,) = [r for r in results if isinstance(r, dg.AssetCheckResult)]
    assert check.check_name == RATED_CHECK and check.passed
    meta = {k: v.value for k, v in check.metadata.items()}
    # attributed 1,200,000 + 1,320,000 + 2,000,000 + 2,040,000 = 6,560,000 = rated 1,320,000 + 2,000,000
    # + set aside (acme's gateway 1,200,000 + initech's report 2,040,000 = 3,240,000)
    assert (meta["attributed_units"], meta["rated_units"], meta["set_aside_units"]) == (
        6_560_000,
        3_320_000,
        3_240_000,
    )
    assert meta["set_aside_by_source"] == {"gateway_log": 1_200_000, "openai_usage_api": 2_040_000}
    decisions = pl.read_csv(tmp_path / "out" / MONTH / "billing_source.csv")
    assert decisions.select("customer_id", "billed_from").rows() == [
        ("acme", "provider_report"),
        ("initech", "gateway_log"),
    ]
