"""The deployment as an operator starts it: dagster-webserver, dagster-daemon and two Celery
workers as their own processes, on deploy/dagster.yaml (PostgreSQL) and RabbitMQ, with the commands
of deploy/compose.yaml and deploy/README.md and the variables of deploy/env.example.

The month-end is launched over the webserver's GraphQL API, queued, dequeued by the daemon, its
steps run on the workers, and its invoices are byte for byte those of the in-process run.
"""

import contextlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml

from billing_pipeline.defs.jobs import MONTH_TAG
from billing_pipeline.defs.rendering import RENDER_SHARDS
from billing_pipeline.runner import RANGE_END, RANGE_START
from billing_pipeline_tests.support.demo import MONTH
from billing_pipeline_tests.support.postgres import PG

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent  # dagster-webserver, dagster-daemon and celery, as installed
SERVICES = ("migrate", "webserver", "daemon", "worker")  # one image, four commands
LOCATION, REPOSITORY = "billing_pipeline", "__repository__"  # workspace.yaml; Definitions
BROKER = ("127.0.0.1", 5672)
WORKERS = 2
START_SECONDS = (
    240  # two shared cores: webserver, daemon, their code servers and workers start at once
)
RUN_SECONDS = 600

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""
STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } ... on Error { message } }
}
"""
LOCATION_LOADED = """
query Loaded($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) { __typename ... on Error { message } }
}
"""


def compose_commands() -> dict[str, list[str]]:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    return {name: [str(arg) for arg in services[name]["command"]] for name in SERVICES}


def readme_commands() -> dict[str, list[str]]:
    """The commands of deploy/README.md "Starting it", by the program they start."""
    text = (DEPLOY / "README.md").read_text().split("## Starting it", 1)[1]
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    by_program = {
        "billing-pipeline": "migrate",
        "dagster-webserver": "webserver",
        "dagster-daemon": "daemon",
        "celery": "worker",
    }
    commands = {}
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        if argv and argv[0] in by_program:
            commands[by_program[argv[0]]] = argv
    return commands


def env_example_names() -> set[str]:
    """The variables deploy/env.example sets (commented lines are optional ones)."""
    lines = (DEPLOY / "env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}


def deployment_env(
    home: Path, instance_db: str, ledger_db: str, month_dir: Path, out: Path
) -> dict[str, str]:
    """The value of every variable env.example names, for this machine's services."""
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": PG["port"],
        "DAGSTER_PG_USERNAME": PG["user"],
        "DAGSTER_PG_PASSWORD": "",  # trust authentication on 127.0.0.1
        "DAGSTER_PG_DB": instance_db,
        "BILLING_LANDING_DIR": str(month_dir / "landing"),
        "BILLING_CATALOG": str(month_dir / "catalog.yaml"),
        "BILLING_OUT_DIR": str(out),
        "BILLING_STORAGE_DIR": str(out / ".storage"),
        "BILLING_DATABASE_URL": f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{ledger_db}",
        "BILLING_EXECUTOR": "celery",
        "BILLING_CELERY_BROKER": "pyamqp://guest:guest@{}:{}//".format(*BROKER),
        "BILLING_RENDER_SHARDS": str(RENDER_SHARDS),
        "BILLING_RENDER_WORKERS": "1",
    }


def with_values(argv: list[str], **values: str) -> list[str]:
    """The command with the value after an option replaced (``p="8080"`` for ``-p 3000``); every
    option named must be in the command, so a renamed option fails here, not in a running process."""
    argv = list(argv)
    for flag, value in values.items():
        index = argv.index(f"-{flag}")
        argv[index + 1] = value
    return argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def invoice_files(out: Path) -> dict[str, bytes]:
    folder = out / MONTH / "invoices"
    return {p.name: p.read_bytes() for p in sorted([*folder.glob("*.json"), *folder.glob("*.pdf")])}


def test_compose_runs_the_readme_commands_with_the_variables_of_env_example(tmp_path):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    names = env_example_names()

    assert compose_commands() == readme_commands()
    assert {"postgres", "rabbitmq", *SERVICES} <= set(services)
    assert len({yaml.safe_dump(services[s]["build"]) for s in SERVICES}) == 1  # one image
    for name in SERVICES:
        assert set(services[name]["environment"]) == names, name
    assert set(deployment_env(tmp_path, "i", "l", tmp_path, tmp_path)) == names  # the test below
    assert services["worker"]["deploy"]["replicas"] >= 2
    # The image's DAGSTER_HOME is the one compose names, and holds the shipped instance config.
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    home = services["webserver"]["environment"]["DAGSTER_HOME"]
    assert f"ENV DAGSTER_HOME={home}" in dockerfile
    assert f"COPY deploy/dagster.yaml {home}/dagster.yaml" in dockerfile
    assert "COPY workspace.yaml ./" in dockerfile


class Deployment:
    """The processes of one deployment, their logs, and its GraphQL endpoint."""

    def __init__(self, folder: Path, env: dict[str, str], port: int):
        self.folder, self.env, self.url = folder, env, f"http://127.0.0.1:{port}/graphql"
        self.processes: dict[str, subprocess.Popen] = {}

    def run(self, name: str, argv: list[str]) -> None:
        """A one-shot command, to its end; it must succeed."""
        self.start(name, argv)
        assert self.processes[name].wait(timeout=START_SECONDS) == 0, self.logs()

    def start(self, name: str, argv: list[str]) -> None:
        with open(self.folder / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                [str(BIN / argv[0]), *argv[1:]],
                cwd=self.folder,  # holds workspace.yaml, as the image's working directory does
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: code servers and run workers too
            )

    def stop(self) -> None:
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            _signal_group(process, signal.SIGKILL)  # whatever the group left behind
            process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}.log (end) ---\n{(self.folder / f'{name}.log').read_text(errors='replace')[-3000:]}"
            for name in self.processes
        )

    def assert_alive(self) -> None:
        dead = {
            n: p.returncode
            for n, p in self.processes.items()
            if n != "migrate" and p.poll() is not None
        }
        assert not dead, f"exited: {dead}\n{self.logs()}"

    def graphql(self, query: str, **variables) -> dict:
        response = httpx.post(self.url, json={"query": query, "variables": variables}, timeout=30)
        response.raise_for_status()
        payload = response.json()
        assert not payload.get("errors"), payload["errors"]
        return payload["data"]

    def wait_for_location(self, deadline: float) -> None:
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
        while True:
            self.assert_alive()
            try:
                found = self.graphql(LOCATION_LOADED, selector=selector)["repositoryOrError"]
                if found["__typename"] == "Repository":
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"code location not loaded\n{self.logs()}"
            time.sleep(1)

    def launch(self, job: str, tags: dict[str, str]) -> str:
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": job,
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self.graphql(LAUNCH, params=params)["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def wait_for_run(self, run_id: str, instance: dg.DagsterInstance) -> None:
        """Until the run ends; it must succeed (else its errors and every process's log)."""
        deadline = time.monotonic() + RUN_SECONDS
        while True:
            self.assert_alive()
            status = self.graphql(STATUS, runId=run_id)["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            assert time.monotonic() < deadline, f"run {run_id} still {status}\n{self.logs()}"
            time.sleep(1)
        errors = [
            f"{e.step_key or 'run'}: {e.message}\n{e.dagster_event.event_specific_data}"
            for e in instance.all_logs(run_id)
            if e.level >= logging.ERROR and e.dagster_event
        ]
        assert status == "SUCCESS", f"run {run_id}: {status}\n" + "\n".join(errors) + self.logs()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _ping_workers(names: set[str], deployment: Deployment, deadline: float) -> None:
    """Until every worker answers on the broker (their Celery app, from the same variables)."""
    from billing_pipeline.defs.executors import make_celery_app

    app, seen = make_celery_app(), set()
    while not names <= seen:
        deployment.assert_alive()
        assert time.monotonic() < deadline, f"workers: saw {sorted(seen)}\n{deployment.logs()}"
        for reply in app.control.ping(timeout=1.0) or []:
            seen |= set(reply)


@pytest.fixture
def rabbitmq() -> None:
    try:
        socket.create_connection(BROKER, timeout=3).close()
    except OSError as exc:
        if os.getenv("CI") == "true":
            raise
        pytest.skip(f"RabbitMQ not reachable: {exc}")


def test_a_month_end_launched_over_graphql_runs_on_the_workers_and_gives_the_in_process_invoices(
    demo_month, tmp_path, new_postgres_database, rabbitmq, monkeypatch
):
    home, app_dir, out = tmp_path / "dagster_home", tmp_path / "app", tmp_path / "out"
    home.mkdir()
    app_dir.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")  # as deploy/README.md says
    shutil.copy(ROOT / "workspace.yaml", app_dir / "workspace.yaml")
    env = deployment_env(
        home, new_postgres_database("dagster"), new_postgres_database("ledger"), tmp_path, out
    )
    shutil.copytree(demo_month.landing, tmp_path / "landing")  # the inputs; outputs start empty
    shutil.copy(demo_month.catalog, tmp_path / "catalog.yaml")
    for key, value in env.items():  # this process reads the same instance and broker
        monkeypatch.setenv(key, value)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "DAGSTER_"))}
    deployment = Deployment(app_dir, {**inherited, **env}, port := free_port())

    commands = compose_commands()
    tag = uuid.uuid4().hex[:8]
    workers = {f"billing{i}-{tag}@{socket.gethostname()}" for i in range(WORKERS)}
    try:
        deployment.run("migrate", commands["migrate"])  # before any worker opens the ledger
        deployment.start(
            "webserver", with_values(commands["webserver"], h="127.0.0.1", p=str(port))
        )
        deployment.start("daemon", commands["daemon"])
        for i, name in enumerate(sorted(workers)):
            deployment.start(f"worker{i}", with_values(commands["worker"], n=name))
        deadline = time.monotonic() + START_SECONDS
        _ping_workers(workers, deployment, deadline)
        deployment.wait_for_location(deadline)

        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            daily = deployment.launch(
                "daily_ingestion_job",
                {RANGE_START: f"{MONTH}-01", RANGE_END: f"{MONTH}-31", MONTH_TAG: MONTH},
            )
            deployment.wait_for_run(daily, instance)
            monthly = deployment.launch(
                "month_end_job", {"dagster/partition": f"{MONTH}-01", MONTH_TAG: MONTH}
            )
            deployment.wait_for_run(monthly, instance)
            events = [e.dagster_event for e in instance.all_logs(monthly) if e.dagster_event]
    finally:
        deployment.stop()

    kinds = [e.event_type for e in events]
    # queued by the webserver, then launched: only the daemon launches a queued run
    assert kinds.index(dg.DagsterEventType.RUN_ENQUEUED) < kinds.index(
        dg.DagsterEventType.RUN_STARTING
    )
    steps = {e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert {
        f"invoice_drafts.render_invoice_shard[shard_{i}]" for i in range(RENDER_SHARDS)
    } <= steps
    ran_on = {
        str(e.event_specific_data.metadata["Celery worker"].value)
        for e in events
        if e.event_type == dg.DagsterEventType.ENGINE_EVENT
        and "in celery worker" in (e.message or "")
    }
    assert ran_on == workers  # every step went through the broker, and both workers took steps
    assert invoice_files(out) == invoice_files(demo_month.out)
