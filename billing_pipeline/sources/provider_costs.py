"""What the providers say they charged us: OpenAI Costs API and Anthropic cost_report pages
(``landing/openai/costs/*.json``, ``landing/anthropic/cost_report/*.json``).

Deliberately NOT usage events: a cost line restates the same tokens the usage pages already
count, so mixing them into ``usage_events`` would bill twice. ``read`` returns a separate
``provider_reported_costs`` frame (``COST_SCHEMA``) for the reconciliation to compare against.

Money units differ and are the classic bug: OpenAI ``amount.value`` is dollars as a JSON float
(-> ``Decimal(str(value))``), Anthropic ``amount`` is a decimal STRING IN CENTS (-> /100).
OpenAI cost results carry no ``model``: it is parsed from ``line_item``
("gpt-4o-mini-2024-07-18, cached input" -> model "gpt-4o-mini-2024-07-18", token_type "cached input").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import files, pages
from billing_pipeline.sources.files import Problem

COST_SCHEMA: dict[str, pl.DataType] = {
    "cost_id": pl.String,  # sha256 of source + natural key: a re-fetched page gives the same id
    "source": pl.String,  # openai_costs_api, anthropic_cost_report
    "provider": pl.String,
    "account_key": pl.String,  # openai:<project_id> / anthropic:<workspace_id>
    "model": pl.String,
    "line_item": pl.String,  # OpenAI line_item, Anthropic description
    "cost_type": pl.String,  # Anthropic tokens|web_search|code_execution|session_usage
    "token_type": pl.String,  # OpenAI: text after the comma of line_item; Anthropic token_type
    "service_tier": pl.String,
    "amount": schema.COST_DECIMAL,  # in currency units (dollars), never cents
    "currency": pl.String,
    "start": schema.UTC_DATETIME,
    "origin": pl.String,
    "day": pl.Date,
}


@dataclass(frozen=True)
class CostRead:
    costs: pl.DataFrame  # COST_SCHEMA
    quarantine: pl.DataFrame  # schema.QUARANTINE_SCHEMA
    records_read: int  # costs.height + quarantine.height


def _openai_amount(r: dict, prefix: str) -> tuple[Decimal, str]:
    amount = r.get("amount")
    value = amount.get("value") if isinstance(amount, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Problem("bad_number", f"{prefix}.amount.value", f"amount.value is not a finite number: {value!r}"[:300])
    currency = amount.get("currency") or "usd"
    return Decimal(str(value)), str(currency).upper()


def _openai(bucket: dict, r: dict, prefix: str) -> dict:
    amount, currency = _openai_amount(r, prefix)
    line_item = pages.text(r, "line_item", prefix)
    model, token_type = None, None
    if line_item and "," in line_item:
        model, token_type = (part.strip() for part in line_item.rsplit(",", 1))
    project, api_key = pages.text(r, "project_id", prefix), pages.text(r, "api_key_id", prefix)
    owner = project or api_key
    return dict(
        natural_key=pages.key(bucket.get("start_time"), project, api_key, line_item),
        provider="openai", account_key=f"openai:{owner}" if owner else None, model=model,
        line_item=line_item, token_type=token_type, amount=amount, currency=currency,
    )


def _anthropic(bucket: dict, r: dict, prefix: str) -> dict:
    cents = r.get("amount")
    try:
        if not isinstance(cents, str):
            raise InvalidOperation
        amount = Decimal(cents) / 100
        if not amount.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise Problem("bad_number", f"{prefix}.amount", f"amount is not a decimal string of cents: {cents!r}"[:300]) from None
    t = lambda name: pages.text(r, name, prefix)  # noqa: E731
    workspace = t("workspace_id")
    fields = dict(model=t("model"), line_item=t("description"), cost_type=t("cost_type"),
                  token_type=t("token_type"), service_tier=t("service_tier"))
    return dict(
        natural_key=pages.key(bucket.get("starting_at"), workspace, *fields.values(), t("context_window")),
        provider="anthropic", account_key=f"anthropic:{workspace}" if workspace else None,
        amount=amount, currency=(t("currency") or "USD").upper(), **fields,
    )


_KINDS = {
    "openai_costs_api": ("openai/costs", _openai, lambda b: files.from_unix(b.get("start_time")), "start_time"),
    "anthropic_cost_report": ("anthropic/cost_report", _anthropic, lambda b: files.parse_utc(b.get("starting_at")), "starting_at"),
}


def _read_kind(source: str, landing: Path, start: date, end: date) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    folder, parse, bucket_time, ts_field = _KINDS[source]
    costs, quarantine = [], []
    for f in files.list_files(landing, folder, (".json",), start, end):
        try:
            page = json.loads(f.path.read_bytes().decode("utf-8"))
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise ValueError("page has no 'data' list")
        except (UnicodeDecodeError, ValueError) as exc:
            q = files.unreadable(source, f, f"not a readable cost page: {exc}"[:500])
            quarantine.append(q.filter(pl.col("day").is_between(start, end, closed="left")))
            continue
        rows = []
        for i, bucket in enumerate(page["data"]):
            results = bucket.get("results") if isinstance(bucket, dict) else None
            if not isinstance(results, list):
                rows.append(dict(origin=f"{f.rel}#data[{i}]", raw=files.raw_text(bucket), reason="missing_field",
                                 field=f"data[{i}].results", message="bucket has no 'results' list"))
                continue
            for j, r in enumerate(results):
                prefix = f"data[{i}].results[{j}]"
                row = dict(origin=f"{f.rel}#{prefix}", raw=files.raw_text(r), ts=bucket_time(bucket))
                try:
                    if not isinstance(r, dict):
                        raise Problem("missing_field", prefix, "result is not an object")
                    row.update(parse(bucket, r, prefix))
                except Problem as p:
                    row.update(reason=p.reason, field=p.field, message=p.message)
                rows.append(row)
        frame_schema = {c: pl.String for c in COST_SCHEMA if c not in ("amount", "start", "day")} | {
            "natural_key": pl.String, "raw": pl.String, "reason": pl.String, "field": pl.String,
            "message": pl.String, "ts": schema.UTC_DATETIME, "amount": schema.COST_DECIMAL}
        frame = pl.DataFrame(rows, schema=frame_schema)
        accepted, rejected = files.split_by_day(frame, f, ts_field, start, end)
        costs.append(schema.conform(accepted.with_columns(
            pl.lit(source).alias("source"), pl.col("ts").alias("start"),
            schema.event_id_expr("source", "natural_key").alias("cost_id")), COST_SCHEMA))
        quarantine.append(files.rejected_to_quarantine(source, rejected))
    return costs, quarantine


def read(landing: Path, start: date, end: date) -> CostRead:
    """Every provider cost line whose day is in [start, end); bad lines quarantined with reasons."""
    costs, quarantine = [], []
    for source in _KINDS:
        c, q = _read_kind(source, Path(landing), start, end)
        costs += c
        quarantine += q
    out = pl.concat([pl.DataFrame(schema=COST_SCHEMA), *costs], how="vertical_relaxed")
    qu = pl.concat([schema.empty_quarantine(), *quarantine], how="vertical_relaxed")
    return CostRead(out.sort("day", "source", "origin"), qu, out.height + qu.height)
