"""Alert rules: limit thresholds once per customer and month, spikes, hard caps (ledger-backed)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import polars as pl
import pytest
import sqlalchemy as sa

from billing_pipeline.alerts import AlertRules, daily_spend, spike_alerts
from billing_pipeline.alerts.outbox import backoff, outbox_rows
from billing_pipeline.alerts.run import HARD_CAPS_FILE, evaluate_day
from billing_pipeline_tests.support.alerts import catalog, october, steady, usage

NOW = dt.datetime(2026, 10, 20, 1, 0, tzinfo=dt.UTC)

# The documented test opt-in: these tests' webhook receivers listen on 127.0.0.1.
pytestmark = pytest.mark.usefixtures("receivers_on_loopback")


def test_daily_spend_is_each_days_share_of_the_month_to_date_usage_charges():
    spend = daily_spend(usage(october(1, 3)), catalog(), dt.date(2026, 10, 2))
    assert spend.rows() == [
        ("acme", dt.date(2026, 10, 1), Decimal(1)),
        ("acme", dt.date(2026, 10, 2), Decimal(1)),
    ]


def test_limit_thresholds_fire_once_per_customer_and_month_across_reruns_and_backfills(
    ledger, tmp_path
):
    cat, month = catalog(), usage(steady())  # $1 a day against a $10 limit
    first = evaluate_day(month, cat, dt.date(2026, 10, 8), ledger.engine, tmp_path, now=NOW)
    assert first.new == ["limit:acme:2026-10:50", "limit:acme:2026-10:75"]
    again = evaluate_day(month, cat, dt.date(2026, 10, 8), ledger.engine, tmp_path, now=NOW)
    assert again.new == [] and len(again.alerts) == 2  # same numbers, nothing new
    backfill = evaluate_day(month, cat, dt.date(2026, 10, 5), ledger.engine, tmp_path, now=NOW)
    assert backfill.new == []  # 50 % was reached again on the 5th: already fired
    later = evaluate_day(month, cat, dt.date(2026, 10, 10), ledger.engine, tmp_path, now=NOW)
    assert later.new == ["limit:acme:2026-10:90", "limit:acme:2026-10:100"]
    payload = json.loads(outbox_rows(ledger.engine)[0]["payload"])  # limit:acme:2026-10:100
    assert (payload["spend_to_date"], payload["monthly_limit"], payload["percent_used"]) == (
        "10.00",
        "10.00",
        "100.0",
    )
    assert payload["projected_month_end"] == "31.00"  # $10 in 10 of 31 days
    assert "At this rate the month ends at $31.00" in payload["message"]
    november = evaluate_day(
        usage(steady() | {dt.date(2026, 11, 1): 600_000}),
        cat,
        dt.date(2026, 11, 1),
        ledger.engine,
        tmp_path,
        now=NOW,
    )
    assert (
        november.new[0] == "limit:acme:2026-11:50"
    )  # a new month starts over (and $6 in a day is a spike)


def test_customers_without_a_webhook_are_recorded_not_sent(ledger, tmp_path):
    cat = catalog()
    plain = cat.model_copy(
        update={
            "customers": {
                **cat.customers,
                "acme": cat.customers["acme"].model_copy(update={"webhook": None}),
            }
        }
    )
    evaluate_day(usage(steady()), plain, dt.date(2026, 10, 5), ledger.engine, tmp_path, now=NOW)
    assert [(r["alert_id"], r["status"]) for r in outbox_rows(ledger.engine)] == [
        ("limit:acme:2026-10:50", "no_endpoint")
    ]


def test_a_day_above_k_times_the_trailing_mean_and_a_week_above_f_times_the_last_are_spikes():
    cat, rules = catalog(), AlertRules(spike_factor=Decimal(3), growth_factor=Decimal(2))
    month = usage(october(1, 14) | {dt.date(2026, 10, 15): 900_000})  # $1 a day, then $9
    spend = daily_spend(month, cat, dt.date(2026, 10, 15))
    kinds = {a.kind: a.payload for a in spike_alerts(spend, cat, dt.date(2026, 10, 15), rules)}
    assert (
        kinds["daily_spike"]["day_spend"] == "9.00"
        and kinds["daily_spike"]["trailing_7_day_mean"] == "1.00"
    )
    assert (kinds["weekly_growth"]["last_7_days"], kinds["weekly_growth"]["previous_7_days"]) == (
        "15.00",
        "7.00",
    )
    assert "114 % more than the 7 days before" in kinds["weekly_growth"]["message"]
    assert (
        spike_alerts(spend, cat, dt.date(2026, 10, 14), rules) == []
    )  # a steady $1 a day is no spike
    calmer = AlertRules(spike_factor=Decimal(10), growth_factor=Decimal(3))
    assert spike_alerts(spend, cat, dt.date(2026, 10, 15), calmer) == []


def test_customers_over_their_hard_cap_are_listed_for_the_gateway_in_a_file_and_a_table(
    ledger, tmp_path
):
    cat = catalog(hard_cap="6.00")
    month = usage(steady())
    evaluate_day(month, cat, dt.date(2026, 10, 7), ledger.engine, tmp_path, now=NOW)
    listed = json.loads((tmp_path / HARD_CAPS_FILE).read_text())
    assert listed["as_of"] == "2026-10-08T00:00:00Z"  # usage counted up to the end of the 7th
    assert [
        (c["customer_id"], c["spend_to_date"], c["hard_cap"], c["keys"])
        for c in listed["customers"]
    ] == [("acme", "7.00", "6.00", ["gateway:acme"])]
    with ledger.engine.connect() as conn:
        assert conn.execute(
            sa.text("SELECT customer_id, spend_micros, cap_micros FROM hard_caps")
        ).all() == [("acme", 7_000_000, 6_000_000)]
    earlier = evaluate_day(month, cat, dt.date(2026, 10, 3), ledger.engine, tmp_path, now=NOW)
    assert not earlier.caps_written  # a backfill of an earlier day does not unblock anyone
    assert json.loads((tmp_path / HARD_CAPS_FILE).read_text())["as_of"] == "2026-10-08T00:00:00Z"


def test_retries_back_off_exponentially_up_to_six_hours():
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(30) == dt.timedelta(hours=6)


def test_the_demo_month_gets_a_finance_summary_and_its_daily_alerts_run_in_dagster(
    demo_month, tmp_path
):
    """The one full-month test: reconciliation outputs, then usage_alerts for the month's last day
    twice through Dagster (the second run adds nothing)."""
    from billing_pipeline.defs import build_definitions
    from billing_pipeline.runner import month_end_resources, open_instance

    month = demo_month.copy_to(tmp_path)
    folder = month.out / "2026-10"
    assert (folder / "reconciliation.html").is_file() and (folder / "reconciliation.pdf").is_file()
    table = pl.read_csv(folder / "reconciliation.csv")
    assert {"reported_tokens", "at_stake"} <= set(table.columns)
    defs = build_definitions(month_end_resources(month.landing, month.catalog, month.out))
    with open_instance(month.out) as instance:
        runs = [
            defs.resolve_job_def("usage_alerts_job").execute_in_process(
                instance=instance, partition_key="2026-10-31"
            )
            for _ in range(2)
        ]
    first, second = (run.output_for_node("usage_alerts") for run in runs)
    assert first.filter(pl.col("kind") == "limit_threshold").height > 0 and first["new"].all()
    assert second.height == first.height and not second["new"].any()
    assert json.loads((month.out / HARD_CAPS_FILE).read_text())["as_of"] == "2026-11-01T00:00:00Z"


def test_a_backfill_of_an_old_month_records_its_alerts_as_fired_without_sending_them(
    ledger, tmp_path
):
    evaluate_day(
        usage(steady()),
        catalog(),
        dt.date(2026, 10, 8),
        ledger.engine,
        tmp_path,
        now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
    )
    assert {r["status"] for r in outbox_rows(ledger.engine)} == {"stale"}


def test_a_new_customers_first_days_are_not_spikes_until_it_has_the_history_a_mean_needs():
    cat, rules = catalog(), AlertRules(spike_factor=Decimal(3), growth_factor=Decimal(2))
    # $0.10 on its first evening (the 8th), then $1 a day: no 7-day mean before the 15th
    month = usage(
        {dt.date(2026, 10, 8): 10_000} | october(9, 21) | {dt.date(2026, 10, 22): 900_000}
    )
    spend = daily_spend(month, cat, dt.date(2026, 10, 22))
    assert spike_alerts(spend, cat, dt.date(2026, 10, 9), rules) == []  # $1 vs $0.10 / 7
    spikes = {a.kind: a.payload for a in spike_alerts(spend, cat, dt.date(2026, 10, 22), rules)}
    # the 22nd, 14 days in: $9 against the 15th-21st's $1 a day, and the 16th-22nd's $15
    # against the 9th-15th's $7: both fire as for any customer
    assert spikes["daily_spike"]["trailing_7_day_mean"] == "1.00"
    assert spikes["weekly_growth"]["previous_7_days"] == "7.00"
