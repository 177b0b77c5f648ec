"""Scale-out: the month on the celery executor, with two worker processes on the real broker.

The run's instance is the shipped deploy/dagster.yaml on the local PostgreSQL (workers record their
step events there), outputs and step values live on the shared disk, and the invoices must be
byte for byte those of the in-process run.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from benchmarks.proc import stop_process_groups
from billing_pipeline.defs.executors import celery_settings
from billing_pipeline.defs.rendering import RENDER_SHARDS
from billing_pipeline.runner import RANGE_END, RANGE_START
from billing_pipeline_tests.support.demo import MONTH
from billing_pipeline_tests.support.postgres import PG

ROOT = Path(__file__).resolve().parents[1]
BROKERS = {  # both run on every machine here, CI included; DB 15 keeps Redis keys apart
    "rabbitmq": ("pyamqp://guest:guest@127.0.0.1:5672//", 5672),
    "redis": ("redis://127.0.0.1:6379/15", 6379),
}
WORKERS = 2


def invoice_files(out: Path) -> dict[str, bytes]:
    folder = out / MONTH / "invoices"
    return {p.name: p.read_bytes() for p in sorted([*folder.glob("*.json"), *folder.glob("*.pdf")])}


@pytest.fixture(params=sorted(BROKERS))
def broker(request) -> str:
    url, port = BROKERS[request.param]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except OSError as exc:
        if os.getenv("CI") == "true":
            raise
        pytest.skip(f"{request.param} not reachable: {exc}")
    return url


def _ping_until(names: set[str], deadline: float, workers: list[subprocess.Popen]) -> None:
    """Wait until every worker answers on the broker, so a dead worker fails fast, not hangs."""
    from billing_pipeline.defs.executors import make_celery_app

    app = make_celery_app()
    seen: set[str] = set()
    while time.monotonic() < deadline:
        dead = [w.args for w in workers if w.poll() is not None]
        assert not dead, f"celery worker exited: {dead}"
        for reply in app.control.ping(timeout=1.0) or []:
            seen |= set(reply)
        if names <= seen:
            return
    raise AssertionError(f"celery workers not ready: expected {sorted(names)}, saw {sorted(seen)}")


def test_the_month_on_celery_workers_gives_byte_identical_invoices(
    demo_month,
    tmp_path,
    postgres_database,
    broker,
    monkeypatch,
):
    home, out = tmp_path / "dagster_home", tmp_path / "out"
    home.mkdir()
    shutil.copy(
        ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml"
    )  # the file we ship: PostgreSQL storage
    env = {
        "DAGSTER_HOME": home,
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": PG["port"],
        "DAGSTER_PG_USERNAME": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": postgres_database,
        "BILLING_LANDING_DIR": demo_month.landing,
        "BILLING_CATALOG": demo_month.catalog,
        "BILLING_OUT_DIR": out,
        "BILLING_DATABASE_URL": f"sqlite:///{out / 'ledger.db'}",
        "BILLING_STORAGE_DIR": out / ".storage",
        "BILLING_EXECUTOR": "celery",
        "BILLING_CELERY_BROKER": broker,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    tag = uuid.uuid4().hex[:8]
    names = {f"billing{i}-{tag}@{socket.gethostname()}" for i in range(WORKERS)}
    workers = []
    try:
        for i, name in enumerate(sorted(names)):
            log = open(tmp_path / f"worker{i}.log", "wb")  # noqa: SIM115 - closed with the process
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "billing_pipeline.defs.executors",
                        "worker",
                        "--concurrency=1",
                        "--loglevel=INFO",
                        "-n",
                        name,
                    ],
                    cwd=ROOT,
                    env=os.environ.copy(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        _ping_until(names, time.monotonic() + 120, workers)

        from billing_pipeline.defs import daily_ingestion_job_from_env, month_end_job_from_env

        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            with dg.execute_job(
                dg.reconstructable(daily_ingestion_job_from_env),
                instance=instance,
                tags={RANGE_START: f"{MONTH}-01", RANGE_END: f"{MONTH}-31"},
            ) as daily:
                assert daily.success
            with dg.execute_job(
                dg.reconstructable(month_end_job_from_env),
                instance=instance,
                tags={"dagster/partition": f"{MONTH}-01"},
            ) as monthly:
                assert monthly.success
                steps = {
                    e.step_key for e in monthly.all_events if e.event_type_value == "STEP_SUCCESS"
                }
                ran_on = {
                    str(e.event_specific_data.metadata["Celery worker"].value)
                    for e in monthly.all_events
                    if e.event_type_value == "ENGINE_EVENT"
                    and "in celery worker" in (e.message or "")
                }
            assert instance.get_run_by_id(monthly.run_id).status == dg.DagsterRunStatus.SUCCESS
    finally:
        stop_process_groups(workers, grace=20)

    assert {
        f"invoice_drafts.render_invoice_shard[shard_{i}]" for i in range(RENDER_SHARDS)
    } <= steps
    assert ran_on == names  # every step went through the broker, and both workers took steps
    assert invoice_files(out) == invoice_files(demo_month.out)


def test_the_celery_executor_takes_its_broker_from_the_environment(monkeypatch):
    monkeypatch.setenv("BILLING_CELERY_BROKER", "redis://127.0.0.1:6379/3")
    monkeypatch.delenv("BILLING_CELERY_BACKEND", raising=False)
    assert (
        celery_settings()["backend"] == "redis://127.0.0.1:6379/3"
    )  # Redis: results on the broker
    monkeypatch.setenv("BILLING_CELERY_BROKER", "pyamqp://guest:guest@127.0.0.1:5672//")
    assert celery_settings()["backend"] == "rpc://"  # RabbitMQ: results as reply messages


def test_an_unknown_executor_name_is_refused(monkeypatch):
    from billing_pipeline.defs.executors import ExecutorConfigError, executor_from_env

    monkeypatch.setenv("BILLING_EXECUTOR", "threads")
    with pytest.raises(ExecutorConfigError, match="BILLING_EXECUTOR='threads'"):
        executor_from_env()
