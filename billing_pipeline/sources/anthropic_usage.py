"""Anthropic Admin API usage report pages (``landing/anthropic/usage_report/*.json``).

Anthropic's ``uncached_input_tokens`` already EXCLUDES cache traffic, so it maps straight to
input_tokens. Cache writes come split by lifetime (``cache_creation.ephemeral_5m_input_tokens``
and ``ephemeral_1h_input_tokens``, priced differently), so they become two cache_write_tokens
rows with dimensions ``cache_ttl`` "5m" / "1h" (event ids differ by that variant);
``server_tool_use.web_search_requests`` becomes ``web_search_requests``.

A result is one row per combination of the report's ``group_by[]`` fields (api_key_id,
workspace_id, model, service_tier, context_window, inference_geo, speed, account_id,
service_account_id, ...). Two results differing in any one of them are two records, so the
natural key is the bucket (start AND end) plus every grouping field the result carries, derived
from the result itself (every field that is not a known quantity and holds text, a flag or null),
so a group-by field Anthropic adds tomorrow is keyed without a code change. The same fields, but
``model``, become the dimensions a plan and the price book key on.
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

# The quantity fields of a messages usage result (everything else it carries is a grouping field).
QUANTITY_FIELDS = frozenset(
    {
        "uncached_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
        "cache_creation",
        "server_tool_use",
    }
)


def grouping_fields(result: dict, quantities: frozenset[str]) -> dict:
    """The fields that name the group a result counts (its group-by values), null ones dropped.

    Every field but the known quantities whose value is text or a flag. Left out: numbers and
    objects (an unknown quantity must never split or merge records) and display labels
    (``*_name``, ``*_email``: they restate an id and may be renamed between two exports).
    Null and absent are the same group, so an export that omits a null field keys the same.
    """
    return {
        name: value
        for name, value in sorted(result.items())
        if name not in quantities
        and isinstance(value, (str, bool))
        and not name.endswith(("_name", "_email"))
        and value != ""
    }


def utc_text(value: object) -> object:
    """A bucket bound as canonical UTC text (``...Z`` and ``+00:00`` are the same instant)."""
    parsed = files.parse_utc(value)
    return parsed.isoformat() if parsed is not None else value


def _bucket_start(bucket: dict):
    return files.parse_utc(bucket.get("starting_at"))


def _nested(r: dict, name: str, prefix: str) -> dict:
    value = r.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Problem("bad_number", f"{prefix}.{name}", f"{name} is not an object")
    return value


def parse_result(bucket: dict, r: dict, prefix: str) -> dict:
    """One usage result -> its record columns (raises Problem to reject it)."""
    end = files.parse_utc(bucket.get("ending_at"))
    if end is None:
        raise Problem(
            "bad_timestamp", "ending_at", "bucket ending_at is missing or not RFC 3339 with offset"
        )
    creation = _nested(r, "cache_creation", prefix)
    tools = _nested(r, "server_tool_use", prefix)

    def c(obj, name, field, required=False):
        return files.count(obj, name, f"{prefix}.{field}", required)

    values = dict(
        m_input=c(r, "uncached_input_tokens", "uncached_input_tokens", True),
        m_output=c(r, "output_tokens", "output_tokens", True),
        m_cached=c(r, "cache_read_input_tokens", "cache_read_input_tokens"),
        m_write_5m=c(
            creation, "ephemeral_5m_input_tokens", "cache_creation.ephemeral_5m_input_tokens"
        ),
        m_write_1h=c(
            creation, "ephemeral_1h_input_tokens", "cache_creation.ephemeral_1h_input_tokens"
        ),
        m_web_search=c(tools, "web_search_requests", "server_tool_use.web_search_requests"),
    )
    model = pages.text(r, "model", prefix, required=True)
    group = grouping_fields(r, QUANTITY_FIELDS)
    group_json = schema.canonical_json(group)
    return dict(
        end=end,
        natural_key=pages.key(utc_text(bucket.get("starting_at")), end.isoformat(), group_json),
        group_key=pages.key(group_json),
        provider="anthropic",
        model=model,
        dimensions=schema.canonical_json({k: v for k, v in group.items() if k != "model"}),
        **values,
    )


def account_key(result: dict) -> str | None:
    """``anthropic:<api_key_id>``: whom a usage-report result bills."""
    api_key = result.get("api_key_id")
    return f"anthropic:{api_key}" if isinstance(api_key, str) and api_key else None


def read(landing: Path, start: date, end: date):
    """All usage-report results whose partition day is in [start, end)."""
    return pages.read_pages(
        SOURCE,
        landing,
        FOLDER,
        start,
        end,
        parse_result,
        _bucket_start,
        "starting_at",
        METERS,
        "input_tokens",
        owner=account_key,
    )
