"""From a gateway log line landing to the customer's webhook, with the Dagster daemon running.

    .venv/bin/python -m benchmarks.freshness [--customers 1 1000] [--hour-events 13889] [--keep DIR]

For each customer count: a landing zone whose gateway log holds the last ``--history-hours`` hours
(default 24, one file per hour, ``<day>T<hour>.jsonl``) at ``--hour-events`` usage events an hour
(default 13,889: 1/720 of a 10 M-event month; a request line gives three events: input, cached
input, output), spread over every customer but ``c00000``; a catalog whose customers all have a
monthly limit and a webhook to a receiver this process runs on 127.0.0.1, ``c00000`` with a
$10.00 limit and no usage yet (with ``--customers 1`` it is the only customer, and there is no
history). Then, on a temporary ``DAGSTER_HOME`` with the repository's ``dagster.yaml`` (the run
queue, one run per billing month), it starts ``dagster-daemon run -w workspace.yaml`` and turns
``gateway_hourly_sensor`` on; the sensor ingests the history (a backlog), and once no run is
queued or running, one line lands: ``c00000`` burning 2,000,000 gpt-4o output tokens ($20.00) in
a new size part of the current hour (``<day>T<hour>-001.jsonl``). It prints the wall time from
the line landing to the first webhook (the 50 % limit alert) arriving, and from the run's event
log: when the sensor started the run, when the run began, and how long each step took; the
``raw_gateway_log_hourly`` step is one hour's ingestion (the hour's regular traffic plus the
line). The daemon is stopped (its process group) at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import yaml

from benchmarks.dagster_month_end import step_timings
from benchmarks.generate import comparison_catalog

ROOT = Path(__file__).resolve().parents[1]
SECRET_ENV = "BILLING_WEBHOOK_SECRET_BENCH"
RUNAWAY = "c00000"
HOUR = dt.timedelta(hours=1)
MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "mistral-small-2409")


class Receiver:
    """Every customer's webhook endpoint: notes when each alert id first arrived (200 to all),
    and when the first one starting with ``watch`` did."""

    def __init__(self, watch: str):
        self.arrivals: dict[str, float] = {}
        self.watched = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server dispatches on the method name
                self.rfile.read(int(self.headers["Content-Length"]))
                alert_id = self.headers["X-Billing-Alert-Id"]
                receiver.arrivals.setdefault(alert_id, time.time())
                if alert_id.startswith(watch):
                    receiver.watched.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def catalog(customers: int, url: str) -> dict:
    doc = comparison_catalog(customers)
    for cid, customer in doc["customers"].items():
        customer["monthly_limit"] = "10.00" if cid == RUNAWAY else "1000000.00"
        customer["webhook"] = {"url": url, "secret_env": SECRET_ENV, "allow_http": True}
    return doc


def hour_lines(hour: dt.datetime, until: dt.datetime, events: int, customers: int) -> list[str]:
    """``events // 3`` requests in [hour, until), spread over the customers but the runaway."""
    requests = max(0, events // 3) if customers > 1 else 0
    span = max(1, int((min(until, hour + HOUR) - hour).total_seconds()))
    frame = pl.DataFrame({"n": pl.int_range(requests, eager=True)}).with_columns(
        (pl.col("n").hash(1) % (customers - 1) + 1 if customers > 1 else pl.lit(0)).alias("c"),
        (pl.col("n").hash(2) % len(MODELS)).alias("m"),
        (pl.col("n").hash(3) % 3000 + 100).alias("prompt"),
        (pl.col("n").hash(4) % 800 + 20).alias("completion"),
        (pl.col("n") * span // max(requests, 1)).alias("second"),
    )
    out = []
    for n, c, m, prompt, completion, second in frame.iter_rows():
        out.append(
            json.dumps(
                {
                    "request_id": f"req-{hour:%Y%m%d%H}-{n}",
                    "timestamp": (hour + dt.timedelta(seconds=second)).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                    "customer_key": f"c{c:05d}",
                    "model": MODELS[m],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "prompt_tokens_details": {"cached_tokens": prompt // 3},
                    },
                }
            )
        )
    return out


def write_history(landing: Path, now: dt.datetime, hours: int, events: int, customers: int):
    """One file per hour for the last ``hours`` hours, and the current hour's first size part."""
    folder = landing / "gateway"
    folder.mkdir(parents=True, exist_ok=True)
    current = now.replace(minute=0, second=0, microsecond=0)
    for hour, name in [
        *((current - i * HOUR, f"{current - i * HOUR:%Y-%m-%dT%H}") for i in range(hours, 0, -1)),
        (current, f"{current:%Y-%m-%dT%H}-000"),
    ]:
        lines = hour_lines(hour, min(now, hour + HOUR), events, customers)
        if lines:
            (folder / f"{name}.jsonl").write_text("".join(f"{x}\n" for x in lines))
    return current


def environment(home: Path, landing: Path, catalog_path: Path, out: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BILLING_LANDING_DIR": str(landing),
        "BILLING_CATALOG": str(catalog_path),
        "BILLING_OUT_DIR": str(out),
        "BILLING_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on 127.0.0.1 (tests only)
        SECRET_ENV: "whsec_benchmark_0123456789",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


def wait_idle(instance, daemon: subprocess.Popen, timeout: float) -> int:
    """Wait until the sensor has started runs and none is queued or running; returns how many."""
    import dagster as dg

    busy = {
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    }
    deadline = time.time() + timeout
    while time.time() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited ({daemon.returncode}): see daemon.log")
        runs = instance.get_runs()
        if runs and not any(r.status in busy for r in runs):
            failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
            if failed:
                raise RuntimeError(f"backlog runs failed: {failed}")
            return len(runs)
        time.sleep(1)
    raise TimeoutError("the backlog did not finish in time")


def measure(customers: int, args, folder: Path) -> dict:
    import dagster as dg

    receiver = Receiver(watch=f"limit:{RUNAWAY}:")
    landing, out, home = folder / "landing", folder / "out", folder / "dagster_home"
    catalog_path = folder / "catalog.yaml"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    catalog_path.write_text(yaml.safe_dump(catalog(customers, receiver.url), sort_keys=False))
    now = dt.datetime.now(dt.UTC)
    current = write_history(landing, now, args.history_hours, args.hour_events, customers)
    env = environment(home, landing, catalog_path, out)
    bin_dir = Path(sys.executable).parent
    with dg.DagsterInstance.from_config(str(home)):
        pass  # its storage made once, before two processes could race to make it
    subprocess.run(
        [str(bin_dir / "dagster"), "sensor", "start", "-w", "workspace.yaml"]
        + ["gateway_hourly_sensor"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    log = (folder / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as one at the end
    )
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            started = time.time()
            history = any((landing / "gateway").iterdir())
            backlog = wait_idle(instance, daemon, args.timeout) if history else 0
            backlog_seconds = time.time() - started
            known = {r.run_id for r in instance.get_runs()}
            at = min(dt.datetime.now(dt.UTC), current + HOUR - dt.timedelta(seconds=1))
            line = json.dumps(
                {
                    "request_id": "req-runaway-1",
                    "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "customer_key": RUNAWAY,
                    "model": "gpt-4o-2024-08-06",
                    "usage": {"prompt_tokens": 100, "completion_tokens": 2_000_000},
                }
            )
            landed = time.time()
            with (landing / "gateway" / f"{current:%Y-%m-%dT%H}-001.jsonl").open("w") as fh:
                fh.write(line + "\n")
            if not receiver.watched.wait(args.timeout):
                raise TimeoutError("no webhook arrived")
            deadline = time.time() + args.timeout
            while True:  # the run's own events, once it has finished
                runs = [r for r in instance.get_runs() if r.run_id not in known]
                if runs and runs[0].is_finished:
                    break
                if time.time() > deadline:
                    raise TimeoutError("the run did not finish")
                time.sleep(1)
            run = runs[0]
            ours = {k: v for k, v in receiver.arrivals.items() if k.startswith(f"limit:{RUNAWAY}:")}
            arrived = min(ours.values())
            stats = instance.get_run_stats(run.run_id)
            record = instance.get_run_record_by_id(run.run_id)
            steps = step_timings(instance, run.run_id)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()
        receiver.server.shutdown()
    hour_file = landing / "gateway" / f"{current:%Y-%m-%dT%H}-000.jsonl"
    hour_lines_read = sum(1 for _ in hour_file.open()) + 1 if hour_file.exists() else 1
    return {
        "customers": customers,
        "history_hours": args.history_hours if customers > 1 else 0,
        "hour_lines": hour_lines_read,
        "backlog_runs": backlog,
        "backlog_seconds": backlog_seconds,
        "line_to_webhook": arrived - landed,
        "line_to_run_created": record.create_timestamp.timestamp() - landed,
        "run_created_to_start": (stats.start_time or 0) - record.create_timestamp.timestamp(),
        "run_start_to_webhook": arrived - (stats.start_time or arrived),
        "steps": {s["step"]: s["seconds"] for s in steps},
        "alerts": sorted(ours),
        "backlog_alerts": len(receiver.arrivals) - len(ours),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--hour-events", type=int, default=10_000_000 // 720)
    parser.add_argument("--history-hours", type=int, default=24)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--keep", type=Path, help="keep the folders here (default: a temp dir)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the daemon on the way out
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench_freshness_"))
    try:
        for customers in args.customers:
            result = measure(customers, args, base / f"c{customers}")
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in result["steps"].items())
            print(
                f"customers {customers:>5}  history {result['history_hours']} h "
                f"({args.hour_events:,} events/h, the measured hour {result['hour_lines']:,} lines)\n"
                f"  backlog: {result['backlog_runs']} run(s), {result['backlog_seconds']:.1f} s\n"
                f"  line landed -> webhook:       {result['line_to_webhook']:.1f} s\n"
                f"    line -> run created (sensor): {result['line_to_run_created']:.1f} s\n"
                f"    run created -> run started:   {result['run_created_to_start']:.1f} s\n"
                f"    run started -> webhook:       {result['run_start_to_webhook']:.1f} s\n"
                f"    steps: {steps}\n"
                f"  the line's alerts: {', '.join(result['alerts'])} (and "
                f"{result['backlog_alerts']} alert(s) the history fired before it)",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
