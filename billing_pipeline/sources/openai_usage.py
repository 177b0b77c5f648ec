"""OpenAI Usage API completions pages (``landing/openai/usage/completions/*.json``); the other
endpoints (embeddings, moderations, images, audio) are parsed in ``openai_endpoints`` and read
together here. Record identity (natural key = bucket start AND end + every grouping field,
``group_key``, dimensions, account key) is shared with them: see ``openai_endpoints.identity``.

Token breakdown. OpenAI's openapi.yaml (github.com/openai/openai-openapi, ``UsageCompletionsResult``,
since the spec sync of 2026-07-15, commit 535f5dc) documents:

- ``input_tokens``: "including cached and cache-write tokens. This includes text, audio, and
  image tokens"; ``input_cached_tokens``: "cached input tokens used across text, audio, and image";
  ``input_uncached_tokens``: "uncached input tokens ... across text, audio, and image inputs,
  excluding cache-write tokens";
- ``input_text_tokens`` / ``input_audio_tokens`` / ``input_image_tokens``: the UNCACHED text /
  audio / image input tokens ("The aggregated number of uncached audio input tokens used");
  ``input_cached_{text,audio,image}_tokens``: the cached ones; ``output_{text,audio,image}_tokens``.

So input = uncached + cached + cache-write; uncached = text + audio + image; cached = cached text
+ cached audio + cached image; output = text + audio + image (both spec examples add up so).
``input_audio_tokens`` does NOT include the cached audio in this form: a long realtime session
whose cached audio exceeds its uncached audio is normal and bills.

The spec before that sync (commit a327690, 2026-07-14) had only the totals plus
``input_audio_tokens`` "audio input tokens used, including cached tokens" and
``output_audio_tokens``. A record carrying none of the newer split fields is read in that older
form: audio is split out of the uncached input (its cached part cannot be told apart there, so it
is priced as audio input); everything that is not split stays text.

Meters (each a name in ``schema.METERS``):
input_tokens (uncached text), cached_input_tokens (cached text), cache_write_tokens,
audio_input_tokens, cached_audio_input_tokens, image_input_tokens, cached_image_input_tokens,
output_tokens (text; reasoning is inside it), audio_output_tokens, image_output_tokens, requests.
The seven input meters add up to OpenAI's ``input_tokens`` exactly: nothing billed twice, nothing
lost. A record whose parts contradict its totals is rejected as ``inconsistent_breakdown`` (money
at risk, naming the field), never clamped.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from billing_pipeline.sources import files, openai_endpoints, pages
from billing_pipeline.sources.files import Meter, Problem
from billing_pipeline.sources.openai_endpoints import account_key, bucket_end, identity

SOURCE = "openai_usage_api"
FOLDER = "openai/usage/completions"
INCONSISTENT = "inconsistent_breakdown"

METERS = [
    Meter("m_input", "input_tokens"),
    Meter("m_cached", "cached_input_tokens"),
    Meter("m_cache_write", "cache_write_tokens"),
    Meter("m_output", "output_tokens"),
    Meter("m_audio_in", "audio_input_tokens"),
    Meter("m_cached_audio_in", "cached_audio_input_tokens"),
    Meter("m_audio_out", "audio_output_tokens"),
    Meter("m_image_in", "image_input_tokens"),
    Meter("m_cached_image_in", "cached_image_input_tokens"),
    Meter("m_image_out", "image_output_tokens"),
    Meter("m_requests", "requests"),
]

# Fields that only the newer (2026-07-15) form carries: their presence says input_audio_tokens
# counts uncached audio only.
NEWER_FIELDS = (
    "input_uncached_tokens",
    "input_cache_write_tokens",
    "input_text_tokens",
    "input_cached_text_tokens",
    "input_cached_audio_tokens",
    "input_image_tokens",
    "input_cached_image_tokens",
    "output_text_tokens",
    "output_image_tokens",
)


def _bucket_start(bucket: dict):
    return files.from_unix(bucket.get("start_time"))


def _parts(
    total_name: str, total: int, parts: dict[str, int], rest: str | None, r: dict, prefix: str
) -> int:
    """The remainder of ``total`` once ``parts`` are taken out: the ``rest`` field's own value when
    the record carries it (then the identity total == parts + rest is checked), else derived."""
    given = sum(parts.values())
    shown = " + ".join(f"{k} {v}" for k, v in parts.items())
    if rest is not None and r.get(rest) is not None:
        value = files.count(r, rest, f"{prefix}.{rest}")
        if value + given != total:
            raise Problem(
                INCONSISTENT,
                f"{prefix}.{rest}",
                f"{rest} {value} + {shown} = {value + given}, but {total_name} is {total}",
            )
        return value
    if given > total:
        field = max(parts, key=parts.get)
        raise Problem(
            INCONSISTENT, f"{prefix}.{field}", f"{shown} = {given} exceeds {total_name} {total}"
        )
    return total - given


def _meters(r: dict, prefix: str) -> dict[str, int]:
    """The eleven meter columns of one completions result (see module docstring)."""

    def c(name: str, required: bool = False) -> int:
        return files.count(r, name, f"{prefix}.{name}", required)

    total_in, output, requests = (
        c("input_tokens", True),
        c("output_tokens", True),
        c("num_model_requests", True),
    )
    newer = any(r.get(name) is not None for name in NEWER_FIELDS)
    write = c("input_cache_write_tokens")
    cached_audio, cached_image = c("input_cached_audio_tokens"), c("input_cached_image_tokens")
    if r.get("input_cached_tokens") is not None:
        cached = c("input_cached_tokens")
    else:  # only the parts given: their sum is the cached total
        cached = c("input_cached_text_tokens") + cached_audio + cached_image
    uncached = _parts(
        "input_tokens",
        total_in,
        {"input_cached_tokens": cached, "input_cache_write_tokens": write},
        "input_uncached_tokens",
        r,
        prefix,
    )
    cached_text = _parts(
        "input_cached_tokens",
        cached,
        {"input_cached_audio_tokens": cached_audio, "input_cached_image_tokens": cached_image},
        "input_cached_text_tokens",
        r,
        prefix,
    )
    audio_in = c(
        "input_audio_tokens"
    )  # newer form: uncached audio; older form: all audio (see docstring)
    image_in = c("input_image_tokens")
    text_in = _parts(
        "input_uncached_tokens" if newer else "input_tokens - input_cached_tokens",
        uncached,
        {"input_audio_tokens": audio_in, "input_image_tokens": image_in},
        "input_text_tokens",
        r,
        prefix,
    )
    audio_out, image_out = c("output_audio_tokens"), c("output_image_tokens")
    text_out = _parts(
        "output_tokens",
        output,
        {"output_audio_tokens": audio_out, "output_image_tokens": image_out},
        "output_text_tokens",
        r,
        prefix,
    )
    return dict(
        m_input=text_in,
        m_cached=cached_text,
        m_cache_write=write,
        m_audio_in=audio_in,
        m_cached_audio_in=cached_audio,
        m_image_in=image_in,
        m_cached_image_in=cached_image,
        m_output=text_out,
        m_audio_out=audio_out,
        m_image_out=image_out,
        m_requests=requests,
    )


def _parse(bucket: dict, r: dict, prefix: str) -> dict:
    end = bucket_end(bucket)
    quantities = _meters(r, prefix)
    model = (
        pages.text(r, "model", prefix) or ""
    )  # null unless grouped by model (the spec's own page)
    return dict(
        end=end, provider="openai", model=model, **quantities, **identity("completions", bucket, r)
    )


def read_completions(landing: Path, start: date, end: date):
    """All completions usage results whose partition day is in [start, end)."""
    return pages.read_pages(
        SOURCE,
        landing,
        FOLDER,
        start,
        end,
        _parse,
        _bucket_start,
        "start_time",
        METERS,
        "input_tokens",
        owner=account_key,
    )


def read(landing: Path, start: date, end: date):
    """Completions plus the embeddings, moderations, images and audio endpoints: one OpenAI usage source."""
    reads = [read_completions(landing, start, end)]
    reads += [
        openai_endpoints.read_endpoint(e, landing, start, end) for e in openai_endpoints.ENDPOINTS
    ]
    return files.combine([r.events for r in reads], [r.quarantine for r in reads])
