"""OpenAI Usage API pages of the non-completions endpoints
(``landing/openai/usage/{embeddings,moderations,images,audio_speeches,audio_transcriptions}/*.json``),
and the record identity every OpenAI usage endpoint shares.

Each endpoint counts a different thing, so each gets its own meter: embeddings and moderations
``input_tokens`` (no cache, no output), images ``images`` (count; ``size`` and ``source`` are
grouping fields, so dimensions: they are priced differently), speech ``characters``,
transcriptions ``audio_seconds``; all add ``requests``. The endpoint is part of the natural key
and of the dimensions, so an embeddings result never collides with a completions result of the
same project and model.

Identity (issue 15 section 2): a result's natural key is the endpoint, its bucket (``start_time``
AND ``end_time``: a mid-day first bucket is another record than the full day that covers it) and
EVERY grouping field it carries, read generically as "every field that is not a quantity and not
``object``", so a group-by field OpenAI adds tomorrow is keyed (and becomes a dimension) without
a code change. ``group_key`` is the same without the bucket: the time-range overlap rule in
``pages`` compares buckets of one group across files.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from billing_pipeline import schema
from billing_pipeline.sources import files, pages
from billing_pipeline.sources.files import Meter, Problem

SOURCE = "openai_usage_api"

# endpoint -> (quantity field in the result, canonical meter)
ENDPOINTS: dict[str, tuple[str, str]] = {
    "embeddings": ("input_tokens", "input_tokens"),
    "moderations": ("input_tokens", "input_tokens"),
    "images": ("images", "images"),
    "audio_speeches": ("characters", "characters"),
    "audio_transcriptions": ("seconds", "audio_seconds"),
}

# Quantity fields of every usage result OpenAI documents (openapi.yaml, Usage*Result schemas):
# never part of a record's identity, or a restated count would look like a new record.
QUANTITY_FIELDS = frozenset(
    {
        "input_tokens",
        "output_tokens",
        "num_model_requests",
        "input_cached_tokens",
        "input_cache_write_tokens",
        "input_uncached_tokens",
        "input_text_tokens",
        "input_audio_tokens",
        "input_image_tokens",
        "input_cached_text_tokens",
        "input_cached_audio_tokens",
        "input_cached_image_tokens",
        "output_text_tokens",
        "output_audio_tokens",
        "output_image_tokens",
        "images",
        "characters",
        "seconds",
        "num_sessions",
        "num_requests",
        "usage_bytes",
    }
)
# Not grouping fields either: the result's type tag and the model (a column of its own).
_NOT_DIMENSIONS = frozenset({"object", "model"})


def grouping(result: dict) -> dict[str, object]:
    """The grouping fields a result carries, with their values (null = not grouped: left out).

    Every field that is not a documented quantity and not ``object``; a NUMBER in an unknown field
    is taken for a new quantity, not a group (OpenAI's group values are ids, names and booleans),
    so a restated count never splits one record in two. Non-scalar values are kept as canonical
    JSON text so the key is stable.
    """
    out: dict[str, object] = {}
    for name in sorted(result):
        value = result[name]
        if name == "object" or name in QUANTITY_FIELDS or value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            continue
        if not isinstance(value, (str, bool)):
            value = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        out[name] = value
    return out


def account_key(result: dict) -> str | None:
    """``openai:<project_id>``, else ``openai:<api_key_id>``: whom a usage or cost result bills."""
    owner = next(
        (
            v
            for v in (result.get("project_id"), result.get("api_key_id"))
            if isinstance(v, str) and v
        ),
        None,
    )
    return f"openai:{owner}" if owner else None


def identity(endpoint: str, bucket: dict, result: dict) -> dict:
    """natural_key, group_key and dimensions of one result (see module docstring)."""
    groups = grouping(result)
    pairs = [[k, v] for k, v in groups.items()]
    dims = {k: v for k, v in groups.items() if k not in _NOT_DIMENSIONS}
    if endpoint != "completions":
        dims["endpoint"] = endpoint
    return dict(
        natural_key=pages.key(endpoint, bucket.get("start_time"), bucket.get("end_time"), *pairs),
        group_key=pages.key(endpoint, *pairs),
        dimensions=schema.canonical_json(dims),
    )


def _bucket_start(bucket: dict):
    return files.from_unix(bucket.get("start_time"))


def bucket_end(bucket: dict):
    end = files.from_unix(bucket.get("end_time"))
    if end is None:
        raise Problem("bad_timestamp", "end_time", "bucket end_time is missing or not Unix seconds")
    return end


def _parser(endpoint: str):
    field, _ = ENDPOINTS[endpoint]

    def parse(bucket: dict, r: dict, prefix: str) -> dict:
        end = bucket_end(bucket)
        quantity = files.count(r, field, f"{prefix}.{field}", required=True)
        requests = files.count(
            r, "num_model_requests", f"{prefix}.num_model_requests", required=True
        )
        model = pages.text(r, "model", prefix)
        return dict(
            end=end,
            provider="openai",
            model=model or "",
            m_quantity=quantity,
            m_requests=requests,
            **identity(endpoint, bucket, r),
        )

    return parse


def read_endpoint(endpoint: str, landing: Path, start: date, end: date):
    """One endpoint's saved pages whose partition day is in [start, end)."""
    meter = ENDPOINTS[endpoint][1]
    meters = [Meter("m_quantity", meter), Meter("m_requests", "requests")]
    return pages.read_pages(
        SOURCE,
        landing,
        f"openai/usage/{endpoint}",
        start,
        end,
        _parser(endpoint),
        _bucket_start,
        "start_time",
        meters,
        meter,
        owner=account_key,
    )
