"""From a gateway log line landing to the customer's webhook, with the Dagster daemon running.

    .venv/bin/python -m benchmarks.freshness [--customers 1 1000] [--hour-events 13888] [--keep DIR]

For each customer count: a landing zone whose gateway log holds the last ``--history-hours`` hours
(default 24, one file per hour, ``<day>T<hour>.jsonl``) and the current hour so far
(``<day>T<hour>-000.jsonl``) at ``--hour-events`` usage events an hour (default 13,888: 1/720 of
a 10 M-event month; a request line gives three events: input, cached input, output), spread over
every customer but ``c00000``; a catalog whose customers all have a monthly limit and a webhook to
a receiver this process runs on 127.0.0.1, ``c00000`` with a $10.00 limit and no usage yet (with
``--customers 1`` it is the only customer, and there is no history). Then, on a temporary
``DAGSTER_HOME`` with the repository's ``dagster.yaml`` (the run queue, one run per billing
month), it turns ``gateway_hourly_sensor`` on and starts ``dagster-daemon run -w workspace.yaml``;
the sensor ingests the history (a backlog), and once no run is queued or running, ``c00000``'s
requests land in new size parts of the current hour: $6.00 of gpt-4o output just after a sensor
tick (the longest wait for the next tick: the sensor looks every 30 s), then $2.00 more halfway
between two ticks. For each, it prints the wall time from the line landing to its limit alert's
webhook (50 %, then 75 %) arriving, and from the run's event log: when the sensor started the run,
when the run began, and how long each step took; the ``raw_gateway_log_hourly`` step is one
hour's ingestion (the hour's traffic so far plus the new parts). The daemon is stopped (its
process group) at the end.
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
    """Every customer's webhook endpoint: notes when each alert id first arrived (200 to all)."""

    def __init__(self):
        self.arrivals: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server dispatches on the method name
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrivals.setdefault(self.headers["X-Billing-Alert-Id"], time.time())
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


# Two landings for the runaway customer: $6.00 (50 % of its limit) just after a sensor tick (the
# longest wait for the next one), then $2.00 more (75 %) halfway between two ticks.
LANDINGS = (("just after a tick", 600_000, 50, 0.0), ("halfway between ticks", 200_000, 75, 15.0))
TICK_LINE = "sensor gateway_hourly_sensor"


def wait_for_tick(log_path: Path, timeout: float) -> None:
    """Until the daemon's log records the sensor's next evaluation (skipped or not)."""
    seen = log_path.read_text(errors="replace").lower().count(TICK_LINE)
    deadline = time.time() + timeout
    while log_path.read_text(errors="replace").lower().count(TICK_LINE) <= seen:
        if time.time() > deadline:
            raise TimeoutError("the sensor did not tick")
        time.sleep(0.2)


def land(path: Path, hour: dt.datetime, n: int, tokens: int) -> float:
    """Write one runaway request into a new size part; returns the landing time."""
    at = min(dt.datetime.now(dt.UTC), hour + HOUR - dt.timedelta(seconds=1))
    line = json.dumps(
        {
            "request_id": f"req-runaway-{n}",
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "customer_key": RUNAWAY,
            "model": "gpt-4o-2024-08-06",
            "usage": {"prompt_tokens": 100, "completion_tokens": tokens},
        }
    )
    landed = time.time()
    path.write_text(line + "\n")
    return landed


def timeline(instance, receiver: Receiver, known: set, alert_id: str, landed: float, timeout):
    """Once the alert arrived and its run finished: the figures of that landing."""
    deadline = time.time() + timeout
    while alert_id not in receiver.arrivals:
        if time.time() > deadline:
            raise TimeoutError(f"{alert_id} did not arrive")
        time.sleep(0.1)
    while True:  # the run's own events, once it has finished
        runs = [r for r in instance.get_runs() if r.run_id not in known]
        if runs and runs[0].is_finished:
            break
        if time.time() > deadline:
            raise TimeoutError("the run did not finish")
        time.sleep(1)
    run, arrived = runs[0], receiver.arrivals[alert_id]
    stats = instance.get_run_stats(run.run_id)
    created = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()
    started = stats.start_time or arrived
    return {
        "line_to_webhook": arrived - landed,
        "line_to_run_created": created - landed,
        "run_created_to_start": started - created,
        "run_start_to_webhook": arrived - started,
        "steps": {s["step"]: s["seconds"] for s in step_timings(instance, run.run_id)},
    }


def measure(customers: int, args, folder: Path) -> dict:
    import dagster as dg

    receiver = Receiver()
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
    log_path = folder / "daemon.log"
    log = log_path.open("w")
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as one at the end
    )
    samples = []
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            started = time.time()
            history = any((landing / "gateway").iterdir())
            backlog = wait_idle(instance, daemon, args.timeout) if history else 0
            backlog_seconds = time.time() - started
            period = current.strftime("%Y-%m")
            for n, (phase, tokens, threshold, delay) in enumerate(LANDINGS, start=1):
                known = {r.run_id for r in instance.get_runs()}
                wait_for_tick(log_path, args.timeout)
                time.sleep(delay)
                part = landing / "gateway" / f"{current:%Y-%m-%dT%H}-{n:03d}.jsonl"
                landed = land(part, current, n, tokens)
                alert_id = f"limit:{RUNAWAY}:{period}:{threshold}"
                figures = timeline(instance, receiver, known, alert_id, landed, args.timeout)
                samples.append({"phase": phase, "alert": alert_id, **figures})
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()
        receiver.server.shutdown()
    hour_file = landing / "gateway" / f"{current:%Y-%m-%dT%H}-000.jsonl"
    return {
        "customers": customers,
        "history_hours": args.history_hours if customers > 1 else 0,
        "hour_lines": sum(1 for _ in hour_file.open()) if hour_file.exists() else 0,
        "backlog_runs": backlog,
        "backlog_seconds": backlog_seconds,
        "samples": samples,
        "other_alerts": len([a for a in receiver.arrivals if not a.startswith("limit:c00000:")]),
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
            print(
                f"customers {customers:>5}  history {result['history_hours']} h at "
                f"{args.hour_events:,} events/h; the current hour holds {result['hour_lines']:,} "
                f"lines before the runaway's\n"
                f"  backlog: {result['backlog_runs']} run(s), {result['backlog_seconds']:.1f} s, "
                f"{result['other_alerts']} alert(s) sent for the history",
                flush=True,
            )
            for sample in result["samples"]:
                steps = ", ".join(f"{k} {v:.1f} s" for k, v in sample["steps"].items())
                print(
                    f"  line landed {sample['phase']} -> {sample['alert']} webhook: "
                    f"{sample['line_to_webhook']:.1f} s\n"
                    f"    line -> run created (sensor): {sample['line_to_run_created']:.1f} s\n"
                    f"    run created -> run started:   {sample['run_created_to_start']:.1f} s\n"
                    f"    run started -> webhook:       {sample['run_start_to_webhook']:.1f} s\n"
                    f"    steps: {steps}",
                    flush=True,
                )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
