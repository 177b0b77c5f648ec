"""AWS Cost and Usage Report 2.0 (``landing/cloud/aws_cur/``, snake_case columns, CSV, gzip CSV or Parquet).

Which files: ``cloud_deliveries.select`` keeps one delivery per export and billing period (the CUR 2.0
manifest's ``dataFiles`` when present, else the newest delivery); rows of superseded deliveries are
quarantined as ``superseded_delivery``, because ``identity_line_item_id`` changes between
deliveries and cannot deduplicate them.

Two kinds of line are usage we bill:

- GPU instance time (EC2 ``BoxUsage:p5.48xlarge``, SageMaker ``ml.g5.xlarge``): gpu_seconds =
  ``line_item_usage_amount`` hours x 3600 x GPUs per instance (``gpu_skus``), in Decimal, rounded
  half up to whole seconds.
- Bedrock tokens: CUR has ONE LINE PER TOKEN TYPE (``*-input-tokens``, ``*-output-tokens``,
  ``*-cache-read-input-token-count``, ``*-cache-write-input-token-count``); each becomes its own
  meter, so cache traffic is never lost by summing input + output. A ``pricing_unit`` of 1K/1M
  tokens is scaled to tokens.

An amount whose seconds or tokens exceed the per-record ceiling (10^15), and a cost the cost
column cannot hold or above its ceiling, hold their line (``implausible_quantity``,
``implausible_cost``: ``cloud_amounts``), never crash the read or bill as zero.

Every other line is quarantined with the rule that rejected it: ``savings_plan_negation``,
``tax_line``, ``not_usage_charge`` (Credit, Refund, Fee, RIFee, SavingsPlanRecurringFee, ...) by
``line_item_line_item_type``; ``not_gpu_service`` (S3, ...) by ``line_item_product_code``;
``not_gpu_sku`` (m5.large) and ``unknown_gpu_sku`` (a GPU-looking type not in the table: money at
risk) by ``product_instance_type``; ``not_instance_time`` for a GPU instance's EBS or data-transfer
line. Usage lines are ``Usage``, ``DiscountedUsage`` and ``SavingsPlanCoveredUsage``.

reported_cost is what the line really cost us: ``savings_plan_savings_plan_effective_cost`` for
SavingsPlanCoveredUsage, ``reservation_effective_cost`` for DiscountedUsage (the unblended cost of
those lines is the on-demand price, which would make margins falsely negative), else
``line_item_unblended_cost``; an export without the effective-cost column falls back to unblended.
Attribution is by resource tags: the ``resource_tags`` map (Parquet map or JSON text) or
``resource_tags_user_*`` columns; the ``user:``/``user_`` prefix is dropped so catalog tags read
``{customer: acme}``. Rejected rows carry the same ``tags:{...}`` account key when the tags parse.
"""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import cloud_amounts, cloud_deliveries, files, gpu_skus

SOURCE = "aws_cur"
FOLDER = "cloud/aws_cur"
METERS = [
    files.Meter("m_gpu", "gpu_seconds"),
    files.Meter("m_input", "input_tokens"),
    files.Meter("m_cached", "cached_input_tokens"),
    files.Meter("m_write", "cache_write_tokens"),
    files.Meter("m_output", "output_tokens"),
]
SUFFIXES = (".csv", ".csv.gz", ".parquet")
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
            col = (col.dt.convert_time_zone("UTC") if dtype.time_zone else col).dt.strftime(
                "%Y-%m-%dT%H:%M:%S%.f"
            )
        elif isinstance(dtype, pl.List) and not isinstance(dtype.inner, pl.Struct):
            col = col.cast(pl.List(pl.String)).list.join(",")
        elif isinstance(dtype, pl.List):
            col = pl.concat_str(
                pl.lit("["),
                col.list.eval(pl.element().struct.json_encode()).list.join(","),
                pl.lit("]"),
            )
        elif isinstance(dtype, pl.Struct):
            col = col.struct.json_encode()
        out.append(col.cast(pl.String).alias(name))
    return df.select(out)


def _read_table(f: files.LandingFile) -> pl.DataFrame:
    if f.path.name.lower().endswith(".parquet"):
        return _to_text(pl.read_parquet(f.path))
    data = cloud_deliveries.read_text_bytes(f.path)
    return pl.read_csv(io.BytesIO(data), infer_schema=False, null_values=[""], encoding="utf8")


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
    return (
        pl.when(unit.str.contains(r"1m|million"))
        .then(1_000_000)
        .when(unit.str.contains(r"1k|thousand|k tokens"))
        .then(1000)
        .otherwise(1)
    )


def _quarantine(rejected: pl.DataFrame) -> pl.DataFrame:
    return files.rejected_to_quarantine(SOURCE, rejected)


def _read_file(f: files.LandingFile, start: date, end: date, superseded_by: str | None = None):
    try:
        df = _read_table(f)
    except Exception as exc:  # noqa: BLE001 - any unreadable export is one quarantine row
        return None, files.unreadable_export(SOURCE, f, "CUR 2.0", exc, superseded_by, start, end)
    cols = df.columns
    get = files.text_column(cols)
    tag_cols = [c for c in cols if c.startswith(_TAG_PREFIX)]
    if "resource_tags" in cols:
        tags = pl.col("resource_tags")
    elif tag_cols:
        tags = pl.struct(
            [pl.col(c).alias(c.removeprefix(_TAG_PREFIX)) for c in tag_cols]
        ).struct.json_encode()
    else:
        tags = pl.lit(None, pl.String)
    usage_type = get("line_item_usage_type").fill_null("")
    product = get("line_item_product_code").fill_null("")
    instance = pl.coalesce(
        get("product_instance_type").str.to_lowercase().str.strip_prefix("ml."),
        usage_type.str.to_lowercase().str.extract(_INSTANCE_RE, 1),
    )
    token_col = pl.lit(None, pl.String)
    for suffix, column in reversed(_BEDROCK_SUFFIXES):
        token_col = (
            pl.when(usage_type.str.to_lowercase().str.ends_with(suffix))
            .then(pl.lit(column))
            .otherwise(token_col)
        )
    line_type = get("line_item_line_item_type")
    # the cost of the line to us: effective cost under a Savings Plan or a Reserved Instance
    cost_field = (
        pl.when(line_type == "SavingsPlanCoveredUsage")
        .then(pl.lit("savings_plan_savings_plan_effective_cost"))
        .when(line_type == "DiscountedUsage")
        .then(pl.lit("reservation_effective_cost"))
        .otherwise(pl.lit("line_item_unblended_cost"))
    )
    cost_text = (
        pl.when(line_type == "SavingsPlanCoveredUsage")
        .then(get("savings_plan_savings_plan_effective_cost"))
        .when(line_type == "DiscountedUsage")
        .then(get("reservation_effective_cost"))
    )
    raw = pl.concat_str(
        [pl.format('"{}":', pl.lit(c)) + pl.col(c).fill_null("") for c in cols], separator=","
    )
    df = (
        df.with_row_index("row", offset=1)
        .with_columns(
            origin=pl.lit(f.rel + ":") + pl.col("row").cast(pl.String),
            raw=raw.str.slice(0, files.RAW_LIMIT),
            line_type=line_type,
            product=product,
            usage_type=usage_type,
            instance_type=instance,
            is_bedrock=product.str.to_lowercase().str.contains("bedrock") & token_col.is_not_null(),
            token_col=token_col,
            unit=get("pricing_unit").str.to_lowercase().fill_null(""),
            ts=files.parse_utc_expr(get("line_item_usage_start_date"), allow_naive=True),
            end=files.parse_utc_expr(get("line_item_usage_end_date"), allow_naive=True),
            qty_text=get("line_item_usage_amount"),
            cost_text=pl.coalesce(cost_text, get("line_item_unblended_cost")),
            cost_field=pl.when(cost_text.is_not_null())
            .then(cost_field)
            .otherwise(pl.lit("line_item_unblended_cost")),
            region=pl.coalesce(get("product_region_code"), get("product_region")),
            tags=tags,
            row_id=get("identity_line_item_id"),
            resource_id=get("line_item_resource_id"),
        )
        .join(gpu_skus.table_frame(), on="instance_type", how="left")
    )
    df = files.map_unique(df, ["tags"], _canonical_tags, "tags_json", pl.String)
    gpu_resources = df.filter(pl.col("gpus").is_not_null() & pl.col("resource_id").is_not_null())[
        "resource_id"
    ].unique()
    is_hours = pl.col("unit").is_in(["hrs", "hours", "hour"]) | pl.col("usage_type").str.contains(
        "BoxUsage"
    )
    df = df.with_columns(
        cost=pl.col("cost_text").cast(schema.COST_DECIMAL, strict=False),
        factor=pl.when(pl.col("is_bedrock"))
        .then(_token_factor(pl.col("unit")))
        .when(pl.col("gpus").is_not_null() & is_hours)
        .then(pl.col("gpus") * 3600),
        gpu_resource=pl.col("resource_id").is_in(gpu_resources.implode()).fill_null(False),
        account_key=pl.when(pl.col("tags_json").is_not_null()).then(
            pl.lit("tags:") + pl.col("tags_json")
        ),
    )
    # before the checks: a product no record can carry is held, not a crash or a zero
    df = files.map_unique(df, ["qty_text", "factor"], cloud_amounts.whole_units, "amount", pl.Int64)
    gpu_line = ~pl.col("is_bedrock")
    charge = pl.col("line_type").fill_null("")
    checks = [
        (
            pl.lit(superseded_by is not None),
            "superseded_delivery",
            "",
            pl.lit(
                f"this delivery is replaced by {superseded_by}: a re-delivery restates the whole billing period"
            ),
        ),
        (
            pl.col("line_type").is_null(),
            "missing_field",
            "line_item_line_item_type",
            "line_item_line_item_type is empty",
        ),
        (
            charge == "SavingsPlanNegation",
            "savings_plan_negation",
            "line_item_line_item_type",
            "SavingsPlanNegation: cost bookkeeping for usage billed on its covered line",
        ),
        (charge == "Tax", "tax_line", "line_item_line_item_type", "Tax line: not usage"),
        (
            ~charge.is_in(USAGE_TYPES),
            "not_usage_charge",
            "line_item_line_item_type",
            pl.lit("charge type is not usage: ") + charge,
        ),
        (
            gpu_line & pl.col("instance_type").is_null() & pl.col("gpu_resource"),
            "not_instance_time",
            "line_item_usage_type",
            pl.lit("a GPU instance's line that is not instance time: ") + pl.col("usage_type"),
        ),
        (
            gpu_line & pl.col("instance_type").is_null(),
            "not_gpu_service",
            "line_item_product_code",
            pl.lit("service is neither GPU compute nor Bedrock tokens: ")
            + pl.col("product")
            + pl.lit(" ")
            + pl.col("usage_type"),
        ),
        (
            gpu_line & pl.col("gpus").is_null() & ~gpu_skus.is_gpu_looking(pl.col("instance_type")),
            "not_gpu_sku",
            "product_instance_type",
            pl.lit("instance type has no GPU: ") + pl.col("instance_type"),
        ),
        (
            gpu_line & pl.col("gpus").is_null(),
            "unknown_gpu_sku",
            "product_instance_type",
            pl.lit("GPU-looking instance type not in the GPU table (gpu_skus.py): ")
            + pl.col("instance_type"),
        ),
        (
            pl.col("factor").is_null(),
            "not_instance_time",
            "pricing_unit",
            pl.lit("GPU instance line not in hours: ") + pl.col("unit"),
        ),
        (
            pl.col("qty_text").is_null(),
            "missing_field",
            "line_item_usage_amount",
            "line_item_usage_amount is empty",
        ),
        *cloud_amounts.quantity_checks("line_item_usage_amount"),
        *cloud_amounts.units_checks(
            "line_item_usage_amount",
            pl.when(pl.col("is_bedrock")).then(pl.lit("tokens")).otherwise(pl.lit("GPU-seconds")),
        ),
        *cloud_amounts.cost_checks(),
        (
            pl.col("tags_json").is_null(),
            "missing_field",
            "resource_tags",
            "resource_tags is not a map, so the line cannot be attributed",
        ),
        (
            pl.col("end").is_null(),
            "bad_timestamp",
            "line_item_usage_end_date",
            "line_item_usage_end_date is missing or unparseable",
        ),
    ]
    df = df.with_columns(files.first_problem(checks))
    accepted, rejected = files.split_by_day(df, f, "line_item_usage_start_date", start, end)
    bedrock_model = (
        pl.col("usage_type")
        .str.replace(r"^[A-Z]{2,4}\d?-", "")
        .str.replace(r"(?i)-(cache-read-|cache-write-)?(input|output)-token(s|-count)$", "")
    )
    accepted = accepted.with_columns(
        [
            pl.when(pl.col("token_col") == c).then(pl.col("amount")).otherwise(0).alias(c)
            for c in _TOKEN_COLUMNS
        ]
        + [pl.when(pl.col("is_bedrock")).then(0).otherwise(pl.col("amount")).alias("m_gpu")]
    ).with_columns(
        natural_key=pl.concat_str(
            [
                pl.col(c).cast(pl.String).fill_null("")
                for c in ("ts", "row_id", "resource_id", "usage_type", "line_type")
            ],
            separator="\x1f",
        ),
        provider=pl.when(pl.col("is_bedrock")).then(pl.lit("aws_bedrock")).otherwise(pl.lit("aws")),
        model=pl.when(pl.col("is_bedrock")).then(bedrock_model).otherwise(pl.lit("")),
        start=pl.col("ts"),
        reported_cost=pl.col("cost"),
    )
    accepted = files.map_unique(
        accepted,
        ["gpu_type", "instance_type", "region", "usage_type", "is_bedrock"],
        _dimensions,
        "dimensions",
        pl.String,
    )
    return files.build_events(accepted, SOURCE, METERS, "gpu_seconds"), _quarantine(rejected)


def _dimensions(gpu_type, instance_type, region, usage_type, is_bedrock) -> str:
    dims = (
        {"usage_type": usage_type}
        if is_bedrock
        else {"gpu_type": gpu_type, "instance_type": instance_type}
    )
    return schema.canonical_json({k: v for k, v in (dims | {"region": region}).items() if v})


def read(landing: Path, start: date, end: date):
    """GPU-seconds and Bedrock tokens from the current delivery of every CUR export and billing
    period, for the lines whose partition day is in [start, end)."""
    selected, problems = cloud_deliveries.select(landing, FOLDER, SUFFIXES, start, end, SOURCE)
    events, quarantine = [], [problems]
    for d in selected:
        ev, q = _read_file(d.file, start, end, d.superseded_by)
        if ev is not None:
            events.append(ev)
        quarantine.append(q)
    return files.combine(events, quarantine)
