"""Fetch assets: pull a day of provider admin-API pages into the landing zone.

They only write files; the raw_* assets read those files like any other export, so a day can be
re-ingested from the landing zone without the network. Kept out of the daily ingestion job
(group ``fetch``, job ``provider_fetch_job``) so ingesting never needs API keys.

One retry layer: the client's own (sources/api/client.py ``RetryPolicy``: 5 attempts per page),
and no Dagster ``RetryPolicy`` on these assets. The client knows what a step retry cannot: which
answers are worth another try (429, 5xx and dropped connections, never a 400 or a bad key), how
long the provider asked it to wait (``Retry-After``), and that only the failing page needs
fetching again, not the pages before it. A step retry around it would multiply the attempts
(4 step tries x 5 calls = up to 20 calls for one page) and repeat refusals that cannot heal; for
the same reason ``provider_fetch_job`` opts out of the instance's run retries on step failure. A
fetch that still fails after the client's attempts fails its run with the page and status;
re-materializing the partition once the provider is back fetches the day again, whole.
"""

import datetime as dt

import dagster as dg

from billing_pipeline.defs.partitions import daily_partitions
from billing_pipeline.defs.resources import LandingZone, ProviderAdminApi
from billing_pipeline.sources import litellm_proxy_db
from billing_pipeline.sources.api import anthropic as anthropic_api
from billing_pipeline.sources.api import openai as openai_api


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
    # no HTTP client here to retry: a dropped PostgreSQL connection is retried by Dagster
    retry_policy=dg.RetryPolicy(
        max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
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


provider_fetch_job = dg.define_asset_job(
    "provider_fetch_job",
    selection=dg.AssetSelection.groups("fetch"),
    description="Fetch a day of provider admin-API pages into the landing zone (needs the admin keys).",
    # dagster.yaml's run retries would be a third layer: a run the API failed is not re-run (one
    # that crashed still is)
    tags={"dagster/retry_on_asset_or_op_failure": "false"},
)


defs = dg.Definitions(
    assets=[openai_api_pages, anthropic_api_pages, litellm_spend_log_rows],
    jobs=[provider_fetch_job],
)
