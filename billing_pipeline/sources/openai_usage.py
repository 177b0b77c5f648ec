"""OpenAI Usage API completions pages (``landing/openai/usage/completions/*.json``); the other
endpoints (embeddings, images, audio) are parsed in ``openai_endpoints`` and read together here.

Meters, chosen so no token is billed twice (OpenAI's ``input_tokens`` INCLUDES cached and
cache-write tokens, and both input and output include their audio tokens):

- cached_input_tokens = input_cached_tokens (text + audio + image cache hits together)
- cache_write_tokens  = input_cache_write_tokens
- uncached input      = input_uncached_tokens when present, else
                        input_tokens - input_cached_tokens - input_cache_write_tokens
- audio_input_tokens  = input_audio_tokens - input_cached_audio_tokens (uncached audio only;
                        cached audio is already in cached_input_tokens)
- input_tokens        = uncached input - audio_input_tokens (text + image)
- audio_output_tokens = output_audio_tokens; output_tokens = output_tokens - output_audio_tokens
- requests            = num_model_requests

So input_tokens + cached + cache_write + audio_input == OpenAI's input_tokens. A result whose
parts exceed its total is rejected (``negative_quantity``) rather than clamped.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from billing_pipeline import schema
from billing_pipeline.sources import files, pages
from billing_pipeline.sources.files import Meter, Problem

SOURCE = "openai_usage_api"
FOLDER = "openai/usage/completions"

METERS = [
    Meter("m_input", "input_tokens"),
    Meter("m_cached", "cached_input_tokens"),
    Meter("m_cache_write", "cache_write_tokens"),
    Meter("m_output", "output_tokens"),
    Meter("m_audio_in", "audio_input_tokens"),
    Meter("m_audio_out", "audio_output_tokens"),
    Meter("m_requests", "requests"),
]


def _bucket_start(bucket: dict):
    return files.from_unix(bucket.get("start_time"))


def _parse(bucket: dict, r: dict, prefix: str) -> dict:
    end = files.from_unix(bucket.get("end_time"))
    if end is None:
        raise Problem("bad_timestamp", "end_time", "bucket end_time is missing or not Unix seconds")
    f = lambda name, required=False: files.count(r, name, f"{prefix}.{name}", required)  # noqa: E731
    total_in = f("input_tokens", True)
    output = f("output_tokens", True)
    requests = f("num_model_requests", True)
    cached, cache_write = f("input_cached_tokens"), f("input_cache_write_tokens")
    if r.get("input_uncached_tokens") is not None:
        uncached = f("input_uncached_tokens")
    else:
        uncached = total_in - cached - cache_write
    audio_in = f("input_audio_tokens") - f("input_cached_audio_tokens")
    audio_out = f("output_audio_tokens")
    text_in, text_out = uncached - audio_in, output - audio_out
    for name, value, why in (
        ("input_tokens", uncached, "input_tokens is smaller than cached + cache-write tokens"),
        ("input_audio_tokens", audio_in, "input_cached_audio_tokens exceeds input_audio_tokens"),
        ("input_tokens", text_in, "uncached input is smaller than its audio part"),
        ("output_tokens", text_out, "output_audio_tokens exceeds output_tokens"),
    ):
        if value < 0:
            raise Problem("negative_quantity", f"{prefix}.{name}", why)
    model = pages.text(r, "model", prefix, required=True)
    project, api_key = pages.text(r, "project_id", prefix), pages.text(r, "api_key_id", prefix)
    user, tier = pages.text(r, "user_id", prefix), pages.text(r, "service_tier", prefix)
    batch = r.get("batch")
    owner = project or api_key
    dims = {"service_tier": tier, "batch": batch, "api_key_id": api_key, "project_id": project, "user_id": user}
    return dict(
        end=end,
        natural_key=pages.key(bucket.get("start_time"), project, api_key, user, model, batch, tier),
        provider="openai",
        account_key=f"openai:{owner}" if owner else None,
        model=model,
        dimensions=schema.canonical_json({k: v for k, v in dims.items() if v is not None}),
        m_input=text_in,
        m_cached=cached,
        m_cache_write=cache_write,
        m_output=text_out,
        m_audio_in=audio_in,
        m_audio_out=audio_out,
        m_requests=requests,
    )


def read_completions(landing: Path, start: date, end: date):
    """All completions usage results whose partition day is in [start, end)."""
    return pages.read_pages(
        SOURCE, landing, FOLDER, start, end, _parse, _bucket_start, "start_time", METERS, "input_tokens"
    )


def read(landing: Path, start: date, end: date):
    """Completions plus the embeddings, images and audio endpoints: one OpenAI usage source."""
    from billing_pipeline.sources import openai_endpoints

    reads = [read_completions(landing, start, end)]
    reads += [openai_endpoints.read_endpoint(e, landing, start, end) for e in openai_endpoints.ENDPOINTS]
    return files.combine([r.events for r in reads], [r.quarantine for r in reads])
