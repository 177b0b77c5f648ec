"""Month-to-date statement pages: the statement dict -> HTML -> PDF, with the invoice's renderer.

Same Jinja2 environment (autoescape, StrictUndefined), stylesheet (templates/invoice.css, plus
the small templates/statement.css the template links), fonts, URL fetcher and chart as invoices
(rendering/pdf.py), so a statement looks like the invoice it anticipates. The template does no
arithmetic: every number arrives here as a decimal string and leaves as display text.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from billing_pipeline import sources
from billing_pipeline.catalog import load_catalog
from billing_pipeline.documents.chart import usage_chart_svg
from billing_pipeline.documents.statement import build_statements, statement_json
from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline.money import exact, fmt_money, fmt_quantity
from billing_pipeline.paths import inside
from billing_pipeline.rendering.pdf import (
    STYLESHEET_NAME,
    InvoiceRenderer,
    date_text,
    period_text,
    rate_text,
    write_atomically,
)
from billing_pipeline.schema import unit_name
from billing_pipeline.usage import normalize

STATEMENT_TEMPLATE = "statement.html.j2"
STATEMENT_STYLESHEET = "statement.css"
STATEMENT_SCHEMA = {
    "customer_id": pl.String,
    "currency": pl.String,
    "subtotal": pl.String,
    "total": pl.String,
    "projected_total": pl.String,
    "limit_used_pct": pl.String,
    "held": pl.String,  # the held statement's reason (null: not held); its amounts are null
    "json": pl.String,
    "pdf": pl.String,
}


def _meter_title(meter: str) -> str:
    """'input_tokens+output_tokens' -> 'Input + output tokens'; 'gpu_seconds' -> 'GPU-seconds'."""
    parts = meter.split("+")
    unit = unit_name(parts[0])
    if unit != "tokens":
        return unit[0].upper() + unit[1:]
    words = " + ".join(p.removesuffix("_tokens").replace("_", " ") for p in parts)
    return f"{words[0].upper()}{words[1:]} tokens"


def _unit_words(meter: str) -> str:
    """The meter's units inside a sentence: 'cached input tokens', 'outcomes', 'GPU-seconds'."""
    title = _meter_title(meter)
    return title if title.startswith("GPU") else title[0].lower() + title[1:]


def _pct(value: str | None) -> str:
    return "\u2014" if value is None else f"{value} %"


HELD_REASONS = {  # rating/assign.py, vectorized.py and cost_plus.py at_risk reasons, in words
    "negative_quantity": "usage records with a negative quantity",
    "quantity_overflow": "usage quantities too large to rate exactly",
    "amount_overflow": "a charge too large to state exactly",
    "unpriced_cost": "usage the price book has no price for yet",
}


def _reason_words(held: dict) -> str:
    """'negative_quantity, amount_overflow' -> the customer's words for each reason."""
    return ", ".join(HELD_REASONS.get(r, r.replace("_", " ")) for r in held["reason"].split(", "))


def held_notice(held: dict) -> str:
    """What a held statement says instead of its amounts."""
    return (
        f"Your usage this month is under review: {_reason_words(held)}. "
        "Amounts will be shown once it is resolved."
    )


def _units(st: dict) -> list[dict]:
    return [
        {"name": _meter_title(m), "quantity": fmt_quantity(q)}
        for m, q in st["units_by_meter"].items()
    ]


def _by_project(st: dict) -> list[dict]:
    return [
        {
            "name": r["account_key"],
            "units": [f"{fmt_quantity(q)} {_unit_words(m)}" for m, q in r["units"].items()],
        }
        for r in st["by_project"]
    ]


def _held_context(st: dict) -> dict:
    """A held statement (documents/statement.py): the notice, the units used and the limit; no
    amount, since every one of them would be computed without the usage under review."""
    day, time = st["as_of"][:10], st["as_of"][11:16]
    return {
        "st": st,
        "held": {
            "notice": held_notice(st["held"]),
            "reason": st["held"]["reason"],
        },
        "number": f"as of {date_text(day)}" + (f", {time} UTC" if time else ""),
        "as_of": date_text(day),
        "period": period_text(st["period_start"], day),
        "days": f"{st['days_elapsed']} of {st['days_in_month']}",
        "pdf_date": st["as_of"] if time else f"{day}T00:00:00Z",
        "monthly_limit": fmt_money(exact(st["monthly_limit"]), st["currency"])
        if st["monthly_limit"]
        else "none",
        "units": _units(st),
        "by_project": _by_project(st),
    }


def statement_context(st: dict) -> dict:
    """Everything the statement template shows, as display strings."""
    if st.get("held"):
        return _held_context(st)
    cur = st["currency"]

    def shown(value) -> str:
        return fmt_money(exact(value), cur)

    spend, projection = st["spend_so_far"], st["projection"]
    credits = exact(spend["credits_applied"])
    day, time = st["as_of"][:10], st["as_of"][11:16]  # a day, or an hourly refresh's instant
    return {
        "st": st,
        "held": None,
        "number": f"as of {date_text(day)}" + (f", {time} UTC" if time else ""),
        "as_of": date_text(day),
        "period": period_text(st["period_start"], day),
        "days": f"{st['days_elapsed']} of {st['days_in_month']}",
        "pdf_date": st["as_of"] if time else f"{day}T00:00:00Z",
        "subtotal": shown(spend["subtotal"]),
        "usage_charges": shown(spend["usage_charges"]),
        "other_charges": [
            {"description": o["description"], "amount": shown(o["amount"])}
            for o in st["other_charges"]
        ],
        "tax_label": "Tax (reverse charge)"
        if spend["reverse_charge"]
        else f"Tax ({rate_text(spend['tax_rate'])})",
        "tax": shown(spend["tax"]),
        "credits": shown(-credits) if credits else shown(credits),
        "total": shown(spend["total"]),
        "projected_total": shown(projection["total"]) if projection else "\u2014",
        "projected_subtotal": shown(projection["subtotal"]) if projection else "\u2014",
        "projected_limit_pct": _pct(projection["limit_used_pct"]) if projection else "\u2014",
        "projection_held": "The projection to month end is under review: "
        f"{_reason_words(st['projection_held'])}."
        if st.get("projection_held")
        else "",
        "monthly_limit": shown(st["monthly_limit"]) if st["monthly_limit"] else "none",
        "limit_used_pct": _pct(st["limit_used_pct"]),
        "credits_remaining": shown(st["credits_remaining"]),
        "allowance": [
            {
                "meters": ", ".join(_meter_title(m).lower() for m in a["meters"]),
                "included": fmt_quantity(a["included"]),
                "used": fmt_quantity(a["used"]),
                "remaining": fmt_quantity(a["remaining"]),
            }
            for a in st["allowance"]
        ],
        "by_model": [
            {
                "name": r["model"],
                "quantity": f"{fmt_quantity(r['quantity'])} {r.get('unit', '')}".strip(),
                "amount": shown(r["amount"]),
            }
            for r in st["by_model"]
        ],
        "by_token_type": [
            {
                "name": _meter_title(r["meter"]),
                "quantity": fmt_quantity(r["quantity"]),
                "amount": shown(r["amount"]),
            }
            for r in st["by_token_type"]
        ],
        "by_project": _by_project(st),
        "chart_svg": usage_chart_svg(st["usage_by_day"], st["period_start"], st["period_end"], cur),
    }


class StatementRenderer(InvoiceRenderer):
    """The invoice renderer with the statement template; build once, render many."""

    def __init__(self, templates_dir: Path | None = None, *, full_fonts: bool = True):
        super().__init__(templates_dir, full_fonts=full_fonts)
        self.template = self.env.get_template(STATEMENT_TEMPLATE)

    def render_html(self, doc: dict) -> str:
        """For the PDF: the stylesheets come from the template folder through the URL fetcher."""
        return self.template.render(**statement_context(doc), inline_css="")

    def render_page(self, doc: dict) -> str:
        """The stand-alone HTML page: the same markup with both stylesheets inlined (static files,
        never document values), so it displays the same wherever the file is opened."""
        css = "\n".join(
            (self.templates_dir / name).read_text(encoding="utf-8")
            for name in (STYLESHEET_NAME, STATEMENT_STYLESHEET)
        )
        return self.template.render(**statement_context(doc), inline_css=css)


def statement_folder(out: Path, day: dt.date) -> Path:
    """<out>/<YYYY-MM>/statements/<YYYY-MM-DD>/"""
    folder = Path(out) / day.strftime("%Y-%m") / "statements" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def latest_statement_folder(out: Path, month: str) -> Path:
    """<out>/<YYYY-MM>/statements/latest/: each customer's statement as of its last hourly refresh."""
    folder = Path(out) / month / "statements" / "latest"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_latest_statements(
    statements: list[dict], folder: Path, renderer: StatementRenderer | None = None
) -> pl.DataFrame:
    """<customer>.json and .html per statement (no PDF: the day's PDF comes with the daily
    statements), each written atomically. A customer whose file already says a later ``as_of``
    keeps it: a late line for an earlier day never rolls a statement back."""
    renderer = renderer or StatementRenderer()
    rows = []
    for st in statements:
        json_path, html_path = (
            inside(folder, f"{st['customer_id']}.{ext}") for ext in ("json", "html")
        )
        if _held_as_of(json_path) > st["as_of"]:
            continue
        write_atomically(statement_json(st).encode("utf-8"), json_path)
        write_atomically(renderer.render_page(st).encode("utf-8"), html_path)
        rows.append(_row(st, json_path, None))
    return pl.DataFrame(rows, schema=STATEMENT_SCHEMA)


def _held_as_of(path: Path) -> str:
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["as_of"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""  # none yet, or unreadable: replace it


def _row(st: dict, json_path: Path, pdf_path: Path | None) -> dict:
    """The table row: a held statement's amounts are null and ``held`` says why."""
    projection, spend = st["projection"] or {}, st["spend_so_far"] or {}
    return {
        "customer_id": st["customer_id"],
        "currency": st["currency"],
        "subtotal": spend.get("subtotal"),
        "total": spend.get("total"),
        "projected_total": projection.get("total"),
        "limit_used_pct": st["limit_used_pct"],
        "held": st["held"]["reason"] if st["held"] else None,
        "json": str(json_path),
        "pdf": None if pdf_path is None else str(pdf_path),
    }


def write_statements(
    statements: list[dict], folder: Path, renderer: StatementRenderer | None = None
) -> pl.DataFrame:
    """<customer>.json, .html and .pdf per statement (each written atomically); files of customers
    no longer in the day's statements are removed, so a re-run leaves exactly its own files."""
    renderer = renderer or StatementRenderer()
    current = {s["customer_id"] for s in statements}
    for stale in [*folder.glob("*.json"), *folder.glob("*.html"), *folder.glob("*.pdf")]:
        if stale.stem not in current:
            stale.unlink()
    rows = []
    for st in statements:
        json_path, html_path, pdf_path = (
            inside(folder, f"{st['customer_id']}.{ext}") for ext in ("json", "html", "pdf")
        )
        write_atomically(statement_json(st).encode("utf-8"), json_path)
        write_atomically(renderer.render_page(st).encode("utf-8"), html_path)
        renderer.write_pdf(st, pdf_path)
        rows.append(_row(st, json_path, pdf_path))
    return pl.DataFrame(rows, schema=STATEMENT_SCHEMA)


def statements_from_landing(
    landing: Path, catalog_path: Path, out: Path, day: dt.date, database_url: str | None = None
) -> pl.DataFrame:
    """The CLI's path (no Dagster): read the landing zone for the month up to ``day`` with the same
    readers and normalization as daily ingestion, and write the day's statements. Prepaid credits
    drawn by earlier months come from the ledger (``database_url``, else <out>/ledger.db when it
    exists; without a ledger nothing was drawn before)."""
    catalog = load_catalog(catalog_path)
    reads = [
        read(Path(landing), day.replace(day=1), day + dt.timedelta(days=1))
        for read in sources.SOURCES.values()
    ]
    usage, _ = normalize([r.events for r in reads], [r.quarantine for r in reads], catalog)
    default_db = Path(out) / "ledger.db"
    url = database_url or (f"sqlite:///{default_db}" if default_db.exists() else None)
    credits_used = None
    if url:
        ledger = Ledger(url)
        ledger.migrate()
        credits_used = ledger.credits_used(day.strftime("%Y-%m"))
    return write_statements(
        build_statements(usage, catalog, day, credits_used), statement_folder(Path(out), day)
    )
