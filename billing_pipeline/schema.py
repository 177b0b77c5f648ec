"""The canonical usage table and the quarantine table: the contract between sources and rating.

Every source module returns frames with exactly these columns (see ``conform``). Token counts stay
int64 until they are aggregated; money only becomes ``Decimal`` after aggregation.
"""

from __future__ import annotations

import hashlib
import json

import polars as pl
import polars_hash  # noqa: F401  (registers the stable ``Expr.chash`` hashes)

# The model_family column's rule lives with the other model-id rules (providers.py); the name is
# kept here while callers (tests, quote/calculator.py) still import it from the usage contract.
from billing_pipeline.providers import model_family_expr as model_family_expr

UTC_DATETIME = pl.Datetime("us", "UTC")
COST_DECIMAL = pl.Decimal(38, 12)

# One row per source record and meter (README "Where the code differs": the canonical usage columns).
USAGE_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String,  # sha256 of source + natural key + meter: same record, same id
    "record_id": pl.String,  # sha256 of source + natural key: one source record (several meters)
    "source": pl.String,  # openai_usage_api, anthropic_usage_report, gateway_log, focus, ...
    "provider": pl.String,  # openai, anthropic, mistral, aws, azure, gcp
    "account_key": pl.String,  # "openai:proj_abc", "gateway:acme", "tag:customer=acme": who used it
    "customer_id": pl.String,  # null = unattributed (kept and reported, never dropped)
    "model": pl.String,  # model id as the provider reported it (dated snapshot kept)
    "model_family": pl.String,  # dated snapshot mapped to its family: gpt-4o-2024-08-06 -> gpt-4o
    "meter": pl.String,
    "dimensions": pl.String,  # canonical JSON object (sorted keys), e.g. {"gpu_type":"A10G"}
    "quantity": pl.Int64,  # in the meter's base unit (tokens, seconds, count)
    "start": UTC_DATETIME,
    "end": UTC_DATETIME,
    "reported_cost": COST_DECIMAL,  # the provider's own cost for this record, when it gives one
    "origin": pl.String,  # file + line/row or API page: the audit trail
    "day": pl.Date,  # the daily partition the record belongs to
    # The six columns rating groups by as one integer (usage_keys.py), written by normalize once
    # the customer is known; null from the sources. Its code book is stored beside the partition.
    "usage_key": pl.UInt64,
}

# Every rejected record, with enough to find it again and fix it.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String,
    "origin": pl.String,  # file:line / file:row / file#page.bucket.result
    "field": pl.String,  # the offending field, or "" when the whole record is unreadable
    "reason": pl.String,  # machine code: missing_field, bad_timestamp, negative_quantity, ...
    "message": pl.String,  # for a person
    "raw": pl.String,  # the record as read (truncated to 2,000 characters)
    "day": pl.Date,
    "kind": pl.String,  # money_at_risk | not_billable | cost: see ``quarantine_kind_expr``
    "account_key": pl.String,  # whom the record would have billed, when the reader could tell
    "customer_id": pl.String,  # filled by attribution; null on money at risk holds the whole month
}

# Quarantine kinds (README "Money at risk is never lost in silence"). Money at risk holds issuing until fixed or waived;
# not billable by design holds nothing; cost rows (unreadable provider cost pages) bill nobody,
# so they hold nothing, but finance is told.
KIND_MONEY_AT_RISK = "money_at_risk"
KIND_NOT_BILLABLE = "not_billable"
KIND_COST = "cost"

# Reasons that are not billable by design. Every other reason, including one a reader invents
# tomorrow, is money at risk: the safe default for a billing system.
NOT_BILLABLE_REASONS = frozenset(
    {
        "duplicate",  # an exact copy of a record already counted once
        "overlapped_bucket",  # a usage bucket inside another export's bucket of the same group: counted there
        "restated",  # an earlier export's version of a record the provider later corrected
        "superseded_delivery",  # a cloud export delivery replaced by a newer one of the same period
        "not_usage_charge",  # cloud credit, purchase, fee, refund, adjustment lines
        "tax_line",  # cloud tax lines
        "savings_plan_negation",  # CUR SavingsPlanNegation / RI negation: cost bookkeeping, no usage
        "not_gpu_service",  # a cloud service that is neither GPU compute nor model tokens (S3, ...)
        "not_gpu_sku",  # compute with no GPU (m5.large, Standard_D4s_v5, n2-standard-8)
        "not_instance_time",  # a GPU resource's non-time line (data transfer, EBS, IP addresses)
        "failed_request",  # a gateway request that failed: the customer is not charged for it
    }
)


def quarantine_kind_expr(reason: pl.Expr | None = None) -> pl.Expr:
    """The kind of a quarantine row from its reason: one rule, used wherever rows are written."""
    reason = pl.col("reason") if reason is None else reason
    return (
        pl.when(reason.is_in(list(NOT_BILLABLE_REASONS)))
        .then(pl.lit(KIND_NOT_BILLABLE))
        .otherwise(pl.lit(KIND_MONEY_AT_RISK))
    )


# Every meter a reader may emit, and so every meter a plan and the price book may name: one list,
# used by the readers and the catalog validator alike.
METERS = (
    "input_tokens",  # uncached text input
    "cached_input_tokens",  # cached text input (cache reads)
    "cache_write_tokens",  # cache writes (Anthropic: a ttl dimension tells 5-minute from 1-hour)
    "output_tokens",  # text output, reasoning included
    "audio_input_tokens",  # uncached audio input
    "cached_audio_input_tokens",
    "audio_output_tokens",
    "image_input_tokens",  # uncached image input tokens
    "cached_image_input_tokens",
    "image_output_tokens",
    "image_inputs",  # images sent to a model, counted (not tokens)
    "images",  # images generated (OpenAI images endpoint)
    "characters",  # text-to-speech characters (OpenAI audio_speeches)
    "audio_seconds",  # transcribed seconds (OpenAI audio_transcriptions)
    "requests",
    "web_search_requests",
    "gpu_seconds",
    "outcomes",
)

UNIT_NAMES = {
    "gpu_seconds": "GPU-seconds",
    "requests": "requests",
    "web_search_requests": "searches",
    "image_inputs": "images",
    "images": "images",
    "characters": "characters",
    "audio_seconds": "seconds",
    "outcomes": "outcomes",
}


# Prices quoted per a larger unit than the meter counts in: (unit name, unit_size) -> the larger
# unit (one, many). An invoice shows such a quantity in that unit ("437.5 GPU-hours at $2.40 per
# GPU-hour"); the explanation keeps the exact base units.
QUOTED_UNITS = {
    ("GPU-seconds", 3600): ("GPU-hour", "GPU-hours"),
    ("GPU-seconds", 60): ("GPU-minute", "GPU-minutes"),
    ("seconds", 3600): ("hour", "hours"),
    ("seconds", 60): ("minute", "minutes"),
}


def unit_name(meter: str) -> str:
    """What a finance person calls one base unit of the meter."""
    return UNIT_NAMES.get(meter, "tokens")


def empty_usage() -> pl.DataFrame:
    return pl.DataFrame(schema=USAGE_SCHEMA)


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def conform(frame: pl.DataFrame | pl.LazyFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select exactly the schema's columns in order and types; missing columns become null."""
    lf = frame.lazy()
    names = lf.collect_schema().names()
    exprs = [
        (pl.col(name) if name in names else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in schema.items()
    ]
    return lf.select(exprs).collect()


def canonical_json(value: dict | None) -> str:
    """Dimensions as a stable string, so equal dimensions group together."""
    return json.dumps(value or {}, sort_keys=True, separators=(",", ":"))


def stable_id(*parts: object) -> str:
    """Deterministic id from a source and its natural key (used where polars hashing is unstable)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def event_id_expr(*columns: str) -> pl.Expr:
    """Deterministic event id from natural-key columns, computed in polars.

    Same value as ``stable_id`` of the same parts: the first 32 hex digits of the sha256 of the
    parts joined by U+001F (null -> ""). polars' own ``hash`` is not stable across versions, so
    the sha256 runs vectorised in polars-hash (Rust), not per row in Python.
    """
    key = pl.concat_str(
        [pl.col(c).cast(pl.String).fill_null("") for c in columns], separator="\x1f"
    )
    return sha256_id_expr(key)


def sha256_id_expr(key: pl.Expr) -> pl.Expr:
    """First 32 hex digits of sha256(key as UTF-8): the id format of every record and event."""
    return key.chash.sha2_256().str.slice(0, 32)
