"""What the providers say they charged us: OpenAI Costs API and Anthropic cost_report pages
(``landing/openai/costs/*.json``, ``landing/anthropic/cost_report/*.json``).

Deliberately NOT usage events: a cost line restates the same tokens the usage pages already
count, so mixing them into ``usage_events`` would bill twice. ``read`` returns a separate
``provider_reported_costs`` frame (``COST_SCHEMA``) for the reconciliation to compare against.

Money units differ and are the classic bug: OpenAI ``amount.value`` is dollars as a JSON number
(-> ``Decimal(str(value))``), Anthropic ``amount`` is a decimal STRING IN CENTS (-> /100).

Each line gets the meter (``schema.METERS``) and dimensions it prices, so a cost line can be
set beside the usage it restates. Anthropic says so in fields (``token_type``, ``cost_type``,
``service_tier``, ``context_window``, ``inference_geo``, ``speed``). OpenAI says so only in the
free text ``line_item`` ("priority | gpt-5, output, long context"), parsed by ``parse_line_item``
into model + meter + dimensions; a form it does not know is kept with model and meter null and
``line_item_parsed`` false (``CostRead.unparsed`` lists them), never guessed into a model name.

An unreadable cost page or line bills nobody, so it holds no invoice, but it is quarantined with
kind ``cost`` so finance sees what the provider's side is missing; so is a ``has_more`` page whose
next page never arrived, and a line read twice counts once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import files, pages
from billing_pipeline.sources.anthropic_usage import grouping_fields, utc_text
from billing_pipeline.sources.files import Problem
from billing_pipeline.sources.openai_endpoints import account_key as openai_account_key

COST_SCHEMA: dict[str, pl.DataType] = {
    "cost_id": pl.String,  # sha256 of source + natural key: a re-fetched page gives the same id
    "source": pl.String,  # openai_costs_api, anthropic_cost_report
    "provider": pl.String,
    "account_key": pl.String,  # openai:<project_id> / anthropic:<workspace_id>
    "model": pl.String,  # null for tool, session and ungrouped lines, and for unparsed line items
    "meter": pl.String,  # the schema.METERS meter the line prices; null when none applies
    "dimensions": pl.String,  # canonical JSON: service_tier, context_window, cache_ttl, tool, ...
    "line_item": pl.String,  # OpenAI line_item, Anthropic description
    "line_item_parsed": pl.Boolean,  # false: a form the reader does not know (listed, not guessed)
    "cost_type": pl.String,  # Anthropic tokens|web_search|code_execution|session_usage
    "token_type": pl.String,  # OpenAI: the token part of line_item ("cached input"); Anthropic token_type
    "service_tier": pl.String,
    "quantity": schema.COST_DECIMAL,  # OpenAI quantity (with group_by line_item), else null
    "quantity_unit": pl.String,  # OpenAI quantity_unit: tokens, 1000_tokens, images, ...
    "amount": schema.COST_DECIMAL,  # in currency units (dollars), never cents
    "currency": pl.String,
    "start": schema.UTC_DATETIME,
    "end": schema.UTC_DATETIME,  # the bucket's exclusive end
    "origin": pl.String,
    "day": pl.Date,
}


@dataclass(frozen=True)
class CostRead:
    costs: pl.DataFrame  # COST_SCHEMA
    quarantine: pl.DataFrame  # schema.QUARANTINE_SCHEMA, kind "cost"
    records_read: int  # costs.height + quarantine.height
    unparsed: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=COST_SCHEMA)
    )  # lines not understood


# ---------------------------------------------------------------- OpenAI line_item


@dataclass(frozen=True)
class LineItem:
    model: str | None = None
    meter: str | None = None
    token_type: str | None = None
    dimensions: dict = field(default_factory=dict)
    parsed: bool = True


# "<model>[ <modality>], <token part>" -> meter. The modality word names audio and image token lines
# ("gpt-4o-audio-preview audio, input"); "text" is the plain text meter.
_TOKEN_METERS = {
    (None, "input"): "input_tokens",
    (None, "cached input"): "cached_input_tokens",
    (None, "output"): "output_tokens",
    ("audio", "input"): "audio_input_tokens",
    ("audio", "cached input"): "cached_audio_input_tokens",
    ("audio", "output"): "audio_output_tokens",
    ("image", "input"): "image_input_tokens",
    ("image", "cached input"): "cached_image_input_tokens",
    ("image", "output"): "image_output_tokens",
}
_BATCH_TOKENS = {
    "batch input": "input",
    "batch output": "output",
}  # batch price: {service_tier: batch}
_QUALIFIERS = {"long context": {"context_window": "long"}}
_TIER_PREFIXES = {"priority"}  # "priority | <model>, output" -> service_tier priority
_SURFACE_PREFIXES = {"evals", "assistants api"}  # the product the tokens were spent in
_TOOL_LINES = {  # lines with no model: what they count, and a meter when one exists
    "web search tool calls": ("web_search_requests", "web_search"),
    "file search tool calls": (None, "file_search"),
    "file search": (None, "file_search"),  # "assistants api | file search" (the cookbook's output)
    "code interpreter sessions": (None, "code_interpreter"),
}
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
UNPARSED = LineItem(parsed=False)


def parse_line_item(text: str | None) -> LineItem:
    """An OpenAI cost ``line_item`` -> model, meter and dimensions; ``parsed=False`` when unknown.

    Forms: ``<model>, <input|cached input|output>``, ``<model> <audio|image|text>, <token>``,
    ``<model>, batch <input|output>``, qualifiers after the token (``, long context``), prefixes
    before ``|`` (``priority``, ``evals``, ``assistants api``), tool lines (``web search tool
    calls``), a bare meter name (the OpenAPI spec's example ``input_tokens``), and null (costs not
    grouped by line item: the day's total).
    """
    if text is None or not text.strip():
        return LineItem()
    text = text.strip()
    if text in schema.METERS:
        return LineItem(meter=text)
    *prefixes, body = [part.strip() for part in text.split("|")]
    dims: dict = {}
    for prefix in (p.lower() for p in prefixes):
        if prefix in _TIER_PREFIXES:
            dims["service_tier"] = prefix
        elif prefix in _SURFACE_PREFIXES:
            dims["surface"] = prefix
        else:
            return UNPARSED
    if body.lower() in _TOOL_LINES:
        meter, tool = _TOOL_LINES[body.lower()]
        return LineItem(meter=meter, dimensions=dims | {"tool": tool})
    parts = [p.strip() for p in body.split(",")]
    if len(parts) < 2:
        return UNPARSED
    words, token_type, qualifiers = parts[0].split(), parts[1].lower(), parts[2:]
    modality = (
        words[-1].lower()
        if len(words) == 2 and words[-1].lower() in ("audio", "image", "text")
        else None
    )
    model = words[0] if len(words) == 1 or modality else None
    if model is None or not _MODEL_ID.match(model):
        return UNPARSED
    if token_type in _BATCH_TOKENS:
        dims["service_tier"] = "batch"
    meter = _TOKEN_METERS.get(
        (None if modality == "text" else modality, _BATCH_TOKENS.get(token_type, token_type))
    )
    if meter is None:
        return UNPARSED
    for q in qualifiers:
        if q.lower() not in _QUALIFIERS:
            return UNPARSED
        dims |= _QUALIFIERS[q.lower()]
    return LineItem(model=model, meter=meter, token_type=parts[1], dimensions=dims)


def _decimal(value: object, field_name: str, what: str, allow_text: bool) -> Decimal:
    """A finite Decimal from a JSON number (or a decimal string when ``allow_text``)."""
    try:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, str))
            or (isinstance(value, str) and not allow_text)
        ):
            raise InvalidOperation
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidOperation
        number = Decimal(value if isinstance(value, str) else str(value))
        if not number.is_finite():
            raise InvalidOperation
        return number
    except (InvalidOperation, ValueError):
        raise Problem("bad_number", field_name, f"{what}: {value!r}"[:300]) from None


_OPENAI_QUANTITIES = frozenset({"object", "amount", "quantity", "quantity_unit"})


def _openai(bucket: dict, r: dict, prefix: str) -> dict:
    amount = r.get("amount")
    value = amount.get("value") if isinstance(amount, dict) else None
    dollars = _decimal(
        value, f"{prefix}.amount.value", "amount.value is not a finite number", allow_text=True
    )
    currency = (amount.get("currency") if isinstance(amount, dict) else None) or "usd"
    quantity = r.get("quantity")
    if quantity is not None:
        quantity = _decimal(
            quantity, f"{prefix}.quantity", "quantity is not a finite number", allow_text=False
        )
    line_item = pages.text(r, "line_item", prefix)
    item = parse_line_item(line_item)
    group = schema.canonical_json(grouping_fields(r, _OPENAI_QUANTITIES))
    return dict(
        natural_key=pages.key(
            bucket.get("start_time"), bucket.get("end_time"), group
        ),  # Unix seconds: canonical
        end=files.from_unix(bucket.get("end_time")),
        provider="openai",
        account_key=openai_account_key(r),
        model=item.model,
        meter=item.meter,
        dimensions=schema.canonical_json(item.dimensions),
        line_item=line_item,
        line_item_parsed=item.parsed,
        token_type=item.token_type,
        service_tier=item.dimensions.get("service_tier"),
        quantity=quantity,
        quantity_unit=pages.text(r, "quantity_unit", prefix),
        amount=dollars,
        currency=str(currency).upper(),
    )


# ---------------------------------------------------------------- Anthropic cost_report

_ANTHROPIC_TOKEN_METERS = {
    "uncached_input_tokens": ("input_tokens", {}),
    "output_tokens": ("output_tokens", {}),
    "cache_read_input_tokens": ("cached_input_tokens", {}),
    "cache_creation.ephemeral_5m_input_tokens": ("cache_write_tokens", {"cache_ttl": "5m"}),
    "cache_creation.ephemeral_1h_input_tokens": ("cache_write_tokens", {"cache_ttl": "1h"}),
}
_ANTHROPIC_OTHER_COSTS = {  # cost_type -> (meter, dimensions) for lines that are not tokens
    "web_search": ("web_search_requests", {}),
    "code_execution": (None, {"tool": "code_execution"}),
    "session_usage": (None, {"tool": "session_usage"}),
}
_ANTHROPIC_QUANTITIES = frozenset({"amount", "currency"})
_ANTHROPIC_COLUMNS = (
    "model",
    "description",
    "cost_type",
    "token_type",
    "workspace_id",
)  # own columns, not dimensions


def _anthropic_owner(r: dict) -> str | None:
    workspace = r.get("workspace_id")
    return f"anthropic:{workspace}" if isinstance(workspace, str) and workspace else None


def _anthropic_meter(
    cost_type: str | None, token_type: str | None
) -> tuple[str | None, dict, bool]:
    """(meter, dimensions, understood) of a cost line from its cost_type and token_type."""
    if cost_type is None and token_type is None:
        return None, {}, True  # not grouped by description: the day's (or workspace's) total
    if cost_type in (None, "tokens") and token_type in _ANTHROPIC_TOKEN_METERS:
        meter, dims = _ANTHROPIC_TOKEN_METERS[token_type]
        return meter, dims, True
    if cost_type in _ANTHROPIC_OTHER_COSTS and token_type is None:
        meter, dims = _ANTHROPIC_OTHER_COSTS[cost_type]
        return meter, dims, True
    return None, {}, False


def _anthropic(bucket: dict, r: dict, prefix: str) -> dict:
    cents = r.get("amount")
    if not isinstance(cents, str):
        raise Problem(
            "bad_number",
            f"{prefix}.amount",
            f"amount is not a decimal string of cents: {cents!r}"[:300],
        )
    amount = (
        _decimal(
            cents, f"{prefix}.amount", "amount is not a decimal string of cents", allow_text=True
        )
        / 100
    )

    def t(name: str) -> str | None:
        return pages.text(r, name, prefix)

    cost_type, token_type = t("cost_type"), t("token_type")
    meter, meter_dims, understood = _anthropic_meter(cost_type, token_type)
    group = grouping_fields(r, _ANTHROPIC_QUANTITIES)
    dims = {k: v for k, v in group.items() if k not in _ANTHROPIC_COLUMNS} | meter_dims
    end = files.parse_utc(bucket.get("ending_at"))
    return dict(
        natural_key=pages.key(
            utc_text(bucket.get("starting_at")),
            utc_text(bucket.get("ending_at")),
            schema.canonical_json(group),
        ),
        end=end,
        provider="anthropic",
        account_key=_anthropic_owner(r),
        model=t("model"),
        meter=meter,
        dimensions=schema.canonical_json(dims),
        line_item=t("description"),
        line_item_parsed=understood,
        cost_type=cost_type,
        token_type=token_type,
        service_tier=t("service_tier"),
        amount=amount,
        currency=(t("currency") or "USD").upper(),
    )


# ---------------------------------------------------------------- pages

_KINDS = {
    "openai_costs_api": (
        "openai/costs",
        _openai,
        openai_account_key,
        lambda b: files.from_unix(b.get("start_time")),
        "start_time",
    ),
    "anthropic_cost_report": (
        "anthropic/cost_report",
        _anthropic,
        _anthropic_owner,
        lambda b: files.parse_utc(b.get("starting_at")),
        "starting_at",
    ),
}
_FRAME_SCHEMA = {c: pl.String for c in COST_SCHEMA} | {
    "natural_key": pl.String,
    "raw": pl.String,
    "reason": pl.String,
    "field": pl.String,
    "message": pl.String,
    "ts": schema.UTC_DATETIME,
    "end": schema.UTC_DATETIME,
    "amount": schema.COST_DECIMAL,
    "quantity": schema.COST_DECIMAL,
    "line_item_parsed": pl.Boolean,
    "day": pl.Date,
    "start": schema.UTC_DATETIME,
}


def _as_cost(quarantine: pl.DataFrame) -> pl.DataFrame:
    return quarantine.with_columns(pl.lit(schema.KIND_COST).alias("kind"))


def _read_kind(
    source: str, landing: Path, start: date, end: date
) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    folder, parse, owner, bucket_time, ts_field = _KINDS[source]
    costs, quarantine = [], []
    for f in files.list_files(landing, folder, (".json", ".json.gz"), start, end):
        try:
            page = pages.load_page(
                f.path
            )  # the usage pages' rules: a BOM is not an error, gzip is read
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise ValueError("page has no 'data' list")
        except (OSError, ValueError) as exc:
            q = files.unreadable(source, f, f"not a readable cost page: {exc}"[:500])
            quarantine.append(
                _as_cost(q.filter(pl.col("day").is_between(start, end, closed="left")))
            )
            continue
        gap = pages.missing_successor(f, page)
        if gap is not None:
            missing = files.quarantine_frame(source, [gap])
            quarantine.append(
                _as_cost(missing.filter(pl.col("day").is_between(start, end, closed="left")))
            )
        rows = []
        for i, bucket in enumerate(page["data"]):
            results = bucket.get("results") if isinstance(bucket, dict) else None
            if not isinstance(results, list):
                rows.append(
                    dict(
                        origin=f"{f.rel}#data[{i}]",
                        raw=files.raw_text(bucket),
                        reason="missing_field",
                        field=f"data[{i}].results",
                        message="bucket has no 'results' list",
                    )
                )
                continue
            for j, r in enumerate(results):
                prefix = f"data[{i}].results[{j}]"
                row = dict(
                    origin=f"{f.rel}#{prefix}", raw=files.raw_text(r), ts=bucket_time(bucket)
                )
                try:
                    if not isinstance(r, dict):
                        raise Problem("missing_field", prefix, "result is not an object")
                    row["account_key"] = owner(r)  # known even when the line is rejected
                    row.update(parse(bucket, r, prefix))
                except Problem as p:
                    row.update(reason=p.reason, field=p.field, message=p.message)
                rows.append(row)
        frame = pl.DataFrame(rows, schema=_FRAME_SCHEMA)
        accepted, rejected = files.split_by_day(frame, f, ts_field, start, end)
        costs.append(
            schema.conform(
                accepted.with_columns(
                    pl.lit(source).alias("source"),
                    pl.col("ts").alias("start"),
                    schema.event_id_expr("source", "natural_key").alias("cost_id"),
                ),
                COST_SCHEMA,
            )
        )
        quarantine.append(_as_cost(files.rejected_to_quarantine(source, rejected)))
    return costs, quarantine


def once(costs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The same cost line read twice (a page saved under two names) counts once: the first read
    (in day, source, origin order) is kept, a copy is quarantined as ``duplicate``, and a copy with
    another amount as ``conflicting_cost`` naming both amounts, so the provider's total is never
    doubled in silence."""
    first = pl.col("cost_id").is_first_distinct()
    kept = costs.filter(first)
    copies = costs.filter(~first).join(
        kept.select("cost_id", pl.col("amount").alias("_kept"), pl.col("origin").alias("_first")),
        on="cost_id",
    )
    same = pl.col("amount") == pl.col("_kept")
    rejected = copies.select(
        "source",
        "origin",
        "day",
        "account_key",
        pl.lit("").alias("field"),
        pl.when(same)
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("conflicting_cost"))
        .alias("reason"),
        pl.when(same)
        .then(pl.lit("the same cost line was already read from ") + pl.col("_first"))
        .otherwise(
            pl.lit("the same cost line has amount ")
            + pl.col("_kept").cast(pl.String)
            + pl.lit(" in ")
            + pl.col("_first")
            + pl.lit(" and ")
            + pl.col("amount").cast(pl.String)
            + pl.lit(" here")
        )
        .alias("message"),
        pl.concat_str(
            [pl.col("line_item").fill_null(""), pl.col("amount").cast(pl.String)], separator=" "
        ).alias("raw"),
        pl.lit(schema.KIND_COST).alias("kind"),
    )
    return kept, schema.conform(rejected, schema.QUARANTINE_SCHEMA)


def read(landing: Path, start: date, end: date) -> CostRead:
    """Every provider cost line whose day is in [start, end), once; bad lines quarantined (kind cost)."""
    costs, quarantine = [], []
    for source in _KINDS:
        c, q = _read_kind(source, Path(landing), start, end)
        costs += c
        quarantine += q
    out = pl.concat([pl.DataFrame(schema=COST_SCHEMA), *costs], how="vertical_relaxed").sort(
        "day", "source", "origin"
    )
    out, copies = once(out)
    qu = pl.concat([schema.empty_quarantine(), *quarantine, copies], how="vertical_relaxed")
    return CostRead(out, qu, out.height + qu.height, out.filter(~pl.col("line_item_parsed")))
