"""The landing-zone sensor starts one ingestion run per day whose files are new or changed, and
never the same run twice."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from billing_pipeline.defs.resources import LandingZone
from billing_pipeline.defs.sensors import days_for_file, landing_zone_sensor

TODAY = dt.datetime.now(dt.UTC).date()
D1, D2 = (TODAY - dt.timedelta(days=3)).isoformat(), (TODAY - dt.timedelta(days=2)).isoformat()


def evaluate(landing, cursor=None):
    context = dg.build_sensor_context(
        cursor=cursor, resources={"landing": LandingZone(path=str(landing))}
    )
    return landing_zone_sensor(context)


def put(landing, rel, text="x"):
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_new_files_start_their_days_and_an_unchanged_zone_starts_nothing(tmp_path):
    put(tmp_path, f"gateway/{D1}.jsonl")
    put(tmp_path, f"openai/usage/completions/{D1}_p1.json")
    put(tmp_path, f"anthropic/usage_report/{D2}_p1.json")
    put(tmp_path, f"openai/usage/completions/.{TODAY}_p1.json.tmp")  # a page still being written
    first = evaluate(tmp_path)
    assert sorted(r.partition_key for r in first.run_requests) == [D1, D2]
    assert all(r.tags["billing/month"] == r.partition_key[:7] for r in first.run_requests)
    again = evaluate(tmp_path, first.cursor)
    assert again.run_requests == [] and again.skip_reason is not None


def test_a_refetched_page_starts_its_day_again_with_a_new_run_key(tmp_path):
    page = put(tmp_path, f"openai/usage/completions/{D1}_p1.json", "old")
    first = evaluate(tmp_path)
    put(tmp_path, f"openai/usage/completions/{D1}_p1.json", "new content")
    os.utime(page, ns=(page.stat().st_atime_ns, page.stat().st_mtime_ns + 10**9))
    second = evaluate(tmp_path, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [D1]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_files_map_to_days_like_the_readers_do():
    today = dt.date(2026, 10, 3)
    assert days_for_file("gateway/2026-10-02.jsonl", 0, today) == [dt.date(2026, 10, 2)]
    assert days_for_file("cloud/focus/export_2026-10.csv", 0, today) == [
        dt.date(2026, 10, d) for d in (1, 2, 3)
    ]
    assert days_for_file("gateway/2026-10-09.jsonl", 0, today) == []  # not a partition yet
    noon = int(dt.datetime(2026, 9, 30, 12, tzinfo=dt.UTC).timestamp() * 1e9)
    assert days_for_file("cloud/focus/export.csv", noon, today) == [dt.date(2026, 9, 30)]


def test_a_cloud_redelivery_in_dateless_parts_re_runs_every_day_of_the_period_its_folder_names():
    """A CUR 2.0 part (``cur2-00001.csv.gz``) or an Azure run names no date: the delivery folder
    does, and a re-delivery restates the whole billing period."""
    today = dt.date(2026, 11, 4)
    october = [dt.date(2026, 10, d) for d in range(1, 32)]
    cur = "cloud/aws_cur/gpu/data/BILLING_PERIOD=2026-10/20261104T0600Z-ab12/cur2-gpu-00002.csv.gz"
    assert days_for_file(cur, 0, today) == october
    azure = "cloud/focus/azure/costs/20261001-20261031/8c3e1a/part_0_0001.csv"
    assert days_for_file(azure, 0, today) == october
