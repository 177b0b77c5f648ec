"""Metering drift: the provider's token counts against our own recount of the same text."""

import json
from datetime import date

import polars as pl

from billing_pipeline import tokens
from billing_pipeline.sources import drift, gateway_log

DAY, NEXT = date(2026, 10, 5), date(2026, 10, 6)
PROMPT, COMPLETION = (
    "hello" + " hello" * 99,
    "ok" + " ok" * 39,
)  # 100 and 40 tokens (asserted below)


def line(rid, model, prompt_tokens, completion_tokens, **over):
    d = {
        "request_id": rid,
        "timestamp": "2026-10-05T10:00:00Z",
        "customer_key": "acme",
        "model": model,
        "prompt": PROMPT,
        "completion": COMPLETION,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }
    return json.dumps(d | over)


def write(tmp_path, lines):
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway/2026-10-05.jsonl").write_text("\n".join(lines) + "\n")


def by_model(frame):
    return {r["model"]: r for r in frame.iter_rows(named=True)}


def test_provider_counts_15_percent_under_the_text_show_minus_15_percent_drift(tmp_path):
    assert tokens.count_tokens("gpt-4o-mini", [PROMPT, COMPLETION]) == [100, 40]
    write(
        tmp_path,
        [line(f"r{i}", "gpt-4o-mini", 85, 34) for i in range(3)]
        + [line("m1", "mistral-small-2409", 100, 40)],
    )
    rows = by_model(gateway_log.tokenizer_drift(tmp_path, DAY, NEXT))

    gpt = rows["gpt-4o-mini"]
    assert (gpt["lines"], gpt["provider_input"], gpt["counted_input"], gpt["input_drift"]) == (
        3,
        255,
        300,
        -45,
    )
    assert gpt["input_drift_pct"] == gpt["output_drift_pct"] == gpt["drift_pct"] == -15.0
    assert gpt["tokenizer"] == "o200k_base"
    mistral = rows["mistral-small-2409"]
    assert (mistral["drift"], mistral["drift_pct"]) == (0, 0.0)


def test_only_lines_with_both_counts_and_text_are_compared_and_claude_is_not_guessed(tmp_path):
    usage_only = json.dumps(
        {
            "request_id": "u",
            "timestamp": "2026-10-05T10:00:00Z",
            "model": "gpt-4o-mini",
            "usage": {"prompt_tokens": 7, "completion_tokens": 1},
        }
    )
    text_only = json.dumps(
        {
            "request_id": "t",
            "timestamp": "2026-10-05T10:00:00Z",
            "model": "gpt-4o-mini",
            "prompt": PROMPT,
            "completion": COMPLETION,
        }
    )
    claude = line("c", "claude-sonnet-4-5", 120, 50, provider="anthropic")
    write(tmp_path, [usage_only, text_only, line("g", "gpt-4o-mini", 110, 40), claude])
    rows = by_model(gateway_log.tokenizer_drift(tmp_path, DAY, NEXT))

    assert set(rows) == {"gpt-4o-mini", "claude-sonnet-4-5"}
    assert (rows["gpt-4o-mini"]["lines"], rows["gpt-4o-mini"]["input_drift_pct"]) == (1, 10.0)
    assert (
        rows["claude-sonnet-4-5"]["tokenizer"] is None
        and rows["claude-sonnet-4-5"]["drift_pct"] is None
    )
    assert rows["claude-sonnet-4-5"]["provider_total"] == 170


def test_a_day_without_such_lines_reports_an_empty_table():
    out = drift.drift_by_model(drift.empty_sample())
    assert out.height == 0 and out.schema == pl.Schema(drift.DRIFT_SCHEMA)


def test_files_of_usage_only_lines_are_not_parsed_for_drift_and_give_the_empty_table(
    tmp_path, monkeypatch
):
    usage_only = json.dumps(
        {
            "request_id": "u",
            "timestamp": "2026-10-05T10:00:00Z",
            "model": "gpt-4o-mini",
            "usage": {"prompt_tokens": 7, "completion_tokens": 1},
        }
    )
    write(tmp_path, [usage_only] * 3)
    parsed = []
    monkeypatch.setattr(
        gateway_log, "_read_file", lambda *a, **k: parsed.append(a) or (None, None, None, 0)
    )

    out = gateway_log.tokenizer_drift(tmp_path, DAY, NEXT)

    assert parsed == [] and out.height == 0 and out.schema == pl.Schema(drift.DRIFT_SCHEMA)


def test_a_text_key_written_with_spaces_before_its_colon_is_still_compared(tmp_path):
    spaced = (
        line("g", "gpt-4o-mini", 110, 40)
        .replace('"prompt":', '"prompt" :')
        .replace('"completion":', '"completion"  :')
    )
    write(tmp_path, [spaced])
    assert by_model(gateway_log.tokenizer_drift(tmp_path, DAY, NEXT))["gpt-4o-mini"]["lines"] == 1
