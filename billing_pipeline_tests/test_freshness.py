"""Within the hour: a gateway line lands, its hour is ingested, the month to date is evaluated
(limit alerts, spikes, hard caps, statements), and the month-end still bills exactly what the
hours read."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from billing_pipeline.alerts import outbox
from billing_pipeline.alerts.caps_server import CAPS_PATH, caps_server, serve_in_thread
from billing_pipeline.alerts.month_to_date import StoredDay, month_to_date_usage
from billing_pipeline.alerts.rules import Alert, AlertRules, daily_spend, hourly_spike_alerts
from billing_pipeline.alerts.run import HARD_CAPS_FILE, evaluate_day, evaluate_hour
from billing_pipeline.alerts.webhooks import deliver_all_due
from billing_pipeline.catalog import load_catalog
from billing_pipeline.defs import build_definitions
from billing_pipeline.defs.partitions import HOUR_KEY_FORMAT
from billing_pipeline.defs.resources import LandingZone, PolarsParquetIOManager
from billing_pipeline.defs.sensors import gateway_hourly_sensor, hours_for_file, plan_hour_runs
from billing_pipeline.runner import month_end_resources, open_instance, run_month_end
from billing_pipeline.sources import gateway_log
from billing_pipeline.sources.files import record_hour
from billing_pipeline.usage import normalize, to_raw
from billing_pipeline_tests.support.alerts import (
    catalog,
    catalog_document,
    every_hour,
    hourly,
    october,
    usage,
)
from billing_pipeline_tests.support.gateway import WebhookReceiver, append, line

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
SECRET = "whsec_fresh_0123456789"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

# The documented test opt-in: these tests' webhook receivers listen on 127.0.0.1.
pytestmark = pytest.mark.usefixtures("receivers_on_loopback")


def at(hour: int, minute: int = 0, second: int = 0, day: int = 5) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, minute, second, tzinfo=UTC)


def stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_mtime_ns, st.st_size]


# ---------------------------------------------------------------- the hours a day is made of


def every_naming(landing: Path) -> Path:
    """One day of the gateway log in every naming a gateway uses: the day's file, an hour's file
    and an hour rotated by size into parts, with a bad line, another day's line, a line that
    straddles the hour it was logged in, and a line delivered twice."""
    gw = landing / "gateway"
    append(
        gw / "2026-10-05.jsonl",
        line("d1", at(2, 10), "acme", 1_000),
        line("d2", at(14, 59, 59), "acme", 2_000),
        "not json",
        line("d3", at(1, day=6), "acme", 5),  # another day's line: quarantined in this day
    )
    append(
        gw / "2026-10-05T14.jsonl",
        line("h1", at(14, 5), "initech", 3_000),
        line("h2", at(13, 59, 59), "acme", 4_000),  # logged after the rotation to 14:00
    )
    append(gw / "2026-10-05T15-000.jsonl", line("p1", at(15, 1), "acme", 10))
    append(
        gw / "2026-10-05T15-001.jsonl",
        line("p2", at(15, 2), "acme", 20),
        line("p1", at(15, 1), "acme", 10),  # re-delivered in the next part
    )
    return gw


def test_the_hours_of_a_day_read_exactly_the_records_the_day_reads_each_in_one_hour(tmp_path):
    every_naming(tmp_path)
    day = gateway_log.read(tmp_path, dt.date(2026, 10, 5), dt.date(2026, 10, 6))
    hours = [gateway_log.read_hours(tmp_path, at(h), at(h) + HOUR) for h in range(24)]
    order = ["origin", "event_id"]
    events = pl.concat([h.read.events for h in hours]).sort(order)
    assert events.equals(day.events.sort(order))
    quarantine = pl.concat([h.read.quarantine for h in hours]).sort("origin")
    assert quarantine.equals(day.quarantine.sort("origin"))
    assert sum(h.read.records_read for h in hours) == day.records_read == 9
    hour_of = dict(pl.concat([h.hours for h in hours]).iter_rows())
    assert len(hour_of) == 9  # every record in exactly one hour
    assert {origin: h.hour for origin, h in hour_of.items()} == {
        "gateway/2026-10-05.jsonl:1": 2,
        "gateway/2026-10-05.jsonl:2": 14,
        "gateway/2026-10-05.jsonl:3": 0,  # no timestamp: the day's first hour
        "gateway/2026-10-05.jsonl:4": 0,  # another day's timestamp: quarantined, first hour
        "gateway/2026-10-05T14.jsonl:1": 14,
        "gateway/2026-10-05T14.jsonl:2": 14,  # the file's hour, whatever its own timestamp
        "gateway/2026-10-05T15-000.jsonl:1": 15,
        "gateway/2026-10-05T15-001.jsonl:1": 15,
        "gateway/2026-10-05T15-001.jsonl:2": 15,
    }
    # the sensor's rule (Python) and the reader's (polars) are the same rule
    assert record_hour(dt.date(2026, 10, 5), None, at(14, 59, 59)) == at(14)
    assert record_hour(dt.date(2026, 10, 5), None, at(1, day=6)) == at(0)
    assert record_hour(dt.date(2026, 10, 5), at(14), at(13, 59, 59)) == at(14)


def test_a_range_of_hours_reads_what_its_hours_read_one_by_one(tmp_path):
    every_naming(tmp_path)
    whole = gateway_log.read_hours(tmp_path, at(0), at(0) + 24 * HOUR)
    one_by_one = pl.concat(
        [gateway_log.read_hours(tmp_path, at(h), at(h) + HOUR).hours for h in range(24)]
    )
    assert whole.hours.sort("origin").equals(one_by_one.sort("origin"))


# ---------------------------------------------------------------- which hours a landing starts

NOW = at(16, 30)


def test_a_file_named_for_an_hour_starts_that_hour_and_an_hour_not_begun_starts_nothing(tmp_path):
    part = append(tmp_path / "gateway/2026-10-05T14-001.jsonl", line("a", at(14, 1), "acme", 1))
    later = append(tmp_path / "gateway/2026-10-05T17.jsonl", line("b", at(17, 1), "acme", 1))
    rel = "gateway/2026-10-05T14-001.jsonl"
    assert hours_for_file(tmp_path, rel, None, stamp(part), NOW) == [(at(14), at(14))]
    rel17 = "gateway/2026-10-05T17.jsonl"
    assert hours_for_file(tmp_path, rel17, None, stamp(later), NOW) == []


def test_a_line_appended_late_to_a_day_file_starts_only_its_own_hour(tmp_path):
    rel = "gateway/2026-10-05.jsonl"
    path = append(tmp_path / rel, line("a", at(2, 10), "acme", 1), line("b", at(14), "acme", 1))
    first = stamp(path)
    assert hours_for_file(tmp_path, rel, None, first, NOW) == [(at(2), at(2)), (at(14), at(14))]
    append(path, line("late", at(3, 30), "acme", 1))
    assert hours_for_file(tmp_path, rel, first, stamp(path), NOW) == [(at(3), at(3))]
    path.write_text(line("a", at(2, 10), "acme", 1) + "\n")  # rewritten in place, shorter
    assert hours_for_file(tmp_path, rel, stamp(path), [stamp(path)[0] + 1, 10], NOW) == [
        (at(0), at(16))  # cannot tell which lines changed: every hour of the day so far
    ]


def test_files_that_piled_up_while_the_sensor_was_off_run_as_one_range_per_day(tmp_path):
    for h in range(10):
        append(tmp_path / f"gateway/2026-10-05T{h:02d}.jsonl", line(f"r{h}", at(h, 5), "acme", 1))
    append(tmp_path / "gateway/2026-10-04T23.jsonl", line("y", at(23, 5, day=4), "acme", 1))
    after = {f"gateway/{p.name}": stamp(p) for p in sorted((tmp_path / "gateway").glob("*.jsonl"))}
    plan = plan_hour_runs(tmp_path, {}, after, NOW)
    assert sorted(plan) == [(at(23, day=4), at(23, day=4)), (at(0), at(9))]
    assert len(plan[(at(0), at(9))]) == 10


def tick(landing: Path, cursor: str | None = None, instance=None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"landing": LandingZone(path=str(landing))}
    )
    return gateway_hourly_sensor(context)


def test_the_sensor_starts_each_new_or_grown_hour_once_and_a_rewritten_day_as_a_range(tmp_path):
    yesterday = dt.datetime.now(UTC).date() - dt.timedelta(days=1)
    hour = dt.datetime.combine(yesterday, dt.time(10), UTC)
    key = hour.strftime(HOUR_KEY_FORMAT)
    part = append(tmp_path / f"gateway/{yesterday}T10-000.jsonl", line("a", hour, "acme", 1))
    first = tick(tmp_path)
    assert [(r.partition_key, r.tags["billing/month"]) for r in first.run_requests] == [
        (key, yesterday.strftime("%Y-%m"))
    ]
    unchanged = tick(tmp_path, first.cursor)
    assert unchanged.run_requests == [] and unchanged.skip_reason is not None
    append(part, line("b", hour + dt.timedelta(minutes=9), "acme", 1))  # the part grows
    grown = tick(tmp_path, unchanged.cursor)
    assert [r.partition_key for r in grown.run_requests] == [key]
    assert grown.run_requests[0].run_key != first.run_requests[0].run_key
    day_file = append(tmp_path / f"gateway/{yesterday}.jsonl", line("c", hour, "acme", 1))
    then = tick(tmp_path, grown.cursor)
    day_file.write_text("")  # emptied and rewritten: every hour of the day again
    rewritten = tick(tmp_path, then.cursor)
    [request] = rewritten.run_requests
    assert request.partition_key is None
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (
        f"{yesterday}-00:00",
        f"{yesterday}-23:00",
    )


# ---------------------------------------------------------------- end to end, in process


@pytest.fixture
def acme_secret(monkeypatch):
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET_ACME", SECRET)


def run_request(defs: dg.Definitions, instance, request: dg.RunRequest):
    return defs.resolve_job_def("hourly_ingestion_job").execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags
    )


def test_a_gateway_line_is_alerted_capped_and_stated_after_one_sensor_tick_and_one_run(
    tmp_path, acme_secret
):
    """The hour before now, so the alert is news (alerts about old days are recorded, not sent)."""
    hour = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - HOUR
    period = hour.strftime("%Y-%m")
    landing, out, catalog_path = tmp_path / "landing", tmp_path / "out", tmp_path / "catalog.yaml"
    with WebhookReceiver(SECRET) as receiver:
        catalog_path.write_text(yaml.safe_dump(catalog_document(receiver.url, hard_cap="6.00")))
        gw = landing / "gateway"
        first_part = append(
            gw / f"{hour:%Y-%m-%dT%H}-000.jsonl",
            line("r1", hour + dt.timedelta(minutes=5), "acme", 600_000),  # $6.00 of a $10.00 limit
        )
        defs = build_definitions(month_end_resources(landing, catalog_path, out))
        with dg.instance_for_test() as instance:
            first = tick(landing, instance=instance)
            [request] = first.run_requests
            assert request.partition_key == hour.strftime(HOUR_KEY_FORMAT)
            assert run_request(defs, instance, request).success
            assert receiver.ids() == [f"limit:acme:{period}:50"]  # arrived during the run
            caps = json.loads((out / HARD_CAPS_FILE).read_text())
            assert caps["period"] == period and caps["as_of"] > hour.strftime("%Y-%m-%dT%H")
            assert [(c["customer_id"], c["spend_to_date"]) for c in caps["customers"]] == [
                ("acme", "6.00")
            ]
            statement = json.loads((out / period / "statements/latest/acme.json").read_text())
            assert statement["as_of"] == caps["as_of"]
            assert statement["spend_so_far"]["usage_charges"] == "6.00"
            assert not (out / period / "statements/latest/initech.json").exists()  # unchanged

            # Late in the same hour, the gateway rotates by size: a new part with one more
            # request and r1 delivered again. The hour runs again and counts r1 once.
            append(
                first_part.with_name(f"{hour:%Y-%m-%dT%H}-001.jsonl"),
                line("r2", hour + dt.timedelta(minutes=40), "acme", 200_000),
                line("r1", hour + dt.timedelta(minutes=5), "acme", 600_000),
            )
            second = tick(landing, first.cursor, instance)
            [again] = second.run_requests
            assert again.partition_key == request.partition_key
            assert again.run_key != request.run_key
            assert run_request(defs, instance, again).success
        assert receiver.ids() == [f"limit:acme:{period}:50", f"limit:acme:{period}:75"]
        assert receiver.accepted[-1]["spend_to_date"] == "8.00"
        caps = json.loads((out / HARD_CAPS_FILE).read_text())
        assert [c["spend_to_date"] for c in caps["customers"]] == ["8.00"]
        statement = json.loads((out / period / "statements/latest/acme.json").read_text())
        assert statement["spend_so_far"]["usage_charges"] == "8.00"


# ---------------------------------------------------------------- the rules, per hour

H = at(14, day=8)


def test_an_hour_far_above_the_customers_last_24_hours_is_a_spike_fired_once_that_day():
    cat = catalog()
    steady = every_hour(H - 48 * HOUR, 48, 10_000)  # $0.10 an hour for two days
    runaway = hourly(steady | {H: 2_000_000, H + HOUR: 2_000_000})  # $20.00 an hour
    spend = daily_spend(runaway, cat, H.date())
    [alert] = hourly_spike_alerts(runaway, spend, cat, H, H + HOUR)
    assert (alert.alert_id, alert.kind) == ("hourly_spike:acme:2026-10-08", "hourly_spike")
    assert (alert.payload["hour_spend"], alert.payload["baseline_hourly_mean"]) == ("20.00", "0.10")
    assert alert.payload["as_of"] == "2026-10-08T15:00:00Z"
    [next_hour] = hourly_spike_alerts(runaway, spend, cat, H + HOUR, H + 2 * HOUR)
    assert next_hour.alert_id == alert.alert_id  # the outbox keeps one per customer and day
    calm = hourly(steady | {H: 10_000})
    assert hourly_spike_alerts(calm, daily_spend(calm, cat, H.date()), cat, H, H + HOUR) == []


def test_a_new_customers_first_busy_hours_and_small_hours_are_no_spikes():
    cat = catalog()
    new = hourly(every_hour(H - 3 * HOUR, 3, 10_000) | {H: 2_000_000})  # 3 hours of history
    assert hourly_spike_alerts(new, daily_spend(new, cat, H.date()), cat, H, H + HOUR) == []
    small = hourly(every_hour(H - 48 * HOUR, 48, 100) | {H: 50_000})  # $0.50: under min_spend
    assert hourly_spike_alerts(small, daily_spend(small, cat, H.date()), cat, H, H + HOUR) == []
    lower = AlertRules(min_spend=Decimal("0.10"))
    [alert] = hourly_spike_alerts(small, daily_spend(small, cat, H.date()), cat, H, H + HOUR, lower)
    assert alert.payload["hour_spend"] == "0.50"


def test_an_hours_evaluation_counts_the_day_so_far_and_says_when(ledger, tmp_path):
    cat = catalog(hard_cap="6.00")
    so_far = pl.concat([usage(october(1, 7)), hourly({at(9, day=8): 50_000})])  # $7.50
    result = evaluate_hour(so_far, cat, at(9, day=8), ledger.engine, tmp_path, now=at(9, 40, day=8))
    assert result.as_of == at(9, 40, day=8)
    limits = {a.alert_id: a.payload for a in result.alerts if a.kind == "limit_threshold"}
    assert sorted(limits) == ["limit:acme:2026-10:50", "limit:acme:2026-10:75"]
    assert limits["limit:acme:2026-10:75"]["as_of"] == "2026-10-08T09:40:00Z"
    caps = json.loads((tmp_path / HARD_CAPS_FILE).read_text())
    assert (caps["as_of"], caps["customers"][0]["spend_to_date"]) == (
        "2026-10-08T09:40:00Z",
        "7.50",
    )


def test_a_late_line_for_last_month_never_replaces_this_months_hard_caps(ledger, tmp_path):
    cat = catalog(hard_cap="6.00")
    october_usage = usage(october(1, 31))  # $31 in October: capped
    first_hour = dt.datetime(2026, 11, 1, 0, tzinfo=UTC)
    minutes = dt.timedelta(minutes=1)
    evaluate_day(october_usage, cat, dt.date(2026, 10, 31), ledger.engine, tmp_path, now=first_hour)
    november = hourly({first_hour: 10_000})
    evaluate_hour(november, cat, first_hour, ledger.engine, tmp_path, now=first_hour + 40 * minutes)
    assert json.loads((tmp_path / HARD_CAPS_FILE).read_text())["customers"] == []  # a new month
    late = pl.concat([october_usage, hourly({at(23, day=31): 10_000})])
    again = evaluate_hour(
        late, cat, at(23, day=31), ledger.engine, tmp_path, now=first_hour + 50 * minutes
    )
    assert again.caps_written  # October's list in the ledger is brought up to date ...
    held = json.loads((tmp_path / HARD_CAPS_FILE).read_text())
    assert (held["period"], held["customers"]) == ("2026-11", [])  # ... the file keeps November


def test_an_hours_new_alert_is_sent_in_its_run_even_behind_a_backlog_of_older_ones(
    ledger, acme_secret, tmp_path
):
    with WebhookReceiver(SECRET) as receiver:
        cat = catalog(receiver.url)
        hook = (receiver.url, "BILLING_WEBHOOK_SECRET_ACME")
        old = [
            Alert(f"spike:acme:old-{i:03d}", "acme", "daily_spike", "2026-10", {"n": i})
            for i in range(150)  # more than one delivery pass takes
        ]
        outbox.record(ledger.engine, old, {"acme": hook}, at(9, day=8))
        so_far = hourly({at(9, day=8): 600_000})  # $6.00 of acme's $10.00
        evaluate_hour(so_far, cat, at(9, day=8), ledger.engine, tmp_path, now=at(9, 30, day=8))
        report = deliver_all_due(ledger.engine)
    assert len(report.delivered) == 151
    assert "limit:acme:2026-10:50" in receiver.ids()


# ---------------------------------------------------------------- the month to date, assembled


def test_a_days_gateway_rows_come_from_its_hours_only_when_they_were_written_after_it(tmp_path):
    cat = catalog()
    day = dt.date(2026, 10, 5)
    path = append(tmp_path / "gateway/2026-10-05.jsonl", line("a", at(2), "acme", 100_000))
    daily_read = gateway_log.read(tmp_path, day, day + dt.timedelta(days=1))
    daily, _ = normalize([daily_read.events], [daily_read.quarantine], cat)
    other = usage({day: 300_000}, customer="initech").with_columns(
        pl.lit("openai_usage_api").alias("source")
    )
    daily = pl.concat([daily, other])
    append(path, line("late", at(15), "acme", 200_000))  # landed after the day was ingested
    hours = gateway_log.read_hours(tmp_path, at(0), at(0) + 24 * HOUR)
    raw = to_raw(hours.read).join(hours.hours, on="origin")
    assert month_to_date_usage([StoredDay(day, daily, None)], cat).equals(daily)
    fresh = month_to_date_usage([StoredDay(day, daily, raw)], cat)
    output = fresh.filter(pl.col("meter") == "output_tokens")
    totals = output.group_by("source", "customer_id").agg(pl.sum("quantity")).sort("source")
    assert totals.rows() == [
        ("gateway_log", "acme", 300_000),  # the two lines once each: never the daily copy too
        ("openai_usage_api", "initech", 300_000),
    ]


# ---------------------------------------------------------------- the endpoint a gateway polls


def get(url: str, **headers) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_caps_endpoint_serves_the_file_read_only_and_says_when_it_has_not_changed(tmp_path):
    server = caps_server(tmp_path, port=0)
    serve_in_thread(server)
    url = f"http://127.0.0.1:{server.server_port}{CAPS_PATH}"
    try:
        assert get(url)[0] == 503  # nothing evaluated yet: not "nobody is capped"
        body = b'{"as_of": "2026-10-08T09:40:00Z", "customers": [], "period": "2026-10"}\n'
        (tmp_path / HARD_CAPS_FILE).write_bytes(body)
        status, headers, data = get(url)
        assert (status, data, headers["Content-Type"]) == (200, body, "application/json")
        assert get(url, **{"If-None-Match": headers["ETag"]})[0] == 304
        post = urllib.request.Request(url, data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=5)
        assert refused.value.code == 405
        assert get(url.replace(CAPS_PATH, "/etc/passwd"))[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_billing_pipeline_serve_caps_serves_the_out_folders_file_until_stopped(tmp_path):
    body = b'{"as_of": "2026-10-08T09:40:00Z", "customers": [], "period": "2026-10"}\n'
    (tmp_path / HARD_CAPS_FILE).write_bytes(body)
    command = [sys.executable, "-m", "billing_pipeline.cli", "serve-caps", "--out", str(tmp_path)]
    server = subprocess.Popen(
        [*command, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        announced = server.stdout.readline()  # serving hard caps at http://127.0.0.1:<port>/...
        url = announced.split(" at ", 1)[1].split(" from ", 1)[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith(CAPS_PATH)
        assert get(url)[::2] == (200, body)
    finally:
        server.terminate()
        server.wait(timeout=30)


# ---------------------------------------------------------------- the month-end reads the same


def hour_files(landing: Path) -> list[tuple[str, str]]:
    """Rewrite the demo's daily gateway files as a gateway rotating per hour would have written
    them (14:00 rotated by size into two parts). Holds back the last line of 09:00 on the first
    three days: (hour, line) to land late."""
    held = []
    for day_file in sorted((landing / "gateway").glob("2026-10-??.jsonl")):
        by_hour: dict[str, list[str]] = {}
        for text in day_file.read_text().splitlines():
            by_hour.setdefault(json.loads(text)["timestamp"][:13], []).append(text)
        day_file.unlink()
        for hour, lines in by_hour.items():
            if hour.endswith("T09") and len(lines) > 1 and len(held) < 3:
                held.append((hour, lines.pop()))
            if hour.endswith("T14") and len(lines) > 1:
                half = len(lines) // 2
                append(landing / f"gateway/{hour}-000.jsonl", *lines[:half])
                append(landing / f"gateway/{hour}-001.jsonl", *lines[half:])
            else:
                append(landing / f"gateway/{hour}.jsonl", *lines)
    return held


def stored_hours(store: PolarsParquetIOManager, day: dt.date) -> pl.DataFrame:
    """The raw_gateway_log_hourly partitions of ``day`` that were materialized."""
    keys = [
        (dt.datetime.combine(day, dt.time(h), UTC)).strftime(HOUR_KEY_FORMAT) for h in range(24)
    ]
    paths = [store.partition_path(dg.AssetKey("raw_gateway_log_hourly"), k) for k in keys]
    return pl.concat([pl.read_parquet(p) for p in paths if p.exists()], how="diagonal_relaxed")


def test_a_month_landed_by_the_hour_and_ingested_hourly_bills_byte_identically_to_daily_files(
    demo_month, tmp_path
):
    landing, catalog_path, out = tmp_path / "landing", tmp_path / "catalog.yaml", tmp_path / "out"
    shutil.copytree(demo_month.landing, landing)
    shutil.copy(demo_month.catalog, catalog_path)
    held = hour_files(landing)
    defs = build_definitions(month_end_resources(landing, catalog_path, out))
    with open_instance(out) as instance:
        backlog = tick(landing, instance=instance)
        assert len(backlog.run_requests) == 31  # a month of files: one range run per day
        # An operator's backfill instead: every hour of the month read in one run (evaluating a
        # month-old backlog would only record stale alerts).
        backfill = defs.resolve_job_def("hourly_ingestion_job").execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("raw_gateway_log_hourly")],
            tags={RANGE_START: "2026-10-01-00:00", RANGE_END: "2026-10-31-23:00"},
        )
        assert backfill.success
        for hour, text in held:  # late lines for hours already ingested
            append(landing / f"gateway/{hour}.jsonl", text)
        fourteen = (landing / "gateway/2026-10-05T14-000.jsonl").read_text().splitlines()
        append(landing / "gateway/2026-10-05T14-001.jsonl", fourteen[0])  # delivered twice
        late = tick(landing, backlog.cursor, instance)
        assert sorted(r.partition_key for r in late.run_requests) == [
            *(f"{hour[:10]}-09:00" for hour, _ in held),
            "2026-10-05-14:00",
        ]
        for request in late.run_requests:
            assert run_request(defs, instance, request).success
    run_month_end("2026-10", landing, catalog_path, out)

    invoices = [
        p
        for p in sorted((demo_month.out / "2026-10/invoices").iterdir())
        if p.suffix in (".json", ".pdf")
    ]
    assert len(invoices) == 2 * demo_month.summary.invoices
    for path in invoices:
        assert (out / "2026-10/invoices" / path.name).read_bytes() == path.read_bytes(), path.name
    # and what the month-end read, day by day, is what the hours read
    store, cat = PolarsParquetIOManager(base_dir=str(out / ".storage")), load_catalog(catalog_path)
    for d in range(1, 32):
        day = dt.date(2026, 10, d)
        daily = pl.read_parquet(store.partition_path(dg.AssetKey("usage_events"), day.isoformat()))
        from_hours = month_to_date_usage([StoredDay(day, None, stored_hours(store, day))], cat)
        assert from_hours.equals(daily.filter(pl.col("source") == "gateway_log")), day
