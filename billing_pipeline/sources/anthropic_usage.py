"""Anthropic Admin API usage report pages (``landing/anthropic/usage_report/*.json``).

Anthropic's ``uncached_input_tokens`` already EXCLUDES cache traffic, so it maps straight to
input_tokens. Cache writes come split by lifetime (``cache_creation.ephemeral_5m_input_tokens``
and ``ephemeral_1h_input_tokens``, priced differently), so they become two cache_write_tokens
rows with dimensions ``cache_ttl`` "5m" / "1h" (event ids differ by that variant).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from billing_pipeline import schema
from billing_pipeline.sources import files, pages
from billing_pipeline.sources.files import Meter, Problem

SOURCE = "anthropic_usage_report"
FOLDER = "anthropic/usage_report"

METERS = [
    Meter("m_input", "input_tokens"),
    Meter("m_cached", "cached_input_tokens"),
    Meter("m_write_5m", "cache_write_tokens", "5m", {"cache_ttl": "5m"}),
    Meter("m_write_1h", "cache_write_tokens", "1h", {"cache_ttl": "1h"}),
    Meter("m_output", "output_tokens"),
    Meter("m_web_search", "web_search_requests"),
]


def _bucket_start(bucket: dict):
    return files.parse_utc(bucket.get("starting_at"))


def _nested(r: dict, name: str, prefix: str) -> dict:
    value = r.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Problem("bad_number", f"{prefix}.{name}", f"{name} is not an object")
    return value


def _parse(bucket: dict, r: dict, prefix: str) -> dict:
    end = files.parse_utc(bucket.get("ending_at"))
    if end is None:
        raise Problem("bad_timestamp", "ending_at", "bucket ending_at is missing or not RFC 3339 with offset")
    creation = _nested(r, "cache_creation", prefix)
    tools = _nested(r, "server_tool_use", prefix)
    c = lambda obj, name, field, required=False: files.count(obj, name, f"{prefix}.{field}", required)  # noqa: E731
    values = dict(
        m_input=c(r, "uncached_input_tokens", "uncached_input_tokens", True),
        m_output=c(r, "output_tokens", "output_tokens", True),
        m_cached=c(r, "cache_read_input_tokens", "cache_read_input_tokens"),
        m_write_5m=c(creation, "ephemeral_5m_input_tokens", "cache_creation.ephemeral_5m_input_tokens"),
        m_write_1h=c(creation, "ephemeral_1h_input_tokens", "cache_creation.ephemeral_1h_input_tokens"),
        m_web_search=c(tools, "web_search_requests", "server_tool_use.web_search_requests"),
    )
    model = pages.text(r, "model", prefix, required=True)
    t = lambda name: pages.text(r, name, prefix)  # noqa: E731
    api_key, workspace, tier, window, geo = (
        t("api_key_id"), t("workspace_id"), t("service_tier"), t("context_window"), t("inference_geo")
    )
    dims = {"api_key_id": api_key, "workspace_id": workspace, "service_tier": tier,
            "context_window": window, "inference_geo": geo}
    return dict(
        end=end,
        natural_key=pages.key(bucket.get("starting_at"), api_key, workspace, model, tier, window, geo),
        provider="anthropic",
        account_key=f"anthropic:{api_key}" if api_key else None,
        model=model,
        dimensions=schema.canonical_json({k: v for k, v in dims.items() if v is not None}),
        **values,
    )


def read(landing: Path, start: date, end: date):
    """All usage-report results whose partition day is in [start, end)."""
    return pages.read_pages(
        SOURCE, landing, FOLDER, start, end, _parse, _bucket_start, "starting_at", METERS, "input_tokens"
    )
