"""Outcome events CSV: one outcome = one `outcomes` unit, keyed by our customer id."""

import json
from datetime import date

from billing_pipeline.sources import SOURCES


def write(landing, name, text):
    folder = landing / "outcomes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


CSV = """outcome_id,customer_id,outcome_type,timestamp
o-1,acme,accepted_diagnosis,2026-10-05T10:00:00Z
o-2,acme,accepted_diagnosis,2026-10-06T10:00:00+00:00
o-3,,accepted_diagnosis,2026-10-05T11:00:00Z
o-4,acme,accepted_diagnosis,yesterday
"""


def test_outcomes_undated_file_rows_go_to_their_own_day(tmp_path):
    write(tmp_path, "outcomes_2026-10.csv", CSV)
    r = SOURCES["outcomes"](tmp_path, date(2026, 10, 5), date(2026, 10, 6))
    assert r.events.select("meter", "quantity", "account_key", "provider", "origin").rows() == [
        ("outcomes", 1, "customer:acme", "internal", "outcomes/outcomes_2026-10.csv:1")
    ]
    assert json.loads(r.events["dimensions"][0]) == {"outcome": "accepted_diagnosis"}
    assert r.quarantine.select("reason", "field").rows() == [("missing_field", "customer_id")]
    # o-4 has no usable timestamp: it belongs to the first day of the month named in the file.
    oct1 = SOURCES["outcomes"](tmp_path, date(2026, 10, 1), date(2026, 10, 2))
    assert oct1.quarantine.select("reason", "field", "day").rows() == [
        ("bad_timestamp", "timestamp", date(2026, 10, 1))
    ]
    month = SOURCES["outcomes"](tmp_path, date(2026, 10, 1), date(2026, 11, 1))
    assert month.records_read == 4 and month.events.height == 2
