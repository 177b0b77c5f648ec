"""Attribution keys can be effective-dated: usage follows whoever owned the key on its day."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from billing_pipeline.catalog.loader import parse_catalog
from billing_pipeline.schema import USAGE_SCHEMA, conform
from billing_pipeline.usage import attribute

PLAN = {
    "payg": {
        "name": "PAYG",
        "currency": "USD",
        "charges": [
            {
                "id": "in",
                "meter": "input_tokens",
                "unit_size": 1000,
                "pricing": "per_unit",
                "unit_price": "0.01",
            }
        ],
    }
}


def catalog(acme_keys, beta_keys):
    sub = [{"plan": "payg", "from": date(2026, 1, 1), "to": None}]
    return parse_catalog(
        {
            "issuer": {"name": "X", "address": "", "vat_id": "", "invoice_prefix": "INV"},
            "plans": PLAN,
            "customers": {
                "acme": {"name": "Acme", "subscriptions": sub, "keys": acme_keys},
                "beta": {"name": "Beta", "subscriptions": sub, "keys": beta_keys},
            },
        }
    )


def events(*rows):
    return conform(
        pl.DataFrame(
            [
                {
                    "event_id": f"e{i}",
                    "account_key": k,
                    "day": d,
                    "meter": "input_tokens",
                    "quantity": 10,
                }
                for i, (k, d) in enumerate(rows)
            ]
        ),
        USAGE_SCHEMA,
    )


def owners(frame):
    return frame.sort("event_id")["customer_id"].to_list()


def test_a_reassigned_project_bills_each_owner_for_their_days_only():
    cat = catalog(
        [
            "gateway:acme",
            {"key": "openai:proj_x", "from": date(2026, 1, 1), "to": date(2026, 10, 14)},
        ],
        [{"key": "openai:proj_x", "from": date(2026, 10, 15), "to": None}],
    )
    ev = events(
        ("openai:proj_x", date(2026, 10, 14)),
        ("openai:proj_x", date(2026, 10, 15)),
        ("gateway:acme", date(2026, 10, 20)),
        ("openai:proj_x", date(2025, 12, 31)),
    )
    assert owners(attribute(ev, cat)) == [
        "acme",
        "beta",
        "acme",
        None,
    ]  # before any owner: unattributed, kept


def test_plain_string_keys_still_attribute_every_day():
    cat = catalog(["openai:proj_a"], ["gateway:beta"])
    ev = events(
        ("openai:proj_a", date(2026, 10, 1)),
        ("gateway:beta", date(2030, 1, 1)),
        ("openai:nobody", date(2026, 10, 1)),
    )
    out = attribute(ev, cat)
    assert owners(out) == ["acme", "beta", None] and out.height == 3


def test_a_key_two_customers_claim_on_the_same_day_is_not_billed_twice():
    cat = catalog(
        [{"key": "openai:proj_x", "from": date(2026, 10, 1)}],
        [{"key": "openai:proj_x", "to": date(2026, 10, 5)}],
    )
    ev = events(("openai:proj_x", date(2026, 10, 3)), ("openai:proj_x", date(2026, 10, 9)))
    out = attribute(ev, cat)
    assert out.height == 2 and owners(out) == [None, "acme"]


def test_a_key_period_ending_before_it_starts_is_refused():
    with pytest.raises(Exception, match="before from"):
        catalog([{"key": "openai:p", "from": date(2026, 10, 5), "to": date(2026, 10, 1)}], [])


def test_events_read_from_several_files_keep_one_chunk_layout_after_attribution():
    # Each file read is a chunk; the owner column the join adds is cut at the same rows, so the
    # usage key (six columns, customer included) is hashed without first copying every string.
    cat = catalog(["openai:proj_a"], ["gateway:beta"])
    files = [
        events(("openai:proj_a", date(2026, 10, 1)), ("gateway:beta", date(2026, 10, 1))),
        events(("gateway:beta", date(2026, 10, 2))),
        events(("openai:nobody", date(2026, 10, 2)), ("openai:proj_a", date(2026, 10, 3))),
    ]
    read = pl.concat(files, rechunk=False)
    out = attribute(read, cat)
    layouts = {tuple(len(c) for c in out.get_column(n).get_chunks()) for n in out.columns}
    assert layouts == {(2, 1, 2)}
    assert out["customer_id"].to_list() == ["acme", "beta", "beta", None, "acme"]
    assert out.equals(attribute(read.rechunk(), cat))
