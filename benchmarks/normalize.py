"""Normalization throughput and peak memory: a synthetic gateway log and synthetic API result rows.

    .venv/bin/python -m benchmarks.normalize [--gateway-rows 10000000] [--api-rows 1000000] [--days 30]

Input is generated in a temp dir (deleted afterwards) as one file per day, the way the landing
zone receives it; each measurement runs in a fresh child process that reads and normalizes
(deduplicate + attribute) day by day like the daily partition does, so its peak RSS is the
pipeline's, not the generator's. Prints events/s (source records per second) and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from benchmarks.memory import peak_rss_mib

START = date(2026, 10, 1)
CUSTOMERS = 100
MODELS = [
    "mistral-large-2411",
    "mistral-small-2409",
    "gpt-4o-2024-08-06",
    "gpt-4o-mini",
    "claude-sonnet-4-5",
]


def _split(rows: int, days: int) -> list[int]:
    return [rows // days + (1 if i < rows % days else 0) for i in range(days)]


def _fill(template: str, *exprs: pl.Expr) -> pl.Expr:
    """``template`` with each ``{}`` replaced by an expression (JSON braces stay literal)."""
    parts = template.split("{}")
    pieces = [pl.lit(parts[0])]
    for expr, text in zip(exprs, parts[1:], strict=True):
        pieces += [expr.cast(pl.String), pl.lit(text)]
    return pl.concat_str(pieces)


def write_gateway(landing: Path, rows: int, days: int) -> None:
    """One JSONL file per day of usage-carrying request lines (built with polars, not a loop)."""
    folder = landing / "gateway"
    folder.mkdir(parents=True)
    offset = 0
    for i, n in enumerate(_split(rows, days)):
        day = START + timedelta(days=i)
        idx = pl.int_range(offset, offset + n, eager=True).alias("i")
        frame = pl.DataFrame(idx).select(
            _fill(
                '{"request_id":"req-{}","timestamp":"{}T{}:{}:{}Z","customer_key":"c{}","model":"{}",'
                '"usage":{"prompt_tokens":{},"completion_tokens":{},"prompt_tokens_details":{"cached_tokens":{}}}}',
                pl.col("i"),
                pl.lit(day.isoformat()),
                (pl.col("i") % 24).cast(pl.String).str.zfill(2),
                (pl.col("i") % 60).cast(pl.String).str.zfill(2),
                ((pl.col("i") // 60) % 60).cast(pl.String).str.zfill(2),
                pl.col("i") % CUSTOMERS,
                pl.lit(pl.Series(MODELS)).gather(pl.col("i") % (len(MODELS) - 1)),
                100 + pl.col("i") % 900,
                20 + pl.col("i") % 300,
                pl.col("i") % 50,
            ).alias("line")
        )
        frame.write_csv(
            folder / f"{day.isoformat()}.jsonl", include_header=False, quote_style="never"
        )
        offset += n


def write_api(landing: Path, rows: int, days: int, per_page: int = 1000) -> None:
    """OpenAI completions pages: ``rows`` results spread over days, ``per_page`` per page."""
    folder = landing / "openai/usage/completions"
    folder.mkdir(parents=True)
    for i, n in enumerate(_split(rows, days)):
        day = START + timedelta(days=i)
        t0 = int(datetime.combine(day, datetime.min.time(), UTC).timestamp())
        for p, first in enumerate(range(0, n, per_page), start=1):
            results = [
                {
                    "object": "organization.usage.completions.result",
                    "input_tokens": 1000 + j,
                    "output_tokens": 300,
                    "num_model_requests": 3,
                    "input_cached_tokens": 100,
                    "project_id": f"proj_{(first + j) % CUSTOMERS}",
                    "api_key_id": f"key_{first + j}",
                    "model": MODELS[j % 4],
                }
                for j in range(min(per_page, n - first))
            ]
            page = {
                "object": "page",
                "data": [
                    {
                        "object": "bucket",
                        "start_time": t0,
                        "end_time": t0 + 86400,
                        "results": results,
                    }
                ],
                "has_more": False,
                "next_page": None,
            }
            (folder / f"{day.isoformat()}_p{p}.json").write_text(json.dumps(page))


def _catalog():
    from billing_pipeline.catalog.loader import parse_catalog

    plan = {
        "p": {
            "name": "P",
            "currency": "USD",
            "charges": [
                {
                    "id": "in",
                    "meter": "input_tokens",
                    "unit_size": 1000,
                    "pricing": "per_unit",
                    "unit_price": "0.01",
                }
            ],
        }
    }
    customers = {
        f"c{i}": {
            "name": f"C{i}",
            "subscriptions": [{"plan": "p", "from": START}],
            "keys": [f"gateway:c{i}", f"openai:proj_{i}"],
        }
        for i in range(CUSTOMERS)
    }
    return parse_catalog(
        {
            "issuer": {"name": "X", "address": "", "vat_id": "", "invoice_prefix": "I"},
            "plans": plan,
            "customers": customers,
        }
    )


def measure(source: str, landing: Path, days: int) -> dict:
    """Child process: read + normalize each day; records, events, seconds (read alone and read +
    normalize), peak RSS."""
    from billing_pipeline.sources import SOURCES
    from billing_pipeline.usage import normalize

    catalog = _catalog()
    records = events = quarantined = 0
    read_s = norm_s = 0.0
    for i in range(days):
        day = START + timedelta(days=i)
        t0 = time.perf_counter()
        read = SOURCES[source](landing, day, day + timedelta(days=1))
        t1 = time.perf_counter()
        ev, q = normalize([read.events], [read.quarantine], catalog)
        norm_s += time.perf_counter() - t1
        read_s += t1 - t0
        records += read.records_read
        events += ev.height
        quarantined += q.height
    seconds = read_s + norm_s
    peak_mib = peak_rss_mib()
    return {
        "source": source,
        "records": records,
        "usage_rows": events,
        "quarantined": quarantined,
        "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds),
        "read_seconds": round(read_s, 2),
        "read_records_per_s": round(records / read_s),
        "peak_rss_mib": round(peak_mib),
    }


def baseline(source: str, landing: Path) -> dict:
    """Child process: the floor any Python reader pays, ``json.loads`` of every line / page and a
    walk over the results, nothing else. Printed next to the pipeline's figure from the same run."""
    records, began = 0, time.perf_counter()
    for path in sorted(p for p in landing.rglob("*") if p.is_file()):
        if source == "gateway_log":
            with path.open("rb") as fh:
                for raw in fh:
                    json.loads(raw)
                    records += 1
        else:
            page = json.loads(path.read_bytes())
            records += sum(len(b["results"]) for b in page["data"])
    seconds = time.perf_counter() - began
    peak_mib = peak_rss_mib()
    return {
        "source": source,
        "records": records,
        "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds),
        "peak_rss_mib": round(peak_mib),
    }


def bare_read(source: str, landing: Path) -> dict:
    """Child process: a bare ``polars.read_ndjson`` of the same files with the reader's own fixed
    schema (gateway_log's line struct), nothing else: what the reader's own work is measured
    against (issue 19: ingestion within 2x of it)."""
    from billing_pipeline.sources.gateway_log import LINE_SCHEMA

    paths = sorted(p for p in landing.rglob("*.jsonl") if p.is_file())
    records, began = 0, time.perf_counter()
    for path in paths:
        records += pl.read_ndjson(path, schema=LINE_SCHEMA).height
    seconds = time.perf_counter() - began
    return {
        "source": source,
        "records": records,
        "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds),
        "peak_rss_mib": round(peak_rss_mib()),
    }


def _run_child(source: str, landing: Path, days: int, mode: str = "--measure") -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.normalize", mode, source, str(landing), str(days)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway-rows", type=int, default=10_000_000)
    parser.add_argument("--api-rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--measure", nargs=3, metavar=("SOURCE", "LANDING", "DAYS"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--baseline", nargs=3, metavar=("SOURCE", "LANDING", "DAYS"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--bare", nargs=3, metavar=("SOURCE", "LANDING", "DAYS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.measure:
        source, landing, days = args.measure
        print(json.dumps(measure(source, Path(landing), int(days))))
        return
    if args.baseline:
        source, landing, _ = args.baseline
        print(json.dumps(baseline(source, Path(landing))))
        return
    if args.bare:
        source, landing, _ = args.bare
        print(json.dumps(bare_read(source, Path(landing))))
        return
    tmp = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    try:
        for source, rows, write in (
            ("gateway_log", args.gateway_rows, write_gateway),
            ("openai_usage_api", args.api_rows, write_api),
        ):
            landing = tmp / source
            began = time.perf_counter()
            write(landing, rows, args.days)
            size = sum(p.stat().st_size for p in landing.rglob("*") if p.is_file())
            print(
                f"{source}: generated {rows:,} records ({size / 2**20:,.0f} MiB) in {time.perf_counter() - began:.1f} s",
                flush=True,
            )
            r = _run_child(source, landing, args.days)
            print(
                f"{source}: {r['records']:,} records -> {r['usage_rows']:,} usage rows "
                f"({r['quarantined']:,} quarantined) in {r['seconds']:,.1f} s = {r['records_per_s']:,} records/s "
                f"read + normalize; read alone {r['read_seconds']:,.1f} s = {r['read_records_per_s']:,} records/s; "
                f"peak RSS {r['peak_rss_mib']:,} MiB",
                flush=True,
            )
            b = _run_child(source, landing, args.days, "--baseline")
            print(
                f"{source}: baseline json.loads of the same files, nothing else: {b['records']:,} records in "
                f"{b['seconds']:,.1f} s = {b['records_per_s']:,} records/s, peak RSS {b['peak_rss_mib']:,} MiB",
                flush=True,
            )
            if source == "gateway_log":
                bare = _run_child(source, landing, args.days, "--bare")
                print(
                    f"{source}: bare polars.read_ndjson of the same files, same fixed schema: "
                    f"{bare['records']:,} records in {bare['seconds']:,.1f} s = "
                    f"{bare['records_per_s']:,} records/s, peak RSS {bare['peak_rss_mib']:,} MiB\n"
                    f"{source}: read alone / bare read_ndjson = {r['read_seconds'] / bare['seconds']:.2f}x, "
                    f"read + normalize / bare read_ndjson = {r['seconds'] / bare['seconds']:.2f}x "
                    f"(target: read within 2x)",
                    flush=True,
                )
            shutil.rmtree(landing)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
