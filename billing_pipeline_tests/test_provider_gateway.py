"""A month of our gateway's request log, with usage objects copied from OpenAI's and Mistral's
published examples (data/providers/gateway/SOURCES.md), billed end to end: audio at the audio
price, the text meters keeping only the text, reasoning inside output, failed requests unbilled."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.rating import rate_month
from billing_pipeline.sources import gateway_log
from billing_pipeline.usage import canonical_order, normalize

FIXTURE = Path(__file__).resolve().parent / "data/providers/gateway/2026-10-05.jsonl"
OCT = (dt.date(2026, 10, 1), dt.date(2026, 11, 1))
PER_1K = 1000


def landing(tmp_path: Path) -> Path:
    (tmp_path / "gateway").mkdir()
    shutil.copy(FIXTURE, tmp_path / "gateway" / FIXTURE.name)
    return tmp_path


def charge(meter: str, price: str) -> dict:
    return {"id": meter, "meter": meter, "unit_size": PER_1K, "unit_price": price}


CATALOG = parse_catalog(
    {
        "issuer": {"name": "Us"},
        "plans": {
            "tokens": {
                "name": "Tokens",
                "charges": [
                    charge("input_tokens", "1.00"),
                    charge("cached_input_tokens", "0.50"),
                    charge("output_tokens", "3.00"),
                    charge("audio_input_tokens", "10.00"),
                    charge("audio_output_tokens", "20.00"),
                ],
            }
        },
        "customers": {
            "acme": {
                "name": "Acme",
                "subscriptions": [{"plan": "tokens", "from": "2026-10-01"}],
                "keys": ["gateway:acme"],
            }
        },
    }
)


def usage_of(line: dict) -> tuple[int, int]:
    u = line["usage"]
    return u.get("prompt_tokens", u.get("input_tokens")), u.get(
        "completion_tokens", u.get("output_tokens")
    )


def test_every_request_splits_into_meters_that_add_up_to_the_providers_totals(tmp_path):
    r = gateway_log.read(landing(tmp_path), *OCT)
    lines = [json.loads(t) for t in FIXTURE.read_text().splitlines()]
    inputs = {
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "audio_input_tokens",
        "cached_audio_input_tokens",
        "image_input_tokens",
        "cached_image_input_tokens",
    }
    for i, line in enumerate(lines, start=1):
        ev = r.events.filter(pl.col("origin") == f"gateway/{FIXTURE.name}:{i}")
        if "error" in line:
            assert ev.height == 0
            continue
        prompt, completion = usage_of(line)
        got = dict(ev.select("meter", "quantity").rows())
        assert sum(q for m, q in got.items() if m in inputs) == prompt, line["request_id"]
        assert (
            sum(q for m, q in got.items() if m in ("output_tokens", "audio_output_tokens"))
            == completion
        )
    audio = dict(
        r.events.filter(pl.col("model") == "gpt-4o-audio-preview-2024-12-17")
        .select("meter", "quantity")
        .rows()
    )
    # prompt 1,200 of which 1,000 audio; completion 600 of which 480 audio
    assert audio == {
        "input_tokens": 200,
        "audio_input_tokens": 1000,
        "output_tokens": 120,
        "audio_output_tokens": 480,
    }
    mistral = dict(
        r.events.filter(pl.col("origin").str.ends_with(":6")).select("meter", "quantity").rows()
    )
    assert mistral == {"input_tokens": 500, "cached_input_tokens": 1500, "output_tokens": 100}


def test_the_reader_delivers_its_rows_in_the_canonical_order(tmp_path):
    """Each request's meters come out in the usage table's order (by meter name), so ingestion
    writes the rows as read instead of moving every column of the day into place."""
    events = gateway_log.read(landing(tmp_path), *OCT).events
    assert events["origin"].n_unique() > 1 and events.height > events["origin"].n_unique()
    assert canonical_order(events).equals(events)


def test_a_failed_request_is_quarantined_as_not_billable_with_the_customer_it_would_have_billed(
    tmp_path,
):
    r = gateway_log.read(landing(tmp_path), *OCT)
    q = r.quarantine.row(0, named=True)
    assert r.quarantine.height == 1 and (q["reason"], q["field"], q["account_key"]) == (
        "failed_request",
        "error",
        "gateway:acme",
    )
    assert q["origin"] == f"gateway/{FIXTURE.name}:7"
    assert r.records_read == 7 == r.events["origin"].n_unique() + r.quarantine.height


def test_reasoning_tokens_are_billed_inside_output_and_reported_per_model(tmp_path):
    summary = gateway_log.reasoning_summary(landing(tmp_path), *OCT)
    got = {
        m: (n, out, reasoning)
        for m, n, out, reasoning in summary.select(
            "model", "requests", "output_tokens", "reasoning_tokens"
        ).rows()
    }
    # Responses example: 1,035 output of which 832 reasoning; Batch example: 500 of which 300
    assert got == {"o1-2024-12-17": (1, 1035, 832), "gpt-5-2025-08-07": (1, 500, 300)}
    assert set(summary["account_key"]) == {"gateway:acme"}


def test_the_month_bills_audio_at_the_audio_price_and_each_line_once(tmp_path):
    r = gateway_log.read(landing(tmp_path), *OCT)
    usage, quarantine = normalize([r.events], [r.quarantine], CATALOG)
    rated = rate_month(usage, CATALOG, "2026-10")
    assert rated.unrated.height == 0
    subtotal = sum(
        Decimal(a) for a in rated.lines.filter(pl.col("customer_id") == "acme")["amount"]
    )
    # Per 1K tokens: input 1.00, cached 0.50, output 3.00, audio in 10.00, audio out 20.00;
    # one line per model family and charge, each rounded half up to the cent:
    # input:  gpt-4o 1,117 -> 1.117 -> 1.12; gpt-4o-audio-preview 200 (text only) -> 0.20;
    #         o1 81 -> 0.081 -> 0.08; gpt-5 1,500 - 1,024 cached = 476 -> 0.476 -> 0.48;
    #         mistral-small 16 + (2,000 - 1,500) = 516 -> 0.516 -> 0.52          = 2.40
    # cached: gpt-5 1,024 x 0.50 -> 0.512 -> 0.51; mistral-small 1,500 -> 0.75   = 1.26
    # output: gpt-4o 46 -> 0.138 -> 0.14; gpt-4o-audio-preview 600 - 480 = 120 -> 0.36;
    #         o1 1,035 (832 reasoning inside) -> 3.105 -> 3.11; gpt-5 500 -> 1.50;
    #         mistral-small 34 + 100 = 134 -> 0.402 -> 0.40                       = 5.51
    # audio:  in 1,000 x 10.00 -> 10.00; out 480 x 20.00 -> 9.60                  = 19.60
    # the failed request (line 7) bills nothing.                          subtotal = 28.77
    assert subtotal == Decimal("28.77")
    audio = rated.lines.filter(pl.col("meter").is_in(["audio_input_tokens", "audio_output_tokens"]))
    assert sorted(Decimal(a) for a in audio["amount"]) == [Decimal("9.60"), Decimal("10.00")]
