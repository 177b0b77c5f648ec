"""A landing zone on object storage (any fsspec URL): staged to a local cache, read like a folder.

fsspec's ``memory://`` filesystem stands in for s3:// or gs://: same API, no network.
"""

import datetime as dt
import os
import uuid

import dagster as dg
import fsspec
import polars as pl
import pytest

from billing_pipeline.defs import build_definitions
from billing_pipeline.defs.resources import LandingZone
from billing_pipeline.runner import ingest_days, month_end_resources

DAY = dt.date(2026, 10, 5)


@pytest.fixture
def memory_root():
    fs = fsspec.filesystem("memory")
    root = f"/landing-{uuid.uuid4().hex[:8]}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_a_local_folder_or_file_url_is_used_in_place(tmp_path):
    assert LandingZone(path=str(tmp_path)).root == tmp_path
    assert LandingZone(path=f"file://{tmp_path}").root == tmp_path
    assert not LandingZone(path=f"file://{tmp_path}").is_remote


def test_a_remote_landing_zone_is_staged_with_new_changed_and_removed_files(memory_root, tmp_path):
    fs, root = memory_root
    fs.pipe(f"{root}/gateway/2026-10-05.jsonl", b'{"a": 1}\n')
    fs.pipe(f"{root}/cloud/focus/2026-10.csv", b"x,y\n1,2\n")
    zone = LandingZone(path=f"memory://{root}", cache_dir=str(tmp_path / "cache"))

    local = zone.root
    assert zone.is_remote
    assert (local / "gateway/2026-10-05.jsonl").read_bytes() == b'{"a": 1}\n'
    created = fs.info(f"{root}/cloud/focus/2026-10.csv")["created"]
    assert os.stat(local / "cloud/focus/2026-10.csv").st_mtime == pytest.approx(created.timestamp())

    fs.pipe(f"{root}/gateway/2026-10-05.jsonl", b'{"a": 1}\n{"a": 2}\n')  # re-exported day
    fs.pipe(f"{root}/gateway/2026-10-06.jsonl", b'{"b": 1}\n')  # a new day
    fs.rm(f"{root}/cloud/focus/2026-10.csv")  # withdrawn export
    local = zone.root

    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert files == ["gateway/2026-10-05.jsonl", "gateway/2026-10-06.jsonl"]
    assert (local / "gateway/2026-10-05.jsonl").read_bytes() == b'{"a": 1}\n{"a": 2}\n'


def test_a_missing_remote_landing_zone_names_the_url(tmp_path):
    zone = LandingZone(path=f"memory:///nowhere-{uuid.uuid4().hex[:8]}", cache_dir=str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match="memory://.*nowhere-.*: landing zone folder not found"
    ):
        _ = zone.root


def test_a_day_ingested_from_an_fsspec_url_equals_the_same_day_from_the_local_folder(
    demo_month, memory_root, tmp_path
):
    fs, root = memory_root
    fs.put(str(demo_month.landing), root, recursive=True)
    out = tmp_path / "out"
    resources = {
        **month_end_resources(demo_month.landing, demo_month.catalog, out),
        "landing": LandingZone(path=f"memory://{root}", cache_dir=str(tmp_path / "cache")),
    }

    with dg.DagsterInstance.ephemeral() as instance:
        ingest_days(build_definitions(resources), instance, DAY, DAY)

    day = f"{DAY.isoformat()}.parquet"
    remote = pl.read_parquet(out / ".storage" / "usage_events" / day)
    local = pl.read_parquet(demo_month.out / ".storage" / "usage_events" / day)
    assert remote.height > 0
    assert remote.drop("origin").equals(
        local.drop("origin")
    )  # origin names the file: same relative path
    assert remote["origin"].to_list() == local["origin"].to_list()
