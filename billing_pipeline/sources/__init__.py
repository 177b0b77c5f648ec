"""Source readers: native provider exports in the landing zone -> canonical usage rows.

Every reader has the signature ``read(landing_dir, start_day, end_day_exclusive) -> SourceRead``
and never raises on bad input: each record is either an event row (one per non-zero meter) or a
quarantine row with a reason, so ``records_read == events.origin.n_unique() + quarantine.height``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from billing_pipeline.sources import (
    anthropic_usage,
    aws_cur,
    focus,
    gateway_log,
    litellm_spend_logs,
    openai_usage,
    outcomes,
)
from billing_pipeline.sources.files import SourceRead

SOURCES: dict[str, Callable[[Path, date, date], SourceRead]] = {
    "openai_usage_api": openai_usage.read,
    "anthropic_usage_report": anthropic_usage.read,
    "gateway_log": gateway_log.read,
    "litellm_spend_logs": litellm_spend_logs.read,
    "focus": focus.read,
    "aws_cur": aws_cur.read,
    "outcomes": outcomes.read,
}


def read_all(landing: Path, start: date, end: date) -> dict[str, SourceRead]:
    """Every source for the window [start, end), keyed by source name."""
    return {name: read(Path(landing), start, end) for name, read in SOURCES.items()}


__all__ = ["SOURCES", "SourceRead", "read_all"]
