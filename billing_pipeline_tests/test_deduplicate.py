"""The same source record read from two files is billed once; a later export's correction wins over
the earlier version (kept for audit); two versions inside one file are billed never (money at risk)."""

import datetime as dt

import polars as pl

from billing_pipeline.schema import QUARANTINE_SCHEMA, USAGE_SCHEMA, conform
from billing_pipeline.usage import deduplicate, restated_usage

DAY = dt.date(2026, 10, 5)


def events(*rows):
    """(record_id, origin, meter, quantity) rows as canonical usage events."""
    frame = pl.DataFrame(
        [
            {
                "event_id": f"{r}-{o}-{m}",
                "record_id": r,
                "origin": o,
                "meter": m,
                "quantity": q,
                "source": "gateway_log",
                "day": DAY,
                "provider": "openai",
                "model": "gpt-4o",
            }
            for r, o, m, q in rows
        ]
    )
    return conform(frame, USAGE_SCHEMA)


def test_records_read_once_pass_through_whole_and_nothing_is_quarantined():
    usage = events(
        ("r1", "a.jsonl:1", "input_tokens", 10),
        ("r1", "a.jsonl:1", "output_tokens", 3),
        ("r2", "a.jsonl:2", "input_tokens", 7),
    )
    kept, rejected = deduplicate(usage)
    assert kept.sort("event_id").equals(usage.sort("event_id"))
    assert rejected.height == 0 and rejected.schema == pl.Schema(QUARANTINE_SCHEMA)


def test_an_identical_copy_from_a_second_file_is_counted_once_and_the_copy_quarantined():
    usage = events(
        ("r1", "a.jsonl:1", "input_tokens", 10),
        ("r1", "a.jsonl:1", "output_tokens", 3),
        ("r1", "b.jsonl:9", "output_tokens", 3),
        ("r1", "b.jsonl:9", "input_tokens", 10),
        ("r2", "a.jsonl:2", "input_tokens", 7),
    )
    kept, rejected = deduplicate(usage)
    assert sorted(kept.select("record_id", "origin").iter_rows()) == [
        ("r1", "a.jsonl:1"),
        ("r1", "a.jsonl:1"),
        ("r2", "a.jsonl:2"),
    ]
    assert rejected.select("origin", "reason").rows() == [("b.jsonl:9", "duplicate")]


def test_a_later_export_with_other_quantities_is_the_providers_correction_and_wins():
    """RELIABILITY.md 2: the earlier version is quarantined as restated and kept in the audit table."""
    usage = events(
        ("r1", "a.jsonl:1", "input_tokens", 10),
        ("r1", "b.jsonl:9", "input_tokens", 11),
        ("r2", "a.jsonl:2", "input_tokens", 7),
    )
    kept, rejected = deduplicate(usage, file_order={"a.jsonl": 1, "b.jsonl": 2})
    assert sorted(kept.select("record_id", "quantity").rows()) == [("r1", 11), ("r2", 7)]
    assert rejected.select("origin", "reason").rows() == [("a.jsonl:1", "restated")]
    audit = restated_usage(rejected)
    assert audit.select("key", "old", "new", "old_origin", "new_origin").rows() == [
        ("r1", "input_tokens=10", "input_tokens=11", "a.jsonl:1", "b.jsonl:9")
    ]


def test_the_delivery_order_not_the_file_name_decides_which_export_is_later():
    usage = events(("r1", "a.jsonl:1", "input_tokens", 10), ("r1", "b.jsonl:9", "input_tokens", 11))
    kept, rejected = deduplicate(usage, file_order={"a.jsonl": 2, "b.jsonl": 1})
    assert kept["quantity"].to_list() == [10]
    assert rejected.select("origin", "reason").rows() == [("b.jsonl:9", "restated")]


def test_two_quantities_for_one_key_inside_one_file_are_money_at_risk_and_neither_billed():
    """The natural key misses a field: picking one would be a silent guess."""
    usage = events(
        ("r1", "a.jsonl:1", "input_tokens", 10),
        ("r1", "a.jsonl:5", "input_tokens", 11),
        ("r1", "b.jsonl:9", "input_tokens", 10),
        ("r2", "a.jsonl:2", "input_tokens", 7),
    )
    kept, rejected = deduplicate(usage, file_order={"a.jsonl": 1, "b.jsonl": 2})
    assert kept["record_id"].to_list() == ["r2"]
    assert sorted(rejected.select("origin", "reason").rows()) == [
        ("a.jsonl:1", "conflict_in_file"),
        ("a.jsonl:5", "conflict_in_file"),
        ("b.jsonl:9", "conflict_in_file"),
    ]
