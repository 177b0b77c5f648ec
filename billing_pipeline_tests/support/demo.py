"""The demo month the ``demo_month`` fixture (conftest.py) materializes once per session."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from billing_pipeline.runner import MonthEndSummary

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
