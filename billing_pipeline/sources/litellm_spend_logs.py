"""LiteLLM proxy spend logs (``landing/litellm/spend_logs/*``): one row of the proxy's
``LiteLLM_SpendLogs`` table per request.

Files: ``<YYYY-MM-DD>.jsonl`` as ``litellm_proxy_db.fetch`` copies them from the proxy's
PostgreSQL (one UTC day of ``startTime``), and the exports of teams without database access: a
JSON array of rows as ``GET /spend/logs?summarize=false`` returns them (``.json``), JSON lines
(``.jsonl``) or a CSV with the table's column names as its header (``.csv``, e.g. psql's
``\\copy "LiteLLM_SpendLogs" TO ... CSV HEADER``). Only the columns in ``COLUMNS`` are read, so a
proxy version with more columns reads the same.

Tokens come from the usage object the proxy keeps in ``metadata`` (``usage_object``; older
proxies keep its details in ``additional_usage_values``), else from the ``prompt_tokens`` and
``completion_tokens`` columns. LiteLLM's usage object is OpenAI-shaped for every provider: its
``prompt_tokens`` INCLUDES the cached reads and cache writes (LiteLLM adds Anthropic's
``cache_read_input_tokens`` and ``cache_creation_input_tokens`` to it), so the parts are taken out
of it by the gateway log's rules (``gateway_log.split_prompt``): nothing is billed twice and the
meters of a request add up to its prompt and completion. Reasoning stays inside output.

A request whose ``status`` is not ``success`` (or whose metadata says ``failure``) is not billed:
quarantined as ``failed_request`` (not billable by design). ``spend`` (LiteLLM's own price of the
request) becomes the reported cost of the request's first usage row, for the reconciliation.

Attribution: a row names up to five identifiers (``end_user``, ``request_tags``, ``user``,
``team_id``, the hashed ``api_key``); its account key lists them all (``litellm:{...}``) and
``usage.resolve_litellm_keys`` picks, by the catalog, the first one a customer names.
"""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline import schema
from billing_pipeline.providers import LITELLM_PROVIDERS, provider_expr
from billing_pipeline.sources import files
from billing_pipeline.sources.gateway_log import LONG_CONTEXT, METERS, split_prompt

SOURCE = "litellm_spend_logs"
FOLDER = "litellm/spend_logs"
SUFFIXES = (".jsonl", ".json", ".csv")
# The columns of LiteLLM_SpendLogs the reader uses; every other column is left alone.
COLUMNS = (
    "request_id",
    "call_type",
    "api_key",
    "spend",
    "prompt_tokens",
    "completion_tokens",
    "startTime",
    "model",
    "model_group",
    "custom_llm_provider",
    "user",
    "metadata",
    "cache_hit",
    "request_tags",
    "team_id",
    "end_user",
    "status",
)
# An export without these columns is not a spend log export (older proxies lack the others).
REQUIRED_COLUMNS = ("request_id", "startTime", "model")
KEY_PREFIX = "litellm:"  # account keys: litellm:{...} on rows, litellm:<kind>:<value> in catalogs
SUCCESS = "success"


def _detail(path: str) -> tuple[str, ...]:
    """A usage field: in ``usage_object``, else in the older ``additional_usage_values``."""
    return (f"usage_object.{path}", f"additional_usage_values.{path}")


# (column, metadata paths tried in order, the column of the table used when none is there)
_COUNTS: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("pt", ("usage_object.prompt_tokens",), "prompt_tokens"),
    ("ct", ("usage_object.completion_tokens",), "completion_tokens"),
    (
        "cached",
        _detail("prompt_tokens_details.cached_tokens") + _detail("cache_read_input_tokens"),
        None,
    ),
    (
        "write",
        _detail("prompt_tokens_details.cache_creation_tokens")
        + _detail("cache_creation_input_tokens"),
        None,
    ),
    (
        "write_1h",
        _detail("prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens"),
        None,
    ),
    ("audio_in", _detail("prompt_tokens_details.audio_tokens"), None),
    ("image_in", _detail("prompt_tokens_details.image_tokens"), None),
    ("audio_out", _detail("completion_tokens_details.audio_tokens"), None),
    ("reasoning", _detail("completion_tokens_details.reasoning_tokens"), None),
    ("web_search", _detail("server_tool_use.web_search_requests"), None),
)


# ---------------------------------------------------------------- files -> text columns


def _text_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows with ``raw`` (one JSON object per row) -> the COLUMNS as text. ``json_path_match``
    gives a string's content, a number's text and an object's or list's JSON: ``metadata`` and
    ``request_tags`` come out as JSON text whether the row holds them as JSON or as a string."""
    valid = pl.col("raw").str.json_path_match("$").is_not_null() & pl.col(
        "raw"
    ).str.strip_chars_start().str.starts_with("{")
    return rows.with_columns(
        *[pl.col("raw").str.json_path_match(f"$.{c}").alias(c) for c in COLUMNS],
        pre=pl.when(pl.col("pre").is_null() & ~valid)
        .then(pl.lit("bad_json_line"))
        .otherwise(pl.col("pre")),
    )


def _jsonl(f: files.LandingFile, data: bytes) -> pl.DataFrame:
    lines, errors = files.decode_lines(data)
    frame = pl.DataFrame(
        {"raw": lines, "encoding_error": errors},
        schema={"raw": pl.String, "encoding_error": pl.String},
    ).with_row_index("line", offset=1)
    frame = frame.with_columns(
        pl.col("line").cast(pl.Int64), pl.col("raw").str.strip_chars_end("\r")
    )
    frame = frame.filter(pl.col("raw").str.strip_chars() != "").with_columns(
        origin=pl.lit(f.rel + ":") + pl.col("line").cast(pl.String),
        pre=pl.when(pl.col("encoding_error").is_not_null()).then(pl.lit("bad_encoding")),
    )
    return _text_frame(frame)


def _json_array(f: files.LandingFile, data: bytes) -> pl.DataFrame:
    """``GET /spend/logs?summarize=false``: a JSON array of row objects. Raises ValueError."""
    document = json.loads(data.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    if not isinstance(document, list):
        raise ValueError("expected a JSON array of spend log rows")
    raws = [json.dumps(row, ensure_ascii=False) for row in document]
    frame = pl.DataFrame({"raw": raws}, schema={"raw": pl.String}).with_row_index("line", offset=1)
    return _text_frame(
        frame.with_columns(
            pl.col("line").cast(pl.Int64),
            origin=pl.lit(f.rel + ":") + pl.col("line").cast(pl.String),
            pre=pl.lit(None, pl.String),
            encoding_error=pl.lit(None, pl.String),
        )
    )


def _csv(f: files.LandingFile, data: bytes) -> pl.DataFrame:
    """A CSV with the table's column names as header; an empty cell is a null. Raises ValueError."""
    try:
        table = pl.read_csv(
            io.BytesIO(data.removeprefix(b"\xef\xbb\xbf")), infer_schema=False, encoding="utf8"
        )
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"not a readable CSV: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"not a LiteLLM spend log export: no column {', '.join(missing)}")
    present = [c for c in COLUMNS if c in table.columns]
    table = table.select(
        *[(pl.col(c) if c in table.columns else pl.lit(None, pl.String)).alias(c) for c in COLUMNS]
    ).with_columns(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in present)
    return table.with_row_index("line", offset=1).with_columns(
        pl.col("line").cast(pl.Int64),
        origin=pl.lit(f.rel + ":") + pl.col("line").cast(pl.String),
        raw=pl.struct(present).struct.json_encode(),
        pre=pl.lit(None, pl.String),
        encoding_error=pl.lit(None, pl.String),
    )


def _rows(f: files.LandingFile) -> pl.DataFrame:
    """The file's rows as text columns (COLUMNS, origin, raw, line, pre). Raises OSError or
    ValueError for a file that cannot be read as a whole."""
    data = f.path.read_bytes()
    name = f.path.name.lower()
    if name.endswith(".csv"):
        return _csv(f, data)
    if name.endswith(".json"):
        try:
            return _json_array(f, data)
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8: {exc}") from exc
    return _jsonl(f, data)


# ---------------------------------------------------------------- rows -> usage


def _metadata(path: str) -> pl.Expr:
    return pl.col("metadata").str.json_path_match(f"$.{path}")


def _counts() -> list[pl.Expr]:
    """Each count of ``_COUNTS`` as text, and the name of the field it came from."""
    exprs = []
    for col, paths, column in _COUNTS:
        sources = [_metadata(p) for p in paths] + ([pl.col(column)] if column else [])
        names = [f"metadata.{p}" for p in paths] + ([column] if column else [])
        exprs.append(pl.coalesce(sources).alias(col))
        exprs.append(
            pl.coalesce(
                [
                    pl.when(s.is_not_null()).then(pl.lit(n))
                    for s, n in zip(sources, names, strict=True)
                ]
                + [pl.lit(names[0])]
            ).alias(f"{col}_field")
        )
    return exprs


def _blank_is_null(column: str) -> pl.Expr:
    value = pl.col(column).str.strip_chars()
    return pl.when(value != "").then(value)


def _account_key() -> pl.Expr:
    """``litellm:{"end_user":..,"key":..,"tags":[..],"team":..,"user":..}`` (absent ones null),
    or null when the row names nobody. The catalog decides which identifier bills: see
    ``usage.resolve_litellm_keys``."""
    tags = (
        pl.col("request_tags")
        .str.json_decode(pl.List(pl.String))
        .list.eval(pl.element().filter(pl.element().is_not_null() & (pl.element() != "")))
    )
    tags = pl.when(tags.list.len() > 0).then(tags)
    ids = pl.struct(
        _blank_is_null("end_user").alias("end_user"),
        _blank_is_null("api_key").alias("key"),
        tags.alias("tags"),
        _blank_is_null("team_id").alias("team"),
        _blank_is_null("user").alias("user"),
    )
    named = pl.any_horizontal(
        [_blank_is_null(c).is_not_null() for c in ("end_user", "api_key", "team_id", "user")]
        + [tags.is_not_null()]
    )
    return pl.when(named).then(pl.lit(KEY_PREFIX) + ids.struct.json_encode())


def _dimensions(frame: pl.DataFrame) -> pl.Series:
    """Canonical JSON per row from the few values that make dimensions (computed per distinct
    combination): Anthropic's ``context_window``, batch (OpenAI ``batch: true``, Anthropic
    ``service_tier: batch``, as the usage reports and the price book name them) and LiteLLM's
    own ``cache_hit``."""
    parts = frame.select("provider", "context_window", "batch", "cache_hit_flag")
    distinct = parts.unique()
    texts = []
    for provider, window, batch, cache_hit in distinct.iter_rows():
        dims = {}
        if window:
            dims["context_window"] = window
        if batch:
            if provider == "anthropic":
                dims["service_tier"] = "batch"
            else:
                dims["batch"] = "true"
        if cache_hit:
            dims["cache_hit"] = "true"
        texts.append(schema.canonical_json(dims))
    lookup = distinct.with_columns(pl.Series("dimensions", texts, dtype=pl.String))
    return parts.join(
        lookup,
        on=["provider", "context_window", "batch", "cache_hit_flag"],
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )["dimensions"]


def _failed() -> pl.Expr:
    status = pl.col("status").str.strip_chars().str.to_lowercase()
    meta = _metadata("status").str.to_lowercase()
    return ((status != SUCCESS) & (status != "")).fill_null(False) | (meta == "failure").fill_null(
        False
    )


def _checks() -> list[tuple]:
    checks = [
        (
            _failed(),
            "failed_request",
            "status",
            pl.lit("the request failed (status ")
            + pl.coalesce(pl.col("status"), _metadata("status"), pl.lit("none"))
            + pl.lit("): not billed"),
        ),
        (
            pl.col("request_id").is_null() | (pl.col("request_id").str.strip_chars() == ""),
            "missing_field",
            "request_id",
            "request_id is missing",
        ),
        (pl.col("model").is_null(), "missing_field", "model", "model and model_group are empty"),
    ]
    for col, _, column in _COUNTS:
        value, fld = pl.col(col), pl.col(f"{col}_field")
        as_int = value.cast(pl.Int64, strict=False)
        if column:
            checks.append((value.is_null(), "missing_field", fld, fld + pl.lit(" is missing")))
        checks += [
            (
                value.is_not_null() & as_int.is_null(),
                "bad_number",
                fld,
                fld + pl.lit(" is not a whole number: ") + value,
            ),
            (as_int < 0, "negative_quantity", fld, fld + pl.lit(" is negative: ") + value),
            (
                as_int > files.MAX_RECORD_QUANTITY,
                "implausible_quantity",
                fld,
                fld
                + pl.lit(f" is above the per-record ceiling of {files.MAX_RECORD_QUANTITY:,}: ")
                + value,
            ),
        ]
    return checks


def _parts_fit(good: pl.DataFrame) -> pl.DataFrame:
    """Parts that cannot fit their totals (gateway rules) are ``negative_quantity``."""
    fine = pl.col("reason").is_null()
    over = fine & (pl.col("unexplained") > 0)
    over_1h = fine & (pl.col("write_1h") > pl.col("write"))
    over_out = fine & (pl.col("audio_out") > pl.col("ct"))
    over_reasoning = fine & (pl.col("reasoning") > pl.col("ct") - pl.col("audio_out"))
    cases = [
        (over, "cached_field", "cached + cache-write + audio + image tokens exceed prompt tokens"),
        (over_1h, "write_1h_field", "1h cache writes exceed the cache writes"),
        (over_out, "audio_out_field", "completion audio tokens exceed completion tokens"),
        (over_reasoning, "reasoning_field", "reasoning tokens exceed the text completion tokens"),
    ]
    reason, field, message = pl.col("reason"), pl.col("field"), pl.col("message")
    for cond, fld, text in reversed(cases):
        reason = pl.when(cond).then(pl.lit("negative_quantity")).otherwise(reason)
        field = pl.when(cond).then(pl.col(fld)).otherwise(field)
        message = pl.when(cond).then(pl.lit(text)).otherwise(message)
    return good.with_columns(reason=reason, field=field, message=message)


def _read_file(f: files.LandingFile, start: date, end: date):
    """One file -> (events or None, quarantine, accepted records)."""
    try:
        rows = _rows(f)
    except (OSError, ValueError) as exc:
        q = files.unreadable(SOURCE, f, f"not a readable spend log file: {exc}"[:500])
        return None, q.filter(pl.col("day").is_between(start, end, closed="left")), 0
    provider = pl.col("custom_llm_provider").str.strip_chars().str.to_lowercase()
    model = pl.coalesce(_blank_is_null("model"), _blank_is_null("model_group"))
    frame = rows.with_columns(
        *_counts(),
        model=model.str.strip_prefix(pl.coalesce(provider, pl.lit("")) + "/"),
        account_key=_account_key(),
        ts=files.parse_utc_expr(pl.col("startTime"), allow_naive=True),  # Prisma stores UTC
    ).with_columns(
        provider=pl.coalesce(
            pl.when(provider != "").then(
                provider.replace(LITELLM_PROVIDERS)  # the names the usage rows and price book use
            ),
            provider_expr("model"),
        )
    )
    bad = frame.filter(pl.col("pre").is_not_null()).select(
        "line",
        "origin",
        "raw",
        reason=pl.col("pre"),
        field=pl.lit(""),
        message=pl.when(pl.col("pre") == "bad_encoding")
        .then(pl.lit("line is not valid UTF-8: ") + pl.col("encoding_error").fill_null(""))
        .otherwise(pl.lit("not a JSON object")),
        account_key=pl.lit(None, pl.String),
        ts=pl.lit(None, schema.UTC_DATETIME),
    )
    good = files.apply_checks(frame.filter(pl.col("pre").is_null()), _checks())
    good = good.with_columns(
        pl.col(c).cast(pl.Int64, strict=False).fill_null(0).alias(c) for c, _, _ in _COUNTS
    )
    good = _parts_fit(split_prompt(good))
    both = pl.concat([bad, good], how="diagonal_relaxed").sort("line")
    accepted, rejected = files.split_by_day(both, f, "startTime", start, end)
    anthropic = pl.col("provider") == "anthropic"
    accepted = accepted.with_columns(
        context_window=pl.when(anthropic).then(
            pl.when(pl.col("pt") > LONG_CONTEXT).then(pl.lit("200k-1M")).otherwise(pl.lit("0-200k"))
        ),
        batch=pl.col("call_type").str.to_lowercase().str.contains("batch").fill_null(False),
        cache_hit_flag=(
            pl.col("cache_hit").str.strip_chars().str.to_lowercase() == "true"
        ).fill_null(False),
    )
    accepted = accepted.with_columns(
        natural_key=pl.col("request_id"),
        dimensions=_dimensions(accepted) if accepted.height else pl.lit("{}"),
        start=pl.col("ts"),
        end=pl.col("ts"),
        reported_cost=pl.col("spend").cast(schema.COST_DECIMAL, strict=False),
        m_input=pl.col("pt")
        - pl.col("cached")
        - pl.col("write")
        - pl.col("audio_in")
        - pl.col("image_in")
        + pl.col("cached_audio")
        + pl.col("cached_image"),
        m_cached=pl.col("cached") - pl.col("cached_audio") - pl.col("cached_image"),
        m_write=pl.when(anthropic).then(pl.lit(0)).otherwise(pl.col("write")),
        m_write_5m=pl.when(anthropic).then(pl.col("write") - pl.col("write_1h")).otherwise(0),
        m_write_1h=pl.when(anthropic).then(pl.col("write_1h")).otherwise(0),
        m_audio_in=pl.col("audio_in") - pl.col("cached_audio"),
        m_cached_audio=pl.col("cached_audio"),
        m_image_in=pl.col("image_in") - pl.col("cached_image"),
        m_cached_image=pl.col("cached_image"),
        m_output=pl.col("ct") - pl.col("audio_out"),
        m_audio_out=pl.col("audio_out"),
        m_web_search=pl.col("web_search"),
    )
    events = files.build_events(accepted, SOURCE, METERS, "input_tokens")
    # ``spend`` prices the whole request: it is carried once, on the request's first row.
    events = events.with_columns(
        pl.when(pl.col("record_id").is_first_distinct()).then(pl.col("reported_cost"))
    )
    return events, files.rejected_to_quarantine(SOURCE, rejected), accepted.height


def read(landing: Path, start: date, end: date) -> files.SourceRead:
    """Every spend log row whose partition day is in [start, end)."""
    events, quarantine, accepted = [], [], 0
    for f in files.list_files(landing, FOLDER, SUFFIXES, start, end):
        ev, q, n = _read_file(f, start, end)
        if ev is not None:
            events.append(ev)
        quarantine.append(q)
        accepted += n
    return files.combine(events, quarantine, accepted)
