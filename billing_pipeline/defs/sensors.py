"""``landing_zone_sensor``: start the daily ingestion partition when files land or change;
``gateway_hourly_sensor``: start the hourly ingestion of the gateway log when its files land or grow.

The cursor remembers each file's mtime (ns) and size, so a re-fetched page (same name, new
content) triggers again while an untouched landing zone triggers nothing. The run key is the
day plus a hash of that day's changed files, so a sensor retry never starts the same run twice.
Which day a file belongs to follows the readers' rules: the YYYY-MM-DD in its name, else every
day of the YYYY-MM in its name (monthly cloud exports), else its mtime's UTC day. Which hours a
gateway file feeds: the hour in its name (``2026-10-05T14.jsonl``, ``2026-10-05T14-001.jsonl``);
for a file named by its day, the hours of the lines appended since the last tick (a file that
shrank or was rewritten in place: every hour of its day so far).
"""

import calendar
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import dagster as dg

from billing_pipeline.defs.hourly import hour_request, hourly_ingestion_job
from billing_pipeline.defs.ingestion import daily_ingestion_job
from billing_pipeline.defs.jobs import MONTH_TAG
from billing_pipeline.defs.partitions import HOUR_KEY_FORMAT, daily_partitions, hourly_partitions
from billing_pipeline.defs.resources import LandingZone
from billing_pipeline.sources.files import name_day, name_hour, name_month
from billing_pipeline.sources.gateway_log import FOLDER as GATEWAY_FOLDER
from billing_pipeline.sources.gateway_log import appended_hours


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


def _digest(after: dict[str, list[int]], rels: list[str]) -> str:
    """A run's files with their stamps, hashed: the run key's tail, so a retried tick repeats it
    and a changed file makes a new one."""
    return hashlib.sha256(json.dumps([[r, after[r]] for r in rels]).encode()).hexdigest()[:16]


def _result(
    context: dg.SensorEvaluationContext,
    after: dict[str, list[int]],
    requests: list[dg.RunRequest],
    skipped: list[str],
    *,
    outside: str,
    nothing: str,
) -> dg.SensorResult:
    """A tick's runs and its new cursor (the snapshot ``after``); the partitions that do not exist
    (``skipped``) are warned about (``outside``: whose files), never started; ``nothing`` is the
    skip reason of a tick that starts no run."""
    if skipped:
        context.log.warning(
            f"{outside} outside the partitions were not ingested: {', '.join(skipped[:10])}"
        )
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(after, sort_keys=True),
        skip_reason=None if requests else dg.SkipReason(nothing),
    )


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
    requests, skipped = [], []
    for day, rels in sorted(plan_runs(before, after, today).items()):
        if not daily_partitions.has_partition_key(day):
            skipped.append(day)
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{day}:{_digest(after, rels)}",
                partition_key=day,
                tags={MONTH_TAG: day[:7], "billing/landing_files": str(len(rels))},
            )
        )
    return _result(
        context,
        after,
        requests,
        skipped,
        outside="landing files for days",
        nothing="no new or changed landing files",
    )


HOUR = dt.timedelta(hours=1)


def _day_hours(day: dt.date, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The first and last hour of ``day`` that have begun by ``now``."""
    first = dt.datetime.combine(day, dt.time(), dt.UTC)
    last = min(first + 23 * HOUR, now.replace(minute=0, second=0, microsecond=0))
    return (first, last) if last >= first else None


def hours_for_file(
    root: Path, rel: str, before: list[int] | None, after: list[int], now: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The hourly partitions a new or changed gateway file feeds, as (first, last) hour ranges:
    its named hour; else each hour of the lines appended to it (it grew); else, when that cannot
    be told (it shrank, was rewritten, or too much was appended), every hour of its day so far."""
    name = rel.rsplit("/", 1)[-1]
    hour = name_hour(name)
    if hour is not None:
        return [(hour, hour)] if hour <= now else []
    day = name_day(name)
    grown = before is not None and after[1] > before[1]
    hours = None
    if before is None or grown:
        hours = appended_hours(root / rel, before[1] if grown else 0, day, now)
    if hours is not None:
        return [(h, h) for h in sorted(hours)]
    whole = _day_hours(day or dt.datetime.fromtimestamp(after[0] / 1e9, dt.UTC).date(), now)
    return [whole] if whole else []


MAX_HOUR_RUNS_PER_DAY = 3  # more changed hours in one day (a backlog): one range run for them


def plan_hour_runs(
    root: Path, before: dict, after: dict, now: dt.datetime
) -> dict[tuple[dt.datetime, dt.datetime], list[str]]:
    """Changed or new gateway files grouped by the hours they feed, as (first, last) hour runs:
    one run per changed hour, so each gets its hourly spike check; more than
    ``MAX_HOUR_RUNS_PER_DAY`` changed hours of one day (files that piled up while the sensor was
    off) become one range run of that day, and an hour inside a range is run by the range."""
    by_range: dict[tuple[dt.datetime, dt.datetime], set[str]] = {}
    for rel in sorted(r for r, stamp in after.items() if before.get(r) != stamp):
        for span in hours_for_file(root, rel, before.get(rel), after[rel], now):
            by_range.setdefault(span, set()).add(rel)
    singles: dict[dt.date, list[tuple[dt.datetime, dt.datetime]]] = {}
    for span in by_range:
        if span[0] == span[1]:
            singles.setdefault(span[0].date(), []).append(span)
    for spans in singles.values():
        if len(spans) > MAX_HOUR_RUNS_PER_DAY:
            merged = (min(s[0] for s in spans), max(s[1] for s in spans))
            rels = set().union(*(by_range.pop(s) for s in spans))
            by_range[merged] = by_range.get(merged, set()) | rels
    ranges = [span for span in by_range if span[0] != span[1]]
    for span in [s for s in by_range if s[0] == s[1]]:
        covering = next((r for r in ranges if r[0] <= span[0] <= r[1]), None)
        if covering is not None:
            by_range[covering] |= by_range.pop(span)
    return {span: sorted(rels) for span, rels in by_range.items()}


@dg.sensor(
    job=hourly_ingestion_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def gateway_hourly_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    """New or grown gateway log files -> one hourly ingestion run per hour they feed (a range run
    for a day-named file that was rewritten), each followed in the run by the alerts, hard caps and
    month-to-date statements of the month to date."""
    before = json.loads(context.cursor) if context.cursor else {}
    root = landing.root
    after = {
        f"{GATEWAY_FOLDER}/{rel}": stamp
        for rel, stamp in _snapshot(root / GATEWAY_FOLDER).items()
        if rel.endswith(".jsonl")
    }
    now = dt.datetime.now(dt.UTC)
    requests, skipped = [], []
    for (first, last), rels in sorted(plan_hour_runs(root, before, after, now).items()):
        if not (
            hourly_partitions.has_partition_key(first.strftime(HOUR_KEY_FORMAT))
            and hourly_partitions.has_partition_key(last.strftime(HOUR_KEY_FORMAT))
        ):
            skipped.append(first.strftime(HOUR_KEY_FORMAT))
            continue
        span = f"{first.strftime(HOUR_KEY_FORMAT)}..{last.strftime(HOUR_KEY_FORMAT)}"
        requests.append(hour_request(first, last, f"{span}:{_digest(after, rels)}", len(rels)))
    return _result(
        context,
        after,
        requests,
        skipped,
        outside="gateway files for hours",
        nothing="no new or grown gateway log files",
    )


defs = dg.Definitions(sensors=[landing_zone_sensor, gateway_hourly_sensor])
