"""LiteLLM proxy spend logs as a source: read from the proxy's own PostgreSQL table (created from
LiteLLM's schema, rows shaped as the proxy writes them) and from its CSV and JSON exports.

The rows (data/providers/litellm/spend_logs_rows.json, see SOURCES.md) are one day of a reseller's
proxy, 2026-10-05, plus one request on the 6th.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest

from billing_pipeline import sources
from billing_pipeline.catalog.model import Catalog
from billing_pipeline.defs import build_definitions
from billing_pipeline.defs.fetch import litellm_spend_log_rows
from billing_pipeline.defs.ingestion import RAW_ASSETS
from billing_pipeline.defs.resources import LandingZone
from billing_pipeline.schema import stable_id
from billing_pipeline.sources import litellm_proxy_db as proxy_db
from billing_pipeline.sources import litellm_spend_logs as spend_logs
from billing_pipeline.usage import normalize
from billing_pipeline_tests.support.litellm import insert_rows, proxy_database, spend_log_rows

OCT = (dt.date(2026, 10, 1), dt.date(2026, 11, 1))
DAY_FILE = "litellm/spend_logs/2026-10-05.jsonl"

# The virtual keys' hashes as the proxy stores them in api_key: sha256 of the key (hash_token).
KEY_ACME = "4efa3c6a3c75d2a59b72861e101787f44d21efbb090a8149f2147575b0fabb4e"
KEY_SHARED = "a9278e75d6317c79cf8037a43cbe36b9cb4eb94952d0467259c7e80e56127bda"
KEY_OPS = "3c44e876ef5fd503436543ac94923dd8e5bfad7685c296e8922b9ae101720a3d"


def _fetched(tmp_path: Path, rows: list[dict] | None = None) -> Path:
    with proxy_database(rows) as url:
        proxy_db.fetch(tmp_path, url, since=dt.date(2026, 10, 1))
    return tmp_path


def _meters(read: sources.SourceRead, request_id: str) -> dict[tuple[str, str], int]:
    """(meter, dimensions) -> quantity of one request."""
    rows = read.events.filter(pl.col("record_id") == stable_id(spend_logs.SOURCE, request_id))
    return {(m, d): q for m, d, q in rows.select("meter", "dimensions", "quantity").iter_rows()}


def test_the_proxy_table_is_read_with_the_usage_objects_token_split(tmp_path):
    read = spend_logs.read(_fetched(tmp_path), *OCT)
    # 11 rows: 10 requests bill, the failed one is quarantined.
    assert read.records_read == 11 and read.quarantine.height == 1
    # OpenAI gpt-4o: prompt 1,200 of which 200 cached (prompt_tokens_details.cached_tokens),
    # completion 300: 1,000 uncached input, 200 cached, 300 output.
    assert _meters(read, "chatcmpl-CLi9yT3pXg2kQwA1acme") == {
        ("input_tokens", "{}"): 1000,
        ("cached_input_tokens", "{}"): 200,
        ("output_tokens", "{}"): 300,
    }
    # Anthropic through LiteLLM: prompt_tokens 7,000 INCLUDES 4,000 cache reads and 2,000 cache
    # writes (500 of them one-hour writes): 1,000 input, 4,000 cached, 1,500 + 500 writes by TTL.
    window = '"context_window":"0-200k"'
    assert _meters(read, "msg_01XFDUDYJgAACzvnptvVoYEL") == {
        ("input_tokens", "{" + window + "}"): 1000,
        ("cached_input_tokens", "{" + window + "}"): 4000,
        ("cache_write_tokens", '{"cache_ttl":"5m",' + window + "}"): 1500,
        ("cache_write_tokens", '{"cache_ttl":"1h",' + window + "}"): 500,
        ("output_tokens", "{" + window + "}"): 800,
    }
    # Audio: prompt 500 with 300 audio, completion 200 with 150 audio.
    assert _meters(read, "chatcmpl-CLiAudio0000000cust42") == {
        ("input_tokens", "{}"): 200,
        ("audio_input_tokens", "{}"): 300,
        ("output_tokens", "{}"): 50,
        ("audio_output_tokens", "{}"): 150,
    }
    # Reasoning (700 of the 900 completion tokens) is billed as output, not apart.
    assert _meters(read, "chatcmpl-CLiReason000000cust42") == {
        ("input_tokens", "{}"): 100,
        ("output_tokens", "{}"): 900,
    }
    # An older proxy's row: no usage_object, its details in additional_usage_values, the totals
    # in the columns: prompt 50 with 10 cached, completion 20.
    assert _meters(read, "chatcmpl-CLiLegacy0000000acme") == {
        ("input_tokens", "{}"): 40,
        ("cached_input_tokens", "{}"): 10,
        ("output_tokens", "{}"): 20,
    }
    # A response LiteLLM served from its own cache carries cache_hit, so a price can tell it.
    assert (
        _meters(read, "chatcmpl-CLi9yT3pXg2kQwA1acme_cache_hit1791199803.231")[
            ("input_tokens", '{"cache_hit":"true"}')
        ]
        == 1000
    )


def test_provider_and_model_follow_the_names_the_price_book_uses(tmp_path):
    events = spend_logs.read(_fetched(tmp_path), *OCT).events
    by_model = dict(events.select("model", "provider").unique().iter_rows())
    assert by_model["gpt-3.5-turbo-instruct"] == "openai"  # text-completion-openai
    assert by_model["mistral-small-latest"] == "mistral"  # "mistral/" prefix of the model dropped
    assert by_model["claude-sonnet-4-5-20250929"] == "anthropic"
    families = dict(events.select("model", "model_family").unique().iter_rows())
    assert families["mistral-small-latest"] == "mistral-small"


def test_spend_is_the_requests_reported_cost_carried_once(tmp_path):
    events = spend_logs.read(_fetched(tmp_path), *OCT).events
    claude = events.filter(pl.col("model") == "claude-sonnet-4-5-20250929")
    # five usage rows, LiteLLM's spend of the request (0.024825 USD) on the first only
    assert [str(x) for x in claude["reported_cost"].drop_nulls()] == ["0.024825000000"]
    assert claude.height == 5


def test_a_failed_request_is_reported_not_billed(tmp_path):
    read = spend_logs.read(_fetched(tmp_path), *OCT)
    failed = read.quarantine.row(0, named=True)
    assert failed["reason"] == "failed_request" and failed["kind"] == "not_billable"
    assert failed["field"] == "status" and "failure" in failed["message"]
    assert failed["origin"] == f"{DAY_FILE}:5"
    # it names the customer it would have billed (resolved by the catalog like usage)
    assert '"end_user":"cust-42"' in failed["account_key"]
    assert "5b0f7c1e-3a52-4c3e-9d1e-0c9f5f3a2b11" not in read.events["origin"].to_list()


def test_the_fetch_cannot_write_to_the_proxy_database():
    with proxy_database() as url:
        with proxy_db.connect(url) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute('DELETE FROM "LiteLLM_SpendLogs"')
        with psycopg.connect(url) as conn:
            assert conn.execute('SELECT count(*) FROM "LiteLLM_SpendLogs"').fetchone()[0] == 11


def _day_lines(landing: Path, day: str) -> list[dict]:
    text = (landing / f"litellm/spend_logs/{day}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_an_incremental_fetch_rereads_the_overlap_and_keeps_one_line_per_request(tmp_path):
    rows = spend_log_rows()
    template = rows[-1]  # the request of 2026-10-06 08:00, the newest fetched
    with proxy_database(rows) as url:
        proxy_db.fetch(tmp_path, url, since=dt.date(2026, 10, 1))
        day5 = tmp_path / DAY_FILE
        day5_mtime = day5.stat().st_mtime_ns
        # Committed after the first fetch: a request 20 minutes before the newest one (inside the
        # one-hour overlap), one six hours before it (outside), and the newest one restated.
        late = {
            **template,
            "request_id": "chatcmpl-late-inside",
            "startTime": "2026-10-06T07:40:00",
        }
        early = {
            **template,
            "request_id": "chatcmpl-late-outside",
            "startTime": "2026-10-06T02:00:00",
        }
        insert_rows(url, [late, early])
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                'UPDATE "LiteLLM_SpendLogs" SET spend = 0.00080 WHERE request_id = %s',
                (template["request_id"],),
            )
        written = proxy_db.fetch(tmp_path, url)
    assert written == [tmp_path / "litellm/spend_logs/2026-10-06.jsonl"]
    day6 = _day_lines(tmp_path, "2026-10-06")
    ids = [r["request_id"] for r in day6]
    assert sorted(ids) == ["chatcmpl-CLiNextDay0000000acme", "chatcmpl-late-inside"]
    assert [r["spend"] for r in day6 if r["request_id"] == template["request_id"]] == [0.0008]
    assert day5.stat().st_mtime_ns == day5_mtime  # nothing new for the 5th: not rewritten


def test_a_day_fetch_rereads_the_last_hour_of_the_day_before(tmp_path):
    rows = spend_log_rows()
    late = {**rows[0], "request_id": "chatcmpl-2359", "startTime": "2026-10-05T23:59:58.900"}
    with proxy_database(rows) as url:
        proxy_db.fetch_day(tmp_path, url, dt.date(2026, 10, 5))
        insert_rows(url, [late])
        proxy_db.fetch_day(tmp_path, url, dt.date(2026, 10, 6))
    day5 = [r["request_id"] for r in _day_lines(tmp_path, "2026-10-05")]
    assert "chatcmpl-2359" in day5 and len(day5) == len(set(day5)) == 11


def test_only_the_columns_read_are_selected_so_other_proxy_versions_read_the_same(tmp_path):
    with proxy_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            # a newer proxy's extra column, an older proxy without status and end_user
            conn.execute('ALTER TABLE "LiteLLM_SpendLogs" ADD COLUMN "litellm_future" JSONB')
            conn.execute('ALTER TABLE "LiteLLM_SpendLogs" DROP COLUMN "status"')
            conn.execute('ALTER TABLE "LiteLLM_SpendLogs" DROP COLUMN "end_user"')
        proxy_db.fetch(tmp_path, url, since=dt.date(2026, 10, 1))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute('ALTER TABLE "LiteLLM_SpendLogs" DROP COLUMN "request_id"')
        with pytest.raises(proxy_db.FetchError, match="no column request_id"):
            proxy_db.fetch(tmp_path / "other", url, since=dt.date(2026, 10, 1))
    line = _day_lines(tmp_path, "2026-10-05")[0]
    assert "litellm_future" not in line and line["status"] is None
    # of metadata only the usage object and the status are copied
    assert set(line["metadata"]) == {"usage_object", "additional_usage_values", "status"}
    read = spend_logs.read(tmp_path, *OCT)
    # without the status column the failed request is still told by metadata.status
    assert read.quarantine["reason"].to_list() == ["failed_request"]
    assert read.events["origin"].n_unique() == 10


def _export_csv(url: str, path: Path) -> None:
    """What ``\\copy "LiteLLM_SpendLogs" TO ... CSV HEADER`` writes: every column, JSON as text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy('COPY "LiteLLM_SpendLogs" TO STDOUT WITH (FORMAT csv, HEADER)') as copy:
            path.write_bytes(b"".join(bytes(chunk) for chunk in copy))


def _export_json(path: Path) -> None:
    """What ``GET /spend/logs?summarize=false`` returns: the rows, times with their UTC offset."""
    rows = [
        {
            **r,
            "startTime": r["startTime"] + "+00:00",
            "endTime": r["endTime"] + "+00:00",
            "completionStartTime": r["completionStartTime"] + "+00:00",
        }
        for r in spend_log_rows()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")


def _usage(read: sources.SourceRead) -> set[tuple]:
    return set(read.events.select("event_id", "quantity", "dimensions", "account_key").iter_rows())


def test_csv_and_json_exports_bill_what_the_database_fetch_bills(tmp_path):
    with proxy_database() as url:
        proxy_db.fetch(tmp_path / "db", url, since=dt.date(2026, 10, 1))
        _export_csv(url, tmp_path / "csv/litellm/spend_logs/spend_logs_2026-10.csv")
    _export_json(tmp_path / "json/litellm/spend_logs/spend_logs_2026-10.json")
    fetched = spend_logs.read(tmp_path / "db", *OCT)
    for export in ("csv", "json"):
        read = spend_logs.read(tmp_path / export, *OCT)
        assert _usage(read) == _usage(fetched), export
        assert read.quarantine["reason"].to_list() == ["failed_request"]
        assert read.events["reported_cost"].sum() == fetched.events["reported_cost"].sum()
    # an undated export is split by each request's own startTime
    days = spend_logs.read(tmp_path / "csv", *OCT).events.group_by("day").len().sort("day")
    assert days["day"].to_list() == [dt.date(2026, 10, 5), dt.date(2026, 10, 6)]


def test_a_request_in_both_a_fetch_and_an_export_bills_once(tmp_path):
    landing = _fetched(tmp_path)
    _export_json(landing / "litellm/spend_logs/spend_logs_2026-10.json")
    read = spend_logs.read(landing, *OCT)
    events, quarantine = normalize([read.events], [read.quarantine], _catalog())
    assert events["origin"].n_unique() == 10
    assert quarantine.filter(pl.col("reason") == "duplicate").select(
        pl.col("origin").str.extract(r"^([^:]+)")
    ).unique().to_series().to_list() == ["litellm/spend_logs/spend_logs_2026-10.json"]


def _catalog(**keys: list) -> Catalog:
    customers = {
        cid: {"name": cid, "subscriptions": [{"plan": "p", "from": "2026-01-01"}], "keys": k}
        for cid, k in keys.items()
    }
    return Catalog.model_validate(
        {
            "issuer": {"name": "Reseller"},
            "plans": {"p": {"name": "P", "charges": []}},
            "customers": customers,
        }
    )


def test_a_row_is_billed_by_the_first_of_its_identifiers_a_customer_names(tmp_path):
    read = spend_logs.read(_fetched(tmp_path), *OCT)
    catalog = _catalog(
        acme=["litellm:team:team-acme"],
        globex=["litellm:tag:customer:globex"],
        initech=["litellm:tag:customer:initech"],
        cust42=["litellm:end_user:cust-42"],
        resale=["litellm:team:team-resale"],
        ops=[f"litellm:key:{KEY_OPS}"],
    )
    events, quarantine = normalize([read.events], [read.quarantine], catalog)
    owner = dict(
        events.select(pl.col("origin").str.extract(r":(\d+)$").cast(pl.Int64), "customer_id")
        .unique()
        .filter(pl.col("origin").is_not_null())
        .iter_rows()
    )
    day5 = owner
    assert day5[1] == "acme"  # team-acme (its tag env:prod and user-ops-1 are nobody's)
    assert day5[2] == "globex"  # tag customer:globex before team-globex
    assert day5[3] == day5[4] == "cust42"  # end_user cust-42 before team-resale
    assert day5[8] == "ops"  # no end_user, tag, user or team anyone names: the hashed key
    assert day5[9] == "globex"  # the mistral request: tags customer:globex and env:prod
    # two tags of two customers: billed to neither, reported with every identifier it had
    assert day5[10] is None
    ambiguous = events.filter(pl.col("customer_id").is_null() & pl.col("model").eq("gpt-4o-mini"))
    assert ambiguous["account_key"].str.contains("customer:initech").all()
    # the billed rows carry the key that bills them
    assert set(events.filter(pl.col("customer_id") == "cust42")["account_key"]) == {
        "litellm:end_user:cust-42"
    }
    # the failed request names its customer in quarantine.csv too
    assert quarantine.filter(pl.col("reason") == "failed_request")["customer_id"].to_list() == [
        "cust42"
    ]


def test_dated_key_ownership_applies_to_litellm_identifiers(tmp_path):
    read = spend_logs.read(_fetched(tmp_path), *OCT)
    catalog = _catalog(
        old=[{"key": "litellm:team:team-acme", "from": "2026-01-01", "to": "2026-10-05"}],
        new=[{"key": "litellm:team:team-acme", "from": "2026-10-06"}],
    )
    events, _ = normalize([read.events], [read.quarantine], catalog)
    acme = events.filter(pl.col("account_key") == "litellm:team:team-acme")
    assert dict(acme.group_by("day").agg(pl.first("customer_id")).iter_rows()) == {
        dt.date(2026, 10, 5): "old",
        dt.date(2026, 10, 6): "new",
    }


def test_bad_rows_are_quarantined_naming_the_field_and_the_rest_of_the_file_bills(tmp_path):
    good = spend_log_rows()[0]
    negative = {**good, "request_id": "neg", "prompt_tokens": -5, "metadata": {}}
    too_cached = {
        **good,
        "request_id": "over",
        "metadata": {"usage_object": {**good["metadata"]["usage_object"], "prompt_tokens": 100}},
    }
    no_id = {**good, "request_id": ""}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(negative),
        json.dumps(too_cached),
        json.dumps(no_id),
    ]
    folder = tmp_path / "litellm/spend_logs"
    folder.mkdir(parents=True)
    (folder / "2026-10-05.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "no_ids_2026-10.csv").write_text("model,startTime\ngpt-4o,2026-10-05 10:00:00\n")
    read = spend_logs.read(tmp_path, *OCT)
    got = {
        r["origin"]: (r["reason"], r["field"], r["kind"])
        for r in read.quarantine.iter_rows(named=True)
    }
    assert got == {
        "litellm/spend_logs/2026-10-05.jsonl:2": ("bad_json_line", "", "money_at_risk"),
        "litellm/spend_logs/2026-10-05.jsonl:3": (
            "negative_quantity",
            "prompt_tokens",
            "money_at_risk",
        ),
        "litellm/spend_logs/2026-10-05.jsonl:4": (
            "negative_quantity",
            "metadata.usage_object.prompt_tokens_details.cached_tokens",
            "money_at_risk",
        ),
        "litellm/spend_logs/2026-10-05.jsonl:5": ("missing_field", "request_id", "money_at_risk"),
        "litellm/spend_logs/no_ids_2026-10.csv": ("unreadable_file", "", "money_at_risk"),
    }
    assert (
        "no column request_id"
        in read.quarantine.filter(pl.col("reason") == "unreadable_file")["message"][0]
    )
    # the rejected rows still name the customer's identifiers, so a hold can name the customer
    assert (
        read.quarantine.filter(pl.col("reason") == "negative_quantity")["account_key"]
        .str.starts_with("litellm:{")
        .all()
    )
    assert read.events["origin"].unique().to_list() == ["litellm/spend_logs/2026-10-05.jsonl:1"]


def test_a_dated_export_holds_only_its_own_day(tmp_path):
    rows = spend_log_rows()
    folder = tmp_path / "litellm/spend_logs"
    folder.mkdir(parents=True)
    with (folder / "2026-10-05.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in (rows[0], rows[-1]):  # the second request is of the 6th
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()}
            )
    read = spend_logs.read(tmp_path, *OCT)
    assert read.quarantine.select("origin", "reason").rows() == [
        ("litellm/spend_logs/2026-10-05.csv:2", "outside_partition")
    ]
    assert read.records_read == 2


def test_the_source_is_registered_and_wired_into_ingestion():
    assert sources.SOURCES["litellm_spend_logs"] is spend_logs.read
    assert RAW_ASSETS["raw_litellm_spend_logs"][0] == "litellm_spend_logs"
    deployed = build_definitions().resolve_all_asset_keys()
    assert dg.AssetKey("litellm_spend_log_rows") in deployed


def test_the_url_comes_from_the_environment_and_is_never_printed(monkeypatch, tmp_path):
    monkeypatch.delenv(proxy_db.URL_ENV, raising=False)
    with pytest.raises(proxy_db.FetchError, match="BILLING_LITELLM_DATABASE_URL is not set"):
        proxy_db.database_url()
    secret = "postgresql://reader:s3cret@127.0.0.1:1/nowhere"
    with pytest.raises(proxy_db.FetchError) as caught:
        proxy_db.fetch(tmp_path, secret, since=dt.date(2026, 10, 1))
    assert "s3cret" not in str(caught.value)


def test_csv_cells_keep_their_text(tmp_path):
    """A CSV export's numbers are read as written (no float in between)."""
    rows = [{**spend_log_rows()[0], "spend": 0.000123456789}]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerow(
        {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in rows[0].items()}
    )
    folder = tmp_path / "litellm/spend_logs"
    folder.mkdir(parents=True)
    (folder / "export_2026-10.csv").write_text(buffer.getvalue(), encoding="utf-8")
    events = spend_logs.read(tmp_path, *OCT).events
    assert str(events["reported_cost"].drop_nulls()[0]) == "0.000123456789"


def test_the_dagster_fetch_asset_copies_a_day_and_fetches_nothing_without_a_proxy(
    tmp_path, monkeypatch
):
    def materialize() -> dict:
        result = dg.materialize(
            [litellm_spend_log_rows],
            partition_key="2026-10-05",
            resources={"landing": LandingZone(path=str(tmp_path))},
        )
        assert result.success
        (event,) = result.get_asset_materialization_events()
        return event.materialization.metadata

    monkeypatch.delenv(proxy_db.URL_ENV, raising=False)
    assert "is not set" in materialize()["skipped"].value
    assert not (tmp_path / "litellm").exists()
    with proxy_database() as url:
        monkeypatch.setenv(proxy_db.URL_ENV, url)
        assert materialize()["files"].value == 1
    assert len(_day_lines(tmp_path, "2026-10-05")) == 10
