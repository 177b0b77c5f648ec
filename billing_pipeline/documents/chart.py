"""The invoice's daily usage chart: stacked bars per day by model, as an inline SVG string
followed by its HTML caption (axis title and legend).

The markup is built here, not in the template, so that it contains only numbers we computed and
text passed through ``html.escape``; the template inserts it with ``|safe``. Geometry uses Decimal
like the rest of the pipeline (no floats), rounded to 0.1 px.

Cheap to render (it was the costliest part of an invoice): WeasyPrint styles and draws every SVG
element on its own and lays out SVG text one letter at a time, so the bars are one ``<path>`` per
model and the long texts (axis title, model names) are HTML, laid out like the rest of the page.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from html import escape

from billing_pipeline.money import exact, fmt_money

# Colour-blind friendly palette (Okabe-Ito, then greys); constants, never customer values.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
MAX_SERIES = len(PALETTE)  # more models than colours: the smallest are merged into "Other models"

WIDTH, HEIGHT = 640, 140
LEFT, RIGHT, TOP, BOTTOM = 58, 8, 8, 16  # plot margins; the HTML caption follows the day labels
FONT = 'font-family="Invoice Sans, DejaVu Sans, sans-serif"'


def _px(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.1")), "f")


def _bar(x: Decimal, y: Decimal, h: Decimal) -> str:
    """A bar segment as a vertical subpath from y down by h at centre x; the path's stroke width
    is the bar width (butt caps), so it covers the same box as a filled rectangle with 2 path
    commands instead of 5 (fewer numbers to parse, draw and write into the PDF)."""
    return f"M{_px(x)} {_px(y)}v{_px(h)}"


def _nice_step(maximum: Decimal, ticks: int = 4) -> Decimal:
    """1, 2, 2.5 or 5 times a power of ten, so that ``ticks`` steps cover ``maximum``."""
    if maximum <= 0:
        return Decimal(1)
    raw = maximum / ticks
    power = Decimal(1).scaleb(raw.adjusted())
    for factor in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        if factor * power >= raw:
            return factor * power
    return 10 * power  # pragma: no cover


def _tick_label(value: Decimal, step: Decimal, currency: str) -> str:
    """An axis label: money to the minor unit, or to the step's own decimals when the step is
    finer (a month of a few cents has ticks $0.0025 apart, which cents would print as $0.00,
    $0.00, $0.01, $0.01)."""
    return fmt_money(value, currency, places=-step.normalize().as_tuple().exponent)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def usage_chart_svg(
    usage_by_day: list[dict],
    period_start: str,
    period_end: str,
    currency: str,
) -> str:
    """Stacked daily amounts per model over the whole period, then the caption (axis title,
    legend with classes ``swatch s<i>`` for the i-th palette colour, see invoice.css); "" when
    there is no usage."""
    start, end = date.fromisoformat(period_start), date.fromisoformat(period_end)
    totals_by_model: dict[str, Decimal] = defaultdict(Decimal)
    for row in usage_by_day:
        totals_by_model[str(row["model"])] += exact(row["amount"])
    if not totals_by_model:
        return ""
    ranked = sorted(totals_by_model, key=lambda m: (-totals_by_model[m], m))
    if len(ranked) > MAX_SERIES:
        series = ranked[: MAX_SERIES - 1] + ["Other models"]
        kept = set(series[:-1])
    else:
        series, kept = ranked, set(ranked)

    cells: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for row in usage_by_day:
        day = date.fromisoformat(str(row["day"]))
        model = str(row["model"])
        cells[(day, model if model in kept else "Other models")] += exact(row["amount"])

    days = _days(start, end)
    day_totals = [sum((cells[(d, s)] for s in series), Decimal(0)) for d in days]
    step = _nice_step(max(day_totals))
    # whole steps up to the tallest day; Decimal ``//`` truncates, so ceil explicitly
    top_value = step * max(
        1, int((max(day_totals) / step).to_integral_value(rounding=ROUND_CEILING))
    )

    plot_w = Decimal(WIDTH - LEFT - RIGHT)
    plot_h = Decimal(HEIGHT - TOP - BOTTOM)
    slot = plot_w / len(days)
    bar_w = slot * Decimal("0.72")
    base_y = Decimal(TOP) + plot_h

    # One <path> per series (all its bars) and one for the grid, instead of up to ~250 <rect>s and
    # <line>s that WeasyPrint would cascade and draw one by one. Same geometry as a rect per bar:
    # each subpath is a stroked vertical line through the bar's centre, in 0.1 px.
    shapes: dict[str, list[str]] = {name: [] for name in series}
    texts: list[str] = []
    grid: list[str] = []
    value = Decimal(0)
    while value <= top_value:
        y = base_y - plot_h * value / top_value
        grid.append(f"M{LEFT} {_px(y)}H{WIDTH - RIGHT}")
        texts.append(
            f'<text x="{LEFT - 5}" y="{_px(y + 3)}" text-anchor="end">{escape(_tick_label(value, step, currency))}</text>'
        )
        value += step
    for i, day in enumerate(days):
        x = Decimal(LEFT) + slot * i + (slot - bar_w) / 2
        y = base_y
        for name in series:
            amount = cells.get((day, name), Decimal(0))
            if amount <= 0:
                continue
            h = plot_h * amount / top_value
            y -= h
            shapes[name].append(_bar(x + bar_w / 2, y, h))
        if day.day == 1 or day.day % 5 == 0 or day == end:
            texts.append(
                f'<text x="{_px(x + bar_w / 2)}" y="{_px(base_y + 11)}" text-anchor="middle">{day.day}</text>'
            )
    # legend: one line of entries under the axis title (invoice.css .chart-legend). Inline text
    # only: the swatch is a coloured U+25A0 (in the shipped font), not an inline-block box, so the
    # whole legend is a single line box to lay out.
    legend: list[str] = []
    for k, name in enumerate(series):
        label = name if len(name) <= 28 else name[:27] + "\u2026"
        legend.append(f'<li><span class="swatch s{k}">\u25a0</span> {escape(label)}</li>')

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
        f'<path d="{"".join(grid)}" stroke="#e3e6ea" stroke-width="0.6" fill="none"/>',
    ]
    out += [
        f'<path d="{"".join(shapes[name])}" stroke="{colour}" stroke-width="{_px(bar_w)}" fill="none"/>'
        for colour, name in zip(PALETTE, series, strict=False)
    ]
    out.append(
        f'<path d="M{LEFT} {_px(base_y)}H{WIDTH - RIGHT}" stroke="#888" stroke-width="0.8" fill="none"/>'
    )
    out.append(f'<g font-size="8" {FONT} fill="#555">{"".join(texts)}</g>')
    out.append("</svg>")
    out.append(f'<p class="chart-axis">Day of {escape(start.strftime("%B %Y"))} (UTC)</p>')
    out.append(f'<ul class="chart-legend">{"".join(legend)}</ul>')
    return "".join(out)
