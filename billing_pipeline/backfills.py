"""Submit a backfill to a running Dagster deployment, so it shows and runs like one made in the UI.

The webserver's GraphQL API is Dagster's public way to launch an asset backfill from outside; the
daemon then executes it (one run per asset range, thanks to the single-run backfill policy), and
every monthly partition it touches is re-rated after its days.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import httpx

from billing_pipeline.defs import stage_definitions
from billing_pipeline.defs.jobs import DAILY_GROUPS, MONTHLY_GROUPS
from billing_pipeline.periods import month_of, parse_month

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
  }
}
"""


def _assets_of(groups: tuple[str, ...]) -> tuple[str, ...]:
    """The assets the daily / monthly jobs materialize, so a backfill covers exactly what they do."""
    assets = stage_definitions().assets
    return tuple(
        sorted(k.to_user_string() for k in dg.AssetSelection.groups(*groups).resolve(assets))
    )


DAILY_ASSETS = _assets_of(DAILY_GROUPS)
MONTHLY_ASSETS = _assets_of(MONTHLY_GROUPS)


class BackfillError(RuntimeError):
    pass


def backfill_params(first: dt.date, last: dt.date, title: str) -> dict:
    """Days first..last for the daily assets, and the months they touch for the monthly ones."""
    first_month = parse_month(month_of(first))[0]
    last_month = parse_month(month_of(last))[0]
    by_asset = [
        {
            "assetKey": {"path": [name]},
            "partitions": {"range": {"start": first.isoformat(), "end": last.isoformat()}},
        }
        for name in DAILY_ASSETS
    ] + [
        {
            "assetKey": {"path": [name]},
            "partitions": {
                "range": {"start": first_month.isoformat(), "end": last_month.isoformat()}
            },
        }
        for name in MONTHLY_ASSETS
    ]
    return {
        "partitionsByAssets": by_asset,
        "title": title,
        "tags": [{"key": "billing/backfill", "value": f"{first}..{last}"}],
    }


def submit_backfill(webserver: str, first: dt.date, last: dt.date, timeout: float = 30.0) -> str:
    """Launch the backfill on the deployment at ``webserver`` (e.g. http://127.0.0.1:3000); returns its id."""
    params = backfill_params(first, last, title=f"billing backfill {first}..{last}")
    try:
        response = httpx.post(
            f"{webserver.rstrip('/')}/graphql",
            json={"query": LAUNCH, "variables": {"params": params}},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise BackfillError(f"{webserver}: Dagster webserver not reachable ({exc})") from None
    if response.status_code != 200:
        raise BackfillError(f"{webserver}: HTTP {response.status_code}: {response.text[:200]}")
    payload = response.json()
    if payload.get("errors"):
        raise BackfillError(f"{webserver}: {payload['errors'][0].get('message')}")
    result = payload["data"]["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"{webserver}: {result['__typename']}: {result.get('message', result)}")
    return result["backfillId"]
