"""Copy the LiteLLM proxy's ``LiteLLM_SpendLogs`` rows from its PostgreSQL into the landing zone.

The reader (``litellm_spend_logs``) reads files only, so a month can be re-run offline and rows the
proxy purges later (its spend-log retention) stay on record. Each fetch:

- connects with the URL in ``BILLING_LITELLM_DATABASE_URL`` and reads in a READ ONLY transaction
  (it cannot change the proxy's data, whatever the role may do);
- selects only the columns the reader uses that the table has (``information_schema``), so a proxy
  with more columns, or an older one without ``status`` or ``end_user``, reads the same; of
  ``metadata`` it keeps the usage object and the status;
- is incremental by ``startTime``: from the newest ``startTime`` already in the landing zone minus
  an overlap window (the proxy writes spend logs in batches, so a request can be committed after a
  later one was fetched), or from a given day;
- writes one file per UTC day, ``litellm/spend_logs/<YYYY-MM-DD>.jsonl``, merged with what the
  file held by ``request_id``: a row fetched again replaces its earlier copy (never a second line),
  and a row the proxy no longer has is kept.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import psycopg

from billing_pipeline.atomic import write_text
from billing_pipeline.sources.litellm_spend_logs import COLUMNS, FOLDER, REQUIRED_COLUMNS

URL_ENV = "BILLING_LITELLM_DATABASE_URL"
TABLE = "LiteLLM_SpendLogs"
DEFAULT_OVERLAP = timedelta(hours=1)
# Of ``metadata``, what the reader reads: the proxy's usage object (or its details, in older
# proxies) and the request's status.
METADATA_KEYS = ("usage_object", "additional_usage_values", "status")
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl$")


class FetchError(RuntimeError):
    """The proxy database cannot be read as a spend log: the message says why (never the URL)."""


def database_url(environ: dict[str, str] | None = None) -> str:
    """The proxy database URL from ``BILLING_LITELLM_DATABASE_URL``."""
    url = (os.environ if environ is None else environ).get(URL_ENV, "").strip()
    if not url:
        raise FetchError(f"{URL_ENV} is not set: the LiteLLM proxy's PostgreSQL URL")
    return url


def connect(url: str) -> psycopg.Connection:
    """A connection whose transactions are READ ONLY."""
    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise FetchError(f"cannot connect to the LiteLLM database: {type(exc).__name__}") from None
    conn.read_only = True
    return conn


def _select(present: set[str]) -> str:
    """The SELECT of the columns the table has, in COLUMNS order; absent ones come back null."""
    parts = []
    for column in COLUMNS:
        quoted = f'"{column}"'
        if column not in present:
            parts.append(f"NULL AS {quoted}")
        elif column == "metadata":
            keys = ", ".join(f"'{k}', {quoted}::jsonb -> '{k}'" for k in METADATA_KEYS)
            parts.append(f"jsonb_build_object({keys}) AS {quoted}")
        else:
            parts.append(quoted)
    return f'SELECT {", ".join(parts)} FROM "{TABLE}"'


def _columns(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s",
        (TABLE,),
    ).fetchall()
    present = {r[0] for r in rows}
    if not present:
        raise FetchError(f'no table "{TABLE}" in the database\'s current schema')
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise FetchError(f'"{TABLE}" has no column {", ".join(missing)}: not a LiteLLM spend log')
    return present


def _text(value: object) -> object:
    """A value as the row file writes it: times as UTC RFC 3339 (Prisma stores UTC without an
    offset), JSON columns as JSON, everything else as psycopg returns it."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def read_rows(
    url: str, since: datetime, until: datetime | None = None
) -> Iterable[dict[str, object]]:
    """The spend log rows with ``since <= startTime < until`` (until None: all later ones), in
    ``startTime`` order, from one READ ONLY transaction."""
    with connect(url) as conn, conn.transaction():
        sql = _select(_columns(conn)) + ' WHERE "startTime" >= %s'
        params: list[object] = [since.astimezone(UTC).replace(tzinfo=None)]
        if until is not None:
            sql += ' AND "startTime" < %s'
            params.append(until.astimezone(UTC).replace(tzinfo=None))
        sql += ' ORDER BY "startTime", "request_id"'
        with conn.cursor(name="billing_spend_logs") as cursor:  # server side: rows in batches
            cursor.itersize = 5000
            cursor.execute(sql, params)
            names = [d.name for d in cursor.description]
            for row in cursor:
                yield {n: _text(v) for n, v in zip(names, row, strict=True)}


def _day_files(landing: Path) -> dict[date, Path]:
    folder = Path(landing) / FOLDER
    if not folder.is_dir():
        return {}
    out = {}
    for p in folder.iterdir():
        m = _DAY_FILE.match(p.name)
        if m:
            out[date.fromisoformat(m[1])] = p
    return out


def _lines(path: Path) -> dict[str, str]:
    """request_id -> line of a fetched day file (the file's own order)."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out[json.loads(line)["request_id"]] = line
    return out


def newest_start(landing: Path) -> datetime | None:
    """The latest ``startTime`` in the fetched day files: where the next fetch picks up."""
    days = _day_files(landing)
    for day in sorted(days, reverse=True):
        starts = [json.loads(line)["startTime"] for line in _lines(days[day]).values()]
        if starts:
            return max(datetime.fromisoformat(s) for s in starts)
    return None


def write_rows(landing: Path, rows: Iterable[dict[str, object]]) -> list[Path]:
    """Merge fetched rows into their day files by ``request_id`` (a row fetched again replaces its
    earlier line, rows the database no longer returns stay); returns the files written."""
    by_day: dict[date, dict[str, str]] = {}
    for row in rows:
        day = datetime.fromisoformat(str(row["startTime"])).date()
        line = json.dumps(row, ensure_ascii=False, sort_keys=True, default=str)
        by_day.setdefault(day, {})[str(row["request_id"])] = line
    written = []
    folder = Path(landing) / FOLDER
    for day, fetched in sorted(by_day.items()):
        path = folder / f"{day.isoformat()}.jsonl"
        merged = {**_lines(path), **fetched}
        text = "".join(f"{line}\n" for line in merged.values())
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue  # unchanged: keep its mtime, so the landing sensor does not ingest it again
        write_text(path, text)
        written.append(path)
    return written


def fetch(
    landing: Path,
    url: str,
    *,
    since: date | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> list[Path]:
    """Fetch what is new since the last fetch (its newest ``startTime`` minus ``overlap``), or
    from ``since`` (00:00 UTC) on a first fetch or when given. Returns the day files written."""
    if since is not None:
        start = datetime.combine(since, time(), UTC)
    else:
        newest = newest_start(landing)
        if newest is None:
            raise FetchError(
                "no earlier fetch in the landing zone: give the first day to fetch (--since)"
            )
        start = newest - overlap
    return write_rows(landing, read_rows(url, start))


def fetch_day(
    landing: Path, url: str, day: date, overlap: timedelta = DEFAULT_OVERLAP
) -> list[Path]:
    """One UTC day of requests, and the last ``overlap`` of the day before (late commits)."""
    start = datetime.combine(day, time(), UTC)
    return write_rows(landing, read_rows(url, start - overlap, start + timedelta(days=1)))
