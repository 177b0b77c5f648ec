"""The invoice's daily usage chart: its bars are the lines' amounts spread over their days, its
scale covers every day, its text is escaped."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from billing_pipeline.documents.chart import usage_chart_svg
from billing_pipeline.documents.invoice import spend_by_day


def axis_labels(markup: str) -> list[Decimal]:
    return [
        Decimal(v.replace(",", ""))
        for v in re.findall(r'text-anchor="end"[^>]*>\$([\d,.]+)</text>', markup)
    ]


def test_the_y_axis_reaches_the_tallest_day():
    # 0.11 on one day: a scale in steps of 0.05 must end at 0.15, not cut the bar at 0.10
    usage = [
        {"day": "2026-10-03", "model": "gpt-4o", "quantity": 1, "amount": "0.07"},
        {"day": "2026-10-03", "model": "claude-sonnet-4", "quantity": 1, "amount": "0.04"},
        {"day": "2026-10-04", "model": "gpt-4o", "quantity": 1, "amount": "0.02"},
    ]
    labels = axis_labels(usage_chart_svg(usage, "2026-10-01", "2026-10-31", "USD"))
    assert labels[0] == 0 and max(labels) >= Decimal("0.11")


def test_a_month_of_a_few_cents_labels_each_tick_with_its_own_distinct_amount():
    # tallest day 0.01: steps of 0.0025, which cents alone would print as $0.00, $0.00, $0.01, $0.01
    usage = [
        {"day": "2026-10-03", "model": "gpt-4o", "quantity": 1, "amount": "0.01"},
        {"day": "2026-10-04", "model": "gpt-4o", "quantity": 1, "amount": "0.004"},
    ]
    labels = axis_labels(usage_chart_svg(usage, "2026-10-01", "2026-10-31", "USD"))
    assert labels == [
        Decimal("0"),
        Decimal("0.0025"),
        Decimal("0.005"),
        Decimal("0.0075"),
        Decimal("0.01"),
    ]


def test_ticks_of_whole_cents_or_more_print_as_money():
    usage = [{"day": "2026-10-03", "model": "gpt-4o", "quantity": 1, "amount": "1234"}]
    markup = usage_chart_svg(usage, "2026-10-01", "2026-10-31", "EUR")
    assert ">0.00 EUR</text>" in markup and ">1,500.00 EUR</text>" in markup


def test_every_model_is_in_the_legend_as_escaped_text():
    usage = [
        {"day": "2026-10-01", "model": "<b>x</b>", "quantity": 1, "amount": "1.00"},
        {"day": "2026-10-02", "model": "gpt-4o", "quantity": 1, "amount": "2.00"},
    ]
    markup = usage_chart_svg(usage, "2026-10-01", "2026-10-31", "USD")
    assert "<b>" not in markup
    assert "&lt;b&gt;x&lt;/b&gt;</li>" in markup and "gpt-4o</li>" in markup


def test_no_usage_gives_no_chart():
    assert usage_chart_svg([], "2026-10-01", "2026-10-31", "USD") == ""


def _line(
    amount: str, quantity: int, points, description="gpt-4o tokens", consideration="variable"
):
    """A rated line as build_documents reads it: its amount and units, and its units per day."""
    daily = [{"day": f"2026-10-0{day}", "model": model, "quantity": q} for day, model, q in points]
    return {
        "consideration": consideration,
        "description": description,
        "amount": amount,
        "quantity": quantity,
        "daily": json.dumps(daily),
    }


def test_each_lines_amount_is_spread_over_its_days_by_units_and_each_bar_is_rounded_once():
    lines = [
        _line("10.00", 3, [(1, "gpt-4o", 1), (2, "gpt-4o", 2)]),  # 10/3 and 20/3
        _line("0.01", 3, [(3, "gpt-4o", 1), (4, "gpt-4o", 2)]),  # a third of a cent, two thirds
        _line("0.01", 6, [(3, "gpt-4o", 1), (5, "gpt-4o", 5)]),  # a sixth, five sixths
        _line("2.50", 10, [(1, None, 10)], description="GPU seconds (H100)"),  # no model: its line
        _line("49.00", 1, [], description="Base fee", consideration="fixed"),  # not usage
    ]
    assert spend_by_day(lines, "USD") == [
        {"day": "2026-10-01", "model": "GPU seconds (H100)", "quantity": 10, "amount": "2.50"},
        {"day": "2026-10-01", "model": "gpt-4o", "quantity": 1, "amount": "3.33"},
        {"day": "2026-10-02", "model": "gpt-4o", "quantity": 2, "amount": "6.67"},
        # 1/3 + 1/6 of a cent is exactly half a cent: rounded once, half up (each share rounded
        # on its own would give 0.00 + 0.00)
        {"day": "2026-10-03", "model": "gpt-4o", "quantity": 2, "amount": "0.01"},
        {"day": "2026-10-04", "model": "gpt-4o", "quantity": 2, "amount": "0.01"},
        {"day": "2026-10-05", "model": "gpt-4o", "quantity": 5, "amount": "0.01"},
    ]
    assert spend_by_day(lines, "JPY")[1]["amount"] == "3"  # 10 yen x 1/3, in whole yen
