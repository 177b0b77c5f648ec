"""The same source record read from two files is billed once; two versions of it are billed never."""

import datetime as dt

import polars as pl

from billing_pipeline.schema import QUARANTINE_SCHEMA, USAGE_SCHEMA, conform
from billing_pipeline.usage import deduplicate

DAY = dt.date(2026, 10, 5)


def events(*rows):
    """(record_id, origin, meter, quantity) rows as canonical usage events."""
    frame = pl.DataFrame(
        [{"event_id": f"{r}-{o}-{m}", "record_id": r, "origin": o, "meter": m, "quantity": q, "source": "gateway_log",
          "day": DAY, "provider": "openai", "model": "gpt-4o"} for r, o, m, q in rows])
    return conform(frame, USAGE_SCHEMA)


def test_records_read_once_pass_through_whole_and_nothing_is_quarantined():
    usage = events(("r1", "a.jsonl:1", "input_tokens", 10), ("r1", "a.jsonl:1", "output_tokens", 3),
                   ("r2", "a.jsonl:2", "input_tokens", 7))
    kept, rejected = deduplicate(usage)
    assert kept.sort("event_id").equals(usage.sort("event_id"))
    assert rejected.height == 0 and rejected.schema == pl.Schema(QUARANTINE_SCHEMA)


def test_an_identical_copy_from_a_second_file_is_counted_once_and_the_copy_quarantined():
    usage = events(("r1", "a.jsonl:1", "input_tokens", 10), ("r1", "a.jsonl:1", "output_tokens", 3),
                   ("r1", "b.jsonl:9", "output_tokens", 3), ("r1", "b.jsonl:9", "input_tokens", 10),
                   ("r2", "a.jsonl:2", "input_tokens", 7))
    kept, rejected = deduplicate(usage)
    assert sorted(kept.select("record_id", "origin").iter_rows()) == [
        ("r1", "a.jsonl:1"), ("r1", "a.jsonl:1"), ("r2", "a.jsonl:2")]
    assert rejected.select("origin", "reason").rows() == [("b.jsonl:9", "duplicate")]


def test_two_versions_of_a_record_are_both_quarantined_as_a_conflict_and_neither_billed():
    usage = events(("r1", "a.jsonl:1", "input_tokens", 10), ("r1", "b.jsonl:9", "input_tokens", 11),
                   ("r2", "a.jsonl:2", "input_tokens", 7))
    kept, rejected = deduplicate(usage)
    assert kept["record_id"].to_list() == ["r2"]
    assert sorted(rejected.select("origin", "reason").rows()) == [("a.jsonl:1", "conflict"), ("b.jsonl:9", "conflict")]
