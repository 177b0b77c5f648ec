"""Which files of a cloud billing export are the truth: one delivery per export and billing period.

Clouds re-deliver a billing period many times (AWS at least daily and up to two weeks after the
period closes; Azure on every export run), and each delivery restates the WHOLE period. Reading two
deliveries bills the period twice, and the line-item ids cannot tell: AWS documents that
``identity_line_item_id`` changes between deliveries. So files are grouped into deliveries and only
the current delivery of each (export, period) is billed; every row of a superseded delivery is still
read and quarantined as ``superseded_delivery`` (not billable by design), so conservation holds and
the replaced numbers stay visible.

Layouts recognised (paths below the source folder; anything else is the flat layout):

- AWS Data Exports (CUR 2.0 and FOCUS 1.x):
  ``<export>/data/BILLING_PERIOD=YYYY-MM/[<executionId>/]<export>-00001.csv.gz`` with
  ``<export>/metadata/BILLING_PERIOD=YYYY-MM/[<executionId>/]<export>-Manifest.json`` whose
  ``dataFiles`` (full S3 URIs) name the current files
  (https://docs.aws.amazon.com/cur/latest/userguide/dataexports-export-delivery.html ,
  https://docs.aws.amazon.com/cur/latest/userguide/dataexports-manifest.html).
- Azure Cost Management exports (FOCUS): ``<export>/<YYYYMMDD-YYYYMMDD>/<runId>/part_0_0001.csv[.gz]``
  with a ``manifest.json`` in the run folder listing ``blobs[].blobName`` and
  ``runInfo.submittedTime`` (partitioned exports "placed in a blob directory together with a
  manifest file": CostManagementExportData.PartitionData).
- Flat: ``<name>[_<timestamp>][-00001].csv`` directly in the folder or any subfolder.

Rules, in order:

1. A delivery split into parts (``-00001``, ``-00002``, Azure ``part_0_0001``) is ONE delivery: the
   files of one delivery folder, or (flat) of one name once the part number is removed.
2. A manifest, when present, decides: its files are current, every other file of that export and
   period is superseded, and a file it names that is missing from the landing zone is money at risk
   (``missing_manifest_file``): reading the parts that did arrive would bill part of the period in
   silence. Of several manifests for one period the newest wins (Azure ``runInfo.submittedTime``,
   else the rule of 3).
3. Without a manifest the newest delivery wins. "Newest" is decided by the delivery's timestamp in its
   path (an ``executionId``/run folder or a name part like ``20261103T030000Z``,
   ``2026-11-03T03:00:00Z`` or ``20261103030000``), then by the newest file mtime, then by the path
   (so the choice is deterministic). A plain day (``2026-10-05``) is a daily partition, not a
   delivery time, so differently dated files never replace each other.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline.sources import files

_PERIOD_AWS = re.compile(r"^BILLING_PERIOD=(\d{4})-(\d{2})$", re.IGNORECASE)
_PERIOD_RANGE = re.compile(r"^(\d{4})(\d{2})(\d{2})-(\d{4})(\d{2})(\d{2})$")
_TIMESTAMP = re.compile(
    r"(\d{8}T\d{4,6}Z?|\d{4}-\d{2}-\d{2}T\d{2}[:\-]?\d{2}(?:[:\-]?\d{2})?(?:\.\d+)?Z?|(?<!\d)\d{14}(?!\d))"
)
_PART = re.compile(r"(?:[-_](?:part[-_]?)?\d{5}|^part_\d+_\d+|[-_]part[-_]?\d+)$", re.IGNORECASE)
_EXTENSIONS = (".csv.gz", ".csv", ".parquet", ".gz")


@dataclass(frozen=True)
class DataFile:
    """One data file to read; ``superseded_by`` names the current delivery when this one is not."""

    file: files.LandingFile
    superseded_by: str | None = None


def _stem(name: str) -> str:
    low = name.lower()
    for ext in _EXTENSIONS:
        if low.endswith(ext):
            return name[: -len(ext)]
    return name


def _period_index(parts: tuple[str, ...]) -> tuple[int | None, date | None, date | None]:
    """Position of the billing-period folder and the period's [first, last] day."""
    for i, part in enumerate(parts):
        m = _PERIOD_AWS.match(part)
        if m and 1 <= int(m[2]) <= 12:
            first = date(int(m[1]), int(m[2]), 1)
            return i, first, _month_end(first)
        m = _PERIOD_RANGE.match(part)
        if m:
            try:
                return (
                    i,
                    date(int(m[1]), int(m[2]), int(m[3])),
                    date(int(m[4]), int(m[5]), int(m[6])),
                )
            except ValueError:
                continue
    return None, None, None


def _month_end(first: date) -> date:
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return date.fromordinal(nxt.toordinal() - 1)


def _timestamp(text: str) -> str:
    """The delivery time in a path as sortable digits ('' when the path names none)."""
    found = _TIMESTAMP.findall(text)
    return max((re.sub(r"\D", "", t)[:14].ljust(14, "0") for t in found), default="")


@dataclass
class _Entry:
    path: Path
    rel: str  # relative to the source folder
    group: str
    delivery: str
    tail: tuple[str, ...]  # path from the export's data folder down, to match manifest entries
    first: date | None
    last: date | None


def _entry(base: Path, path: Path) -> _Entry:
    parts = path.relative_to(base).parts
    idx, first, last = _period_index(parts[:-1])
    stem = _PART.sub("", _stem(parts[-1]))
    if idx is not None:
        group = "/".join(parts[: idx + 1])
        delivery = "/".join(parts[: idx + 2]) if len(parts) > idx + 2 else group + "/" + "*"
        top = idx - 1 if idx >= 1 and parts[idx - 1].lower() == "data" else idx
        tail = parts[top:]
    else:
        dirs = "/".join(parts[:-1])
        group = _TIMESTAMP.sub("*", dirs + "/" + stem)
        delivery = dirs + "/" + stem
        tail = parts[-1:]
        first = last = None
        month = files.name_month(parts[-1]) if files.name_day(parts[-1]) is None else None
        if month is not None:
            first, last = month, _month_end(month)
    return _Entry(path, "/".join(parts), group, delivery, tuple(tail), first, last)


def _uri_tail(uri: str, depth: int) -> tuple[str, ...]:
    parts = [p for p in re.sub(r"^[a-z0-9]+://[^/]*/", "", str(uri)).split("/") if p]
    return tuple(parts[-depth:]) if depth else ()


def _manifest(base: Path, path: Path, landing: Path):
    """(group, sort key, named tails or None, problem row or None) for one manifest file."""
    parts = path.relative_to(base).parts
    rel = path.relative_to(landing).as_posix()
    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (ValueError, OSError) as exc:
        return (
            None,
            None,
            None,
            dict(
                origin=rel,
                field="",
                reason="unreadable_manifest",
                message=f"export manifest is not readable JSON: {exc}"[:500],
            ),
        )
    if not isinstance(doc, dict):
        return (
            None,
            None,
            None,
            dict(
                origin=rel,
                field="",
                reason="unreadable_manifest",
                message="export manifest is not a JSON object",
            ),
        )
    mtime = path.stat().st_mtime
    if (
        "dataFiles" in doc
    ):  # AWS Data Exports: <export>/metadata/BILLING_PERIOD=X/[id/]<export>-Manifest.json
        idx, _, _ = _period_index(parts[:-1])
        if idx is None or idx < 1 or parts[idx - 1].lower() != "metadata":
            return None, None, None, None
        group = "/".join(parts[: idx - 1] + ("data",) + parts[idx : idx + 1])
        named = [u for u in doc.get("dataFiles") or [] if isinstance(u, str)]
        key = (
            _timestamp("/".join(parts[idx + 1 :])),
            str(doc.get("executionId") or ""),
            mtime,
            rel,
        )
        return group, key, named, None
    if "blobs" in doc:  # Azure: <export>/<YYYYMMDD-YYYYMMDD>/<runId>/manifest.json
        idx, _, _ = _period_index(parts[:-1])
        if idx is None:
            return None, None, None, None
        group = "/".join(parts[: idx + 1])
        named = [
            b.get("blobName")
            for b in doc.get("blobs") or []
            if isinstance(b, dict) and b.get("blobName")
        ]
        run = doc.get("runInfo") if isinstance(doc.get("runInfo"), dict) else {}
        key = (
            _timestamp(str(run.get("submittedTime") or ""))
            or _timestamp("/".join(parts[idx + 1 :])),
            "",
            mtime,
            rel,
        )
        return group, key, named, None
    return None, None, None, None


def select(
    landing: Path, folder: str, suffixes: tuple[str, ...], start: date, end: date, source: str
):
    """Data files of ``landing/folder`` for [start, end), each marked current or superseded, and the
    quarantine rows of manifest problems (missing parts, unreadable manifest)."""
    landing = Path(landing)
    base = landing / folder
    if not base.is_dir():
        return [], files.quarantine_frame(source, [])
    paths = sorted(p for p in base.rglob("*") if p.is_file())
    manifests = [p for p in paths if p.name.lower().endswith("manifest.json")]
    entries = [
        _entry(base, p)
        for p in paths
        if p.name.lower().endswith(suffixes) and p not in manifests and not p.name.startswith(".")
    ]
    problems: list[dict] = []

    newest_manifest: dict[str, tuple] = {}
    for m in manifests:
        group, key, named, problem = _manifest(base, m, landing)
        if problem:
            _, first, _ = _period_index(m.relative_to(base).parts[:-1])
            problems.append(
                problem
                | {
                    "day": first
                    or files.LandingFile(m, problem["origin"], None, None).fallback_day()
                }
            )
        elif group is not None and (
            group not in newest_manifest or key > newest_manifest[group][0]
        ):
            newest_manifest[group] = (key, named, m)

    by_group: dict[str, list[_Entry]] = {}
    for e in entries:
        by_group.setdefault(e.group, []).append(e)

    out: list[tuple[_Entry, str | None]] = []
    for group in sorted(set(by_group) | set(newest_manifest)):
        members = by_group.get(group, [])
        if group in newest_manifest:
            _, named, mpath = newest_manifest[group]
            current_tails = set()
            for uri in named:
                hit = [e for e in members if _uri_tail(uri, len(e.tail)) == e.tail]
                if hit:
                    current_tails.update(e.tail for e in hit)
                else:
                    _, first, _ = _period_index(mpath.relative_to(base).parts[:-1])
                    problems.append(
                        dict(
                            origin=mpath.relative_to(landing).as_posix(),
                            field="dataFiles",
                            reason="missing_manifest_file",
                            day=first,
                            message=f"the export manifest names {uri}, which is not in the landing zone: "
                            "the delivery is incomplete, so the period is held until the part arrives",
                        )
                    )
            name = mpath.relative_to(landing).as_posix()
            out += [(e, None if e.tail in current_tails else f"manifest {name}") for e in members]
            continue
        deliveries: dict[str, list[_Entry]] = {}
        for e in members:
            deliveries.setdefault(e.delivery, []).append(e)
        order = sorted(
            deliveries,
            key=lambda d: (_timestamp(d), max(x.path.stat().st_mtime for x in deliveries[d]), d),
        )
        newest = order[-1]
        out += [(e, None if e.delivery == newest else f"delivery {newest}") for e in members]

    selected = []
    for e, superseded in sorted(out, key=lambda x: x[0].rel):
        name = e.path.name
        day = files.name_day(name) if e.first is None else None
        if day is not None and not (start <= day < end):
            continue
        if e.first is not None and (e.last < start or e.first >= end):
            continue
        rel = e.path.relative_to(landing).as_posix()
        month = (
            None
            if day is not None
            else (e.first.replace(day=1) if e.first else files.name_month(name))
        )
        selected.append(DataFile(files.LandingFile(e.path, rel, day, month), superseded))
    quarantine = files.quarantine_frame(source, problems)
    if quarantine.height:
        quarantine = quarantine.filter(pl.col("day").is_between(start, end, closed="left"))
    return selected, quarantine


def read_text_bytes(path: Path) -> bytes:
    """A CSV export's bytes: gunzipped when the name ends in .gz, without a UTF-8 BOM.

    A truncated or corrupt gzip raises (the caller quarantines the file as unreadable): gzip's
    stream check fails before any row is returned, so a cut-off download is never read in part.
    """
    data = path.read_bytes()
    if path.name.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise ValueError(f"truncated or corrupt gzip: {exc}") from exc
    return data.removeprefix(b"\xef\xbb\xbf")
