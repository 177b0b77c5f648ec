"""The invoice's daily usage chart: its scale covers every day, its text is escaped."""

from __future__ import annotations

import re
from decimal import Decimal

from billing_pipeline.documents.chart import usage_chart_svg


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
