"""RELIABILITY.md 18: money at risk is never lost in silence.

A record that could carry money and could not be billed is quarantined as money at risk, `run`
exits 1 naming the files and customers it holds, and `issue` refuses them until the landing zone
is fixed or a person waives the record with a reason (kept in the audit log). Rows that are not
billable by design hold nothing. Expected totals are computed by hand from the plan in
support/rating.py's CATALOG: gpt-4o input $0.0025 per 1K tokens, output $0.010 per 1K.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from billing_pipeline.cli import main
from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline.sources import openai_usage
from billing_pipeline_tests.support.rating import CATALOG

MONTH = "2026-10"


def unix(day: int) -> int:
    return int(dt.datetime(2026, 10, day, tzinfo=dt.UTC).timestamp())


def result(
    project: str, input_tokens: int, output_tokens: int, model: str = "gpt-4o-2024-08-06"
) -> dict:
    """A completions result as OpenAI's Usage API documents it (only totals: the older form)."""
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "num_model_requests": 10,
        "input_cached_tokens": 0,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "project_id": project,
        "user_id": None,
        "api_key_id": None,
        "model": model,
        "batch": None,
    }


def page(
    day: int,
    results: list[dict],
    has_more: bool = False,
    next_page: str | None = None,
    start: int | None = None,
) -> dict:
    return {
        "object": "page",
        "has_more": has_more,
        "next_page": next_page,
        "data": [
            {
                "object": "bucket",
                "start_time": start or unix(day),
                "end_time": unix(day + 1),
                "results": results,
            }
        ],
    }


def write(path: Path, payload: dict | bytes | str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (
        payload
        if isinstance(payload, bytes)
        else (payload if isinstance(payload, str) else json.dumps(payload)).encode("utf-8")
    )
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


COMPLETIONS = "openai/usage/completions"


@pytest.fixture
def month(tmp_path):
    """acme (proj_a) and initech (proj_i, from 16 October) with one clean day each."""
    landing = tmp_path / "landing"
    write(
        landing / COMPLETIONS / "2026-10-03_p1.json",
        page(3, [result("proj_a", 1_000_000, 200_000)]),
    )
    write(landing / COMPLETIONS / "2026-10-20_p1.json", page(20, [result("proj_i", 100_000, 0)]))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    return landing, catalog, tmp_path / "out"


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def run(landing, catalog, out):
    return cli("run", "--month", MONTH, "--landing", landing, "--catalog", catalog, "--out", out)


def issue(out):
    return cli("issue", "--month", MONTH, "--out", out, "--catalog", out.parent / "catalog.yaml")


def quarantine_rows(out) -> list[dict]:
    with open(out / MONTH / "quarantine.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def numbers(out) -> dict[str, str | None]:
    ledger = Ledger(f"sqlite:///{out / 'ledger.db'}")
    return {r["customer_id"]: r["number"] for r in ledger.list_invoices(MONTH)}


def test_a_clean_month_holds_nothing_and_a_bom_page_is_read_not_rejected(month):
    landing, catalog, out = month
    write(
        landing / COMPLETIONS / "2026-10-04_p1.json",
        page(4, [result("proj_a", 400_000, 0)]),
        bom=True,
    )
    done = run(landing, catalog, out)
    assert done.exit_code == 0, done.output
    assert "money at risk held         none" in done.output
    invoice = json.loads((out / MONTH / "invoices" / "acme.json").read_text())
    # 1,400,000 input tokens x $0.0025/1K = $3.50; 200,000 output x $0.010/1K = $2.00
    assert invoice["subtotal"] == "5.50"
    assert quarantine_rows(out) == []


def test_a_truncated_page_holds_the_whole_month_until_waived_and_the_waiver_is_audited(month):
    landing, catalog, out = month
    truncated = json.dumps(page(5, [result("proj_a", 999_000, 0)]))[:-40]
    write(landing / COMPLETIONS / "2026-10-05_p1.json", truncated)

    done = run(landing, catalog, out)
    assert done.exit_code == 1
    assert "money at risk holds the whole month" in done.output
    assert "openai/usage/completions/2026-10-05_p1.json (unreadable_file)" in done.output
    [row] = quarantine_rows(out)
    assert (row["origin"], row["reason"], row["kind"], row["customer_id"]) == (
        "openai/usage/completions/2026-10-05_p1.json",
        "unreadable_file",
        "money_at_risk",
        "",
    )

    refused = issue(out)
    assert refused.exit_code == 1
    assert "money at risk holds the whole month" in refused.output
    assert set(numbers(out).values()) == {None}

    missing_reason = cli(
        "waive", "--month", MONTH, "--origin", row["origin"], "--reason", " ", "--out", out
    )
    assert missing_reason.exit_code == 2
    typo = cli(
        "waive", "--month", MONTH, "--origin", "openai/nope.json", "--reason", "x", "--out", out
    )
    assert typo.exit_code == 2 and "nothing held" in typo.output

    waived = cli(
        "waive",
        "--month",
        MONTH,
        "--origin",
        row["origin"],
        "--reason",
        "OpenAI support confirmed the day is re-billed on 2026-10-06",
        "--out",
        out,
    )
    assert waived.exit_code == 0, waived.output
    assert issue(out).exit_code == 0
    assert all(numbers(out).values())
    with sa.create_engine(f"sqlite:///{out / 'ledger.db'}").connect() as conn:
        [(action, detail)] = conn.execute(
            sa.text("SELECT action, detail FROM audit_log WHERE action = 'waive'")
        ).all()
    assert json.loads(detail)["origin"] == row["origin"]
    assert "re-billed" in json.loads(detail)["reason"]


def test_a_bad_quantity_holds_only_the_customer_it_belongs_to(month):
    landing, catalog, out = month
    bad = result("proj_i", -5, 0)
    write(landing / COMPLETIONS / "2026-10-21_p1.json", page(21, [bad]))

    done = run(landing, catalog, out)
    assert done.exit_code == 1
    assert "customers initech" in done.output
    [row] = [r for r in quarantine_rows(out) if r["kind"] == "money_at_risk"]
    assert (row["reason"], row["customer_id"]) == ("negative_quantity", "initech")

    partly = issue(out)
    assert partly.exit_code == 1
    assert "customers initech" in partly.output
    assert numbers(out) == {"acme": "INV-2026-000001", "initech": None}


def test_a_page_whose_next_page_is_missing_holds_the_month_and_its_own_records_still_bill(month):
    landing, catalog, out = month
    write(
        landing / COMPLETIONS / "2026-10-06_p1.json",
        page(
            6,
            [result("proj_a", 200_000, 0)],
            has_more=True,
            next_page="page_AAAAAGdGxdEiJdKOAAAAAGcqsYA=",
        ),
    )
    done = run(landing, catalog, out)
    assert done.exit_code == 1
    assert "2026-10-06_p1.json (missing_next_page)" in done.output
    invoice = json.loads((out / MONTH / "invoices" / "acme.json").read_text())
    assert invoice["subtotal"] == "5.00"  # (1,000,000 + 200,000) x 0.0025/1K = 3.00, + 2.00 output
    # Fetching the missing page fixes it: a re-run holds nothing.
    write(landing / COMPLETIONS / "2026-10-06_p2.json", page(6, [result("proj_i", 0, 0)]))
    assert run(landing, catalog, out).exit_code == 0


def test_an_unreadable_cost_page_bills_nobody_holds_nothing_but_is_in_the_quarantine(month):
    landing, catalog, out = month
    write(landing / "openai/costs/2026-10-03_p1.json", b'{"object": "page", "data": [')
    done = run(landing, catalog, out)
    assert done.exit_code == 0, done.output
    [row] = quarantine_rows(out)
    assert (row["origin"], row["kind"]) == ("openai/costs/2026-10-03_p1.json", "cost")


def test_issue_refuses_a_month_whose_checks_were_never_recorded(month, tmp_path):
    landing, catalog, out = month
    assert run(landing, catalog, out).exit_code == 0
    with sa.create_engine(f"sqlite:///{out / 'ledger.db'}").begin() as conn:
        conn.execute(
            sa.text("DELETE FROM month_checks")
        )  # as if month-end was killed before its checks
    refused = issue(out)
    assert refused.exit_code == 1
    assert "no month-end checks were recorded" in refused.output
    assert set(numbers(out).values()) == {None}


# ---------------------------------------------------------------- the page rules, one by one


def read(landing: Path):
    return openai_usage.read_completions(landing, dt.date(2026, 10, 1), dt.date(2026, 11, 1))


def test_gzipped_and_bom_pages_read_like_plain_ones(tmp_path):
    write(
        tmp_path / COMPLETIONS / "2026-10-03_p1.json", page(3, [result("proj_a", 10, 1)]), bom=True
    )
    path = tmp_path / COMPLETIONS / "2026-10-04_p1.json.gz"
    path.write_bytes(gzip.compress(json.dumps(page(4, [result("proj_a", 20, 2)])).encode()))
    done = read(tmp_path)
    assert done.quarantine.height == 0
    assert done.events.filter(done.events["meter"] == "input_tokens")["quantity"].sum() == 30


def test_a_truncated_gzip_page_is_unreadable_not_partly_read(tmp_path):
    path = tmp_path / COMPLETIONS / "2026-10-04_p1.json.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(json.dumps(page(4, [result("proj_a", 20, 2)])).encode())[:-12])
    done = read(tmp_path)
    assert done.events.height == 0
    assert done.quarantine.select("origin", "reason").rows() == [
        ("openai/usage/completions/2026-10-04_p1.json.gz", "unreadable_file")
    ]


def test_a_page_named_without_a_page_number_cannot_prove_its_successor_is_there(tmp_path):
    write(
        tmp_path / COMPLETIONS / "2026-10-04-export.json",
        page(4, [result("proj_a", 20, 2)], has_more=True, next_page="page_x"),
    )
    done = read(tmp_path)
    assert done.quarantine["reason"].to_list() == ["missing_next_page"]
    assert "no _p<N> page number" in done.quarantine["message"][0]


def test_a_mid_day_export_inside_a_full_day_bucket_is_counted_once(tmp_path):
    """The cookbook's real output starts at the query time: its first bucket is 14:00-24:00."""
    full = page(4, [result("proj_a", 1_000, 100)])
    mid = page(4, [result("proj_a", 300, 30)], start=unix(4) + 14 * 3600)
    write(tmp_path / COMPLETIONS / "2026-10-04_p1.json", full)
    write(tmp_path / "openai/usage/completions/2026-10-04_later_p1.json", mid)
    done = read(tmp_path)
    assert done.events.filter(done.events["meter"] == "input_tokens")["quantity"].sum() == 1_000
    assert done.quarantine.select("origin", "reason").rows() == [
        (
            "openai/usage/completions/2026-10-04_later_p1.json#data[0].results[0]",
            "overlapped_bucket",
        )
    ]


def test_overlapping_buckets_whose_quantities_do_not_fit_are_held_not_guessed(tmp_path):
    full = page(4, [result("proj_a", 1_000, 100)])
    mid = page(
        4, [result("proj_a", 3_000, 30)], start=unix(4) + 14 * 3600
    )  # more than the whole day
    write(tmp_path / COMPLETIONS / "2026-10-04_p1.json", full)
    write(tmp_path / "openai/usage/completions/2026-10-04_later_p1.json", mid)
    done = read(tmp_path)
    assert done.events.height == 0
    assert sorted(done.quarantine["reason"].to_list()) == ["overlap_conflict", "overlap_conflict"]


def test_a_month_end_run_outside_the_cli_records_its_checks_through_the_sensor(month):
    """The schedule or the UI runs month_end_job with no runner around it: the run-status sensor
    records its checks, so `issue` is not refused for a month that did finish."""
    import dagster as dg

    from billing_pipeline.defs.issuing import record_month_end_checks
    from billing_pipeline.defs.resources import LedgerResource

    landing, catalog, out = month
    assert run(landing, catalog, out).exit_code == 0
    with sa.create_engine(f"sqlite:///{out / 'ledger.db'}").begin() as conn:
        conn.execute(sa.text("DELETE FROM month_checks"))
    with dg.DagsterInstance.local_temp(tempdir=str(out / ".dagster")) as instance:
        [record] = instance.get_run_records(dg.RunsFilter(job_name="month_end_job"))
        success = instance.all_logs(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS
        )[0]
        context = dg.build_run_status_sensor_context(
            sensor_name="record_month_end_checks",
            dagster_instance=instance,
            dagster_run=record.dagster_run,
            dagster_event=success.dagster_event,
        )
        record_month_end_checks(
            context, ledger=LedgerResource(url=f"sqlite:///{out / 'ledger.db'}")
        )
    with sa.create_engine(f"sqlite:///{out / 'ledger.db'}").connect() as conn:
        names = set(
            conn.execute(sa.text("SELECT check_name FROM month_checks WHERE passed")).scalars()
        )
    assert {
        "month_end_run_completed",
        "invoice_totals_equal_rated_lines",
        "no_money_at_risk",
    } <= names
    assert issue(out).exit_code == 0


def test_run_prints_every_catalog_problem_not_only_the_first(month):
    landing, catalog, out = month
    broken = {
        **CATALOG,
        "customers": {
            "acme": {"name": "Acme", "subscriptions": [{"plan": "gold", "from": "2026-01-01"}]},
            "initech": {
                "name": "Initech",
                "subscriptions": [{"plan": "silver", "from": "2026-01-01"}],
            },
        },
    }
    catalog.write_text(yaml.safe_dump(broken), encoding="utf-8")
    done = run(landing, catalog, out)
    assert done.exit_code == 2
    errors = [line for line in done.output.splitlines() if line.startswith("error: ")]
    assert (
        len(errors) >= 2 and any("gold" in e for e in errors) and any("silver" in e for e in errors)
    )


def test_a_count_no_record_can_carry_is_money_at_risk_not_a_wrapped_sum(tmp_path):
    """RELIABILITY.md 12 / issue 16: 9223372036854775807 tokens in one result is not billed as read."""
    write(
        tmp_path / COMPLETIONS / "2026-10-03_p1.json",
        page(3, [result("proj_a", 9223372036854775807, 1)]),
    )
    done = read(tmp_path)
    assert done.events.height == 0
    [row] = done.quarantine.to_dicts()
    assert (row["reason"], row["field"]) == (
        "implausible_quantity",
        "data[0].results[0].input_tokens",
    )


def test_a_gateway_line_with_an_impossible_token_count_holds_its_customer_and_bills_the_rest(
    tmp_path,
):
    """Issue 16's overflow: 9223372036854775807 prompt tokens on one line. The line is money at
    risk for the customer it names; it is never summed into a wrapped, smaller invoice."""
    from billing_pipeline.sources import gateway_log

    lines = [
        {
            "request_id": "r1",
            "timestamp": "2026-10-03T10:00:00Z",
            "customer_key": "acme",
            "provider": "openai",
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 9223372036854775807, "completion_tokens": 1},
        },
        {
            "request_id": "r2",
            "timestamp": "2026-10-03T11:00:00Z",
            "customer_key": "acme",
            "provider": "openai",
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 1000, "completion_tokens": 10},
        },
    ]
    write(tmp_path / "gateway/2026-10-03.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    done = gateway_log.read(tmp_path, dt.date(2026, 10, 1), dt.date(2026, 11, 1))
    [row] = done.quarantine.to_dicts()
    assert (row["reason"], row["account_key"]) == ("implausible_quantity", "gateway:acme")
    assert done.events.filter(done.events["meter"] == "input_tokens")["quantity"].to_list() == [
        1000
    ]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+pg8000://postgres@127.0.0.1/test", "driver"),
        ("postgresql://postgres@127.0.0.1:1/test", "cannot connect"),
        ("mysql://root@127.0.0.1/test", "sqlite and postgresql"),
        ("not a url", "not a usable ledger URL"),
    ],
)
def test_a_ledger_url_that_cannot_work_is_refused_before_any_work(month, url, says):
    """Issue 16 item 9: it used to fail only after ingestion and rating."""
    landing, catalog, out = month
    done = cli(
        "run",
        "--month",
        MONTH,
        "--landing",
        landing,
        "--catalog",
        catalog,
        "--out",
        out,
        "--database-url",
        url,
    )
    assert done.exit_code == 2
    assert says in done.output and "Traceback" not in done.output
    assert not (out / ".dagster").exists()


def test_an_amount_that_cannot_be_held_exactly_holds_its_customer_not_the_month(month):
    """Rating's own money at risk (issue 16): 10^15 tokens at $1,000,000 per 1K is $10^18, past
    what the ledger stores exactly in micro-units. The customer is held and named, never drafted
    with a wrapped or smaller amount; the other customer is issued."""
    landing, catalog, out = month
    absurd = {
        **CATALOG,
        "plans": {
            **CATALOG["plans"],
            "payg": {
                "name": "Pay as you go",
                "charges": [
                    {
                        "id": "gpt4o-in",
                        "meter": "input_tokens",
                        "models": ["gpt-4o", "gpt-4o-20*"],
                        "unit_size": 1000,
                        "unit_price": "1000000",
                    }
                ],
            },
        },
    }
    catalog.write_text(yaml.safe_dump(absurd), encoding="utf-8")
    write(landing / COMPLETIONS / "2026-10-04_p1.json", page(4, [result("proj_a", 10**15, 0)]))
    done = run(landing, catalog, out)
    assert done.exit_code == 1
    assert "customers acme" in done.output and "(amount_overflow)" in done.output
    held = {
        (r["source"], r["reason"], r["customer_id"])
        for r in quarantine_rows(out)
        if r["kind"] == "money_at_risk"
    }
    assert ("rating", "amount_overflow", "acme") in held and {c for _, _, c in held} == {"acme"}
    assert not (out / MONTH / "invoices" / "acme.json").exists()
    partly = issue(out)
    assert partly.exit_code == 1 and "customers acme" in partly.output
    assert numbers(out) == {"initech": "INV-2026-000001"}


def test_an_output_folder_that_cannot_be_written_ends_in_one_line_not_a_traceback(month):
    """Issue 16 item 9: a write failure named, with what it means for the month."""
    landing, catalog, out = month
    (out / MONTH).mkdir(parents=True)
    (out / MONTH / "invoices").write_text("a file where the invoices folder should be")
    done = CliRunner().invoke(
        main,
        [
            "run",
            "--month",
            MONTH,
            "--landing",
            str(landing),
            "--catalog",
            str(catalog),
            "--out",
            str(out),
        ],
    )
    assert done.exit_code == 1
    assert "Traceback" not in done.output
    [line] = [ln for ln in done.output.splitlines() if ln.startswith("error: ")]
    assert "month-end step" in line and "invoices" in line and "nothing was issued" in line
