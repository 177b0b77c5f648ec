"""OpenAI admin API client: one day of Usage API and Costs API pages into the landing zone.

Pages are saved exactly as returned (``openai/usage/<endpoint>/<day>_p<N>.json``,
``openai/costs/<day>_p<N>.json``) and the readers parse the files, so any run can be replayed
from the landing zone without the network. Re-fetching a day overwrites its pages; the readers'
deterministic ids make a re-fetch count once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import httpx

from billing_pipeline.sources.api.client import RetryPolicy, admin_key, fetch_all_pages, save_pages

BASE_URL = "https://api.openai.com/v1"
KEY_ENV = "OPENAI_ADMIN_KEY"
# Fetched by default. ``moderations`` (free of charge at OpenAI) is fetched only when asked for; the
# reader reads its pages when they are in the landing zone.
USAGE_ENDPOINTS = ("completions", "embeddings", "images", "audio_speeches", "audio_transcriptions")
# Every group_by value each endpoint documents (openapi.yaml, /organization/usage/<endpoint>): a field
# left out would sum results that bill differently (batch, service tier, image size) into one.
_IDS = ("project_id", "user_id", "api_key_id", "model")
USAGE_GROUP_BY: dict[str, tuple[str, ...]] = {
    "completions": _IDS + ("batch", "service_tier"),
    "embeddings": _IDS,
    "moderations": _IDS,
    "images": _IDS + ("size", "source"),
    "audio_speeches": _IDS,
    "audio_transcriptions": _IDS,
}
COSTS_GROUP_BY = ("project_id", "line_item", "api_key_id")  # the Costs API has no model dimension


def _day_bounds(day: date) -> tuple[int, int]:
    start = datetime.combine(day, time(), UTC)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp())


def _client(base_url: str, key: str, timeout: float) -> httpx.Client:
    return httpx.Client(
        base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=timeout
    )


def fetch_day(
    landing: Path,
    day: date,
    endpoints: tuple[str, ...] = USAGE_ENDPOINTS,
    costs: bool = True,
    base_url: str = BASE_URL,
    api_key: str | None = None,
    policy: RetryPolicy | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Fetch one UTC day (daily buckets) for every usage endpoint and the costs; return files written."""
    key = admin_key(KEY_ENV, api_key)
    policy = policy or RetryPolicy()
    start, end = _day_bounds(day)
    window = [
        ("start_time", str(start)),
        ("end_time", str(end)),
        ("bucket_width", "1d"),
        ("limit", "1"),
    ]
    written: list[Path] = []
    with _client(base_url, key, timeout) as client:
        for endpoint in endpoints:
            if endpoint not in USAGE_GROUP_BY:
                raise ValueError(
                    f"unknown OpenAI usage endpoint {endpoint!r}; known: {', '.join(USAGE_GROUP_BY)}"
                )
            params = window + [("group_by", g) for g in USAGE_GROUP_BY[endpoint]]
            pages = fetch_all_pages(client, f"/organization/usage/{endpoint}", params, policy)
            written += save_pages(Path(landing) / "openai/usage" / endpoint, day.isoformat(), pages)
        if costs:
            params = window + [("group_by", g) for g in COSTS_GROUP_BY]
            pages = fetch_all_pages(client, "/organization/costs", params, policy)
            written += save_pages(Path(landing) / "openai/costs", day.isoformat(), pages)
    return written
