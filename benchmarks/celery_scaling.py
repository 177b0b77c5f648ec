"""Invoice PDFs on Celery workers: the month-end run with 1 and with 2 worker processes.

    .venv/bin/python -m benchmarks.celery_scaling [--invoices 1000] [--events-per-invoice 1000]
        [--workers 1 2] [--rounds 2] [--broker rabbitmq|redis] [--keep DIR]

The deployment's scale-out (README "Scale-out with Celery"; issue 19 asks for 1 vs 2 workers):
the month-end job on the celery executor (``BILLING_EXECUTOR=celery``) with the shipped
deploy/dagster.yaml on a throwaway database of the local PostgreSQL, every step a task on the real
broker (RabbitMQ or Redis on 127.0.0.1), run by N ``celery -A billing_pipeline.defs.executors
worker --concurrency=1`` processes. Each PDF shard step renders with one process (the deployed
default, defs/rendering.py), so N workers render N shards side by side.

A synthetic month (benchmarks/generate.py: the gateway log of ``invoices`` customers on the four
benchmark plans) is ingested once (in-process executor); each measured month-end run then starts
with a new output folder and ledger, so every PDF is rendered (a re-run would render only what
changed). Worker counts alternate (1, 2, 1, 2 with ``--rounds 2``), workers start before each run
and are stopped after it (start-up not timed).

Prints per run: the run's wall time, the render steps' span (first shard start to last shard
end, from the run's event log), PDFs per second over that span, CPU seconds of the workers; then
the scaling (PDFs/s with 2 workers over 1 worker, per round). Exits non-zero when two runs' PDFs
differ in any byte (rendering is deterministic: the same month gives the same files), or a run
fails. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from benchmarks.dagster_month_end import step_timings
from benchmarks.generate import MONTH, full_catalog, write_landing_zone
from benchmarks.proc import stop_process_groups, tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}  # no per-event console lines
BROKERS = {
    "rabbitmq": "pyamqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/14",
}
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _database() -> tuple[str, object]:
    """A new database on the local PostgreSQL (the tests' server) and an admin connection."""
    import psycopg2

    admin = psycopg2.connect(dbname="test", connect_timeout=3, **PG)
    admin.autocommit = True
    name = f"bench_celery_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    return name, admin


def _drop(name: str, admin) -> None:
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _start_workers(count: int, logs: Path) -> tuple[list[subprocess.Popen], set[str]]:
    tag = uuid.uuid4().hex[:8]
    names = {f"bench{i}-{tag}@{socket.gethostname()}" for i in range(count)}
    workers = []
    for i, name in enumerate(sorted(names)):
        log = open(logs / f"worker-{tag}-{i}.log", "wb")  # noqa: SIM115 - closed with the process
        command = [sys.executable, "-m", "celery", "-A", "billing_pipeline.defs.executors"]
        workers.append(
            subprocess.Popen(
                [*command, "worker", "--concurrency=1", "--loglevel=INFO", "-n", name],
                cwd=ROOT,
                env=os.environ.copy(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    from billing_pipeline.defs.executors import make_celery_app

    app, seen, deadline = make_celery_app(), set(), time.monotonic() + 120
    while not names <= seen:
        dead = [w.args for w in workers if w.poll() is not None]
        if dead or time.monotonic() > deadline:
            stop_process_groups(workers)
            raise SystemExit(f"celery workers not ready (exited: {dead}); logs in {logs}")
        for reply in app.control.ping(timeout=1.0) or []:
            seen |= set(reply)
    return workers, names


def _pdf_digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.pdf"))
    }


def measure(workers: int, folder: Path, run_index: int) -> dict:
    import dagster as dg

    from billing_pipeline.defs import month_end_job_from_env

    out = folder / f"out-{run_index}"
    os.environ["BILLING_OUT_DIR"] = str(out)
    os.environ["BILLING_DATABASE_URL"] = f"sqlite:///{out / 'ledger.db'}"
    out.mkdir()
    processes, _ = _start_workers(workers, folder)
    try:
        cpu_before = tree_cpu_seconds([p.pid for p in processes])
        with dg.DagsterInstance.get() as instance:
            began = time.perf_counter()
            with dg.execute_job(
                dg.reconstructable(month_end_job_from_env),
                instance=instance,
                tags={"dagster/partition": f"{MONTH}-01"},
                run_config=QUIET,
            ) as result:
                wall = time.perf_counter() - began
                if not result.success:
                    raise SystemExit(
                        f"month-end run {result.run_id} failed (worker logs: {folder})"
                    )
                rows = step_timings(instance, result.run_id)
        cpu = tree_cpu_seconds([p.pid for p in processes]) - cpu_before
    finally:
        stop_process_groups(processes)
    render = [r for r in rows if r["step"].startswith("invoice_drafts.render_invoice_shard")]
    span = max(r["last"] for r in render) - min(r["first"] for r in render)
    pdfs = _pdf_digests(out / MONTH / "invoices")
    return {"workers": workers, "wall": wall, "span": span, "pdfs": pdfs, "cpu": cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1000, help="customers, one PDF each")
    parser.add_argument("--events-per-invoice", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--broker", choices=sorted(BROKERS), default="rabbitmq")
    parser.add_argument("--keep", type=Path, help="keep the month, outputs and worker logs here")
    args = parser.parse_args(argv)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="celery-scaling-"))
    folder.mkdir(parents=True, exist_ok=True)
    landing, catalog, home = folder / "landing", folder / "catalog.yaml", folder / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    write_landing_zone(landing, args.invoices * args.events_per_invoice, args.invoices)
    catalog.write_text(yaml.safe_dump(full_catalog(args.invoices), sort_keys=False), "utf-8")
    database, admin = _database()
    os.environ.update(
        {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": PG["host"],
            "DAGSTER_PG_PORT": str(PG["port"]),
            "DAGSTER_PG_USERNAME": PG["user"],
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": database,
            "BILLING_LANDING_DIR": str(landing),
            "BILLING_CATALOG": str(catalog),
            "BILLING_STORAGE_DIR": str(folder / "storage"),
            "BILLING_CELERY_BROKER": BROKERS[args.broker],
        }
    )
    try:
        import dagster as dg

        from billing_pipeline.defs import daily_ingestion_job_from_env
        from billing_pipeline.runner import RANGE_END, RANGE_START

        os.environ["BILLING_EXECUTOR"] = "in_process"  # the month's usage, once, not measured
        os.environ["BILLING_OUT_DIR"] = str(folder / "ingestion-out")
        began = time.perf_counter()
        with (
            dg.DagsterInstance.get() as instance,
            dg.execute_job(
                dg.reconstructable(daily_ingestion_job_from_env),
                instance=instance,
                tags={RANGE_START: f"{MONTH}-01", RANGE_END: f"{MONTH}-31"},
            ) as daily,
        ):
            if not daily.success:
                raise SystemExit("ingestion failed")
        print(
            f"month               {args.invoices:,} customers, ~{args.invoices * args.events_per_invoice:,} "
            f"usage events, ingested in {time.perf_counter() - began:.1f} s; broker {args.broker}",
            flush=True,
        )
        os.environ["BILLING_EXECUTOR"] = "celery"
        runs = []
        for round_index in range(args.rounds):
            for workers in args.workers:
                run = measure(workers, folder, len(runs))
                runs.append(run)
                rate = len(run["pdfs"]) / run["span"]
                print(
                    f"round {round_index + 1}, {workers} worker(s): run {run['wall']:6.1f} s wall, "
                    f"render steps {run['span']:6.1f} s for {len(run['pdfs']):,} PDFs = {rate:5.2f} PDFs/s, "
                    f"workers' CPU {run['cpu']:6.1f} s",
                    flush=True,
                )
    finally:
        _drop(database, admin)
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    if any(r["pdfs"] != runs[0]["pdfs"] for r in runs):
        raise SystemExit("the runs' PDFs differ: rendering is not deterministic")
    by_workers = {
        w: [len(r["pdfs"]) / r["span"] for r in runs if r["workers"] == w] for w in args.workers
    }
    low = min(args.workers)
    for w in args.workers:
        if w != low:
            ratios = [a / b for a, b in zip(by_workers[w], by_workers[low], strict=False)]
            print(
                f"{w} / {low} worker(s)     "
                + ", ".join(f"{x:.2f}x" for x in ratios)
                + " PDFs/s, per round"
            )
    print(f"all {len(runs)} runs wrote the same {len(runs[0]['pdfs']):,} PDFs, byte for byte")


if __name__ == "__main__":
    main()
