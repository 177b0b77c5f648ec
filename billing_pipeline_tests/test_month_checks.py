"""The month's checks, each called alone: what passes, what fails, what a person is shown. The
Dagster checks only carry these verdicts (defs/check_results.py), under names that stay fixed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import dagster as dg
import polars as pl

from billing_pipeline.checks import WARN, CheckOutcome, Markdown
from billing_pipeline.defs.check_results import check_result
from billing_pipeline.ledger.holds import Hold, money_at_risk_check
from billing_pipeline.rating.assign import AT_RISK_SCHEMA
from billing_pipeline.rating.billing_source import DECISION_SCHEMA, BillingSourceSplit
from billing_pipeline.rating.checks import units_accounted_check
from billing_pipeline.rating.engine import LINE_SCHEMA, UNRATED_SCHEMA, RatedMonth
from billing_pipeline.rating.not_billed import hold_rows, month_quarantine
from billing_pipeline.reconcile.checks import (
    cost_check,
    cost_lines_readable_check,
    priced_check,
    revenue_check,
)
from billing_pipeline.reconcile.margins import RECONCILIATION_SCHEMA
from billing_pipeline.reconcile.provider_cost import COST_SCHEMA
from billing_pipeline.schema import KIND_MONEY_AT_RISK, QUARANTINE_SCHEMA, USAGE_SCHEMA, conform
from billing_pipeline.sources.files import SourceRead
from billing_pipeline.usage import records_conserved_check, split_raw, to_raw

MONTH = "2026-10"


def frame(schema: dict, **columns) -> pl.DataFrame:
    return conform(pl.DataFrame(columns), schema)


def origins(*names: str, schema=USAGE_SCHEMA) -> pl.DataFrame:
    return frame(schema, origin=list(names))


# ---------------------------------------------------------------- records read, daily


def test_records_read_are_all_events_or_quarantined_however_many_meters_a_record_has():
    read = [(origins("f:1", "f:1", "f:2", "f:3"), origins("f:4", schema=QUARANTINE_SCHEMA))]
    events = origins("f:1", "f:1", "f:2")  # f:1 has two meters
    quarantine = origins("f:3", "f:4", schema=QUARANTINE_SCHEMA)  # f:3 was a duplicate
    outcome = records_conserved_check(read, events, quarantine)
    assert outcome.passed
    assert outcome.metadata == {"records_read": 4, "accepted_records": 2, "quarantined": 2}


def test_a_record_lost_between_reading_and_the_usage_table_fails_the_check():
    read = [(origins("f:1", "f:2"), origins(schema=QUARANTINE_SCHEMA))]
    outcome = records_conserved_check(read, origins("f:1"), origins(schema=QUARANTINE_SCHEMA))
    assert not outcome.passed and outcome.severity == "error"


def test_a_raw_frame_keeps_every_record_read_and_gives_back_rows_and_quarantine_apart():
    events = frame(USAGE_SCHEMA, origin=["f:1", "f:1"], meter=["input_tokens", "output_tokens"])
    rejected = frame(QUARANTINE_SCHEMA, origin=["f:2"], reason=["bad_quantity"], raw=["-5"])
    raw = to_raw(SourceRead(events, rejected, records_read=2))
    assert raw.height == 3
    back_events, back_quarantine = split_raw(raw)
    assert back_events.equals(events) and back_quarantine.equals(rejected)
    nothing_rejected = split_raw(events)  # a source that quarantined nothing has no reason column
    assert nothing_rejected[0].equals(events) and nothing_rejected[1].height == 0


# ---------------------------------------------------------------- units rated, monthly


def usage(*rows: tuple[str | None, int]) -> pl.DataFrame:
    return frame(USAGE_SCHEMA, customer_id=[c for c, _ in rows], quantity=[q for _, q in rows])


def split(set_aside: int = 0) -> BillingSourceSplit:
    aside = frame(USAGE_SCHEMA, source=["gateway_log"], customer_id=["a"], quantity=[set_aside])
    return BillingSourceSplit(
        billable=usage(),
        set_aside=aside.filter(pl.col("quantity") > 0),
        decisions=frame(DECISION_SCHEMA),
    )


def rated(lines: list[tuple[str, int, int]], unrated: int = 0, held: int = 0) -> RatedMonth:
    return RatedMonth(
        lines=frame(
            LINE_SCHEMA,
            customer_id=["a"] * len(lines),
            consideration=[c for c, _, _ in lines],
            quantity=[q for _, q, _ in lines],
            included_quantity=[i for _, _, i in lines],
        ),
        unrated=frame(UNRATED_SCHEMA, customer_id=["b"], quantity=[unrated]),
        at_risk=frame(AT_RISK_SCHEMA, customer_id=["c"], quantity=[held]).filter(
            pl.col("quantity") > 0
        ),
    )


def test_every_attributed_unit_is_rated_included_unrated_set_aside_or_held():
    month = usage(("a", 600), ("b", 100), ("c", 300), (None, 50))  # unattributed: not counted
    outcome = units_accounted_check(
        month,
        split(set_aside=200),
        rated([("variable", 300, 100), ("fixed", 1, 0)], unrated=100, held=300),
    )
    assert outcome.passed  # 300 + 100 + 100 + 200 + 300 = 1,000; the fixed fee counts no unit
    assert outcome.metadata["attributed_units"] == outcome.metadata["accounted_units"] == 1000
    assert outcome.metadata["set_aside_by_source"] == {"gateway_log": 200}
    assert isinstance(outcome.metadata["billing_source_fallbacks"], Markdown)


def test_units_neither_rated_nor_reported_fail_the_rated_check():
    outcome = units_accounted_check(usage(("a", 600)), split(), rated([("variable", 500, 0)]))
    assert not outcome.passed
    assert (outcome.metadata["attributed_units"], outcome.metadata["accounted_units"]) == (600, 500)


def test_a_held_customers_usage_past_64_bits_is_reported_as_text():
    big = 2**63 - 1
    outcome = units_accounted_check(usage(("c", big), ("c", big)), split(), rated([], held=2 * big))
    assert outcome.passed
    assert outcome.metadata["attributed_units"] == outcome.metadata["held_units"] == str(2 * big)


# ---------------------------------------------------------------- cost and reconciliation


def test_unreadable_cost_lines_warn_naming_the_first_five():
    quarantine = frame(
        QUARANTINE_SCHEMA,
        origin=[f"costs/2026-10-0{n}_p1.json#data.0" for n in range(1, 8)],
        reason=["bad_amount"] * 7,
    )
    outcome = cost_lines_readable_check(quarantine)
    assert not outcome.passed and outcome.severity == WARN
    assert outcome.metadata["quarantined"] == 7
    assert outcome.metadata["first"].count("(bad_amount)") == 5
    assert cost_lines_readable_check(quarantine.clear()).metadata == {
        "quarantined": 0,
        "first": "none",
    }


def test_usage_no_price_costs_warns_naming_provider_model_and_meter():
    costs = frame(
        COST_SCHEMA,
        provider=["openai", "mistral", "mistral"],
        model_family=["gpt-4o", None, None],
        meter=["input_tokens", "output_tokens", "output_tokens"],
        cost_basis=["price_book", "unpriced", "unpriced"],
        events=[3, 2, 5],
    )
    outcome = priced_check(costs)
    assert not outcome.passed and outcome.severity == WARN
    assert outcome.metadata == {"unpriced": "mistral/-/output_tokens", "unpriced_events": 7}
    assert priced_check(costs.head(1)).passed


def reconciliation(*rows: tuple[str | None, str, str]) -> pl.DataFrame:
    return frame(
        RECONCILIATION_SCHEMA,
        customer_id=[c for c, _, _ in rows],
        revenue=[Decimal(r) for _, r, _ in rows],
        cost=[Decimal(c) for _, _, c in rows],
    )


def test_reconciled_revenue_must_be_the_rated_lines_to_the_cent():
    table = reconciliation(("a", "10.00", "4.00"), (None, "0", "1.50"))
    lines = frame(LINE_SCHEMA, amount=["6.00", "4.00"])
    outcome = revenue_check(table, lines)
    assert outcome.passed
    assert outcome.metadata == {"reconciled_revenue": "10.000000000000", "rated_lines": "10.00"}
    assert not revenue_check(table, frame(LINE_SCHEMA, amount=["10.01"])).passed


def test_attributed_and_unattributed_cost_must_be_the_provider_total():
    table = reconciliation(("a", "10.00", "4.00"), (None, "0", "1.50"))
    provider = frame(COST_SCHEMA, cost=[Decimal("4.00"), Decimal("1.50")])
    outcome = cost_check(table, provider)
    assert outcome.passed and outcome.metadata["unattributed"] == "1.500000000000"
    assert not cost_check(table, provider.head(1)).passed


# ---------------------------------------------------------------- money at risk


def test_no_money_at_risk_passes_and_counts_the_waivers():
    outcome = money_at_risk_check(MONTH, [], [{"origin": "x"}])
    assert outcome.passed and outcome.description is None
    assert outcome.metadata["held_records"] == 0 and outcome.metadata["waived"] == 1


def test_money_at_risk_fails_naming_who_is_held_and_how_to_release_them():
    held = [
        Hold("openai/usage/2026-10-03.json", "openai_usage_api", "truncated_file", None, "cut"),
        Hold("rating:2026-10:acme:input_tokens:gpt-4o", "rating", "quantity_overflow", "acme", ""),
    ]
    outcome = money_at_risk_check(MONTH, held, [])
    assert not outcome.passed and outcome.severity == "error"
    assert outcome.metadata["holds_whole_month"] is True
    assert outcome.metadata["held_customers"] == "acme"
    assert (
        "the whole month" in outcome.description and "billing-pipeline waive" in outcome.description
    )
    assert (
        "`openai/usage/2026-10-03.json` (truncated_file, whole month)"
        in outcome.metadata["held_origins"]
    )


def test_the_month_holds_each_money_at_risk_record_once_and_only_those():
    usage_q = frame(
        QUARANTINE_SCHEMA,
        origin=["f:1", "f:1", "f:2"],
        source=["gateway_log"] * 3,
        reason=["bad_quantity", "bad_quantity", "unknown_model"],
        kind=[KIND_MONEY_AT_RISK, KIND_MONEY_AT_RISK, "not_billable"],
        customer_id=["a", "a", "a"],
        message=["first", "second", "x"],
    )
    at_risk = frame(
        AT_RISK_SCHEMA,
        customer_id=["big"],
        meter=["input_tokens"],
        model=[None],
        reason=["quantity_overflow"],
        quantity=[2**64],
        detail=["big: input_tokens past 64 bits"],
    )
    quarantine = month_quarantine(usage_q, frame(QUARANTINE_SCHEMA).clear(), at_risk, MONTH)
    assert quarantine.height == 4
    held = quarantine.filter(pl.col("source") == "rating").row(0, named=True)
    assert (held["origin"], held["kind"], held["raw"], held["day"], held["customer_id"]) == (
        "rating:2026-10:big:input_tokens:",
        KIND_MONEY_AT_RISK,
        str(2**64),
        dt.date(2026, 10, 1),
        "big",
    )
    assert hold_rows(quarantine) == [
        {
            "origin": "f:1",
            "source": "gateway_log",
            "reason": "bad_quantity",
            "customer_id": "a",
            "message": "first",
        },
        {
            "origin": "rating:2026-10:big:input_tokens:",
            "source": "rating",
            "reason": "quantity_overflow",
            "customer_id": "big",
            "message": "big: input_tokens past 64 bits",
        },
    ]


# ---------------------------------------------------------------- as Dagster shows them


def test_a_verdict_becomes_a_dagster_check_result_with_the_same_metadata():
    outcome = CheckOutcome(
        passed=False,
        severity=WARN,
        description="why",
        metadata={"n": 3, "text": "none", "table": Markdown("| a |"), "by": {"x": 1}, "all": True},
    )
    result = check_result("every_usage_event_has_a_cost", outcome, asset_key="provider_cost")
    assert result.check_name == "every_usage_event_has_a_cost" and not result.passed
    assert result.asset_key == dg.AssetKey("provider_cost")
    assert result.severity == dg.AssetCheckSeverity.WARN and result.description == "why"
    assert result.metadata == {
        "n": dg.MetadataValue.int(3),
        "text": dg.MetadataValue.text("none"),
        "table": dg.MetadataValue.md("| a |"),
        "by": dg.MetadataValue.json({"x": 1}),
        "all": dg.MetadataValue.bool(True),
    }
