"""The one-page finance summary of a month's reconciliation: totals, a margin chart, the flags.

HTML from a Jinja2 template (autoescaped; customer ids only ever in element text), the chart an
inline SVG built here from numbers we computed, and a PDF of the same page through WeasyPrint
with the invoice renderer's URL fetcher (template and font folders only).
"""

from __future__ import annotations

import os
from decimal import Decimal
from html import escape
from pathlib import Path

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from billing_pipeline import shipped
from billing_pipeline.money import ZERO, exact, fmt_money, percent
from billing_pipeline.rendering.pdf import (
    FONT_EPOCH,
    FONTS_DIR,
    TemplateOnlyURLFetcher,
    write_atomically,
)

TEMPLATE_NAME = "reconciliation.html.j2"
STYLESHEET_NAME = "reconciliation.css"
CHART_CUSTOMERS = 15  # the chart shows the largest customers by revenue; the rest are in the CSV
BAR_HEIGHT, WIDTH, LABEL = 14, 640, 120
POSITIVE, NEGATIVE = "#009E73", "#D55E00"


def _sum(values) -> Decimal:
    return sum((exact(v) for v in values if v is not None), ZERO)


def _pct(margin: Decimal, revenue: Decimal) -> str:
    return f"{percent(margin, revenue)} %" if revenue else "\u2014"


LABEL_CHARS = 22  # what fits left of the bars at the chart's font size


def _label(customer_id: str) -> str:
    """A customer id as the chart shows it: cut short with an ellipsis when it would not fit
    left of the bars (it would be drawn off the page); the tables show it whole."""
    if len(customer_id) <= LABEL_CHARS:
        return customer_id
    return customer_id[: LABEL_CHARS - 1] + "\u2026"


def margin_chart_svg(by_customer: list[dict], currency: str) -> str:
    """Horizontal bars: each customer's margin, negative to the left of the axis, in red."""
    if not by_customer:
        return ""
    low = min(min(r["margin"] for r in by_customer), ZERO)
    high = max(max(r["margin"] for r in by_customer), ZERO)
    span = (high - low) or Decimal(1)
    plot = Decimal(WIDTH - LABEL - 90)
    zero_x = LABEL + plot * (-low) / span
    height = BAR_HEIGHT * len(by_customer) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Invoice Sans, DejaVu Sans, sans-serif" font-size="8">'
    ]
    for i, row in enumerate(by_customer):
        y = 4 + i * BAR_HEIGHT
        width = plot * abs(row["margin"]) / span
        x = zero_x - width if row["margin"] < 0 else zero_x
        colour = NEGATIVE if row["margin"] < 0 else POSITIVE
        parts.append(
            f'<text x="{LABEL - 4}" y="{y + 9}" text-anchor="end">{escape(_label(row["customer_id"]))}</text>'
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{max(width, Decimal("0.5")):.1f}" height="{BAR_HEIGHT - 4}" '
            f'fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{WIDTH - 4}" y="{y + 9}" text-anchor="end">'
            f"{escape(fmt_money(row['margin'], currency))} ({escape(_pct(row['margin'], row['revenue']))})</text>"
        )
    parts.append(
        f'<line x1="{zero_x:.1f}" y1="0" x2="{zero_x:.1f}" y2="{height}" stroke="#374151" stroke-width="0.5"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


AT_RISK_ROWS = 25


def not_billed_context(quarantine: pl.DataFrame | None, waived: list[dict] | None = None) -> dict:
    """The summary's money-at-risk section: held records (waived or not), unread cost pages and
    the waivers a person gave, so finance sees what the month's numbers do not include."""
    waived = waived or []
    if quarantine is None or quarantine.height == 0:
        return {"at_risk": [], "more_at_risk": 0, "cost_unread": [], "waived": _waiver_rows(waived)}
    waived_origins = {w["origin"] for w in waived}
    at_risk = quarantine.filter(pl.col("kind") == "money_at_risk").unique(
        ["origin", "reason", "customer_id"], keep="first", maintain_order=True
    )
    cost = quarantine.filter(pl.col("kind") == "cost")
    return {
        "at_risk": [
            {
                "origin": r["origin"],
                "reason": r["reason"],
                "holds": r["customer_id"] or "the whole month",
                "status": "waived" if r["origin"] in waived_origins else "held",
            }
            for r in at_risk.head(AT_RISK_ROWS).iter_rows(named=True)
        ],
        "more_at_risk": max(at_risk.height - AT_RISK_ROWS, 0),
        "cost_unread": [
            {"origin": r["origin"], "reason": r["reason"]}
            for r in cost.head(AT_RISK_ROWS).iter_rows(named=True)
        ],
        "waived": _waiver_rows(waived),
    }


def _waiver_rows(waived: list[dict]) -> list[dict]:
    return [
        {
            "origin": w["origin"],
            "reason": w["reason"],
            "actor": w["actor"],
            "at": f"{w['waived_at']:%Y-%m-%d %H:%M} UTC",
        }
        for w in waived
    ]


def summary_context(
    table: pl.DataFrame,
    month: str,
    drift: pl.DataFrame | None = None,
    currency: str = "USD",
    quarantine: pl.DataFrame | None = None,
    waived: list[dict] | None = None,
) -> dict:
    """Everything the template shows, as text: no arithmetic in the template."""
    revenue, cost = _sum(table["revenue"]), _sum(table["cost"])
    unattributed = table.filter(pl.col("customer_id").is_null())
    customers = (
        table.filter(pl.col("customer_id").is_not_null())
        .group_by("customer_id")
        .agg(pl.col("revenue").sum(), pl.col("cost").sum(), pl.col("margin").sum())
        .sort("revenue", "customer_id", descending=[True, False])
    )
    rows = [
        {k: (exact(v) if k != "customer_id" else v) for k, v in r.items()}
        for r in customers.iter_rows(named=True)
    ]
    chart_rows = sorted(rows[:CHART_CUSTOMERS], key=lambda r: (r["margin"], r["customer_id"]))
    flagged = table.filter(pl.col("flags").fill_null("") != "").sort("margin")

    def shown(value) -> str:
        return fmt_money(exact(value), currency) if value is not None else "\u2014"

    drift_rows = (
        []
        if drift is None
        else [
            {
                "customer_id": r["customer_id"],
                "provider": r["provider"],
                "model": r["model"] or "\u2014",
                "metered": f"{r['metered_tokens']:,}",
                "reported": f"{r['reported_tokens']:,}",
                "drift": f"{r['drift_pct']} %" if r["drift_pct"] is not None else "\u2014",
                "at_stake": shown(r["amount_at_stake"]),
            }
            for r in drift.filter(pl.col("flagged")).iter_rows(named=True)
        ]
    )
    return {
        "month": month,
        "totals": [
            ("Revenue (excl. tax)", shown(revenue)),
            ("Provider cost", shown(cost)),
            ("Margin", f"{shown(revenue - cost)} ({_pct(revenue - cost, revenue)})"),
            ("Unattributed cost", shown(_sum(unattributed["cost"]))),
            (
                "Revenue at stake (metering drift)",
                shown(_sum(drift["amount_at_stake"]) if drift is not None else ZERO),
            ),
        ],
        "chart": margin_chart_svg(chart_rows, currency),
        "chart_note": (
            f"The {CHART_CUSTOMERS} largest customers by revenue"
            if len(rows) > CHART_CUSTOMERS
            else "All customers"
        ),
        "flags": [
            {
                "customer_id": r["customer_id"] or "(unattributed)",
                "provider": r["provider"],
                "model": r["model"] or "\u2014",
                "revenue": shown(r["revenue"]),
                "cost": shown(r["cost"]),
                "margin": shown(r["margin"]),
                "flags": r["flags"].replace(",", ", "),
            }
            for r in flagged.head(25).iter_rows(named=True)
        ],
        "more_flags": max(flagged.height - 25, 0),
        "drift": drift_rows,
        **not_billed_context(quarantine, waived),
    }


class SummaryRenderer:
    def __init__(self, templates_dir: Path | None = None):
        """templates_dir: None renders with shipped.templates_dir() (see InvoiceRenderer)."""
        self.templates_dir = Path(
            templates_dir if templates_dir is not None else shipped.templates_dir()
        ).resolve()
        env = Environment(
            loader=FileSystemLoader(self.templates_dir),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.template = env.get_template(TEMPLATE_NAME)

    def render_html(self, context: dict) -> str:
        return self.template.render(**context)

    def write(self, context: dict, folder: Path, pdf: bool = True) -> dict[str, Path]:
        """``reconciliation.html`` (stylesheet inlined, so it opens anywhere) and, if asked, the PDF."""
        from weasyprint import CSS, HTML  # heavy import: only when rendering

        css = (self.templates_dir / STYLESHEET_NAME).read_text(encoding="utf-8")
        html = self.render_html({**context, "inline_css": css})
        paths = {"html": folder / "reconciliation.html"}
        write_atomically(html.encode("utf-8"), paths["html"])
        if pdf:
            fetcher = TemplateOnlyURLFetcher([self.templates_dir, FONTS_DIR])
            base = self.templates_dir.as_uri() + "/"
            os.environ.setdefault("SOURCE_DATE_EPOCH", FONT_EPOCH)
            data = HTML(
                string=self.render_html({**context, "inline_css": ""}),
                base_url=base,
                url_fetcher=fetcher,
            ).write_pdf(
                stylesheets=[
                    CSS(
                        filename=str(self.templates_dir / STYLESHEET_NAME),
                        base_url=base,
                        url_fetcher=fetcher,
                    )
                ]
            )
            paths["pdf"] = folder / "reconciliation.pdf"
            write_atomically(data, paths["pdf"])
        return paths
