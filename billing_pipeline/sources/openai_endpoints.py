"""OpenAI Usage API pages of the non-completions endpoints
(``landing/openai/usage/{embeddings,images,audio_speeches,audio_transcriptions}/*.json``).

Each endpoint counts a different thing, so each gets its own meter: embeddings ``input_tokens``
(no cache, no output), images ``images`` (count; ``size`` and ``source`` kept as dimensions, they
are priced differently), speech ``characters``, transcriptions ``audio_seconds``; all add
``requests``. The endpoint is part of the natural key and of the dimensions, so an embeddings
result never collides with a completions result of the same project and model.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from billing_pipeline import schema
from billing_pipeline.sources import files, pages
from billing_pipeline.sources.files import Meter, Problem

SOURCE = "openai_usage_api"

# endpoint -> (quantity field in the result, canonical meter, extra dimension fields)
ENDPOINTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "embeddings": ("input_tokens", "input_tokens", ()),
    "images": ("images", "images", ("size", "source")),
    "audio_speeches": ("characters", "characters", ()),
    "audio_transcriptions": ("seconds", "audio_seconds", ()),
}


def _bucket_start(bucket: dict):
    return files.from_unix(bucket.get("start_time"))


def _parser(endpoint: str):
    field, _, extra = ENDPOINTS[endpoint]

    def parse(bucket: dict, r: dict, prefix: str) -> dict:
        end = files.from_unix(bucket.get("end_time"))
        if end is None:
            raise Problem("bad_timestamp", "end_time", "bucket end_time is missing or not Unix seconds")
        quantity = files.count(r, field, f"{prefix}.{field}", required=True)
        requests = files.count(r, "num_model_requests", f"{prefix}.num_model_requests", required=True)
        t = lambda name: pages.text(r, name, prefix)  # noqa: E731
        model, project, api_key, user = t("model"), t("project_id"), t("api_key_id"), t("user_id")
        extras = {name: t(name) for name in extra}
        owner = project or api_key
        dims = {"endpoint": endpoint, "api_key_id": api_key, "project_id": project, "user_id": user, **extras}
        return dict(
            end=end,
            natural_key=pages.key(endpoint, bucket.get("start_time"), project, api_key, user, model, *extras.values()),
            provider="openai",
            account_key=f"openai:{owner}" if owner else None,
            model=model or "",
            dimensions=schema.canonical_json({k: v for k, v in dims.items() if v is not None}),
            m_quantity=quantity,
            m_requests=requests,
        )

    return parse


def read_endpoint(endpoint: str, landing: Path, start: date, end: date):
    """One endpoint's saved pages whose partition day is in [start, end)."""
    meter = ENDPOINTS[endpoint][1]
    meters = [Meter("m_quantity", meter), Meter("m_requests", "requests")]
    return pages.read_pages(SOURCE, landing, f"openai/usage/{endpoint}", start, end, _parser(endpoint),
                            _bucket_start, "start_time", meters, meter)
