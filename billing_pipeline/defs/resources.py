"""Resources: where the landing zone, the catalog, the ledger and the output files live.

Configured from environment variables with local defaults, so the embedded default (SQLite and
local files) needs nothing, and production swaps URLs, not code.
"""

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import polars as pl
from upath import UPath

from billing_pipeline.alerts.month_to_date import StoredDay
from billing_pipeline.atomic import atomic_file
from billing_pipeline.catalog import Catalog, load_catalog
from billing_pipeline.defs.partitions import HOUR_KEY_FORMAT
from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline.usage_keys import merge_code_books

RAW_HOURLY = "raw_gateway_log_hourly"
STORE_KEY = "usage_store"
CODES = "usage_codes"  # defs/ingestion.py writes it beside each usage_events day


class LandingZone(dg.ConfigurableResource):
    """The folder provider exports land in (DESIGN.md "Landing zone"): a local folder, or an
    fsspec URL (``s3://bucket/landing``, ``gs://...``, ``file:///...``, ``memory://...``).

    The readers read local files, so a remote landing zone is staged to a local cache folder
    first (``cache_dir``, default a per-URL folder under the system temp dir): only new or changed
    files are copied, files gone remotely are removed, and each copy keeps the remote
    modification time (undated exports fall back to it).
    """

    path: str
    cache_dir: str | None = None

    @property
    def url(self) -> UPath:
        return UPath(self.path)

    @property
    def is_remote(self) -> bool:
        return self.url.protocol not in ("", "file", "local")

    @property
    def root(self) -> Path:
        """A local folder with the landing zone's files (staged first when remote)."""
        if not self.is_remote:
            return Path(self.url.path) if self.url.protocol else Path(self.path)
        cache = (
            Path(self.cache_dir)
            if self.cache_dir
            else (
                Path(tempfile.gettempdir())
                / "billing_landing"
                / hashlib.sha256(self.path.encode()).hexdigest()[:16]
            )
        )
        return stage_to_local(self.url, cache)


def _fingerprint(info: dict) -> str:
    stamp = next(
        (
            info[k]
            for k in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "updated", "created")
            if info.get(k) is not None
        ),
        "",
    )
    return f"{info.get('size')}:{stamp}"


def _remote_mtime(info: dict) -> float | None:
    for key in ("mtime", "LastModified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def stage_to_local(url: UPath, cache: Path) -> Path:
    """Mirror every file under ``url`` into ``cache``/files (copy new or changed ones, drop vanished
    ones); each file is replaced atomically, so parallel steps staging at once never read half a file."""
    fs, base = url.fs, url.path.rstrip("/")
    if not fs.isdir(base):
        raise FileNotFoundError(f"{url}: landing zone folder not found")
    files = cache / "files"
    files.mkdir(parents=True, exist_ok=True)
    manifest_path = cache / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    remote = {}
    for name, info in fs.find(base, detail=True).items():
        if info.get("type") == "file":
            remote[name.lstrip("/")[len(base.lstrip("/")) :].lstrip("/")] = info
    for rel, info in sorted(remote.items()):
        target = files / rel
        if manifest.get(rel) == _fingerprint(info) and target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as out, fs.open(info["name"], "rb") as src:
            shutil.copyfileobj(src, out)
        mtime = _remote_mtime(info)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, target)
        manifest[rel] = _fingerprint(info)
    for rel in sorted(set(manifest) - set(remote)):
        (files / rel).unlink(missing_ok=True)
        del manifest[rel]
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".manifest.", suffix=".part")
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, sort_keys=True)
    os.replace(tmp, manifest_path)
    return files


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


def _split_column(window: dg.TimeWindow) -> str:
    """The column a partition's rows are told by: ``hour`` (hourly partitions), else ``day``."""
    return "hour" if window.end - window.start < dt.timedelta(days=1) else "day"


def _in_window(window: dg.TimeWindow) -> pl.Expr:
    """The rows of a partition: its hour, or its days (a daily or monthly partition)."""
    if _split_column(window) == "hour":
        return pl.col("hour") == window.start.astimezone(dt.UTC)
    return pl.col("day").is_between(window.start.date(), window.end.date(), closed="left")


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """Stores each partition of a frame asset as one Parquet file.

    A single-run backfill hands one frame for a range of partitions: it is split on its ``day``
    column (the days of each daily or monthly partition's window), so every partition still gets
    its own file and a monthly asset reads its days back.
    A range of hourly partitions is split on its ``hour`` column the same way. A row that falls
    in none of the run's partitions (or has no day) fails the output, naming it: never dropped.

    An input typed ``pl.LazyFrame`` is handed a scan of its files (as dagster-polars does), so
    the asset reads only the columns and rows it asks for; a ``pl.LazyFrame`` output is streamed
    to its file. A month of usage then never has to be in memory whole.
    """

    base_dir: str

    def _path(self, key: dg.AssetKey, partition: str | None) -> Path:
        base = Path(self.base_dir).joinpath(*key.path)
        return base / f"{partition}.parquet" if partition else base.with_suffix(".parquet")

    def partition_path(self, key: dg.AssetKey, partition: str | None) -> Path:
        """Where a partition's frame is stored (for readers of stored partitions, e.g. the
        hourly month to date)."""
        return self._path(key, partition)

    def _write(self, frame: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
        with atomic_file(path) as fh:
            if isinstance(frame, pl.LazyFrame):
                frame.sink_parquet(fh)
            else:
                frame.write_parquet(fh)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        if obj is None:
            return
        if not context.has_asset_partitions:
            self._write(obj, self._path(context.asset_key, None))
            return
        keys = list(context.asset_partition_keys)
        if len(keys) == 1:
            self._write(obj, self._path(context.asset_key, keys[0]))
            return
        partitions = context.asset_partitions_def
        spans = {key: partitions.time_window_for_partition_key(key) for key in keys}
        windows = {key: _in_window(span) for key, span in spans.items()}
        # A row in no partition's window (or with no day) would be in no file: refuse the output
        # rather than lose it (one partition's output keeps every row in its file, as above).
        outside = obj.lazy().filter(~pl.any_horizontal(list(windows.values())).fill_null(False))
        stray = outside.head(3).collect()
        if stray.height:
            count = outside.select(pl.len()).collect().item()
            column = _split_column(spans[keys[0]])
            raise ValueError(
                f"{context.asset_key.to_user_string()}: {count} row(s) fall in none of this "
                f"run's {len(keys)} partitions ({keys[0]} .. {keys[-1]}); first {column} values: "
                f"{stray[column].to_list()}; nothing was written"
            )
        for key, condition in windows.items():
            self._write(obj.filter(condition), self._path(context.asset_key, key))

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        lazy = context.dagster_type.typing_type is pl.LazyFrame
        read = pl.scan_parquet if lazy else pl.read_parquet
        if not context.has_asset_partitions:
            return read(self._path(context.asset_key, None))
        paths = [self._path(context.asset_key, k) for k in context.asset_partition_keys]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()}: {len(missing)} partition(s) not materialized, "
                f"first: {missing[0]}"
            )
        # diagonal_relaxed: a partition written before a column was added reads back with it null
        return pl.concat([read(p) for p in paths], how="diagonal_relaxed")


class UsageStore(dg.ConfigurableResource):
    """The stored usage_events days and raw_gateway_log_hourly hours: the io_manager's files."""

    base_dir: str

    def days(self, first: dt.date, last: dt.date) -> list[StoredDay]:
        """Each day first..last as stored: its usage_events, and its hourly gateway partitions
        when any of them was written after that (a line landed since the day was ingested)."""
        store = PolarsParquetIOManager(base_dir=self.base_dir)
        daily_key, hourly_key = dg.AssetKey("usage_events"), dg.AssetKey(RAW_HOURLY)
        out = []
        for i in range((last - first).days + 1):
            day = first + dt.timedelta(days=i)
            daily = store.partition_path(daily_key, day.isoformat())
            midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
            hours = [
                path
                for h in range(24)
                if (
                    path := store.partition_path(
                        hourly_key, (midnight + dt.timedelta(hours=h)).strftime(HOUR_KEY_FORMAT)
                    )
                ).exists()
            ]
            daily_at = daily.stat().st_mtime_ns if daily.exists() else None
            newer = bool(hours) and (
                daily_at is None or max(p.stat().st_mtime_ns for p in hours) > daily_at
            )
            out.append(
                StoredDay(
                    day,
                    pl.read_parquet(daily) if daily_at is not None else None,
                    pl.concat([pl.read_parquet(p) for p in hours], how="diagonal_relaxed")
                    if newer
                    else None,
                )
            )
        return out

    def code_book(self, first: dt.date, last: dt.date) -> pl.DataFrame | None:
        """The stored usage_codes of the days first..last as one book (usage_keys.merge_code_books:
        None, and usage is grouped by its names, when a day has none, being ingested before code
        books existed, or the books disagree)."""
        store = PolarsParquetIOManager(base_dir=self.base_dir)
        paths = [
            store.partition_path(dg.AssetKey(CODES), (first + dt.timedelta(days=i)).isoformat())
            for i in range((last - first).days + 1)
        ]
        return merge_code_books(pl.read_parquet(p) if p.exists() else None for p in paths)


def step_io_manager(storage_dir: Path) -> dg.FilesystemIOManager:
    """Values passed between the steps of one asset (e.g. invoice shards): pickles per run under
    <storage>/steps, on disk so another process or a celery worker on a shared disk reads them."""
    return dg.FilesystemIOManager(base_dir=str(Path(storage_dir) / "steps"))


class ProviderAdminApi(dg.ConfigurableResource):
    """A provider's admin (usage/cost) API: key from an environment variable via ``dg.EnvVar``,
    so it is resolved only when a fetch runs and never stored in run config or logs."""

    api_key: str
    base_url: str


class SmtpResource(dg.ConfigurableResource):
    """The SMTP server invoices are emailed through. Fields left unset are read from the
    BILLING_SMTP_* environment variables when a run sends, so the password never enters run
    config; ``dry_run_dir`` (or BILLING_SMTP_DRY_RUN_DIR) writes .eml files instead of sending."""

    host: str | None = None
    port: int | None = None
    security: str | None = None  # none | starttls | ssl
    user: str | None = None
    dry_run_dir: str | None = None

    def environ(self) -> dict[str, str]:
        """The BILLING_SMTP_* settings: the process environment, overridden by set fields."""
        env = {k: v for k, v in os.environ.items() if k.startswith("BILLING_SMTP_")}
        for name in ("host", "port", "security", "user", "dry_run_dir"):
            value = getattr(self, name)
            if value is not None:
                env[f"BILLING_SMTP_{name.upper()}"] = str(value)
        return env


def resources_from_env(root: str | Path | None = None) -> dict[str, object]:
    """The resource map for a deployment, from environment variables with local defaults."""
    root = Path(root or os.getenv("BILLING_HOME", "."))
    out = os.getenv("BILLING_OUT_DIR", str(root / "out"))
    return {
        "landing": LandingZone(path=os.getenv("BILLING_LANDING_DIR", str(root / "landing"))),
        "catalog": CatalogResource(path=os.getenv("BILLING_CATALOG", str(root / "catalog.yaml"))),
        "ledger": LedgerResource(
            url=os.getenv("BILLING_DATABASE_URL", f"sqlite:///{Path(out).resolve()}/ledger.db")
        ),
        "output": OutputFiles(path=out),
        "smtp": SmtpResource(),  # BILLING_SMTP_* read when invoices are sent
        "io_manager": PolarsParquetIOManager(
            base_dir=os.getenv("BILLING_STORAGE_DIR", str(Path(out) / ".storage"))
        ),
        "step_io_manager": step_io_manager(
            Path(os.getenv("BILLING_STORAGE_DIR", str(Path(out) / ".storage")))
        ),
        "openai_admin_api": ProviderAdminApi(
            api_key=dg.EnvVar("OPENAI_ADMIN_KEY"),
            base_url=os.getenv("OPENAI_ADMIN_BASE_URL", "https://api.openai.com/v1"),
        ),
        "anthropic_admin_api": ProviderAdminApi(
            api_key=dg.EnvVar("ANTHROPIC_ADMIN_KEY"),
            base_url=os.getenv("ANTHROPIC_ADMIN_BASE_URL", "https://api.anthropic.com"),
        ),
    }
