"""Anthropic Usage & Cost Admin API client: one day of usage_report and cost_report pages.

Saved as returned to ``anthropic/usage_report/<day>_p<N>.json`` and
``anthropic/cost_report/<day>_p<N>.json``; the readers parse those files (replayable offline).
Headers: ``x-api-key`` (admin key from ``ANTHROPIC_ADMIN_KEY``, never logged) and
``anthropic-version: 2023-06-01``. Pagination: ``has_more`` + ``next_page`` sent back as ``page``.

The usage report is asked for every documented ``group_by[]`` field: a field left out merges
results that are priced differently (batch vs standard tier, long context, US-only inference,
fast mode) into one row the price book can no longer tell apart. Grouping by ``speed`` needs the
``fast-mode-2026-02-01`` beta header, so it is sent (Anthropic's usage & cost API guide).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import httpx

from billing_pipeline.sources.api.client import RetryPolicy, admin_key, fetch_all_pages, save_pages

BASE_URL = "https://api.anthropic.com"
KEY_ENV = "ANTHROPIC_ADMIN_KEY"
VERSION = "2023-06-01"
BETA = "fast-mode-2026-02-01"  # required to group the usage report by speed
USAGE_GROUP_BY = (
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "speed",
    "account_id",
    "service_account_id",
)
COST_GROUP_BY = ("workspace_id", "description")


def fetch_day(
    landing: Path,
    day: date,
    usage: bool = True,
    costs: bool = True,
    base_url: str = BASE_URL,
    api_key: str | None = None,
    policy: RetryPolicy | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Fetch one UTC day of the messages usage report and the cost report; return files written."""
    key = admin_key(KEY_ENV, api_key)
    policy = policy or RetryPolicy()
    window = [
        ("starting_at", f"{day.isoformat()}T00:00:00Z"),
        ("ending_at", f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z"),
        ("bucket_width", "1d"),
        ("limit", "1"),
    ]
    headers = {"x-api-key": key, "anthropic-version": VERSION, "anthropic-beta": BETA}
    written: list[Path] = []
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout) as client:
        if usage:
            params = window + [("group_by[]", g) for g in USAGE_GROUP_BY]
            pages = fetch_all_pages(
                client, "/v1/organizations/usage_report/messages", params, policy
            )
            written += save_pages(Path(landing) / "anthropic/usage_report", day.isoformat(), pages)
        if costs:
            params = window + [("group_by[]", g) for g in COST_GROUP_BY]
            pages = fetch_all_pages(client, "/v1/organizations/cost_report", params, policy)
            written += save_pages(Path(landing) / "anthropic/cost_report", day.isoformat(), pages)
    return written
