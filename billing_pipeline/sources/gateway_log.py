"""Our gateway's request log (``landing/gateway/*.jsonl``): one JSON object per line, one request.

A line carries provider-reported ``usage`` (Chat Completions ``prompt_tokens``/``completion_tokens``
/``prompt_tokens_details`` or Responses ``input_tokens``/``output_tokens``/``input_tokens_details``;
in both, the prompt total INCLUDES its cached, cache-write, audio and image parts) or, when the
upstream gave none, the ``prompt``/``completion`` text, which we count with the model's offline
tokenizer (dimensions ``{"counted":"local"}``). Claude text is never estimated: ``no_tokenizer``.

OpenAI/Mistral shapes: the prompt is split so that nothing is billed twice and the meters add up
to ``prompt_tokens``: audio_input_tokens (``audio_tokens``), image_input_tokens (``image_tokens``),
cache_write_tokens (``cache_write_tokens``), cached_input_tokens (``cached_tokens``), and
input_tokens = what is left (text). The shape does not say whether cached tokens include audio or
image: they are taken as text unless the parts add up to more than the prompt, in which case the
excess can only be cached audio (then cached image), and is billed as such. The completion is
split into audio_output_tokens and output_tokens (text, reasoning INCLUDED: reasoning is billed
as output by every provider). Reasoning is not a meter nor a dimension (a per-request count would
make every request its own usage key): ``reasoning_summary`` reports it per day, key and model.

Anthropic Messages ``usage`` (``input_tokens`` EXCLUDING ``cache_read_input_tokens`` and
``cache_creation_input_tokens``) is recognised by those cache fields: input is taken as is, cache
reads become cached_input_tokens, cache creation becomes cache_write_tokens split by TTL
(``cache_creation.ephemeral_1h_input_tokens`` is 1h, the rest the default 5m), and
``server_tool_use.web_search_requests`` becomes web_search_requests. Such a line gets the
``context_window`` dimension the usage report uses ("0-200k", or "200k-1M" when the whole input,
cache included, is over 200,000 tokens: Anthropic then bills the request at long-context prices).
A ``service_tier`` (top level, or Anthropic's inside ``usage``) becomes a dimension too, so the
price book's priority, flex and batch prices apply.

A failed request (``status`` >= 400 or "failed"/"failure"/"error", or a non-null ``error``) is not
billed: quarantined as ``failed_request`` (not billable by design), whatever usage it carries.
Parsing is vectorised with polars ``json_path_match`` (null on bad JSON instead of failing the
file); only the few lines polars rejects are re-read in Python to tell NaN/1e309 from garbage.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from billing_pipeline import tokens
from billing_pipeline.providers import provider_expr
from billing_pipeline.sources import files
from billing_pipeline.sources.files import Meter

SOURCE = "gateway_log"
MAX_LINE_BYTES = 8 * 1024 * 1024  # a request line past this is corrupt or abusive, not billable
FOLDER = "gateway"
METERS = [
    Meter("m_input", "input_tokens"),
    Meter("m_cached", "cached_input_tokens"),
    Meter("m_write", "cache_write_tokens"),  # OpenAI-style cache writes: no TTL told
    Meter("m_write_5m", "cache_write_tokens", "5m", {"cache_ttl": "5m"}),
    Meter("m_write_1h", "cache_write_tokens", "1h", {"cache_ttl": "1h"}),
    Meter("m_audio_in", "audio_input_tokens"),
    Meter("m_cached_audio", "cached_audio_input_tokens"),
    Meter("m_image_in", "image_input_tokens"),
    Meter("m_cached_image", "cached_image_input_tokens"),
    Meter("m_output", "output_tokens"),
    Meter("m_audio_out", "audio_output_tokens"),
    Meter("m_web_search", "web_search_requests"),
]
LONG_CONTEXT = 200_000  # Anthropic: a request whose whole input is over this is billed long-context
FAILED_STATUS = ("failed", "failure", "error")

# (column, [json paths tried in order], name used in quarantine rows)
_COUNTS = (
    ("pt", ("usage.prompt_tokens", "usage.input_tokens")),
    ("ct", ("usage.completion_tokens", "usage.output_tokens")),
    (
        "cached",
        ("usage.prompt_tokens_details.cached_tokens", "usage.input_tokens_details.cached_tokens"),
    ),
    (
        "write",
        (
            "usage.prompt_tokens_details.cache_write_tokens",
            "usage.input_tokens_details.cache_write_tokens",
        ),
    ),
    (
        "audio_in",
        ("usage.prompt_tokens_details.audio_tokens", "usage.input_tokens_details.audio_tokens"),
    ),
    (
        "image_in",
        ("usage.prompt_tokens_details.image_tokens", "usage.input_tokens_details.image_tokens"),
    ),
    (
        "audio_out",
        (
            "usage.completion_tokens_details.audio_tokens",
            "usage.output_tokens_details.audio_tokens",
        ),
    ),
    (
        "reasoning",
        (
            "usage.completion_tokens_details.reasoning_tokens",
            "usage.output_tokens_details.reasoning_tokens",
        ),
    ),
    # Anthropic Messages usage: input_tokens EXCLUDES these, so they are added, never subtracted.
    ("cache_read", ("usage.cache_read_input_tokens",)),
    ("cache_write", ("usage.cache_creation_input_tokens",)),
    ("write_1h", ("usage.cache_creation.ephemeral_1h_input_tokens",)),
    ("web_search", ("usage.server_tool_use.web_search_requests",)),
)
_REQUIRED = ("pt", "ct")


_S = pl.String
# The fields a line may carry, parsed ONCE per line with this fixed dtype. Every leaf is a String
# so a count keeps what it was written as ("1.5", "true", "-1") and the checks below judge it.
_IN_DETAILS = pl.Struct(
    {"cached_tokens": _S, "cache_write_tokens": _S, "audio_tokens": _S, "image_tokens": _S}
)
_OUT_DETAILS = pl.Struct({"audio_tokens": _S, "reasoning_tokens": _S})
_USAGE = pl.Struct(
    {
        "prompt_tokens": _S,
        "completion_tokens": _S,
        "input_tokens": _S,
        "output_tokens": _S,
        "prompt_tokens_details": _IN_DETAILS,
        "input_tokens_details": _IN_DETAILS,
        "completion_tokens_details": _OUT_DETAILS,
        "output_tokens_details": _OUT_DETAILS,
        "cache_read_input_tokens": _S,
        "cache_creation_input_tokens": _S,
        "cache_creation": pl.Struct({"ephemeral_1h_input_tokens": _S}),
        "server_tool_use": pl.Struct({"web_search_requests": _S}),
        "service_tier": _S,  # Anthropic Messages usage
    }
)
# ``error``: OpenAI's error object {"message", "type", "param", "code"}; a bare string error is
# refused by this struct and told apart in Python (``_classify_bad_line``).
_ERROR = pl.Struct({"message": _S, "type": _S, "code": _S})
_LINE = pl.Struct(
    {
        "request_id": _S,
        "timestamp": _S,
        "customer_key": _S,
        "provider": _S,
        "model": _S,
        "prompt": _S,
        "completion": _S,
        "usage": _USAGE,
        "service_tier": _S,
        "status": _S,
        "error": _ERROR,
    }
)
LINE_SCHEMA = pl.Schema({f.name: f.dtype for f in _LINE.fields})  # the same, as a frame's schema
# A count written as a JSON string ("12") decodes like the number 12: lines where any count key is
# followed by a quote are looked at again in Python (rare), everything else never is.
_QUOTED_COUNT = (
    r'"(?:'
    + "|".join(sorted({p.rsplit(".", 1)[1] for _, ps in _COUNTS for p in ps}))
    + r')"\s*:\s*"'
)


def _field(path: str) -> pl.Expr:
    """A leaf of the decoded line struct: ``usage.prompt_tokens_details.cached_tokens``."""
    expr = pl.col("obj")
    for name in path.split("."):
        expr = expr.struct.field(name)
    return expr


def _decode(raw: pl.Series) -> tuple[pl.Series, list[int]]:
    """Decode every line with ``_LINE``; returns the structs and the positions polars refused.

    polars fails a whole column on one bad line, so a failing column is halved until each bad line
    stands alone: k bad lines cost about log2(n) extra passes each, good files exactly one.
    """
    try:
        return raw.str.json_decode(_LINE), []
    except pl.exceptions.PolarsError:
        if raw.len() == 1:
            return pl.Series(raw.name, [None], dtype=_LINE), [0]
    mid = raw.len() // 2
    left, bad_left = _decode(raw.slice(0, mid))
    right, bad_right = _decode(raw.slice(mid))
    return pl.concat([left, right]), bad_left + [i + mid for i in bad_right]


def _value_at(obj, path: str):
    for name in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(name)
    return obj


def _quoted_counts(raws: list[str]) -> dict[str, list[bool]]:
    """For the few lines whose counts may be JSON strings: which count columns really are."""
    parsed = [json.loads(r) for r in raws]
    return {
        col: [any(isinstance(_value_at(o, p), str) for p in paths) for o in parsed]
        for col, paths in _COUNTS
    }


def _account_key(value) -> str | None:
    """``gateway:<customer_key>`` of a line parsed in Python, when it names one."""
    key = value.get("customer_key") if isinstance(value, dict) else None
    return (
        f"gateway:{key}"
        if isinstance(key, str | int) and not isinstance(key, bool) and key != ""
        else None
    )


def _classify_bad_line(raw: str) -> tuple[str, str, str, str | None]:
    """Python look at a line polars could not parse: non-finite numbers vs broken JSON.

    Returns (reason, field, message, account key when the line names its customer)."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return "bad_json_line", "", f"line is not valid JSON: {exc}", None

    def walk(v, path):
        if isinstance(v, float) and not math.isfinite(v):
            return path
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, child in items:
            found = walk(child, f"{path}.{k}" if path else str(k))
            if found:
                return found
        return None

    account = _account_key(value)
    if isinstance(value, dict) and value.get("error") and not isinstance(value["error"], dict):
        # a failed request logged with a bare error string: not billable, whatever else it says
        return (
            "failed_request",
            "error",
            f"the request failed: {str(value['error'])[:200]}",
            account,
        )
    field = walk(value, "")
    if field:
        return (
            "bad_number",
            field,
            f"{field} is not a finite number (NaN, Infinity or out of range)",
            account,
        )
    if not isinstance(value, dict):
        return "bad_json_line", "", "line is JSON but not an object", None
    wrong = _wrong_type(value, _LINE, "")
    if wrong:
        return "wrong_type", wrong[0], f"{wrong[0]} is {wrong[1]}, expected {wrong[2]}", account
    return "bad_json_line", "", "line does not match the gateway line format", account


def _wrong_type(obj: dict, dtype: pl.Struct, prefix: str) -> tuple[str, str, str] | None:
    """First field whose JSON type cannot be what the line format says (an object for text, ...)."""
    for fld in dtype.fields:
        value, path = obj.get(fld.name), f"{prefix}{fld.name}"
        if value is None:
            continue
        if isinstance(fld.dtype, pl.Struct):
            if not isinstance(value, dict):
                return path, type(value).__name__, "an object"
            found = _wrong_type(value, fld.dtype, path + ".")
            if found:
                return found
        elif isinstance(value, (dict, list)):
            return path, type(value).__name__, "text or a number"
    return None


def _count_texts(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill pt/ct for lines that carry text instead of usage, one tokenizer batch per model."""
    need = frame.filter(pl.col("reason").is_null() & pl.col("local"))
    if need.height == 0:
        return frame.with_columns(pl.col("pt", "ct").cast(pl.String))
    parts = []
    for (model,), group in need.group_by(["model"]):
        if tokens.tokenizer_for(model) is None:
            continue
        prompts = tokens.count_tokens(model, group["prompt"].fill_null("").to_list())
        completions = tokens.count_tokens(model, group["completion"].fill_null("").to_list())
        parts.append(pl.DataFrame({"line": group["line"], "pt_n": prompts, "ct_n": completions}))
    counted = (
        pl.concat(parts)
        if parts
        else pl.DataFrame(schema={"line": pl.Int64, "pt_n": pl.Int64, "ct_n": pl.Int64})
    )
    return frame.join(counted, on="line", how="left").with_columns(
        pl.coalesce(pl.col("pt"), pl.col("pt_n").cast(pl.String)).alias("pt"),
        pl.coalesce(pl.col("ct"), pl.col("ct_n").cast(pl.String)).alias("ct"),
    )


def _split_lines(f: files.LandingFile, data: bytes) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(decodable lines with the parsed struct in ``obj``, refused lines with reason/field/message)."""
    raw_lines, encoding_errors = files.decode_lines(data)
    lines = pl.DataFrame(
        {"raw": raw_lines, "encoding_error": encoding_errors},
        schema={"raw": pl.String, "encoding_error": pl.String},
    )
    lines = lines.with_row_index("line", offset=1)
    lines = lines.with_columns(
        pl.col("line").cast(pl.Int64), pl.col("raw").str.strip_chars_end("\r")
    )
    too_long = pl.col("raw").str.len_bytes() > MAX_LINE_BYTES
    lines = lines.filter(pl.col("raw").str.strip_chars() != "").with_columns(
        origin=pl.lit(f.rel + ":") + pl.col("line").cast(pl.String),
        pre=pl.when(pl.col("encoding_error").is_not_null())
        .then(pl.lit("bad_encoding"))
        .when(too_long)
        .then(pl.lit("line_too_long")),
    )
    todo = lines.filter(pl.col("pre").is_null())
    obj, refused = _decode(todo["raw"])
    refused_mask = pl.Series("refused", [False] * todo.height, dtype=pl.Boolean)
    if refused:
        refused_mask = refused_mask.scatter(refused, True)
    todo = todo.with_columns(obj.alias("obj"), refused_mask)
    unusable = pl.col("refused") | pl.col("obj").is_null()  # "null" decodes to a null struct
    bad = pl.concat(
        [lines.filter(pl.col("pre").is_not_null()), todo.filter(unusable).drop("obj", "refused")]
    )
    classified = [  # only lines polars refused or never parsed: a handful, looked at in Python
        ("bad_encoding", "", f"line is not valid UTF-8: {e}", None)
        if pre == "bad_encoding"
        else (
            "line_too_long",
            "",
            f"line is {len(r.encode())} bytes, over the {MAX_LINE_BYTES}-byte limit",
            None,
        )
        if pre
        else _classify_bad_line(r)
        for r, pre, e in bad.select("raw", "pre", "encoding_error").iter_rows()
    ]
    bad = bad.with_columns(
        pl.col("raw").str.slice(0, files.RAW_LIMIT),
        reason=pl.Series([c[0] for c in classified], dtype=pl.String),
        field=pl.Series([c[1] for c in classified], dtype=pl.String),
        message=pl.Series([c[2] for c in classified], dtype=pl.String),
        account_key=pl.Series([c[3] for c in classified], dtype=pl.String),
        ts=pl.lit(None, files.schema.UTC_DATETIME),
    )
    return todo.filter(~unusable).drop("refused"), bad


def _quoted_flags(good: pl.DataFrame) -> list[pl.Series]:
    """``<col>_str``: the count was written as a JSON string (a quoted number is not a count)."""
    suspects = good["raw"].str.contains(_QUOTED_COUNT).arg_true()
    flags = _quoted_counts(good["raw"].gather(suspects).to_list()) if suspects.len() else {}
    out = []
    for col, _ in _COUNTS:
        series = pl.Series(f"{col}_str", [False] * good.height, dtype=pl.Boolean)
        if suspects.len():
            series = series.scatter(suspects, flags[col])
        out.append(series)
    return out


REASONING_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date,
    "account_key": pl.String,
    "provider": pl.String,
    "model": pl.String,
    "requests": pl.UInt32,
    "output_tokens": pl.Int64,
    "reasoning_tokens": pl.Int64,
}


def _failed() -> pl.Expr:
    """A request that failed upstream (HTTP status >= 400, a failed status word, an error object)."""
    status = pl.col("status").str.strip_chars()
    return (
        pl.col("has_error")
        | (status.cast(pl.Int64, strict=False) >= 400).fill_null(False)
        | status.str.to_lowercase().is_in(list(FAILED_STATUS)).fill_null(False)
    )


def _dimensions(frame: pl.DataFrame) -> pl.Series:
    """Canonical JSON dimensions per line, built once per distinct (tier, window, local) combination."""
    parts = frame.select("service_tier", "context_window", "local")
    distinct = parts.unique()
    texts = [
        files.schema.canonical_json(
            {
                k: v
                for k, v in (
                    ("service_tier", tier),
                    ("context_window", window),
                    ("counted", "local" if local else None),
                )
                if v
            }
        )
        for tier, window, local in distinct.iter_rows()
    ]
    lookup = distinct.with_columns(pl.Series("dimensions", texts, dtype=pl.String))
    return parts.join(
        lookup,
        on=["service_tier", "context_window", "local"],
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )["dimensions"]


def _provider_of_models(models: pl.Series) -> pl.Expr:
    """``provider_expr`` of each model id, worked out once per distinct id (a log has a few
    models and millions of lines) and looked up per line."""
    distinct = models.drop_nulls().unique()
    providers = pl.DataFrame({"model": distinct}).select(provider_expr("model")).to_series()
    return pl.col("model").replace_strict(distinct, providers, default=None, return_dtype=pl.String)


def split_prompt(good: pl.DataFrame) -> pl.DataFrame:
    """The OpenAI/Mistral prompt and completion split into meter parts (see the module docstring).

    ``excess`` is what the parts add up to beyond the prompt: only cached audio (then cached image)
    tokens can be counted twice that way; anything left is an impossible record."""
    parts = pl.col("cached") + pl.col("write") + pl.col("audio_in") + pl.col("image_in")
    excess = pl.max_horizontal(parts - pl.col("pt"), pl.lit(0))
    cached_audio = pl.min_horizontal(excess, pl.col("audio_in"), pl.col("cached"))
    good = good.with_columns(excess=excess, cached_audio=cached_audio)
    cached_image = pl.min_horizontal(
        pl.col("excess") - pl.col("cached_audio"),
        pl.col("image_in"),
        pl.col("cached") - pl.col("cached_audio"),
    )
    good = good.with_columns(cached_image=cached_image)
    return good.with_columns(
        unexplained=pl.col("excess") - pl.col("cached_audio") - pl.col("cached_image")
    )


def _read_file(f: files.LandingFile, start: date, end: date, keep_text: bool = False):
    """One file -> (events, quarantine, lines carrying both usage and text when ``keep_text``,
    accepted lines, reasoning per day x key x model, each record's hour: origin -> hour, None
    for an unreadable file)."""
    try:
        data = f.path.read_bytes()
    except OSError as exc:
        q = files.unreadable(SOURCE, f, f"not a readable file: {exc}")
        q = q.filter(pl.col("day").is_between(start, end, closed="left"))
        return None, q, None, 0, None, None
    good, bad = _split_lines(f, data)
    good = (
        good.with_columns(
            *[pl.coalesce([_field(p) for p in paths]).alias(col) for col, paths in _COUNTS],
            *[
                pl.coalesce(
                    [pl.when(_field(p).is_not_null()).then(pl.lit(p)) for p in paths]
                    + [pl.lit(paths[0])]
                ).alias(f"{col}_field")
                for col, paths in _COUNTS
            ],
            request_id=_field("request_id"),
            timestamp=_field("timestamp"),
            customer_key=_field("customer_key"),
            provider_raw=_field("provider"),
            model=_field("model"),
            prompt=_field("prompt"),
            completion=_field("completion"),
            has_usage=_field("usage").is_not_null(),
            service_tier=pl.coalesce(_field("service_tier"), _field("usage.service_tier")),
            status=_field("status"),
            has_error=_field("error").is_not_null(),
        )
        .drop("obj")
        .with_columns(_quoted_flags(good))
    )
    good = good.with_columns(
        local=~pl.col("has_usage")
        & (pl.col("prompt").is_not_null() | pl.col("completion").is_not_null()),
        anthropic_shape=pl.col("cache_read").is_not_null() | pl.col("cache_write").is_not_null(),
        ts=files.parse_utc_expr(pl.col("timestamp")),
        # the line's own provider field wins; else the model id's (providers.py)
        provider=pl.coalesce(
            pl.col("provider_raw").str.to_lowercase(), _provider_of_models(good["model"])
        ),
        account_key=pl.when(
            pl.col("customer_key").is_not_null() & (pl.col("customer_key") != "")
        ).then(pl.lit("gateway:") + pl.col("customer_key")),
    )
    # Only lines we count ourselves need a tokenizer: a usage-only log never loads one (tiktoken and Tekken take seconds to load).
    models = good.filter(pl.col("local") & ~_failed())["model"].drop_nulls().unique().to_list()
    untokenizable = [m for m in models if tokens.tokenizer_for(m) is None]
    checks = [
        # first: a failed request is not billed whatever else is wrong with its line
        (
            _failed(),
            "failed_request",
            pl.when(pl.col("has_error")).then(pl.lit("error")).otherwise(pl.lit("status")),
            pl.lit("the request failed (status ")
            + pl.col("status").fill_null("none")
            + pl.lit("): not billed"),
        ),
        (
            pl.col("request_id").is_null() | (pl.col("request_id") == ""),
            "missing_field",
            "request_id",
            "request_id is missing",
        ),
        (
            pl.col("model").is_null() | (pl.col("model") == ""),
            "missing_field",
            "model",
            "model is missing",
        ),
        (
            ~pl.col("has_usage") & ~pl.col("local"),
            "missing_field",
            "usage",
            "neither usage nor prompt/completion text",
        ),
        (
            pl.col("local") & pl.col("provider").eq("anthropic"),
            "no_tokenizer",
            "model",
            "Claude has no public tokenizer; token counts must come from the provider",
        ),
        (
            pl.col("local") & pl.col("model").is_in(untokenizable),
            "no_tokenizer",
            "model",
            pl.lit("no offline tokenizer for model ") + pl.col("model"),
        ),
    ]
    for col, _ in _COUNTS:
        # polars writes a decoded JSON number in its shortest form (12.0 -> "12"), so a whole
        # count casts to Int64 and anything else (1.5, true, 1e23) does not.
        value, fld = pl.col(col), pl.col(f"{col}_field")
        as_int = value.cast(pl.Int64, strict=False)
        if col in _REQUIRED:
            checks.append(
                (
                    ~pl.col("local") & value.is_null(),
                    "missing_field",
                    fld,
                    fld + pl.lit(" is missing"),
                )
            )
        checks.append(
            (
                ~pl.col("local") & value.is_not_null() & (as_int.is_null() | pl.col(f"{col}_str")),
                "bad_number",
                fld,
                fld + pl.lit(" is not a whole number: ") + value,
            )
        )
        checks.append(
            (
                ~pl.col("local") & (as_int < 0),
                "negative_quantity",
                fld,
                fld + pl.lit(" is negative: ") + value,
            )
        )
        checks.append(
            (
                ~pl.col("local") & (as_int > files.MAX_RECORD_QUANTITY),
                "implausible_quantity",
                fld,
                fld
                + pl.lit(f" is above the per-record ceiling of {files.MAX_RECORD_QUANTITY:,}: ")
                + value,
            )
        )
    good = files.apply_checks(good, checks)
    good = _count_texts(good).with_columns(
        pl.col(c).cast(pl.Int64, strict=False).fill_null(0).alias(c) for c, _ in _COUNTS
    )
    good = split_prompt(good)
    fine, openai_shape = pl.col("reason").is_null(), ~pl.col("anthropic_shape")
    over = fine & openai_shape & (pl.col("unexplained") > 0)
    over_1h = fine & (pl.col("write_1h") > pl.col("cache_write"))
    over_out = fine & openai_shape & (pl.col("audio_out") > pl.col("ct"))
    over_reasoning = fine & (pl.col("reasoning") > pl.col("ct") - pl.col("audio_out"))
    good = good.with_columns(
        reason=pl.when(over | over_1h | over_out | over_reasoning)
        .then(pl.lit("negative_quantity"))
        .otherwise("reason"),
        field=pl.when(over)
        .then(pl.col("cached_field"))
        .when(over_1h)
        .then(pl.col("write_1h_field"))
        .when(over_out)
        .then(pl.col("audio_out_field"))
        .when(over_reasoning)
        .then(pl.col("reasoning_field"))
        .otherwise("field"),
        message=pl.when(over)
        .then(pl.lit("cached + cache-write + audio + image tokens exceed prompt tokens"))
        .when(over_1h)
        .then(pl.lit("1h cache writes exceed cache_creation_input_tokens"))
        .when(over_out)
        .then(pl.lit("completion audio tokens exceed completion tokens"))
        .when(over_reasoning)
        .then(pl.lit("reasoning tokens exceed the text completion tokens"))
        .otherwise("message"),
    )
    frame = pl.concat([bad, good], how="diagonal_relaxed").sort("line")
    accepted, rejected = files.split_by_day(frame, f, "timestamp", start, end)
    hours = pl.concat(
        [accepted.select("origin", "day", "ts"), rejected.select("origin", "day", "ts")]
    ).select("origin", files.record_hour_expr(files.name_hour(f.path.name)).alias("hour"))
    texts = None
    if keep_text:  # provider counts AND the text they count: the metering drift sample
        texts = accepted.filter(
            ~pl.col("local") & (pl.col("prompt").is_not_null() | pl.col("completion").is_not_null())
        )
        texts = texts.select(
            "day",
            "model",
            "prompt",
            "completion",
            provider_input=pl.when(pl.col("anthropic_shape"))
            .then(pl.col("pt") + pl.col("cache_read") + pl.col("cache_write"))
            .otherwise(pl.col("pt")),
            provider_output=pl.col("ct"),
        )
    anthropic = pl.col("anthropic_shape")
    whole_input = pl.col("pt") + pl.col("cache_read") + pl.col("cache_write")
    accepted = accepted.with_columns(
        context_window=pl.when(anthropic).then(
            pl.when(whole_input > LONG_CONTEXT).then(pl.lit("200k-1M")).otherwise(pl.lit("0-200k"))
        ),
    )
    openai_input = (
        pl.col("pt")
        - pl.col("cached")
        - pl.col("write")
        - pl.col("audio_in")
        - pl.col("image_in")
        + pl.col("cached_audio")
        + pl.col("cached_image")
    )
    accepted = accepted.with_columns(
        natural_key=pl.col("request_id"),
        dimensions=_dimensions(accepted) if accepted.height else pl.lit("{}"),
        start=pl.col("ts"),
        end=pl.col("ts"),
        m_input=pl.when(anthropic).then(pl.col("pt")).otherwise(openai_input),
        m_cached=pl.when(anthropic)
        .then(pl.col("cache_read"))
        .otherwise(pl.col("cached") - pl.col("cached_audio") - pl.col("cached_image")),
        m_write=pl.when(anthropic).then(pl.lit(0)).otherwise(pl.col("write")),
        m_write_5m=pl.col("cache_write") - pl.col("write_1h"),
        m_write_1h=pl.col("write_1h"),
        m_audio_in=pl.when(anthropic)
        .then(pl.lit(0))
        .otherwise(pl.col("audio_in") - pl.col("cached_audio")),
        m_cached_audio=pl.when(anthropic).then(pl.lit(0)).otherwise(pl.col("cached_audio")),
        m_image_in=pl.when(anthropic)
        .then(pl.lit(0))
        .otherwise(pl.col("image_in") - pl.col("cached_image")),
        m_cached_image=pl.when(anthropic).then(pl.lit(0)).otherwise(pl.col("cached_image")),
        m_output=pl.when(anthropic)
        .then(pl.col("ct"))
        .otherwise(pl.col("ct") - pl.col("audio_out")),
        m_audio_out=pl.when(anthropic).then(pl.lit(0)).otherwise(pl.col("audio_out")),
        m_web_search=pl.col("web_search"),
    )
    reasoning = (
        accepted.lazy()  # lazily: only the columns the summary reads are filtered
        .filter(pl.col("reasoning") > 0)
        .group_by("day", "account_key", "provider", "model")
        .agg(
            pl.len().alias("requests"),
            pl.col("m_output").sum().alias("output_tokens"),
            pl.col("reasoning").sum().alias("reasoning_tokens"),
        )
        .collect()
    )
    events = files.build_events(accepted, SOURCE, METERS, "input_tokens")
    quarantine = files.rejected_to_quarantine(SOURCE, rejected)
    return events, quarantine, texts, accepted.height, reasoning, hours


def read(landing: Path, start: date, end: date):
    """All gateway requests whose partition day is in [start, end). start == end: a point event."""
    events, quarantine, accepted = [], [], 0
    for f in files.list_files(landing, FOLDER, (".jsonl",), start, end):
        ev, q, _, n, _, _ = _read_file(f, start, end)
        if ev is not None:
            events.append(ev)
        quarantine.append(q)
        accepted += n
    return files.combine(events, quarantine, accepted)


@dataclass(frozen=True)
class HourlyRead:
    """The records of a window of hours, and the hour each belongs to (``files.record_hour``)."""

    read: files.SourceRead
    hours: pl.DataFrame  # origin -> hour (UTC): one row per record read


def read_hours(landing: Path, start: datetime, end: datetime) -> HourlyRead:
    """The gateway requests of the hours [start, end): the records ``read`` gives for their days,
    kept when their hour is in the window, so the hours of a day read exactly what the day reads.
    A file named for an hour outside the window is not opened."""
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date() + timedelta(days=1)
    events, quarantine, hours = [], [], []
    for f in files.list_files(landing, FOLDER, (".jsonl",), first, last):
        file_hour = files.name_hour(f.path.name)
        if file_hour is not None and not start <= file_hour < end:
            continue
        ev, q, _, _, _, of_file = _read_file(f, first, last)
        if of_file is None:  # an unreadable file: its row is in the file's hour or first hour
            of_file = q.select(
                "origin",
                files.record_hour_expr(file_hour).alias("hour")
                if file_hour is not None
                else pl.col("day").cast(files.HOUR_DTYPE).alias("hour"),
            )
        of_file = of_file.filter(pl.col("hour").is_between(start, end, closed="left"))
        if ev is not None:
            events.append(ev.join(of_file.select("origin"), on="origin", how="semi"))
        quarantine.append(q.join(of_file.select("origin"), on="origin", how="semi"))
        hours.append(of_file)
    read = files.combine(events, quarantine)
    hour_frame = pl.concat(
        [pl.DataFrame(schema={"origin": pl.String, "hour": files.HOUR_DTYPE}), *hours]
    )
    return HourlyRead(read, hour_frame)


_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*"([^"]{1,64})"')
APPENDED_LIMIT = 64 * 1024 * 1024  # more appended at once than this: re-read the day's every hour


def appended_hours(
    path: Path, offset: int, day: date | None, now: datetime
) -> set[datetime] | None:
    """The hours (``files.record_hour``) of the lines a file named for ``day`` (None: a file
    without a date) holds from byte ``offset`` on: what a gateway appended since ``offset`` was
    read. A line cut at ``offset`` counts whole. None when that cannot be told (the file is gone,
    too much was appended, an undated file's line has no timestamp): then every hour of the day
    may have changed. Hours after ``now`` are left out."""
    try:
        size = path.stat().st_size
        start = max(0, offset - 1024 * 1024)  # back to the start of a line cut at ``offset``
        if size - start > APPENDED_LIMIT:
            return None
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return None
    if start > 0 or offset > 0:
        cut = data.rfind(b"\n", 0, max(0, offset - start))
        if cut < 0 and start > 0:
            return None  # a line longer than the look-back: its start is unknown
        data = data[cut + 1 :]
    hours = set()
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        found = _TIMESTAMP.search(line)
        ts = files.parse_utc(found[1].decode("utf-8", "replace")) if found else None
        if day is None and ts is None:
            return None
        hours.add(files.record_hour(day or ts.date(), None, ts))
    return {h for h in hours if h <= now}


def reasoning_summary(landing: Path, start: date, end: date) -> pl.DataFrame:
    """Per day, gateway key, provider and model: requests that reasoned, their text output tokens
    and the reasoning tokens inside them (REASONING_SCHEMA).

    Reasoning is already billed inside ``output_tokens``; this is what an invoice or a customer's
    question ("why so much output?") can quote, without splitting the usage per request."""
    parts = [
        r
        for f in files.list_files(landing, FOLDER, (".jsonl",), start, end)
        if (r := _read_file(f, start, end)[4]) is not None
    ]
    frame = pl.concat(
        [pl.DataFrame(schema=REASONING_SCHEMA), *[p.cast(REASONING_SCHEMA) for p in parts]]
    )
    keys = ["day", "account_key", "provider", "model"]
    return (
        frame.group_by(keys)
        .agg(
            pl.sum("requests").cast(pl.UInt32), pl.sum("output_tokens"), pl.sum("reasoning_tokens")
        )
        .sort(keys, nulls_last=True)
        .select(list(REASONING_SCHEMA))
    )


_TEXT_KEY = re.compile(rb'"(?:prompt|completion)"\s*:')


def _may_carry_text(path: Path) -> bool:
    try:
        return _TEXT_KEY.search(path.read_bytes()) is not None
    except OSError:
        return True  # let the reader report it


def tokenizer_drift(landing: Path, start: date, end: date) -> pl.DataFrame:
    """Per model, the provider's token counts against our own recount of the same lines' text.

    Only accepted lines that carry BOTH a provider ``usage`` object and the prompt/completion text
    are compared (see ``drift.drift_by_model``); lines with text only are already counted by us.
    """
    from billing_pipeline.sources import drift

    # A file in which no key "prompt" or "completion" is written has no text to recount: it is not
    # parsed at all (a month of usage-only logs costs one byte search per file, not a second parse).
    texts = [
        t
        for f in files.list_files(landing, FOLDER, (".jsonl",), start, end)
        if _may_carry_text(f.path)
        and (t := _read_file(f, start, end, keep_text=True)[2]) is not None
    ]
    return drift.drift_by_model(pl.concat(texts) if texts else drift.empty_sample())
