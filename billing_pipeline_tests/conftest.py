"""Shared fixtures: one demo month run once per test session, copied by tests that change it."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from billing_pipeline.demo.generator import write_demo
from billing_pipeline.runner import MonthEndSummary, run_month_end

MONTH = "2026-10"
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}  # the local server, trust auth


@dataclass
class DemoMonth:
    landing: Path
    catalog: Path
    out: Path
    summary: MonthEndSummary

    def copy_to(self, target: Path) -> DemoMonth:
        """An independent copy of the month (landing, catalog, outputs, Dagster instance)."""
        shutil.copytree(self.landing, target / "landing")
        shutil.copy(self.catalog, target / "catalog.yaml")
        shutil.copytree(self.out, target / "out")
        return DemoMonth(target / "landing", target / "catalog.yaml", target / "out", self.summary)


@pytest.fixture(scope="session")
def demo_month(tmp_path_factory) -> DemoMonth:
    """The demo month, materialized once on the embedded default. Tests must not modify it."""
    root = tmp_path_factory.mktemp("demo_month")
    landing, catalog, out = root / "landing", root / "catalog.yaml", root / "out"
    write_demo(landing, catalog, month=MONTH)
    return DemoMonth(landing, catalog, out, run_month_end(MONTH, landing, catalog, out))


@pytest.fixture(autouse=True)
def _fresh_reconstructed_jobs():
    """Dagster keeps the last reconstructed job in a process-wide lru_cache keyed by its code
    pointer, so a job rebuilt from the environment (``month_end_job_from_env``) in one test would
    come back with another test's executor and folders. Clear it around every test."""
    from dagster._core.definitions.reconstruct import (
        ReconstructableJob,
    )  # no public way to reset it

    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    yield
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()


@pytest.fixture
def new_postgres_database() -> Iterator[Callable[[str], str]]:
    """Makes throwaway databases on the local PostgreSQL server (``new("dagster")`` returns a fresh
    name); all of them are dropped afterwards. Skips without a server, except under CI."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="test", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        if os.getenv("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    admin.autocommit = True
    made: list[str] = []

    def new(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name

    try:
        yield new
    finally:
        for name in made:
            admin.cursor().execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
