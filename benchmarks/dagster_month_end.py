"""A full month-end through Dagster at scale, with wall time per step from the runs' own event logs.

    .venv/bin/python -m benchmarks.dagster_month_end --events 10000000 [--customers 10000] [--keep DIR] [--late-rerun] [--skip-pdfs]

Writes a synthetic month as a landing zone (``landing/gateway/<day>.jsonl``, the gateway request
log the readers accept; ``--events`` usage events = events // 3 request lines, each line giving
input, cached-input and output events) and a catalog with per-unit, graduated, volume and hybrid
plans (benchmarks/generate.py ``full_catalog``), then runs month-end exactly as
``billing-pipeline run`` does (runner.py: one daily-ingestion run over every day of the month,
then the month-end run: rating, reconciliation, invoice drafts in the ledger and one PDF per
customer) on an embedded SQLite Dagster instance in this process.

Prints, per run, each step's wall time (STEP_START -> STEP_SUCCESS in ``instance.all_logs``) with
the assets it materialized, mapped steps (PDF shards) summed with their count and the span from the
first start to the last success, the process's peak RSS within the step (sampled every 50 ms), then
the run's wall time and the process's peak RSS. Like the CLI,
the runs use ``execute_in_process``, i.e. Dagster's in-process executor whatever ``BILLING_EXECUTOR``
says: steps run one after another, and each PDF shard renders over a process pool as wide as the
machine (the runner tags the run ``billing/render_workers=auto``, defs/rendering.py); with the
multiprocess or celery executor of a deployed run the shards themselves run in parallel.

``--late-rerun`` then appends one late request for one customer to the month's last day and runs
what finance would run next: that day's ingestion and month-end again (the ledger's drafts are
replaced; only the PDFs whose document changed are rendered again, rendering/receipts.py).

``--skip-pdfs`` (diagnosis) runs every step but renders no PDF: the render steps run and return
at once, so memory and the other steps can be measured in minutes instead of ~15.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import yaml

from benchmarks.generate import MONTH, full_catalog, write_landing_zone


class RssSampler:
    """This process's resident memory every ``every`` seconds, from a thread (Linux
    /proc/self/statm), so the peak can be told per step; elsewhere it records nothing."""

    def __init__(self, every: float = 0.05):
        self.samples: list[tuple[float, int]] = []
        self.every = every
        if os.path.exists("/proc/self/statm"):
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while True:
            with open("/proc/self/statm") as fh:
                self.samples.append((time.time(), int(fh.read().split()[1]) * page))
            time.sleep(self.every)

    def peak_mib(self, start: float, end: float) -> float | None:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) / 2**20 if inside else None


def step_timings(instance, run_id: str) -> list[dict]:
    """One row per step key (mapped steps grouped): seconds (sum), span (first start -> last end),
    count, assets materialized, from the run's event log."""
    import dagster as dg

    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    assets: dict[str, set[str]] = defaultdict(set)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ends[entry.step_key] = entry.timestamp
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            assets[entry.step_key].add(event.asset_key.to_user_string())
    grouped: dict[str, dict] = {}
    for key, began in starts.items():
        name = re.sub(r"\[.*\]$", "[*]", key)  # dynamic mapping: render_invoice_shard[3] -> [*]
        row = grouped.setdefault(
            name,
            {
                "step": name,
                "seconds": 0.0,
                "count": 0,
                "first": began,
                "last": began,
                "assets": set(),
            },
        )
        end = ends.get(key, began)
        row["seconds"] += end - began
        row["count"] += 1
        row["first"] = min(row["first"], began)
        row["last"] = max(row["last"], end)
        row["assets"] |= assets.get(key, set())
    return sorted(grouped.values(), key=lambda r: r["first"])


def run_wall(instance, run_id: str) -> float:
    stats = instance.get_run_stats(run_id)
    return (stats.end_time or 0) - (stats.start_time or 0)


def print_run(title: str, instance, run_id: str, rss: RssSampler | None = None) -> None:
    rows = step_timings(instance, run_id)
    print(f"\n{title} (run {run_id[:8]}): {run_wall(instance, run_id):.1f} s wall")
    width = max([len(r["step"]) for r in rows] + [4])
    print(f"  {'step'.ljust(width)}  {'seconds':>8}  {'span':>8}  {'peak MiB':>8}  assets")
    for r in rows:
        count = f" x{r['count']}" if r["count"] > 1 else ""
        peak = rss.peak_mib(r["first"], r["last"]) if rss else None
        print(
            f"  {r['step'].ljust(width)}  {r['seconds']:8.2f}  {r['last'] - r['first']:8.2f}  "
            f"{f'{peak:,.0f}' if peak else '-':>8}  {', '.join(sorted(r['assets'])) or '-'}{count}"
        )


def late_request(day_file: Path) -> tuple[str, str]:
    """(customer, gateway request line): one more request like the day's first one, 2.5 M tokens
    at 23:58 (the format write_landing_zone writes)."""
    import json

    with open(day_file, encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    late = {
        "request_id": "req-late-1",
        "timestamp": f"{day_file.stem}T23:58:00Z",
        "customer_key": first["customer_key"],
        "model": first["model"],
        "usage": {"prompt_tokens": 2_000_000, "completion_tokens": 500_000},
    }
    return first["customer_key"], json.dumps(late) + "\n"


def run(
    events: int, customers: int, folder: Path, late_rerun: bool = False, skip_pdfs: bool = False
) -> None:
    from billing_pipeline.defs import build_definitions
    from billing_pipeline.periods import parse_month
    from billing_pipeline.runner import (
        MonthEndSummary,
        _collect_checks,
        ingest_days,
        month_end_resources,
        open_instance,
        rate_month_run,
        validate_inputs,
    )

    rss = RssSampler()
    if skip_pdfs:
        import billing_pipeline.defs.rendering as render_steps

        render_steps.render_drafts = lambda drafts, folder, **kwargs: []
    landing, catalog, out = folder / "landing", folder / "catalog.yaml", folder / "out"
    t0 = time.perf_counter()
    requests = write_landing_zone(landing, events, customers)
    catalog.write_text(yaml.safe_dump(full_catalog(customers), sort_keys=False), encoding="utf-8")
    size = sum(p.stat().st_size for p in landing.rglob("*") if p.is_file())
    print(
        f"generated           {requests:,} gateway request lines (~{events:,} usage events), {customers:,} customers, "
        f"{size / 2**20:,.1f} MiB in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    validate_inputs(MONTH, landing, catalog)
    out.mkdir(parents=True, exist_ok=True)
    defs = build_definitions(
        month_end_resources(landing.resolve(), catalog.resolve(), out.resolve())
    )
    start, end = parse_month(MONTH)
    with open_instance(out.resolve()) as instance:
        began = time.perf_counter()
        daily = ingest_days(defs, instance, start, end - dt.timedelta(days=1))
        ingested = time.perf_counter()
        monthly = rate_month_run(defs, instance, MONTH)
        finished = time.perf_counter()
        print_run("daily ingestion (31 daily partitions, one run)", instance, daily.run_id, rss)
        print_run(f"month-end {MONTH}", instance, monthly.run_id, rss)
        step_timings_cache = step_timings(instance, monthly.run_id)
        summary = MonthEndSummary(month=MONTH, out_dir=out)
        _collect_checks(summary, (daily, monthly))
        if late_rerun:
            late_rerun_month(defs, instance, landing, out, end - dt.timedelta(days=1), summary, rss)
    pdfs = len(list((out / MONTH / "invoices").glob("*.pdf")))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    render = sum(
        r["seconds"] for r in step_timings_cache if r["step"].startswith("invoice_drafts.render")
    )
    print(
        f"\ntotal               {finished - began:.1f} s (ingestion {ingested - began:.1f} s, month-end "
        f"{finished - ingested:.1f} s)"
    )
    if pdfs:
        print(
            f"invoice PDFs        {pdfs:,} in {render:.1f} s of render steps = {render / pdfs:.2f} s per PDF"
        )
    print(
        f"peak RSS            {peak:,.0f} MiB this process, {children:,.0f} MiB largest child process"
    )
    if summary.failed_checks:
        print(f"FAILED CHECKS       {', '.join(summary.failed_checks)}")


def _pdf_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Each PDF's inode and modification time: a PDF written again (temp file + rename) changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.pdf")}


def late_rerun_month(
    defs, instance, landing: Path, out: Path, last_day: dt.date, summary, rss=None
) -> None:
    from billing_pipeline.runner import _collect_checks, ingest_days, rate_month_run

    invoices = out / MONTH / "invoices"
    before = _pdf_files(invoices)
    day_file = landing / "gateway" / f"{last_day.isoformat()}.jsonl"
    customer, line = late_request(day_file)
    with open(day_file, "a", encoding="utf-8") as fh:
        fh.write(line)
    began = time.perf_counter()
    daily = ingest_days(defs, instance, last_day, last_day)
    ingested = time.perf_counter()
    monthly = rate_month_run(defs, instance, MONTH)
    finished = time.perf_counter()
    print_run(
        f"late usage for {customer}: ingestion of {last_day} again", instance, daily.run_id, rss
    )
    print_run(f"late usage for {customer}: month-end {MONTH} again", instance, monthly.run_id, rss)
    _collect_checks(summary, (daily, monthly))
    after = _pdf_files(invoices)
    rendered = sorted(name for name in after if after[name] != before.get(name))
    print(
        f"\nlate re-run         {finished - began:.1f} s (ingestion {ingested - began:.1f} s, month-end "
        f"{finished - ingested:.1f} s); PDFs rendered again: {len(rendered)} ({', '.join(rendered[:5])})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument(
        "--keep", type=Path, help="write landing zone, catalog and outputs here and keep them"
    )
    parser.add_argument(
        "--late-rerun",
        action="store_true",
        help="then add late usage for one customer and run that day and month-end again",
    )
    parser.add_argument(
        "--skip-pdfs",
        action="store_true",
        help="diagnosis: render no invoice PDF (the render steps return at once; drafts, JSON, "
        "ledger and every other step as usual); without it every PDF is rendered",
    )
    args = parser.parse_args(argv)
    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            raise SystemExit(f"{args.keep}: not empty; give a new folder")
        run(args.events, args.customers, args.keep, args.late_rerun, args.skip_pdfs)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_dagster_month_end_"))
    try:
        run(args.events, args.customers, tmp, args.late_rerun, args.skip_pdfs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
