"""`billing-pipeline backfill --webserver`: the backfill is Dagster's own, recorded in the instance
the UI reads, for the requested days and the months they touch."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from billing_pipeline.backfills import DAILY_ASSETS, MONTHLY_ASSETS

ROOT = Path(__file__).resolve().parents[1]
DAYS = [f"2026-09-{d:02d}" for d in range(25, 31)] + [f"2026-10-{d:02d}" for d in range(1, 5)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "billing_pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture
def webserver(demo_month, tmp_path):
    """``dagster-webserver -w workspace.yaml`` on a free port, instance on SQLite in a temp folder."""
    month = demo_month.copy_to(tmp_path)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BILLING_LANDING_DIR": str(month.landing),
        "BILLING_CATALOG": str(month.catalog),
        "BILLING_OUT_DIR": str(month.out),
        "BILLING_DATABASE_URL": f"sqlite:///{month.out / 'ledger.db'}",
        "BILLING_STORAGE_DIR": str(month.out / ".storage"),
    }
    log = open(tmp_path / "webserver.log", "wb")  # noqa: SIM115 - closed after the process
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "webserver.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dagster-webserver did not start in 180 s"
            time.sleep(0.5)
        yield url, home
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def test_a_submitted_backfill_is_recorded_for_the_days_and_the_months_they_touch(webserver):
    url, home = webserver

    done = cli("backfill", "--from", DAYS[0], "--to", DAYS[-1], "--webserver", url)

    assert done.returncode == 0, done.stderr
    backfill_id = done.stdout.split()[2].rstrip(":")
    assert done.stdout.strip() == f"submitted backfill {backfill_id}: {url}/runs/b/{backfill_id}"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [backfill] = instance.get_backfills()
        assert backfill.backfill_id == backfill_id
        assert backfill.tags["billing/backfill"] == f"{DAYS[0]}..{DAYS[-1]}"
        target = backfill.asset_backfill_data.target_subset
        for name in DAILY_ASSETS:
            assert (
                sorted(target.get_partitions_subset(dg.AssetKey(name)).get_partition_keys()) == DAYS
            ), name
        for name in MONTHLY_ASSETS:  # a range across a month end re-rates both months
            assert sorted(target.get_partitions_subset(dg.AssetKey(name)).get_partition_keys()) == [
                "2026-09-01",
                "2026-10-01",
            ], name


def test_an_unreachable_webserver_exits_2_with_one_line():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    done = cli("backfill", "--from", "2026-10-01", "--to", "2026-10-10", "--webserver", url)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert url in done.stderr and "not reachable" in done.stderr
