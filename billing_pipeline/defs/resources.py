"""Resources: where the landing zone, the catalog, the ledger and the output files live.

Configured from environment variables with local defaults, so the embedded default (SQLite and
local files) needs nothing, and production swaps URLs, not code.
"""


import os
from pathlib import Path

import dagster as dg
import polars as pl

from billing_pipeline.catalog import Catalog, load_catalog
from billing_pipeline.invoicing.ledger import Ledger


class LandingZone(dg.ConfigurableResource):
    """The folder provider exports land in (DESIGN.md "Landing zone")."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)


class CatalogResource(dg.ConfigurableResource):
    """The catalog YAML: plans, customers, price book."""

    path: str

    def load(self) -> Catalog:
        return load_catalog(self.path)


class LedgerResource(dg.ConfigurableResource):
    """The invoice ledger: SQLite by default, PostgreSQL with BILLING_DATABASE_URL."""

    url: str

    def open(self) -> Ledger:
        ledger = Ledger(self.url)
        ledger.migrate()
        return ledger


class OutputFiles(dg.ConfigurableResource):
    """Where invoices (PDF + JSON), reconciliation.csv and quarantine.csv are written."""

    path: str

    def month_dir(self, month: str) -> Path:
        directory = Path(self.path) / month
        directory.mkdir(parents=True, exist_ok=True)
        return directory


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """Stores each partition of a frame asset as one Parquet file.

    A single-run backfill hands one frame for a range of daily partitions: it is split on its
    ``day`` column, so every day still gets its own file and a monthly asset reads its days back.
    """

    base_dir: str

    def _path(self, key: dg.AssetKey, partition: str | None) -> Path:
        base = Path(self.base_dir).joinpath(*key.path)
        return base / f"{partition}.parquet" if partition else base.with_suffix(".parquet")

    def _write(self, frame: pl.DataFrame, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".parquet.tmp")
        frame.write_parquet(tmp)
        os.replace(tmp, path)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if obj is None:
            return
        if not context.has_asset_partitions:
            self._write(obj, self._path(context.asset_key, None))
            return
        keys = list(context.asset_partition_keys)
        if len(keys) == 1:
            self._write(obj, self._path(context.asset_key, keys[0]))
            return
        for key in keys:
            day = pl.lit(key).str.to_date()
            self._write(obj.filter(pl.col("day") == day), self._path(context.asset_key, key))

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        if not context.has_asset_partitions:
            return pl.read_parquet(self._path(context.asset_key, None))
        paths = [self._path(context.asset_key, k) for k in context.asset_partition_keys]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()}: {len(missing)} partition(s) not materialized, "
                f"first: {missing[0]}"
            )
        return pl.concat([pl.read_parquet(p) for p in paths], how="vertical")


class ProviderAdminApi(dg.ConfigurableResource):
    """A provider's admin (usage/cost) API: key from an environment variable via ``dg.EnvVar``,
    so it is resolved only when a fetch runs and never stored in run config or logs."""

    api_key: str
    base_url: str


def resources_from_env(root: str | Path | None = None) -> dict[str, object]:
    """The resource map for a deployment, from environment variables with local defaults."""
    root = Path(root or os.getenv("BILLING_HOME", "."))
    out = os.getenv("BILLING_OUT_DIR", str(root / "out"))
    return {
        "landing": LandingZone(path=os.getenv("BILLING_LANDING_DIR", str(root / "landing"))),
        "catalog": CatalogResource(path=os.getenv("BILLING_CATALOG", str(root / "catalog.yaml"))),
        "ledger": LedgerResource(url=os.getenv("BILLING_DATABASE_URL", f"sqlite:///{Path(out).resolve()}/ledger.db")),
        "output": OutputFiles(path=out),
        "io_manager": PolarsParquetIOManager(base_dir=os.getenv("BILLING_STORAGE_DIR", str(Path(out) / ".storage"))),
        "openai_admin_api": ProviderAdminApi(api_key=dg.EnvVar("OPENAI_ADMIN_KEY"),
                                             base_url=os.getenv("OPENAI_ADMIN_BASE_URL", "https://api.openai.com/v1")),
        "anthropic_admin_api": ProviderAdminApi(api_key=dg.EnvVar("ANTHROPIC_ADMIN_KEY"),
                                                base_url=os.getenv("ANTHROPIC_ADMIN_BASE_URL", "https://api.anthropic.com")),
    }
