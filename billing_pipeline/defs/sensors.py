"""``landing_zone_sensor``: start the daily ingestion partition when files land or change.

The cursor remembers each file's mtime (ns) and size, so a re-fetched page (same name, new
content) triggers again while an untouched landing zone triggers nothing. The run key is the
day plus a hash of that day's changed files, so a sensor retry never starts the same run twice.
Which day a file belongs to follows the readers' rules: the YYYY-MM-DD in its name, else every
day of the YYYY-MM in its name (monthly cloud exports), else its mtime's UTC day.
"""

import calendar
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import dagster as dg

from billing_pipeline.defs.ingestion import daily_ingestion_job
from billing_pipeline.defs.jobs import MONTH_TAG
from billing_pipeline.defs.partitions import daily_partitions
from billing_pipeline.defs.resources import LandingZone
from billing_pipeline.sources.files import name_day, name_month


def _snapshot(root: Path) -> dict[str, list[int]]:
    """Every visible landing file -> [mtime_ns, size]; temporary and hidden files are skipped."""
    if not root.is_dir():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if (
            not p.is_file()
            or any(part.startswith(".") for part in rel.split("/"))
            or rel.endswith(".tmp")
        ):
            continue
        st = p.stat()
        out[rel] = [st.st_mtime_ns, st.st_size]
    return out


_RANGE_FOLDER = re.compile(r"(?:^|/)(\d{4})(\d{2})\d{2}-\d{8}(?:/|$)")


def _folder_month(rel: str) -> dt.date | None:
    """The billing period a cloud delivery's folders name: ``BILLING_PERIOD=2026-10/`` (CUR 2.0)
    or ``20261001-20261031/`` (Azure exports). Its parts (``cur2-00001.csv.gz``) name no date, yet
    a re-delivery restates the whole month: every day of it is re-ingested."""
    folders = rel.rsplit("/", 1)[0] if "/" in rel else ""
    ranged = _RANGE_FOLDER.search(folders)
    if ranged and 1 <= int(ranged[2]) <= 12:
        return dt.date(int(ranged[1]), int(ranged[2]), 1)
    return name_month(folders) if folders else None


def days_for_file(rel: str, mtime_ns: int, today: dt.date) -> list[dt.date]:
    """The daily partitions a landing file can feed (never after ``today``)."""
    name = rel.rsplit("/", 1)[-1]
    day = name_day(name)
    if day is not None:
        return [day] if day <= today else []
    month = name_month(name) or _folder_month(rel)
    if month is not None:
        last = calendar.monthrange(month.year, month.month)[1]
        return [d for d in (month.replace(day=i) for i in range(1, last + 1)) if d <= today]
    return [dt.datetime.fromtimestamp(mtime_ns / 1e9, dt.UTC).date()]


def plan_runs(before: dict, after: dict, today: dt.date) -> dict[str, list[str]]:
    """Changed or new files grouped by the partition key (day) they feed."""
    changed = sorted(rel for rel, stamp in after.items() if before.get(rel) != stamp)
    by_day: dict[str, list[str]] = {}
    for rel in changed:
        for day in days_for_file(rel, after[rel][0], today):
            by_day.setdefault(day.isoformat(), []).append(rel)
    return by_day


@dg.sensor(
    job=daily_ingestion_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    """New or changed landing files -> one ingestion run per day they belong to."""
    before = json.loads(context.cursor) if context.cursor else {}
    after = _snapshot(landing.root)
    today = dt.datetime.now(dt.UTC).date()
    by_day = plan_runs(before, after, today)
    requests, skipped = [], []
    for day, rels in sorted(by_day.items()):
        if not daily_partitions.has_partition_key(day):
            skipped.append(day)
            continue
        digest = hashlib.sha256(json.dumps([[r, after[r]] for r in rels]).encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                run_key=f"{day}:{digest}",
                partition_key=day,
                tags={MONTH_TAG: day[:7], "billing/landing_files": str(len(rels))},
            )
        )
    if skipped:
        context.log.warning(
            f"landing files for days outside the partitions were not ingested: {', '.join(skipped[:10])}"
        )
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(after, sort_keys=True),
        skip_reason=None if requests else dg.SkipReason("no new or changed landing files"),
    )


defs = dg.Definitions(sensors=[landing_zone_sensor])
