"""A synthetic month at a chosen size: canonical usage as Parquet, the comparison catalog, and the
same month as a landing zone (gateway request log) for the full month-end through Dagster.

Shape of the month (all polars expressions, no Python per row, deterministic for a seed):
- the model mix and long-tailed request sizes of ``benchmarks.rating.usage_frame``;
- customers of very different sizes: a customer index drawn as ``customers x u^3`` (u uniform), so
  a few customers carry most of the volume, as on a real reseller's books;
- spikes: 5 % of the events belong to 1 % of the customers on two days of the month (a batch job,
  an agent gone wild), so some customers cross graduated tiers and some days are 10x the others.

The comparison catalog has per-unit (``payg``) and graduated (``growth``) plans only, the two
pricing models all three implementations in ``benchmarks.month_end`` price; customers alternate
between them, each owns the gateway key ``gateway:<id>`` (so normalize attributes the events), and
a provider price book lets reconciliation cost the same usage.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import yaml

from benchmarks.rating import MODELS, catalog_document, usage_frame
from billing_pipeline.usage_keys import code_book, usage_key_expr

MONTH = "2026-10"
START = dt.date(2026, 10, 1)
DAYS = 31
SPIKE_SHARE = 0.05
SPIKE_CUSTOMER_SHARE = 0.01
SPIKE_DAYS = (dt.date(2026, 10, 13), dt.date(2026, 10, 27))
# What the providers charge us per 1M tokens (input, output, cached input), for reconciliation.
COST_PER_M = {
    "gpt-4o-mini": ("0.15", "0.60", "0.075"),
    "gpt-4o": ("2.50", "10.00", "1.25"),
    "claude-sonnet-4-5": ("3.00", "15.00", "0.30"),
    "claude-haiku-4-5": ("1.00", "5.00", "0.10"),
    "mistral-small": ("0.10", "0.30", "0.10"),
    "mistral-large": ("2.00", "6.00", "2.00"),
}
COMPARISON_PLANS = ("payg", "growth")


def comparison_catalog(customers: int) -> dict:
    """The catalog document of the three-way comparison: per-unit and graduated plans only."""
    base = catalog_document(customers)
    plans = {pid: base["plans"][pid] for pid in COMPARISON_PLANS}
    provider_of = {m[2]: m[0] for m in MODELS}
    meters = ("input_tokens", "output_tokens", "cached_input_tokens")
    return {
        "issuer": base["issuer"],
        "plans": plans,
        "customers": {
            f"c{i:05d}": {
                "name": f"Customer {i}",
                "subscriptions": [
                    {"plan": COMPARISON_PLANS[i % len(COMPARISON_PLANS)], "from": "2026-01-01"}
                ],
                "keys": [f"gateway:c{i:05d}"],
                "tax": {"rate": "0.19"},
            }
            for i in range(customers)
        },
        "price_book": [
            {
                "provider": provider_of[family],
                "models": [family],
                "meter": meter,
                "unit_size": 1_000_000,
                "unit_price": price,
                "from": "2024-01-01",
            }
            for family, row in COST_PER_M.items()
            for meter, price in zip(meters, row, strict=True)
        ],
    }


def full_catalog(customers: int) -> dict:
    """The full month-end's catalog: benchmarks.rating's four plans (per-unit, graduated, volume,
    hybrid with base fee, allowance and minimum commitment), gateway keys and the price book."""
    doc = catalog_document(customers)
    doc["issuer"] = {
        "name": "Bench AI GmbH",
        "address": "Benchstrasse 1, 10115 Berlin",
        "vat_id": "DE000000000",
        "invoice_prefix": "BENCH",
    }
    for cid, customer in doc["customers"].items():
        customer["keys"] = [f"gateway:{cid}"]
    doc["price_book"] = comparison_catalog(1)["price_book"]
    return doc


def month_usage(events: int, customers: int, seed: int = 7) -> pl.DataFrame:
    """Canonical usage rows (USAGE_SCHEMA) for the month: rating.usage_frame's model mix, with
    skewed customer sizes and spikes (see the module docstring)."""
    frame = usage_frame(events, customers, seed).with_row_index("_i")
    i = pl.col("_i").cast(pl.Int64)
    u_cust = i.hash(seed + 11) % 1_000_003 / 1_000_003
    spike = (i.hash(seed + 12) % 10_000) < int(SPIKE_SHARE * 10_000)
    spikers = max(1, int(customers * SPIKE_CUSTOMER_SHARE))
    normal_cust = (u_cust**3 * customers).cast(pl.Int64).clip(0, customers - 1)
    # spike customers are spread over the index range so they land on both plans
    spike_cust = ((i.hash(seed + 13) % spikers) * (customers // spikers)).cast(pl.Int64)
    cust = pl.when(spike).then(spike_cust).otherwise(normal_cust).cast(pl.Int64)
    spike_day = pl.lit(
        pl.Series([dt.datetime.combine(d, dt.time(), dt.UTC) for d in SPIKE_DAYS])
    ).gather(i.hash(seed + 14) % len(SPIKE_DAYS))
    start = (
        pl.when(spike)
        .then(spike_day + pl.duration(seconds=i.hash(seed + 15) % 86400))
        .otherwise(pl.col("start"))
    )
    cid = "c" + cust.cast(pl.String).str.zfill(5)
    return (
        frame.with_columns(
            ("gateway:" + cid).alias("account_key"),
            cid.alias("customer_id"),
            start.alias("start"),
            start.alias("end"),
            start.dt.date().alias("day"),
        )
        .drop("_i")
        .with_columns(usage_key_expr())  # as normalize writes it
    )


def codes_path(parquet: Path) -> Path:
    """Where the month's code book lies beside its usage Parquet (usage.codes.parquet)."""
    return parquet.with_name(parquet.stem + ".codes.parquet")


def write_month(folder: Path, events: int, customers: int, seed: int = 7) -> tuple[Path, Path]:
    """(usage.parquet, catalog.yaml) in ``folder``, and the usage's code book beside them
    (``codes_path``), as ingestion stores it beside each day."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(comparison_catalog(customers), sort_keys=False), encoding="utf-8"
    )
    parquet = folder / "usage.parquet"
    month_usage(events, customers, seed).write_parquet(parquet)
    code_book(pl.scan_parquet(parquet)).write_parquet(codes_path(parquet))
    return parquet, catalog


def write_landing_zone(landing: Path, events: int, customers: int, seed: int = 7) -> int:
    """The month as the gateway's request log, ``landing/gateway/<day>.jsonl`` (one file per day,
    the format ``sources.gateway_log`` reads): one line per request carrying Chat Completions
    ``usage`` (prompt tokens include cached ones), so each line becomes up to three usage events
    (input, cached input, output). ``events`` usage events -> events // 3 request lines. Returns
    the number of request lines written."""
    requests = max(1, events // 3)
    usage = month_usage(requests, customers, seed)
    u = pl.int_range(0, pl.len()).hash(seed + 21) % 1000 / 1000
    lines = usage.select(
        "day",
        "start",
        "customer_id",
        "model",
        "quantity",
        pl.col("event_id").str.strip_prefix("ev").alias("n"),
        (pl.col("quantity") // 3 + 1).alias("completion"),
        (pl.col("quantity") * (u * 0.6)).cast(pl.Int64).alias("cached"),
    ).with_columns((pl.col("quantity") + pl.col("cached")).alias("prompt"))
    text = pl.concat_str(
        [
            pl.lit('{"request_id":"req-'),
            pl.col("n"),
            pl.lit('","timestamp":"'),
            pl.col("start").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            pl.lit('","customer_key":"'),
            pl.col("customer_id"),
            pl.lit('","model":"'),
            pl.col("model"),
            pl.lit('","usage":{"prompt_tokens":'),
            pl.col("prompt").cast(pl.String),
            pl.lit(',"completion_tokens":'),
            pl.col("completion").cast(pl.String),
            pl.lit(',"prompt_tokens_details":{"cached_tokens":'),
            pl.col("cached").cast(pl.String),
            pl.lit("}}}"),
        ]
    ).alias("line")
    folder = landing / "gateway"
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(DAYS):
        day = START + dt.timedelta(days=d)
        day_lines = lines.filter(pl.col("day") == day).sort("start", "n").select(text)
        day_lines.write_csv(
            folder / f"{day.isoformat()}.jsonl", include_header=False, quote_style="never"
        )
    return requests


def main() -> None:  # pragma: no cover - a convenience for looking at the data
    import argparse

    parser = argparse.ArgumentParser(
        description="Write a synthetic month (usage.parquet + catalog.yaml)."
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    args = parser.parse_args()
    parquet, catalog = write_month(args.folder, args.events, args.customers)
    print(
        json.dumps(
            {"parquet": str(parquet), "catalog": str(catalog), "bytes": parquet.stat().st_size}
        )
    )


if __name__ == "__main__":
    main()
