"""A check's verdict as plain data, decided without Dagster.

Each invariant the month is checked against (records conserved, units accounted for, revenue and
cost reconciled, invoices adding up, money at risk) is a function beside the rule it checks,
returning a ``CheckOutcome``; defs/ only turns that into an ``AssetCheckResult``. So a check is
tested by calling it, not by running a month-end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

ERROR = "error"  # fails the step when the check is blocking; issuing refuses the month
WARN = "warn"  # reported, never blocks
SEVERITIES = (ERROR, WARN)


class Markdown(str):
    """A metadata value to show as Markdown (a table, a list), not as plain text."""


@dataclass(frozen=True)
class CheckOutcome:
    """``metadata`` values are text, numbers, booleans, ``Markdown``, or dicts (shown as JSON)."""

    passed: bool
    metadata: dict[str, object] = field(default_factory=dict)
    severity: str = ERROR
    description: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: expected one of {', '.join(SEVERITIES)}")


def markdown_table(frame: pl.DataFrame, limit: int = 10) -> Markdown:
    """The first ``limit`` rows of ``frame`` as a Markdown table (nulls as empty cells)."""
    head = frame.head(limit)
    rows = ["| " + " | ".join(head.columns) + " |", "|" + " --- |" * len(head.columns)]
    rows += [
        "| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in head.iter_rows()
    ]
    return Markdown("\n".join(rows))


def unit_count(value: int) -> int | str:
    """A unit count as metadata: an integer, or its text when it does not fit 64 bits (a held
    customer's usage can be that large; Dagster's integer metadata cannot)."""
    return int(value) if -(2**63) <= value < 2**63 else str(value)
