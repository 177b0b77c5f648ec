"""The code location loads, and nothing a deployment relies on silently disappears."""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil

import dagster as dg

import billing_pipeline.defs
from billing_pipeline.defs import build_definitions
from billing_pipeline.defs.resources import resources_from_env

# define_asset_job's class is not public (dagster._core): taken from an instance
ASSET_JOB = type(dg.define_asset_job("asset_job", selection=dg.AssetSelection.all()))
DAGSTER_OBJECTS = (
    dg.AssetsDefinition,
    dg.JobDefinition,
    ASSET_JOB,
    dg.ScheduleDefinition,
    dg.SensorDefinition,
)


def defined_in_defs_modules():
    """(module, name, object) for every asset, job, schedule and sensor a module of
    billing_pipeline.defs holds at module level, alone or in a list (``raw_assets``)."""
    for info in pkgutil.iter_modules(billing_pipeline.defs.__path__):
        module = importlib.import_module(f"billing_pipeline.defs.{info.name}")
        for name, value in vars(module).items():
            for item in value if type(value) in (list, tuple) else [value]:
                if isinstance(item, DAGSTER_OBJECTS):
                    yield info.name, name, item


def test_definitions_load_and_validate(tmp_path):
    defs = build_definitions(resources_from_env(tmp_path))
    dg.Definitions.validate_loadable(defs)


def test_every_asset_job_schedule_and_sensor_a_defs_module_defines_is_deployed(tmp_path):
    """Each module assembles its own Definitions and build_definitions merges them: one left out
    of its module's Definitions (or a module left out of the merge) would silently not deploy."""
    defs = build_definitions(resources_from_env(tmp_path))
    graph = defs.resolve_asset_graph()
    deployed_jobs = {job.name for job in defs.resolve_all_job_defs()}
    deployed_schedules = {s.name for s in defs.schedules}
    deployed_sensors = {s.name for s in defs.sensors}
    found, missing = set(), []
    for module, name, item in defined_in_defs_modules():
        found.add(type(item).__name__)
        if isinstance(item, dg.AssetsDefinition):
            missing += [
                f"{module}.{name}: asset {k.to_user_string()}"
                for k in item.keys
                if not graph.has(k)
            ]
            missing += [
                f"{module}.{name}: check {k.to_user_string()}"
                for k in item.check_keys
                if k not in graph.asset_check_keys
            ]
        elif isinstance(item, dg.ScheduleDefinition):
            missing += [] if item.name in deployed_schedules else [f"{module}.{name}: schedule"]
        elif isinstance(item, dg.SensorDefinition):
            missing += [] if item.name in deployed_sensors else [f"{module}.{name}: sensor"]
        else:
            missing += [] if item.name in deployed_jobs else [f"{module}.{name}: job"]
    assert not missing
    assert {"AssetsDefinition", "UnresolvedAssetJobDefinition", "JobDefinition"} <= found


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
    from billing_pipeline.defs.month_end import month_end_schedule

    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, 1, 3, tzinfo=dt.UTC)
    )
    request = month_end_schedule(context)
    assert request.partition_key == "2026-10-01"
    assert request.tags["billing/month"] == "2026-10"


def test_provider_fetch_assets_leave_retries_to_the_client_and_the_landing_sensor_is_registered(
    tmp_path,
):
    defs = build_definitions(resources_from_env(tmp_path))
    graph = defs.resolve_asset_graph()
    assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"raw_cloud_aws_cur", "openai_api_pages", "anthropic_api_pages"} <= assets
    assert "provider_fetch_job" in {job.name for job in defs.resolve_all_job_defs()}
    assert {s.name for s in defs.sensors} >= {"landing_zone_sensor"}
    from billing_pipeline.defs.fetch import anthropic_api_pages, openai_api_pages

    # one retry layer: the API client's (see defs/fetch.py), none from Dagster around it
    assert openai_api_pages.op.retry_policy is None and anthropic_api_pages.op.retry_policy is None
    fetch_job = defs.resolve_job_def("provider_fetch_job")
    assert fetch_job.tags["dagster/retry_on_asset_or_op_failure"] == "false"  # no run retries


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
