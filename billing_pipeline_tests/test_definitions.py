"""The code location loads, and nothing a deployment relies on silently disappears."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from billing_pipeline.defs import build_definitions
from billing_pipeline.defs.resources import resources_from_env


def test_definitions_load_and_validate(tmp_path):
    defs = build_definitions(resources_from_env(tmp_path))
    dg.Definitions.validate_loadable(defs)


def test_every_stage_has_its_assets_jobs_schedules_and_checks(tmp_path):
    defs = build_definitions(resources_from_env(tmp_path))
    graph = defs.resolve_asset_graph()
    assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {
        "raw_openai_usage",
        "raw_anthropic_usage",
        "raw_gateway_log",
        "raw_cloud_focus",
        "raw_outcomes",
        "usage_events",
        "usage_quarantine",
        "provider_cost",
        "monthly_usage",
        "rated_charges",
        "unrated_usage",
        "reconciliation",
        "quarantine_report",
        "invoice_drafts",
        "tokenizer_drift",
        "provider_reported_cost",
    } <= assets
    checks = {key.name for key in graph.asset_check_keys}
    assert {
        "records_read_equal_events_plus_quarantine",
        "every_attributed_unit_rated_or_reported",
        "revenue_equals_rated_lines",
        "attributed_plus_unattributed_cost_equals_provider_total",
        "invoice_totals_equal_rated_lines",
        "every_usage_event_has_a_cost",
        "no_money_at_risk",
        "every_cost_line_readable",
    } <= checks
    assert {job.name for job in defs.resolve_all_job_defs()} >= {
        "daily_ingestion_job",
        "month_end_job",
        "issue_invoices_job",
    }
    assert "issued_invoices" in assets
    assert {s.name for s in defs.schedules} == {
        "daily_ingestion_schedule",
        "month_end_schedule",
        "usage_alerts_schedule",
        "alert_delivery_schedule",
        "month_to_date_statements_schedule",
        "invoice_delivery_schedule",
    }
    assert "month_to_date_statements" in assets and "delivered_invoices" in assets


def test_statements_run_for_yesterday_and_delivery_retries_the_previous_month():
    from billing_pipeline.defs.issuing import invoice_delivery_schedule
    from billing_pipeline.defs.statements import month_to_date_statements_schedule

    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, 1, 1, 45, tzinfo=dt.UTC)
    )
    assert month_to_date_statements_schedule(context).partition_key == "2026-10-31"
    request = invoice_delivery_schedule(context)
    assert request.partition_key == "2026-10-01" and request.tags["billing/month"] == "2026-10"


def test_daily_assets_are_partitioned_by_day_and_billing_by_month(tmp_path):
    graph = build_definitions(resources_from_env(tmp_path)).resolve_asset_graph()
    daily = graph.get(dg.AssetKey("usage_events")).partitions_def
    monthly = graph.get(dg.AssetKey("rated_charges")).partitions_def
    assert isinstance(daily, dg.DailyPartitionsDefinition)
    assert isinstance(monthly, dg.MonthlyPartitionsDefinition)


def test_month_end_schedule_drafts_the_previous_month():
    from billing_pipeline.defs.jobs import month_end_schedule

    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, 1, 3, tzinfo=dt.UTC)
    )
    request = month_end_schedule(context)
    assert request.partition_key == "2026-10-01"
    assert request.tags["billing/month"] == "2026-10"


def test_provider_fetch_assets_retry_and_the_landing_sensor_is_registered(tmp_path):
    defs = build_definitions(resources_from_env(tmp_path))
    graph = defs.resolve_asset_graph()
    assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"raw_cloud_aws_cur", "openai_api_pages", "anthropic_api_pages"} <= assets
    assert "provider_fetch_job" in {job.name for job in defs.resolve_all_job_defs()}
    assert {s.name for s in defs.sensors} >= {"landing_zone_sensor"}
    from billing_pipeline.defs.fetch import openai_api_pages

    policy = openai_api_pages.op.retry_policy
    assert (policy.max_retries, policy.delay, policy.backoff) == (3, 1, dg.Backoff.EXPONENTIAL)


def test_usage_alerts_run_daily_for_yesterday_and_delivery_retries_every_ten_minutes(tmp_path):
    from billing_pipeline.defs.alerts import alert_delivery_schedule, usage_alerts_schedule

    defs = build_definitions(resources_from_env(tmp_path))
    graph = defs.resolve_asset_graph()
    assert isinstance(
        graph.get(dg.AssetKey("usage_alerts")).partitions_def, dg.DailyPartitionsDefinition
    )
    assert {"usage_alerts_job", "alert_delivery_job"} <= {
        job.name for job in defs.resolve_all_job_defs()
    }
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 10, 21, 1, 30, tzinfo=dt.UTC)
    )
    assert usage_alerts_schedule(context).partition_key == "2026-10-20"
    assert alert_delivery_schedule.cron_schedule == "*/10 * * * *"
