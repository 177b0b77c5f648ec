"""The canonical usage table's row order is a function of its rows: the same input writes the same
usage_events files whatever order the readers (or a re-run) delivered it in."""

import datetime as dt

import polars as pl
import pytest

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.schema import USAGE_SCHEMA, conform
from billing_pipeline.usage import canonical_order, deduplicate, normalize

DAY = dt.date(2026, 10, 5)

# The documented order, written out: source, then file, then reading order inside a file (a
# shorter origin first: line 9 before line 10), then meter and event id inside one origin.
EXPECTED = [
    ("gateway_log", "gateway/2026-10-05.jsonl:9", "input_tokens"),
    ("gateway_log", "gateway/2026-10-05.jsonl:9", "output_tokens"),
    ("gateway_log", "gateway/2026-10-05.jsonl:10", "cached_input_tokens"),
    ("gateway_log", "gateway/2026-10-05.jsonl:10", "input_tokens"),
    ("gateway_log", "gateway/2026-10-05.jsonl:10", "output_tokens"),
    ("gateway_log", "gateway/2026-10-05.jsonl:100", "input_tokens"),
    ("gateway_log", "gateway/2026-10-05.jsonl.1:2", "input_tokens"),  # a longer file name
    ("gateway_log", "gateway/2026-10-05T00.jsonl:1", "input_tokens"),
    ("gateway_log", "gateway/2026-10-05T00.jsonl:12", "input_tokens"),
    ("gateway_log", "gateway/2026-10-05T01.jsonl:3", "input_tokens"),
    ("gateway_log", "gateway/ä.jsonl:7", "input_tokens"),  # bytes, not characters
    ("openai_usage_api", "openai/usage/2026-10-05_p1.json#data[0].results[1]", "input_tokens"),
    ("openai_usage_api", "openai/usage/2026-10-05_p1.json#data[0].results[10]", "input_tokens"),
    ("openai_usage_api", "openai/usage/2026-10-05_p2.json#data[0].results[0]", "input_tokens"),
]


def usage(rows):
    frame = pl.DataFrame(
        [
            {
                "event_id": f"{origin}/{meter}",
                "record_id": origin,
                "source": source,
                "origin": origin,
                "meter": meter,
                "quantity": i,
                "day": DAY,
            }
            for i, (source, origin, meter) in enumerate(rows)
        ]
    )
    return conform(frame, USAGE_SCHEMA)


def keys(frame):
    return frame.select("source", "origin", "meter").rows()


def test_the_order_is_the_documented_one_whatever_order_the_rows_arrive_in():
    expected = usage(EXPECTED)
    assert keys(canonical_order(expected)) == EXPECTED
    for seed in range(20):
        shuffled = expected.sample(fraction=1.0, shuffle=True, seed=seed)
        assert canonical_order(shuffled).equals(expected), seed


def test_a_readers_order_with_meters_in_its_own_order_only_moves_rows_inside_an_origin():
    as_read = [EXPECTED[1], EXPECTED[0], EXPECTED[4], EXPECTED[2], EXPECTED[3], *EXPECTED[5:]]
    assert keys(canonical_order(usage(as_read))) == EXPECTED


@pytest.mark.parametrize(
    "first, second",
    [
        ("a.jsonl:10", "a.jsonl:9"),  # longer, yet earlier in byte order: same file, so after
        ("b.jsonl:1", "a.jsonl:10"),  # shorter, yet another file that comes first
        ("a.jsonl-2:1", "a.jsonl:5"),  # the file part of one is a prefix of the other's
        ("ab.jsonl:1", "b.jsonl:5"),
    ],
)
def test_pairs_that_byte_order_alone_cannot_decide(first, second):
    rows = [("gateway_log", first, "input_tokens"), ("gateway_log", second, "input_tokens")]
    ordered = keys(canonical_order(usage(rows)))
    assert ordered == keys(canonical_order(usage(rows[::-1])))
    file_of = {o: o.split(":")[0] for o in (first, second)}
    expected = sorted([first, second], key=lambda o: (file_of[o], len(o), o))
    assert [o for _, o, _ in ordered] == expected


def test_rows_with_missing_keys_still_get_one_order():
    rows = usage(EXPECTED).with_columns(
        pl.when(pl.col("quantity") == 3).then(None).otherwise(pl.col("origin")).alias("origin")
    )
    once = canonical_order(rows)
    assert once["origin"][0] is None
    assert canonical_order(rows.reverse()).equals(once)


def test_meters_of_one_record_apart_from_each_other_are_not_mistaken_for_a_copy():
    rows = usage(EXPECTED[:3])
    split = pl.concat([rows[0], rows[2], rows[1]])  # origin 9, origin 10, origin 9 again
    kept, rejected = deduplicate(split)
    assert rejected.height == 0
    assert kept.equals(split)  # and the rows keep their order


def test_normalize_writes_the_same_table_whatever_order_the_sources_arrive_in():
    """Ingestion hands the sources in its assets' order (the OpenAI API before the gateway log);
    the table is in the documented order all the same, and so when one frame mixes sources."""
    catalog = parse_catalog({"issuer": {"name": "Us"}, "plans": {}, "customers": {}})
    rows = usage(EXPECTED)
    gateway, openai = (
        rows.filter(pl.col("source") == s) for s in ("gateway_log", "openai_usage_api")
    )
    mixed = pl.concat([openai[:1], gateway[::-1]])
    for frames in (
        [openai, gateway],
        [gateway, openai],
        [mixed, openai[1:]],
        [openai[:0], openai, gateway],
    ):
        table, quarantine = normalize(frames, [], catalog)
        assert keys(table) == EXPECTED
        assert quarantine.height == 0
