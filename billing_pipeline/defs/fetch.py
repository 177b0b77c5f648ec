"""Fetch assets: pull a day of provider admin-API pages into the landing zone.

They only write files; the raw_* assets read those files like any other export, so a day can be
re-ingested from the landing zone without the network. Kept out of the daily ingestion job
(group ``fetch``, job ``provider_fetch_job``) so ingesting never needs API keys.
"""

import datetime as dt

import dagster as dg

from billing_pipeline.defs.partitions import daily_partitions
from billing_pipeline.defs.resources import LandingZone, ProviderAdminApi
from billing_pipeline.sources import litellm_proxy_db
from billing_pipeline.sources.api import anthropic as anthropic_api
from billing_pipeline.sources.api import openai as openai_api

FETCH_RETRY = dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL)


def _days(context: dg.AssetExecutionContext) -> list[dt.date]:
    tw = context.partition_time_window
    start, end = tw.start.date(), tw.end.date()
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def _result(landing: LandingZone, written) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={
            "files": len(written),
            "paths": dg.MetadataValue.md(
                "\n".join(f"- {p.relative_to(landing.root)}" for p in written) or "none"
            ),
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name="fetch",
    retry_policy=FETCH_RETRY,
    kinds={"openai"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def openai_api_pages(
    context: dg.AssetExecutionContext, landing: LandingZone, openai_admin_api: ProviderAdminApi
) -> dg.MaterializeResult:
    """OpenAI Usage API (completions, embeddings, images, audio) and Costs API pages, as returned."""
    written = []
    for day in _days(context):
        written += openai_api.fetch_day(
            landing.root, day, base_url=openai_admin_api.base_url, api_key=openai_admin_api.api_key
        )
    return _result(landing, written)


@dg.asset(
    partitions_def=daily_partitions,
    group_name="fetch",
    retry_policy=FETCH_RETRY,
    kinds={"anthropic"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def anthropic_api_pages(
    context: dg.AssetExecutionContext, landing: LandingZone, anthropic_admin_api: ProviderAdminApi
) -> dg.MaterializeResult:
    """Anthropic usage_report/messages and cost_report pages, as returned."""
    written = []
    for day in _days(context):
        written += anthropic_api.fetch_day(
            landing.root,
            day,
            base_url=anthropic_admin_api.base_url,
            api_key=anthropic_admin_api.api_key,
        )
    return _result(landing, written)


@dg.asset(
    partitions_def=daily_partitions,
    group_name="fetch",
    retry_policy=FETCH_RETRY,
    kinds={"postgres"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def litellm_spend_log_rows(
    context: dg.AssetExecutionContext, landing: LandingZone
) -> dg.MaterializeResult:
    """LiteLLM_SpendLogs rows of the day (and the last hour of the day before: late commits) from
    the proxy's PostgreSQL (BILLING_LITELLM_DATABASE_URL), read-only, merged by request_id. A
    deployment without a LiteLLM proxy leaves the variable unset: nothing is fetched."""
    try:
        url = litellm_proxy_db.database_url()
    except litellm_proxy_db.FetchError as exc:
        context.log.info(f"{exc}: no LiteLLM proxy to read")
        return dg.MaterializeResult(metadata={"files": 0, "skipped": str(exc)})
    written = []
    for day in _days(context):
        written += litellm_proxy_db.fetch_day(landing.root, url, day)
    return _result(landing, written)


fetch_assets = [openai_api_pages, anthropic_api_pages, litellm_spend_log_rows]

provider_fetch_job = dg.define_asset_job(
    "provider_fetch_job",
    selection=dg.AssetSelection.groups("fetch"),
    description="Fetch a day of provider admin-API pages into the landing zone (needs the admin keys).",
)
