"""The README's Dagster UI command works on a fresh machine: `dagster dev -w workspace.yaml` from
the repository root, with no DAGSTER_HOME and no DAGSTER_PG_* variables, serves the code location.

The top-level dagster.yaml is the local instance (SQLite in a temporary folder, the run queue with
one run per billing month); the PostgreSQL instance lives in deploy/dagster.yaml.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LOCATION_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name locationOrLoadError { __typename ... on PythonError { message } } } } }
  instance { runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml } } }"""
START_SECONDS = 240  # two shared cores: dagster dev starts a webserver, a daemon and a code server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """The machine's environment without any Dagster instance setting, HOME in a temp folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "BILLING_"))}
    home = tmp_path / "home"
    home.mkdir()
    env.update(
        HOME=str(home),
        BILLING_LANDING_DIR=str(tmp_path / "landing"),
        BILLING_CATALOG=str(tmp_path / "catalog.yaml"),
        BILLING_OUT_DIR=str(tmp_path / "out"),
    )
    return env


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole group (webserver, daemon, code server), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_dagster_dev_from_the_repository_root_serves_the_code_location(tmp_path):
    port = _free_port()
    log = tmp_path / "dagster-dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=ROOT,
            env=_clean_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        answer, deadline = None, time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": LOCATION_QUERY}, timeout=10
                )
                entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
                # still loading: the entry exists but its location is not there yet (None)
                if entries and all(e["locationOrLoadError"] is not None for e in entries):
                    answer = response.json()["data"]
                    break
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass  # not serving yet
            time.sleep(1)
        state = (
            f"exited {proc.returncode}"
            if proc.poll() is not None
            else f"no answer within {START_SECONDS} s"
        )
        assert answer is not None, (
            f"dagster dev {state}:\n{log.read_text(errors='replace')[-3000:]}"
        )
        entries = {
            e["name"]: e["locationOrLoadError"]
            for e in answer["workspaceOrError"]["locationEntries"]
        }
        assert entries == {"billing_pipeline": {"__typename": "RepositoryLocation"}}, entries
        # The instance it runs on is the top-level dagster.yaml: its run queue, nothing from deploy/.
        queue = answer["instance"]["runQueueConfig"]
        assert queue["maxConcurrentRuns"] == 4
        limits = yaml.safe_load(queue["tagConcurrencyLimitsYaml"])
        assert {
            "key": "billing/month",
            "limit": 1,
            "value": {"applyLimitPerUniqueValue": True},
        } in limits
    finally:
        _stop(proc)


@pytest.mark.parametrize("config", ["dagster.yaml", "deploy/dagster.yaml"])
def test_instance_configs_keep_one_run_per_billing_month_and_telemetry_off(config):
    """Local and production instances queue runs the same way; only storage differs."""
    data = yaml.safe_load((ROOT / config).read_text(encoding="utf-8"))
    assert {
        "key": "billing/month",
        "limit": 1,
        "value": {"applyLimitPerUniqueValue": True},
    } in data["run_queue"]["tag_concurrency_limits"]
    assert data["run_retries"]["enabled"] is True
    assert data["telemetry"]["enabled"] is False
    if config == "dagster.yaml":
        assert "storage" not in data  # SQLite under the instance's folder: no environment needed
        assert "{env:" not in (ROOT / config).read_text(encoding="utf-8").replace(" ", "")
    else:
        assert set(data["storage"]["postgres"]["postgres_db"]) >= {
            "hostname",
            "port",
            "username",
            "password",
            "db_name",
        }
