"""Shared fixtures: one demo month run once per test session, copied by tests that change it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from billing_pipeline.demo.generator import write_demo
from billing_pipeline.runner import MonthEndSummary, run_month_end

MONTH = "2026-10"


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
