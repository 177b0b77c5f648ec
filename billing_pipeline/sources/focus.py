"""FOCUS 1.0-1.2 cloud billing exports (``landing/cloud/focus/*.csv|*.parquet``) -> GPU-seconds.

Only GPU instance time is usage we bill: the instance type is found (regex) in SkuPriceDetails,
ChargeDescription, ResourceId or any ``x_`` column and looked up in ``GPU_INSTANCES``.
gpu_seconds = ConsumedQuantity (Hours -> x3600, Seconds -> x1) x GPUs per instance, computed in
Decimal and rounded half up to whole seconds. Everything else (other services, Tax, Credit,
Purchase, non-Usage charges for GPU instances) is quarantined as ``not_gpu_usage`` so the full
export stays accounted for. Columns are read as text first (``NULL`` and "" are null) and parsed
with polars expressions; timestamps may be ``2024-09-18 22:00:00`` (UTC) or ISO with T/Z.
Rows are "undated" unless the file name has a YYYY-MM-DD: a row's day is its ChargePeriodStart.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import files

SOURCE = "focus"
FOLDER = "cloud/focus"
METERS = [files.Meter("m_gpu", "gpu_seconds")]

_SIZES_1 = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")
GPU_INSTANCES: dict[str, tuple[str, int]] = {
    "p4d.24xlarge": ("A100", 8),
    "p4de.24xlarge": ("A100-80GB", 8),
    "p5.48xlarge": ("H100", 8),
    "p5e.48xlarge": ("H200", 8),
    "p5en.48xlarge": ("H200", 8),
}
for _family, _gpu in (("g5", "A10G"), ("g6", "L4"), ("g6e", "L40S")):
    GPU_INSTANCES |= {f"{_family}.{s}": (_gpu, 1) for s in _SIZES_1}
    GPU_INSTANCES |= {f"{_family}.12xlarge": (_gpu, 4), f"{_family}.24xlarge": (_gpu, 4), f"{_family}.48xlarge": (_gpu, 8)}

# AWS-style instance type; GPU families start with p or g (g5g, g4dn, p3, ... are GPU but unpriced).
_INSTANCE_RE = r"\b([a-z][a-z0-9-]*\d[a-z0-9-]*\.(?:\d*x?large|metal(?:-\d+xl)?|medium|small|micro|nano))\b"
_GPU_FAMILY_RE = r"^(?:p\d|g\d|gr\d)"
_PROVIDERS = {"aws": "aws", "amazon web services": "aws", "microsoft": "azure", "azure": "azure",
              "google cloud": "gcp", "gcp": "gcp", "google": "gcp", "oracle": "oracle"}
_HOURS = ("hours", "hour", "hrs", "hr", "h")
_SECONDS = ("seconds", "second", "secs", "sec", "s")


def _read_table(f: files.LandingFile) -> pl.DataFrame:
    if f.path.name.lower().endswith(".parquet"):
        df = pl.read_parquet(f.path)
        out = []
        for name, dtype in df.schema.items():
            col = pl.col(name)
            if isinstance(dtype, pl.Datetime):
                col = (col.dt.convert_time_zone("UTC") if dtype.time_zone else col).dt.strftime("%Y-%m-%dT%H:%M:%S%.f")
            elif isinstance(dtype, (pl.Struct, pl.List)):
                col = col.struct.json_encode() if isinstance(dtype, pl.Struct) else col.cast(pl.List(pl.String)).list.join(",")
            out.append(col.cast(pl.String).alias(name))
        return df.select(out)
    try:
        df = pl.read_csv(f.path, infer_schema=False, null_values=["NULL", ""], encoding="utf8")
    except pl.exceptions.ComputeError:
        return _read_csv_row_by_row(f.path.read_bytes())
    dup = [c for c in df.columns if "_duplicated_" in c]
    if dup:  # two columns of one name: which one bills is ambiguous, so no row of the file does
        name = dup[0].split("_duplicated_")[0]
        return df.with_columns(_reason=pl.lit("duplicate_column"), _field=pl.lit(name),
                               _message=pl.lit(f"column {name!r} appears more than once in the header"))
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
            problems.append(("bad_encoding", "", f"row {n} is not valid UTF-8",
                             ",".join(row).encode("utf-8", "surrogateescape").decode("utf-8", "replace")))
            records.append([None] * width)
        elif len(row) != width:
            problems.append(("ragged_row", "", f"row {n} has {len(row)} fields, the header has {width}", ",".join(row)))
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


def _map_unique(frame: pl.DataFrame, cols: list[str], fn, name: str, dtype) -> pl.DataFrame:
    """Apply a Python function once per distinct value combination (few), then join back."""
    uniq = frame.select(cols).unique()
    values = [fn(*row) for row in uniq.iter_rows()]
    uniq = uniq.with_columns(pl.Series(name, values, dtype=dtype))
    return frame.join(uniq, on=cols, how="left", nulls_equal=True)


def _read_file(f: files.LandingFile, start: date, end: date):
    try:
        df = _read_table(f)
    except Exception as exc:  # noqa: BLE001 - any unreadable export is one quarantine row
        q = files.unreadable(SOURCE, f, f"not a readable FOCUS export: {exc}"[:500])
        return None, q.filter(pl.col("day").is_between(start, end, closed="left"))
    for name in ("_reason", "_field", "_message", "_raw"):
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, pl.String).alias(name))
    cols = [c for c in df.columns if c not in ("_reason", "_field", "_message", "_raw")]
    get = lambda c: pl.col(c) if c in cols else pl.lit(None, pl.String)  # noqa: E731
    hay = [get(c) for c in ("SkuPriceDetails", "ChargeDescription", "ResourceId")] + [pl.col(c) for c in cols if c.startswith("x_")]
    instance = pl.coalesce([h.str.to_lowercase().str.extract(_INSTANCE_RE, 1) for h in hay])
    raw = pl.concat_str([pl.format('"{}":', pl.lit(c)) + pl.col(c).fill_null("NULL") for c in cols], separator=",")
    df = df.with_row_index("row", offset=1).with_columns(
        origin=pl.lit(f.rel + ":") + pl.col("row").cast(pl.String),
        raw=pl.coalesce(pl.col("_raw"), raw).str.slice(0, files.RAW_LIMIT),
        instance_type=instance,
        ts=files.parse_utc_expr(get("ChargePeriodStart"), allow_naive=True),
        end=files.parse_utc_expr(get("ChargePeriodEnd"), allow_naive=True),
        category=get("ChargeCategory").str.strip_chars(),
        unit=get("ConsumedUnit").str.strip_chars().str.to_lowercase(),
        qty_text=get("ConsumedQuantity").str.strip_chars(),
        cost_text=get("BilledCost").str.strip_chars(),
        provider=get("ProviderName").str.strip_chars().str.to_lowercase().replace(_PROVIDERS),
        region=get("RegionId"),
        tags=get("Tags"),
        row_id=get("Id"),
        resource_id=get("ResourceId"),
        sku_price_id=get("SkuPriceId"),
    )
    table = pl.DataFrame({"instance_type": list(GPU_INSTANCES), "gpu_type": [v[0] for v in GPU_INSTANCES.values()],
                          "gpus": [v[1] for v in GPU_INSTANCES.values()]})
    df = df.join(table, on="instance_type", how="left")
    df = _map_unique(df, ["tags"], _canonical_tags, "tags_json", pl.String)
    factor = pl.when(pl.col("unit").is_in(_HOURS)).then(3600).when(pl.col("unit").is_in(_SECONDS)).then(1) * pl.col("gpus")
    df = df.with_columns(factor=factor, qty=pl.col("qty_text").cast(pl.Float64, strict=False),
                         cost=pl.col("cost_text").cast(schema.COST_DECIMAL, strict=False))
    gpu_like = pl.col("instance_type").str.contains(_GPU_FAMILY_RE).fill_null(False)
    checks = [
        (pl.col("_reason").is_not_null(), pl.col("_reason"), pl.col("_field"), pl.col("_message")),
        (pl.col("instance_type").is_null() | (~gpu_like & pl.col("gpus").is_null()), "not_gpu_usage", "ServiceName",
         pl.lit("not GPU compute: ") + pl.coalesce(get("ServiceName"), pl.col("category"), pl.lit("unknown service"))),
        (pl.col("gpus").is_null(), "unknown_instance_type", "instance_type",
         pl.lit("GPU instance type not in the GPU table: ") + pl.col("instance_type")),
        (pl.col("category").fill_null("") != "Usage", "not_gpu_usage", "ChargeCategory",
         pl.lit("GPU instance charge that is not usage: ") + pl.col("category").fill_null("null")),
        (pl.col("qty_text").is_null(), "missing_field", "ConsumedQuantity", "ConsumedQuantity is empty"),
        (pl.col("qty").is_null() | pl.col("qty").is_nan() | pl.col("qty").is_infinite(), "bad_number", "ConsumedQuantity",
         pl.lit("ConsumedQuantity is not a finite number: ") + pl.col("qty_text")),
        (pl.col("qty") < 0, "negative_quantity", "ConsumedQuantity", pl.lit("ConsumedQuantity is negative: ") + pl.col("qty_text")),
        (pl.col("factor").is_null(), "not_gpu_usage", "ConsumedUnit",
         pl.lit("ConsumedUnit is not instance time: ") + pl.col("unit").fill_null("null")),
        (pl.col("cost_text").is_not_null() & pl.col("cost").is_null(), "bad_number", "BilledCost",
         pl.lit("BilledCost is not a decimal number: ") + pl.col("cost_text")),
        (pl.col("tags_json").is_null(), "missing_field", "Tags", "Tags is not a JSON object, so the row cannot be attributed"),
        (pl.col("end").is_null(), "bad_timestamp", "ChargePeriodEnd", "ChargePeriodEnd is missing or unparseable"),
    ]
    df = df.with_columns(files.first_problem(checks))
    accepted, rejected = files.split_by_day(df, f, "ChargePeriodStart", start, end)
    accepted = _map_unique(accepted, ["qty_text", "factor"], files.whole_units, "m_gpu", pl.Int64)
    accepted = accepted.with_columns(
        natural_key=pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("") for c in ("ts", "resource_id", "sku_price_id", "category", "row_id")],
            separator="\x1f",
        ),
        account_key=pl.lit("tags:") + pl.col("tags_json"),
        model=pl.lit(""),
        start=pl.col("ts"),
        reported_cost=pl.col("cost"),
    )
    accepted = _map_unique(accepted, ["gpu_type", "instance_type", "region"],
                           lambda g, i, r: schema.canonical_json({k: v for k, v in {"gpu_type": g, "instance_type": i, "region": r}.items() if v}),
                           "dimensions", pl.String)
    return files.build_events(accepted, SOURCE, METERS, "gpu_seconds"), files.rejected_to_quarantine(SOURCE, rejected)


def read(landing: Path, start: date, end: date):
    """GPU-seconds from every FOCUS row whose partition day is in [start, end)."""
    events, quarantine = [], []
    for f in files.list_files(landing, FOLDER, (".csv", ".parquet"), start, end):
        ev, q = _read_file(f, start, end)
        if ev is not None:
            events.append(ev)
        quarantine.append(q)
    return files.combine(events, quarantine)
