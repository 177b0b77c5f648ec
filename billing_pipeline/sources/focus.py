"""FOCUS 1.0-1.2 cloud billing exports (``landing/cloud/focus/``, CSV, gzip CSV or Parquet) -> GPU-seconds.

Which files: ``cloud_deliveries.select`` keeps one delivery per export and billing period (the AWS
Data Exports manifest or the Azure run manifest when present, else the newest delivery); rows of
superseded deliveries are quarantined as ``superseded_delivery``.

Only GPU instance time is usage we bill, for AWS, Azure, GCP and OCI alike. The VM size is looked
for in the columns each cloud fills: ``x_SkuDetails`` (Azure: ``"ServiceType":"Standard_ND96isr_H100_v5"``),
``SkuPriceDetails``, ``SkuMeter``/``x_SkuMeterName`` (Azure ``ND96isr H100 v5``), ``ChargeDescription``
(AWS ``... g5.4xlarge Instance Hour``), ``ResourceId``, ``ResourceName`` and any other ``x_`` column,
and looked up in ``gpu_skus`` (GPUs per size, cited per family). gpu_seconds = ConsumedQuantity
(Hours -> x3600, Seconds -> x1) x GPUs per instance, in Decimal, rounded half up to whole seconds;
above the per-record ceiling (10^15) the row is ``implausible_quantity``, and a cost the cost
column cannot hold or above its ceiling is ``implausible_cost`` (``cloud_amounts``).
A quantity already counted per GPU (``ConsumedUnit`` naming GPUs, as OCI does, or GCP's
``Nvidia H100 80GB GPU`` SKU, whose usage is GPU-hours) is x1: GCP bills a GPU VM as separate core,
RAM and GPU SKUs, so its core and RAM lines are ``not_instance_time`` and only the GPU line bills
(a GCP row that names a GPU machine type in hours and is not a core/RAM line bills by the table).

Every other row is quarantined with the rule that rejected it: ``tax_line`` and
``not_usage_charge`` by ChargeCategory; ``not_gpu_service`` by ServiceName; ``not_gpu_sku`` (a VM
size without GPU) and ``unknown_gpu_sku`` (GPU-looking but not in the table: money at risk) naming
the column the size came from; ``not_instance_time`` for a GPU VM's disk or network line or a unit
that is not time. reported_cost is EffectiveCost on rows a commitment discount covers
(CommitmentDiscountId set or PricingCategory ``Committed``: BilledCost is 0 or on-demand there) and
BilledCost otherwise. Columns are read as text first (``NULL`` and "" are null); timestamps may be
``2024-09-18 22:00:00`` (UTC) or ISO with T/Z. A UTF-8 BOM, CRLF and gzip are read; a truncated
gzip is an unreadable file. Rows are "undated" unless the file name has a YYYY-MM-DD: a row's day
is its ChargePeriodStart.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import cloud_amounts, cloud_deliveries, files, gpu_skus

SOURCE = "focus"
FOLDER = "cloud/focus"
METERS = [files.Meter("m_gpu", "gpu_seconds")]

GPU_INSTANCES = gpu_skus.GPU_INSTANCES  # kept importable: the table now lives in gpu_skus.py
SUFFIXES = (".csv", ".csv.gz", ".parquet")
_PROVIDERS = {
    "aws": "aws",
    "amazon web services": "aws",
    "microsoft": "azure",
    "azure": "azure",
    "microsoft azure": "azure",
    "google cloud platform": "gcp",
    "oracle cloud infrastructure": "oracle",
    "oci": "oracle",
    "google cloud": "gcp",
    "gcp": "gcp",
    "google": "gcp",
    "oracle": "oracle",
}
_HOURS = ("hours", "hour", "hrs", "hr", "h")
_SECONDS = ("seconds", "second", "secs", "sec", "s")


def _read_table(f: files.LandingFile) -> pl.DataFrame:
    if f.path.name.lower().endswith(".parquet"):
        df = pl.read_parquet(f.path)
        out = []
        for name, dtype in df.schema.items():
            col = pl.col(name)
            if isinstance(dtype, pl.Datetime):
                col = (col.dt.convert_time_zone("UTC") if dtype.time_zone else col).dt.strftime(
                    "%Y-%m-%dT%H:%M:%S%.f"
                )
            elif isinstance(dtype, (pl.Struct, pl.List)):
                col = (
                    col.struct.json_encode()
                    if isinstance(dtype, pl.Struct)
                    else col.cast(pl.List(pl.String)).list.join(",")
                )
            out.append(col.cast(pl.String).alias(name))
        return df.select(out)
    data = cloud_deliveries.read_text_bytes(f.path)
    try:
        df = pl.read_csv(
            io.BytesIO(data), infer_schema=False, null_values=["NULL", ""], encoding="utf8"
        )
    except pl.exceptions.ComputeError:
        return _read_csv_row_by_row(data)
    dup = [c for c in df.columns if "_duplicated_" in c]
    if dup:  # two columns of one name: which one bills is ambiguous, so no row of the file does
        name = dup[0].split("_duplicated_")[0]
        return df.with_columns(
            _reason=pl.lit("duplicate_column"),
            _field=pl.lit(name),
            _message=pl.lit(f"column {name!r} appears more than once in the header"),
        )
    return df


def _read_csv_row_by_row(data: bytes) -> pl.DataFrame:
    """Fallback for a CSV polars refuses (bad UTF-8, rows with extra fields): Python's csv module,
    so each broken row becomes its own quarantine row and the good rows still count."""
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise ValueError("empty CSV")
    header, width = rows[0], len(rows[0])
    if any(_has_bad_bytes(h) for h in header):
        raise ValueError("the header is not valid UTF-8")
    records, problems = [], []
    for n, row in enumerate(rows[1:], start=1):
        if any(_has_bad_bytes(v) for v in row):
            problems.append(
                (
                    "bad_encoding",
                    "",
                    f"row {n} is not valid UTF-8",
                    ",".join(row).encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                )
            )
            records.append([None] * width)
        elif len(row) != width:
            problems.append(
                (
                    "ragged_row",
                    "",
                    f"row {n} has {len(row)} fields, the header has {width}",
                    ",".join(row),
                )
            )
            records.append([None] * width)
        else:
            problems.append((None, None, None, None))
            records.append([None if v in ("", "NULL") else v for v in row])
    df = pl.DataFrame(records, schema={h: pl.String for h in header}, orient="row")
    return df.with_columns(
        pl.Series(name, [p[i] for p in problems], dtype=pl.String)
        for i, name in enumerate(("_reason", "_field", "_message", "_raw"))
    )


def _has_bad_bytes(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _canonical_tags(text: str | None) -> str | None:
    """Tags JSON -> canonical JSON (sorted keys); None when it is not a JSON object."""
    if text is None:
        return schema.canonical_json({})
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return schema.canonical_json(value) if isinstance(value, dict) else None


def _quarantine(rejected: pl.DataFrame) -> pl.DataFrame:
    return files.rejected_to_quarantine(SOURCE, rejected)


def _size_columns(cols: list[str]) -> list[tuple[str, pl.Expr]]:
    """(column name, VM size found in it) in the order the clouds are most precise."""
    named = [
        "x_SkuDetails",
        "SkuPriceDetails",
        "SkuMeter",
        "x_SkuMeterName",
        "ChargeDescription",
        "ResourceId",
        "ResourceName",
        "x_SkuDescription",
    ]
    named += [c for c in cols if c.startswith("x_") and c not in named]
    out = []
    for c in named:
        if c not in cols:
            continue
        found = gpu_skus.size_expr([pl.col(c)])
        if c in ("SkuMeter", "x_SkuMeterName"):
            found = pl.coalesce(found, gpu_skus.azure_meter_size(pl.col(c)))
        if c == "ChargeDescription":
            found = pl.coalesce(found, gpu_skus.azure_description_size(pl.col(c)))
        out.append((c, found))
    return out


def _read_file(f: files.LandingFile, start: date, end: date, superseded_by: str | None = None):
    try:
        df = _read_table(f)
    except Exception as exc:  # noqa: BLE001 - any unreadable export is one quarantine row
        return None, files.unreadable_export(SOURCE, f, "FOCUS", exc, superseded_by, start, end)
    for name in ("_reason", "_field", "_message", "_raw"):
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, pl.String).alias(name))
    cols = [c for c in df.columns if c not in ("_reason", "_field", "_message", "_raw")]
    get = files.text_column(cols)
    sizes = _size_columns(cols)
    instance = pl.coalesce([e for _, e in sizes]) if sizes else pl.lit(None, pl.String)
    size_field = pl.lit(None, pl.String)
    for name, e in reversed(sizes):
        size_field = pl.when(e.is_not_null()).then(pl.lit(name)).otherwise(size_field)
    gpu_text = pl.concat_str(
        [get("ChargeDescription"), get("SkuMeter"), get("x_SkuMeterName"), get("x_SkuDescription")],
        separator=" ",
        ignore_nulls=True,
    )
    raw = pl.concat_str(
        [pl.format('"{}":', pl.lit(c)) + pl.col(c).fill_null("NULL") for c in cols], separator=","
    )
    committed = get("CommitmentDiscountId").is_not_null() | (
        get("PricingCategory").fill_null("") == "Committed"
    )
    df = df.with_row_index("row", offset=1).with_columns(
        origin=pl.lit(f.rel + ":") + pl.col("row").cast(pl.String),
        raw=pl.coalesce(pl.col("_raw"), raw).str.slice(0, files.RAW_LIMIT),
        instance_type=instance,
        size_field=size_field,
        gpu_mention=gpu_text.str.contains(r"(?i)\bgpus?\b").fill_null(False),
        gpu_desc=pl.when(gpu_text.str.contains(r"(?i)\bgpus?\b")).then(
            gpu_skus.gpu_model_from_text(gpu_text)
        ),
        ts=files.parse_utc_expr(get("ChargePeriodStart"), allow_naive=True),
        end=files.parse_utc_expr(get("ChargePeriodEnd"), allow_naive=True),
        category=get("ChargeCategory"),
        unit=get("ConsumedUnit").str.to_lowercase(),
        qty_text=get("ConsumedQuantity"),
        cost_text=pl.when(committed).then(get("EffectiveCost")).otherwise(get("BilledCost")),
        cost_field=pl.when(committed).then(pl.lit("EffectiveCost")).otherwise(pl.lit("BilledCost")),
        provider=get("ProviderName").str.to_lowercase().replace(_PROVIDERS),
        region=get("RegionId"),
        tags=get("Tags"),
        row_id=get("Id"),
        resource_id=get("ResourceId"),
        sku_price_id=get("SkuPriceId"),
        service=pl.coalesce(get("ServiceName"), pl.lit("unknown service")),
    )
    df = df.join(
        gpu_skus.table_frame().rename({"gpu_type": "table_gpu_type", "gpus": "table_gpus"}),
        on="instance_type",
        how="left",
    )
    df = files.map_unique(df, ["tags"], _canonical_tags, "tags_json", pl.String)
    # a quantity already counted per GPU: a GPU unit (OCI "GPU Hours"), or GCP's per-GPU SKU line
    per_gpu = pl.col("unit").str.contains("gpu").fill_null(False) | (
        pl.col("gpu_desc").is_not_null() & (pl.col("provider") == "gcp")
    )
    df = df.with_columns(
        per_gpu=per_gpu,
        gpu_type=pl.coalesce(pl.col("table_gpu_type"), pl.when(per_gpu).then(pl.col("gpu_desc"))),
        gpus=pl.when(
            per_gpu & (pl.col("table_gpus").is_not_null() | pl.col("gpu_desc").is_not_null())
        )
        .then(pl.lit(1, pl.Int64))
        .otherwise(pl.col("table_gpus")),
    )
    gpu_resources = df.filter(pl.col("gpus").is_not_null() & pl.col("resource_id").is_not_null())[
        "resource_id"
    ].unique()
    factor = (
        pl.when(pl.col("unit").is_in(_HOURS))
        .then(3600)
        .when(pl.col("unit").is_in(_SECONDS))
        .then(1)
    )
    factor = (
        pl.when(pl.col("per_gpu") & pl.col("unit").str.contains(r"hour|hrs").fill_null(False))
        .then(3600)
        .otherwise(factor)
    )
    df = df.with_columns(
        factor=factor * pl.col("gpus"),
        cost=pl.col("cost_text").cast(schema.COST_DECIMAL, strict=False),
        gpu_resource=pl.col("resource_id").is_in(gpu_resources.implode()).fill_null(False),
        account_key=pl.when(pl.col("tags_json").is_not_null()).then(
            pl.lit("tags:") + pl.col("tags_json")
        ),
    )
    # before the checks: a product no record can carry is held, not a crash or a zero
    df = files.map_unique(df, ["qty_text", "factor"], cloud_amounts.whole_units, "amount", pl.Int64)
    category = pl.col("category").fill_null("")
    no_size = pl.col("instance_type").is_null() & ~pl.col("gpu_mention")
    checks = [
        (pl.col("_reason").is_not_null(), pl.col("_reason"), pl.col("_field"), pl.col("_message")),
        (
            pl.lit(superseded_by is not None),
            "superseded_delivery",
            "",
            pl.lit(
                f"this delivery is replaced by {superseded_by}: a re-delivery restates the whole billing period"
            ),
        ),
        (
            pl.col("category").is_null(),
            "missing_field",
            "ChargeCategory",
            "ChargeCategory is empty",
        ),
        (category == "Tax", "tax_line", "ChargeCategory", "ChargeCategory Tax: not usage"),
        (
            category != "Usage",
            "not_usage_charge",
            "ChargeCategory",
            pl.lit("ChargeCategory is not Usage: ") + category,
        ),
        (
            no_size & pl.col("gpu_resource"),
            "not_instance_time",
            "ServiceName",
            pl.lit("a GPU VM's line that is not instance time: ") + pl.col("service"),
        ),
        (
            no_size,
            "not_gpu_service",
            "ServiceName",
            pl.lit("not GPU compute: ") + pl.col("service"),
        ),
        (
            pl.col("gpus").is_null()
            & pl.col("instance_type").is_not_null()
            & ~pl.col("gpu_mention")
            & ~gpu_skus.is_gpu_looking(pl.col("instance_type")),
            "not_gpu_sku",
            pl.col("size_field"),
            pl.lit("VM size has no GPU: ") + pl.col("instance_type"),
        ),
        (
            pl.col("gpus").is_null(),
            "unknown_gpu_sku",
            pl.coalesce(pl.col("size_field"), pl.lit("ChargeDescription")),
            pl.lit("GPU-looking SKU not in the GPU table (gpu_skus.py): ")
            + pl.coalesce(
                pl.col("instance_type"), get("ChargeDescription"), get("SkuId"), pl.lit("?")
            ),
        ),
        (
            ~pl.col("per_gpu")
            & (pl.col("provider") == "gcp")
            & pl.col("gpus").is_not_null()
            & get("ChargeDescription")
            .str.contains(r"(?i)\b(?:core|ram|memory|vcpu|cpu)\b")
            .fill_null(False),
            "not_instance_time",
            "ChargeDescription",
            pl.lit(
                "GCP GPU VM component billed on its own SKU (the GPU SKU line carries the GPU time): "
            )
            + pl.coalesce(get("ChargeDescription"), pl.lit("")),
        ),
        (
            pl.col("qty_text").is_null(),
            "missing_field",
            "ConsumedQuantity",
            "ConsumedQuantity is empty",
        ),
        *cloud_amounts.quantity_checks("ConsumedQuantity"),
        (
            pl.col("factor").is_null(),
            "not_instance_time",
            "ConsumedUnit",
            pl.lit("ConsumedUnit is not instance time: ") + pl.col("unit").fill_null("null"),
        ),
        *cloud_amounts.units_checks("ConsumedQuantity", pl.lit("GPU-seconds")),
        *cloud_amounts.cost_checks(),
        (
            pl.col("tags_json").is_null(),
            "missing_field",
            "Tags",
            "Tags is not a JSON object, so the row cannot be attributed",
        ),
        (
            pl.col("end").is_null(),
            "bad_timestamp",
            "ChargePeriodEnd",
            "ChargePeriodEnd is missing or unparseable",
        ),
    ]
    df = df.with_columns(files.first_problem(checks))
    accepted, rejected = files.split_by_day(df, f, "ChargePeriodStart", start, end)
    accepted = accepted.rename({"amount": "m_gpu"})
    accepted = accepted.with_columns(
        natural_key=pl.concat_str(
            [
                pl.col(c).cast(pl.String).fill_null("")
                for c in ("ts", "resource_id", "sku_price_id", "category", "row_id")
            ],
            separator="\x1f",
        ),
        model=pl.lit(""),
        start=pl.col("ts"),
        reported_cost=pl.col("cost"),
    )
    accepted = files.map_unique(
        accepted,
        ["gpu_type", "instance_type", "region"],
        lambda g, i, r: schema.canonical_json(
            {k: v for k, v in {"gpu_type": g, "instance_type": i, "region": r}.items() if v}
        ),
        "dimensions",
        pl.String,
    )
    return files.build_events(accepted, SOURCE, METERS, "gpu_seconds"), _quarantine(rejected)


def read(landing: Path, start: date, end: date):
    """GPU-seconds from the current delivery of every FOCUS export and billing period, for the rows
    whose partition day is in [start, end)."""
    selected, problems = cloud_deliveries.select(landing, FOLDER, SUFFIXES, start, end, SOURCE)
    events, quarantine = [], [problems]
    for d in selected:
        ev, q = _read_file(d.file, start, end, d.superseded_by)
        if ev is not None:
            events.append(ev)
        quarantine.append(q)
    return files.combine(events, quarantine)
