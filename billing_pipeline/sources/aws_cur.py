"""AWS Cost and Usage Report 2.0 (``landing/cloud/aws_cur/*.csv|*.parquet``, snake_case columns).

Two kinds of line are usage we bill:

- GPU instance time (EC2 ``BoxUsage:p5.48xlarge``, SageMaker ``ml.g5.xlarge``): gpu_seconds =
  ``line_item_usage_amount`` hours x 3600 x GPUs per instance (the FOCUS reader's table), in
  Decimal, rounded half up to whole seconds.
- Bedrock tokens: CUR has ONE LINE PER TOKEN TYPE (``*-input-tokens``, ``*-output-tokens``,
  ``*-cache-read-input-token-count``, ``*-cache-write-input-token-count``); each becomes its own
  meter, so cache traffic is never lost by summing input + output. A ``pricing_unit`` of 1K/1M
  tokens is scaled to tokens.

Usage lines are ``Usage``, ``DiscountedUsage`` and ``SavingsPlanCoveredUsage``; everything else
(Tax, Credit, Fee, RIFee, SavingsPlanNegation, non-GPU services) is quarantined as
``not_billable_usage`` so the export stays fully accounted for. Attribution is by resource tags:
the ``resource_tags`` map (Parquet map or JSON text) or ``resource_tags_user_*`` columns; the
``user:``/``user_`` prefix is dropped so catalog tags read ``{customer: acme}``.
``line_item_unblended_cost`` is kept as reported_cost.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import files
from billing_pipeline.sources.focus import GPU_INSTANCES, _map_unique

SOURCE = "aws_cur"
FOLDER = "cloud/aws_cur"
METERS = [
    files.Meter("m_gpu", "gpu_seconds"),
    files.Meter("m_input", "input_tokens"),
    files.Meter("m_cached", "cached_input_tokens"),
    files.Meter("m_write", "cache_write_tokens"),
    files.Meter("m_output", "output_tokens"),
]
USAGE_TYPES = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage")
# usage-type suffix -> meter column; cache suffixes first, they also end in "input-token-count"
_BEDROCK_SUFFIXES = (
    ("-cache-read-input-token-count", "m_cached"),
    ("-cache-write-input-token-count", "m_write"),
    ("-input-tokens", "m_input"),
    ("-input-token-count", "m_input"),
    ("-output-tokens", "m_output"),
    ("-output-token-count", "m_output"),
)
_TOKEN_COLUMNS = ("m_input", "m_cached", "m_write", "m_output")
_INSTANCE_RE = r"(?:^|[:\s])(?:ml\.)?([a-z][a-z0-9-]*\d[a-z0-9-]*\.\d*x?large)"
_TAG_PREFIX = "resource_tags_"


def _to_text(df: pl.DataFrame) -> pl.DataFrame:
    """Every column as text (timestamps ISO UTC, a map as a JSON array of {key, value})."""
    out = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            col = (col.dt.convert_time_zone("UTC") if dtype.time_zone else col).dt.strftime("%Y-%m-%dT%H:%M:%S%.f")
        elif isinstance(dtype, pl.List) and not isinstance(dtype.inner, pl.Struct):
            col = col.cast(pl.List(pl.String)).list.join(",")
        elif isinstance(dtype, pl.List):
            col = pl.concat_str(pl.lit("["), col.list.eval(pl.element().struct.json_encode()).list.join(","), pl.lit("]"))
        elif isinstance(dtype, pl.Struct):
            col = col.struct.json_encode()
        out.append(col.cast(pl.String).alias(name))
    return df.select(out)


def _read_table(f: files.LandingFile) -> pl.DataFrame:
    if f.path.name.lower().endswith(".parquet"):
        return _to_text(pl.read_parquet(f.path))
    return pl.read_csv(f.path, infer_schema=False, null_values=[""], encoding="utf8")


def _canonical_tags(text: str | None) -> str | None:
    """Map text (JSON object or [{key, value}]) -> canonical JSON without ``user:``; None if bad."""
    if text is None:
        return schema.canonical_json({})
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, dict) and "key" in v for v in value):
        value = {v["key"]: v.get("value") for v in value}
    if not isinstance(value, dict):
        return None
    clean = {}
    for key, v in value.items():
        for prefix in ("user:", "user_"):
            key = key.removeprefix(prefix)
        if v not in (None, ""):
            clean[key] = v
    return schema.canonical_json(clean)


def _token_factor(unit: pl.Expr) -> pl.Expr:
    return (pl.when(unit.str.contains(r"1m|million")).then(1_000_000)
            .when(unit.str.contains(r"1k|thousand|k tokens")).then(1000).otherwise(1))


def _read_file(f: files.LandingFile, start: date, end: date):
    try:
        df = _read_table(f)
    except Exception as exc:  # noqa: BLE001 - any unreadable export is one quarantine row
        q = files.unreadable(SOURCE, f, f"not a readable CUR 2.0 export: {exc}"[:500])
        return None, q.filter(pl.col("day").is_between(start, end, closed="left"))
    cols = df.columns
    get = lambda c: pl.col(c).str.strip_chars() if c in cols else pl.lit(None, pl.String)  # noqa: E731
    tag_cols = [c for c in cols if c.startswith(_TAG_PREFIX)]
    if "resource_tags" in cols:
        tags = pl.col("resource_tags")
    elif tag_cols:
        tags = pl.struct([pl.col(c).alias(c.removeprefix(_TAG_PREFIX)) for c in tag_cols]).struct.json_encode()
    else:
        tags = pl.lit(None, pl.String)
    usage_type = get("line_item_usage_type").fill_null("")
    product = get("line_item_product_code").fill_null("")
    instance = pl.coalesce(get("product_instance_type").str.to_lowercase().str.strip_prefix("ml."),
                           usage_type.str.to_lowercase().str.extract(_INSTANCE_RE, 1))
    token_col = pl.lit(None, pl.String)
    for suffix, column in reversed(_BEDROCK_SUFFIXES):
        token_col = pl.when(usage_type.str.to_lowercase().str.ends_with(suffix)).then(pl.lit(column)).otherwise(token_col)
    raw = pl.concat_str([pl.format('"{}":', pl.lit(c)) + pl.col(c).fill_null("") for c in cols], separator=",")
    table = pl.DataFrame({"instance_type": list(GPU_INSTANCES), "gpu_type": [v[0] for v in GPU_INSTANCES.values()],
                          "gpus": [v[1] for v in GPU_INSTANCES.values()]})
    df = df.with_row_index("row", offset=1).with_columns(
        origin=pl.lit(f.rel + ":") + pl.col("row").cast(pl.String),
        raw=raw.str.slice(0, files.RAW_LIMIT),
        line_type=get("line_item_line_item_type"),
        product=product, usage_type=usage_type, instance_type=instance,
        is_bedrock=product.str.to_lowercase().str.contains("bedrock") & token_col.is_not_null(),
        token_col=token_col,
        unit=get("pricing_unit").str.to_lowercase().fill_null(""),
        ts=files.parse_utc_expr(get("line_item_usage_start_date"), allow_naive=True),
        end=files.parse_utc_expr(get("line_item_usage_end_date"), allow_naive=True),
        qty_text=get("line_item_usage_amount"),
        cost_text=get("line_item_unblended_cost"),
        region=pl.coalesce(get("product_region_code"), get("product_region")),
        tags=tags,
        row_id=get("identity_line_item_id"),
        resource_id=get("line_item_resource_id"),
    ).join(table, on="instance_type", how="left")
    df = _map_unique(df, ["tags"], _canonical_tags, "tags_json", pl.String)
    is_hours = pl.col("unit").is_in(["hrs", "hours", "hour"]) | pl.col("usage_type").str.contains("BoxUsage")
    df = df.with_columns(
        qty=pl.col("qty_text").cast(pl.Float64, strict=False),
        cost=pl.col("cost_text").cast(schema.COST_DECIMAL, strict=False),
        factor=pl.when(pl.col("is_bedrock")).then(_token_factor(pl.col("unit")))
        .when(pl.col("gpus").is_not_null() & is_hours).then(pl.col("gpus") * 3600),
    )
    checks = [
        (~pl.col("line_type").fill_null("").is_in(USAGE_TYPES), "not_billable_usage", "line_item_line_item_type",
         pl.lit("not a usage line: ") + pl.col("line_type").fill_null("null")),
        (~pl.col("is_bedrock") & pl.col("gpus").is_null(), "not_billable_usage", "line_item_usage_type",
         pl.lit("neither GPU instance time nor Bedrock tokens: ") + pl.col("product") + pl.lit(" ") + pl.col("usage_type")),
        (pl.col("factor").is_null(), "not_billable_usage", "pricing_unit",
         pl.lit("GPU instance line not in hours: ") + pl.col("unit")),
        (pl.col("qty_text").is_null(), "missing_field", "line_item_usage_amount", "line_item_usage_amount is empty"),
        (pl.col("qty").is_null() | pl.col("qty").is_nan() | pl.col("qty").is_infinite(), "bad_number",
         "line_item_usage_amount", pl.lit("line_item_usage_amount is not a finite number: ") + pl.col("qty_text")),
        (pl.col("qty") < 0, "negative_quantity", "line_item_usage_amount",
         pl.lit("line_item_usage_amount is negative: ") + pl.col("qty_text")),
        (pl.col("cost_text").is_not_null() & pl.col("cost").is_null(), "bad_number", "line_item_unblended_cost",
         pl.lit("line_item_unblended_cost is not a decimal number: ") + pl.col("cost_text")),
        (pl.col("tags_json").is_null(), "missing_field", "resource_tags", "resource_tags is not a map, so the line cannot be attributed"),
        (pl.col("end").is_null(), "bad_timestamp", "line_item_usage_end_date", "line_item_usage_end_date is missing or unparseable"),
    ]
    df = df.with_columns(files.first_problem(checks))
    accepted, rejected = files.split_by_day(df, f, "line_item_usage_start_date", start, end)
    accepted = _map_unique(accepted, ["qty_text", "factor"], files.whole_units, "amount", pl.Int64)
    bedrock_model = pl.col("usage_type").str.replace(r"^[A-Z]{2,4}\d?-", "").str.replace(
        r"(?i)-(cache-read-|cache-write-)?(input|output)-token(s|-count)$", "")
    accepted = accepted.with_columns(
        [pl.when(pl.col("token_col") == c).then(pl.col("amount")).otherwise(0).alias(c) for c in _TOKEN_COLUMNS]
        + [pl.when(pl.col("is_bedrock")).then(0).otherwise(pl.col("amount")).alias("m_gpu")]
    ).with_columns(
        natural_key=pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in
                                   ("ts", "row_id", "resource_id", "usage_type", "line_type")], separator="\x1f"),
        account_key=pl.lit("tags:") + pl.col("tags_json"),
        provider=pl.when(pl.col("is_bedrock")).then(pl.lit("aws_bedrock")).otherwise(pl.lit("aws")),
        model=pl.when(pl.col("is_bedrock")).then(bedrock_model).otherwise(pl.lit("")),
        start=pl.col("ts"),
        reported_cost=pl.col("cost"),
    )
    accepted = _map_unique(accepted, ["gpu_type", "instance_type", "region", "usage_type", "is_bedrock"],
                           _dimensions, "dimensions", pl.String)
    return files.build_events(accepted, SOURCE, METERS, "gpu_seconds"), files.rejected_to_quarantine(SOURCE, rejected)


def _dimensions(gpu_type, instance_type, region, usage_type, is_bedrock) -> str:
    dims = {"usage_type": usage_type} if is_bedrock else {"gpu_type": gpu_type, "instance_type": instance_type}
    return schema.canonical_json({k: v for k, v in (dims | {"region": region}).items() if v})


def read(landing: Path, start: date, end: date):
    """GPU-seconds and Bedrock tokens from every CUR line whose partition day is in [start, end)."""
    events, quarantine = [], []
    for f in files.list_files(landing, FOLDER, (".csv", ".parquet", ".csv.gz"), start, end):
        ev, q = _read_file(f, start, end)
        if ev is not None:
            events.append(ev)
        quarantine.append(q)
    return files.combine(events, quarantine)
