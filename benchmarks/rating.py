"""Rating throughput and peak memory: synthetic canonical usage from Parquet through rate_month.

    .venv/bin/python -m benchmarks.rating [--events 10000000] [--customers 10000]

A catalog with per_unit, graduated, volume and hybrid (base fee + allowance + overage, minimum
commitment) plans is generated, customers spread over them; usage is a month of events with a
realistic model mix (mostly small models, long-tailed quantities) written as one Parquet file in a
temp dir (deleted afterwards). The measurement runs in a fresh child process so its peak RSS is
the rating path's: read Parquet (lazily, only the columns rating uses) + rate_month. Prints the
Parquet size, events/s and peak RSS. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import yaml

from benchmarks.memory import peak_rss_mib

MONTH = "2026-10"
START = date(2026, 10, 1)
# (provider, model id, family, share of events, typical tokens per request)
MODELS = [
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini", 0.35, 900),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o", 0.20, 1500),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", 0.15, 2500),
    ("anthropic", "claude-haiku-4-5-20251001", "claude-haiku-4-5", 0.10, 800),
    ("mistral", "mistral-small-2409", "mistral-small", 0.12, 700),
    ("mistral", "mistral-large-2411", "mistral-large", 0.08, 2000),
]
METERS = [
    ("input_tokens", 0.45, 1.0),
    ("output_tokens", 0.35, 0.3),
    ("cached_input_tokens", 0.20, 0.6),
]
PER_1K = {"input_tokens": "0.0025", "output_tokens": "0.010", "cached_input_tokens": "0.00125"}


def catalog_document(customers: int) -> dict:
    families = [m[2] for m in MODELS]
    per_unit = [
        {"id": f"{f}-{m}", "meter": m, "models": [f], "unit_size": 1000, "unit_price": PER_1K[m]}
        for f in families
        for m in PER_1K
    ]
    tiers = [
        {"up_to": 10_000_000, "unit_price": "0.010"},
        {"up_to": 100_000_000, "unit_price": "0.008"},
        {"up_to": None, "unit_price": "0.006"},
    ]
    plans = {
        "payg": {"name": "Pay as you go", "charges": per_unit},
        "growth": {
            "name": "Growth",
            "charges": [
                {
                    "id": "tokens",
                    "meter": ["input_tokens", "output_tokens"],
                    "unit_size": 1000,
                    "pricing": "graduated",
                    "tiers": [{**t, "flat_fee": "0"} for t in tiers],
                },
                {
                    "id": "cached",
                    "meter": "cached_input_tokens",
                    "unit_size": 1000,
                    "unit_price": "0.001",
                },
            ],
        },
        "scale": {
            "name": "Scale",
            "charges": [
                {
                    "id": "tokens",
                    "meter": ["input_tokens", "output_tokens", "cached_input_tokens"],
                    "unit_size": 1_000_000,
                    "pricing": "volume",
                    "tiers": [
                        {"up_to": 50_000_000, "unit_price": "6.00"},
                        {"up_to": None, "unit_price": "4.50", "flat_fee": "25.00"},
                    ],
                }
            ],
        },
        "hybrid": {
            "name": "Hybrid",
            "base_fee": "499.00",
            "minimum_commitment": "100.00",
            "allowance": {"quantity": 2_000_000, "meters": ["input_tokens", "output_tokens"]},
            "charges": per_unit,
        },
    }
    names = list(plans)
    return {
        "issuer": {"name": "Bench AI GmbH"},
        "plans": plans,
        "customers": {
            f"c{i:05d}": {
                "name": f"Customer {i}",
                "subscriptions": [{"plan": names[i % len(names)], "from": "2026-01-01"}],
                "tax": {"rate": "0.19"},
            }
            for i in range(customers)
        },
    }


def _pick(u: pl.Expr, options: list, weights: list[float]) -> pl.Expr:
    """Category by cumulative weight of a uniform [0, 1) column."""
    expr, acc = pl.lit(options[-1]), 0.0
    bounds = []
    for opt, w in zip(options, weights, strict=True):
        acc += w
        bounds.append((acc, opt))
    for acc, opt in reversed(bounds[:-1]):
        expr = pl.when(u < acc).then(pl.lit(opt)).otherwise(expr)
    return expr


def usage_frame(events: int, customers: int, seed: int = 7) -> pl.DataFrame:
    """Canonical usage rows (USAGE_SCHEMA), generated with polars expressions, no Python per row."""
    i = pl.int_range(0, events, eager=True, dtype=pl.Int64).alias("i")
    frame = pl.DataFrame(i).with_columns(
        (pl.col("i").hash(seed) % 1_000_000 / 1_000_000).alias("u_model"),
        (pl.col("i").hash(seed + 1) % 1_000_000 / 1_000_000).alias("u_meter"),
        (pl.col("i").hash(seed + 2) % 1_000_000 / 1_000_000).alias("u_size"),
        (pl.col("i").hash(seed + 3) % customers).alias("cust"),
        (pl.col("i").hash(seed + 4) % (31 * 86400)).alias("second"),
    )
    idx = list(range(len(MODELS)))
    model_idx = _pick(pl.col("u_model"), idx, [m[3] for m in MODELS])
    meter_idx = _pick(pl.col("u_meter"), list(range(len(METERS))), [m[1] for m in METERS])
    scale = pl.lit(pl.Series([m[4] for m in MODELS])).gather(model_idx) * pl.lit(
        pl.Series([m[2] for m in METERS])
    ).gather(meter_idx)
    # long tail: most requests are small, a few are huge
    quantity = (scale * (0.2 + 4 * pl.col("u_size") ** 3)).cast(pl.Int64) + 1
    start = pl.lit(datetime(2026, 10, 1, tzinfo=UTC)) + pl.duration(seconds=pl.col("second"))
    return frame.select(
        ("ev" + pl.col("i").cast(pl.String)).alias("event_id"),
        ("rec" + pl.col("i").cast(pl.String)).alias("record_id"),
        pl.lit("gateway_log").alias("source"),
        pl.lit(pl.Series([m[0] for m in MODELS])).gather(model_idx).alias("provider"),
        ("gateway:c" + pl.col("cust").cast(pl.String).str.zfill(5)).alias("account_key"),
        ("c" + pl.col("cust").cast(pl.String).str.zfill(5)).alias("customer_id"),
        pl.lit(pl.Series([m[1] for m in MODELS])).gather(model_idx).alias("model"),
        pl.lit(pl.Series([m[2] for m in MODELS])).gather(model_idx).alias("model_family"),
        pl.lit(pl.Series([m[0] for m in METERS])).gather(meter_idx).alias("meter"),
        pl.lit("{}").alias("dimensions"),
        quantity.alias("quantity"),
        start.alias("start"),
        start.alias("end"),
        pl.lit(None, dtype=pl.Decimal(38, 12)).alias("reported_cost"),
        ("gateway/2026-10.jsonl:" + pl.col("i").cast(pl.String)).alias("origin"),
        start.dt.date().alias("day"),
    )


def measure(parquet: str, catalog_path: str) -> None:
    """Child process: load the catalog (not timed), then time scan Parquet + rate_month."""
    from billing_pipeline.catalog import load_catalog
    from billing_pipeline.rating import rate_month

    t0 = time.perf_counter()
    catalog = load_catalog(catalog_path)
    t1 = time.perf_counter()
    rated = rate_month(pl.scan_parquet(parquet), catalog, MONTH)
    t2 = time.perf_counter()
    events = pl.scan_parquet(parquet).select(pl.len()).collect().item()
    rss_mb = peak_rss_mib()
    print(f"catalog load        {t1 - t0:8.2f} s (not counted)")
    print(
        f"read + rate_month   {t2 - t1:8.2f} s for {events:,} events, {rated.lines.height:,} lines, "
        f"{rated.lines['customer_id'].n_unique():,} customers"
    )
    print(f"throughput          {events / (t2 - t1):,.0f} events/s")
    print(f"peak RSS            {rss_mb:,.0f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument(
        "--measure", nargs=2, metavar=("PARQUET", "CATALOG"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.measure:
        measure(*args.measure)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_rating_"))
    try:
        t0 = time.perf_counter()
        catalog_path = tmp / "catalog.yaml"
        catalog_path.write_text(
            yaml.safe_dump(catalog_document(args.customers), sort_keys=False), encoding="utf-8"
        )
        parquet = tmp / "usage.parquet"
        usage_frame(args.events, args.customers).write_parquet(parquet)
        print(
            f"generated           {args.events:,} events, {args.customers:,} customers in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        print(f"parquet size        {parquet.stat().st_size / 1e6:,.1f} MB")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.rating",
                "--measure",
                str(parquet),
                str(catalog_path),
            ],
            check=True,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
