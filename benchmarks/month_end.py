"""Month-end rating at scale, billing_pipeline side by side with pandas and DuckDB, same input, one run.

    .venv/bin/python -m benchmarks.month_end --events 10000000 [--customers 10000] [--keep DIR] [--skip-full]

Generates a synthetic month (benchmarks/generate.py: per-unit and graduated plans, skewed customer
sizes, spikes) as one Parquet file, reads it once to warm the page cache, then times, each in a
fresh child process (so each peak RSS is that implementation's alone, read included):

1. billing_pipeline, the code the assets call:
   - ``rate_month(scan_parquet, daily=False)``: lines with Decimal amounts and explanations;
   - ``rate_month(..., daily=True)``: + per-day quantities per line (what the month-end asset runs);
   - the full path: read every column -> ``usage.normalize`` (deduplicate + attribute keys) ->
     ``rate_month(daily=True)`` -> ``reconcile.provider_cost`` + ``reconcile.reconcile`` (margins;
     metering drift is not included: it needs a second, provider-reported source);
2. pandas (``baselines.pandas_rating``): a straightforward implementation of the same rating;
3. DuckDB SQL (``baselines.duckdb_rating``): aggregate first, then tiers on the aggregates.

Prints seconds, events/s, peak RSS, the ratio of billing_pipeline to each baseline, and checks that
every implementation bills every customer the same to the cent (exit status 1 with the first
differing customer otherwise: a benchmark that disagrees is a bug, not a result). Catalog parsing
is not timed for any of them. Numbers depend on the machine; see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from benchmarks.baselines import Disagreement, Totals, compare
from benchmarks.generate import MONTH, codes_path, write_month
from benchmarks.memory import peak_rss_mib

IMPLEMENTATIONS = {
    "pipeline": "billing_pipeline rate_month (daily=False)",
    "pipeline-daily": "billing_pipeline rate_month (daily=True)",
    "pipeline-names": "billing_pipeline rate_month (daily=False), no code book",
    "pipeline-full": "billing_pipeline normalize -> rate (daily) -> reconcile",
    "pandas": "pandas baseline",
    "duckdb": "DuckDB SQL baseline (group by names)",
    "duckdb-keys": "DuckDB SQL baseline (group by usage_key + code book)",
    "floor": "polars float group-by (floor, not exact)",
}
DUCKDB = ("duckdb", "duckdb-keys")  # the expert baseline is the faster of the two in the run
EXACT = [i for i in IMPLEMENTATIONS if i != "floor"]


def measure(impl: str, parquet: str, catalog_path: str, out: str) -> dict:
    """Child process: load the catalog (not timed), time the implementation from the Parquet file
    to invoice totals, write the totals to ``out``, return the figures."""
    import polars as pl
    import yaml

    stages: dict[str, float] = {}
    if impl.startswith("pipeline"):
        from benchmarks.baselines import pipeline_totals
        from billing_pipeline.catalog import load_catalog
        from billing_pipeline.rating import rate_month
        from billing_pipeline.usage_keys import merge_code_books

        catalog = load_catalog(catalog_path)
        began = time.perf_counter()
        # the month's code book, as rated_charges reads the days' books (timed: it is read per run)
        book = (
            None
            if impl == "pipeline-names"
            else merge_code_books([pl.read_parquet(codes_path(Path(parquet)))])
        )
        if impl == "pipeline-full":
            from billing_pipeline.reconcile import provider_cost, reconcile
            from billing_pipeline.usage import normalize
            from billing_pipeline.usage_keys import code_book

            raw = pl.read_parquet(parquet)
            t = time.perf_counter()
            stages["read"] = t - began
            usage, quarantine = normalize([raw], [], catalog)
            del raw
            book = merge_code_books([code_book(usage)])  # what ingestion stores beside each day
            stages["normalize (+ code book)"] = time.perf_counter() - t
            t = time.perf_counter()
            rated = rate_month(usage, catalog, MONTH, daily=True, code_book=book)
            stages["rate_month (daily)"] = time.perf_counter() - t
            t = time.perf_counter()
            costs = provider_cost(usage, catalog, code_book=book)
            table = reconcile(rated.lines, costs)
            stages["provider_cost + reconcile"] = time.perf_counter() - t
            if quarantine.height:
                raise SystemExit(f"normalize quarantined {quarantine.height} synthetic rows")
            stages["margin rows"] = table.height
        else:
            rated = rate_month(
                pl.scan_parquet(parquet),
                catalog,
                MONTH,
                daily=impl == "pipeline-daily",
                code_book=book,
            )
        seconds = time.perf_counter() - began
        if rated.unrated.height:
            raise SystemExit(
                f"{impl}: {rated.unrated.height} unrated rows; the comparison catalog prices everything"
            )
        totals = pipeline_totals(rated.lines)
    else:
        import duckdb  # noqa: F401  imported before the clock starts, like polars and billing_pipeline
        import numpy  # noqa: F401
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401

        from benchmarks.baselines import (
            duckdb_keyed_rating,
            duckdb_rating,
            pandas_rating,
            polars_float_floor,
        )

        doc = yaml.safe_load(Path(catalog_path).read_text(encoding="utf-8"))
        run = {
            "pandas": pandas_rating,
            "duckdb": duckdb_rating,
            "duckdb-keys": duckdb_keyed_rating,
            "floor": polars_float_floor,
        }[impl]
        began = time.perf_counter()
        totals = run(parquet, doc, MONTH)
        seconds = time.perf_counter() - began
    if impl == "floor":  # floats: reported beside the exact totals, never compared to the cent
        written, lines = {c: repr(v) for c, v in totals.items()}, 0
    else:
        written, lines = totals.to_json(), totals.lines
    Path(out).write_text(json.dumps(written), encoding="utf-8")
    events = pl.scan_parquet(parquet).select(pl.len()).collect().item()
    return {
        "impl": impl,
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "peak_rss_mib": peak_rss_mib(),
        "lines": lines,
        "stages": stages,
    }


def _child(impl: str, parquet: Path, catalog: Path, out: Path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.month_end",
            "--measure",
            impl,
            str(parquet),
            str(catalog),
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"{impl} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _warm(path: Path) -> None:
    """Read the file once so every implementation starts from the page cache."""
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def run(events: int, customers: int, folder: Path, skip_full: bool = False) -> int:
    parquet, catalog = folder / "usage.parquet", folder / "catalog.yaml"
    if parquet.exists() and catalog.exists() and codes_path(parquet).exists():
        print(f"input               {parquet} (reused)")
    else:
        t0 = time.perf_counter()
        parquet, catalog = write_month(folder, events, customers)
        print(
            f"generated           {events:,} events, {customers:,} customers in {time.perf_counter() - t0:.1f} s"
        )
    size_mib = parquet.stat().st_size / 2**20
    print(f"parquet             {size_mib:,.1f} MiB", flush=True)
    _warm(parquet)
    impls = [i for i in IMPLEMENTATIONS if not (skip_full and i == "pipeline-full")]
    results: dict[str, dict] = {}
    totals: dict[str, Totals] = {}
    width = max(len(IMPLEMENTATIONS[i]) for i in impls)
    print(
        f"{'implementation'.ljust(width)}  {'seconds':>8}  {'events/s':>12}  {'peak RSS':>10}  {'RSS/parquet':>11}  lines"
    )
    for impl in impls:
        out = folder / f"totals-{impl}.json"
        r = results[impl] = _child(impl, parquet, catalog, out)
        if impl == "floor":
            floor = {c: float(v) for c, v in json.loads(out.read_text(encoding="utf-8")).items()}
        else:
            totals[impl] = Totals.from_json(json.loads(out.read_text(encoding="utf-8")))
        print(
            f"{IMPLEMENTATIONS[impl].ljust(width)}  {r['seconds']:8.2f}  {r['events_per_s']:12,.0f}  "
            f"{r['peak_rss_mib']:7,.0f} MiB  {r['peak_rss_mib'] / size_mib:10.1f}x  {r['lines']:,}",
            flush=True,
        )
        for stage, value in r["stages"].items():
            shown = f"{value:8.2f} s" if isinstance(value, float) else f"{value:,}"
            print(f"{'':4}{stage.ljust(width - 4)}  {shown}")
    print()
    for impl in ("pipeline", "pipeline-daily", "pipeline-names"):
        for base in ("pandas", *DUCKDB, "floor"):
            ratio = results[base]["seconds"] / results[impl]["seconds"]
            print(
                f"{IMPLEMENTATIONS[impl]} vs {IMPLEMENTATIONS[base]}: {ratio:.2f}x "
                f"({'faster' if ratio >= 1 else 'slower'})"
            )
    expert = min(DUCKDB, key=lambda i: results[i]["seconds"])
    duck = results[expert]["seconds"]
    print(
        f"\nissue 19 targets (the expert DuckDB baseline: {IMPLEMENTATIONS[expert]}, {duck:.2f} s)"
    )
    plain = results["pipeline"]["seconds"] / duck
    charted = results["pipeline-daily"]["seconds"] / duck
    print(
        f"  rating without the chart: {plain:.2f}x DuckDB's time (target <= 1.00): {_met(plain <= 1)}"
    )
    print(
        f"  rating with the chart:    {charted:.2f}x DuckDB's time (target <= 1.50): {_met(charted <= 1.5)}"
    )
    if "pipeline-full" in results:
        rate = results["pipeline-full"]["events_per_s"]
        print(
            f"  normalize -> rate -> reconcile: {rate / 1e6:.2f} M events/s (target >= 1.50): {_met(rate >= 1.5e6)}"
        )
    reference = totals["pipeline"]
    exact = [i for i in impls if i in EXACT]
    try:
        for impl in exact[1:]:
            compare(reference, totals[impl], IMPLEMENTATIONS[impl], IMPLEMENTATIONS["pipeline"])
    except Disagreement as exc:
        print(f"\nDISAGREEMENT: {exc}", file=sys.stderr)
        return 1
    print(
        f"\nall {len(exact)} exact implementations agree to the cent: {len(reference.by_customer):,} customers, "
        f"{reference.lines:,} lines, grand total {reference.grand_total:,}"
    )
    off = max(abs(Decimal(repr(floor.get(c, 0.0))) - v) for c, v in reference.by_customer.items())
    print(
        f"float floor: grand total {sum(floor.values()):,.2f}, largest per-customer difference {off:.6f} "
        f"(float rounding; not a check)"
    )
    return 0


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument(
        "--keep", type=Path, help="write the month here and keep it; reused when it already exists"
    )
    parser.add_argument(
        "--skip-full", action="store_true", help="skip the normalize -> rate -> reconcile path"
    )
    parser.add_argument(
        "--measure", nargs=4, metavar=("IMPL", "PARQUET", "CATALOG", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    if args.keep:
        return run(args.events, args.customers, args.keep, args.skip_full)
    tmp = Path(tempfile.mkdtemp(prefix="bench_month_end_"))
    try:
        return run(args.events, args.customers, tmp, args.skip_full)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
