"""Invoice PDFs: the invoice document (a plain dict, = the JSON copy) -> HTML (Jinja2) -> PDF.

Security (RELIABILITY.md "PDFs from HTML"): autoescape on, StrictUndefined, customer values only
ever in element text (never in <style>, style="", url() or href), and a URL fetcher that serves
only our own asset folders and stops the render on anything else.

Reproducible bytes: the PDF's creation/modification dates come from the document (issue date,
else period end) and fonts come from a fixed file, so the same document gives the same bytes.

Performance (DESIGN.md): build one ``InvoiceRenderer`` per process and reuse it; the parsed CSS
and the FontConfiguration are shared between documents. Many documents: ``render_pool.render_many``
(one renderer per worker process). What makes a page cheap to lay out is in invoice.css (fixed
table layout, floats instead of flex/grid) and chart.py (few SVG elements, little SVG text);
``python -m benchmarks.render`` measures it.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
from collections import OrderedDict
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from billing_pipeline.invoicing.chart import usage_chart_svg
from billing_pipeline.money import exact, fmt_money, fmt_price, fmt_quantity

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
FONTS_DIR = Path(__file__).resolve().parents[1] / "fonts"
TEMPLATE_NAME = "invoice.html.j2"
STYLESHEET_NAME = "invoice.css"
FIXED_GROUP = "Subscription and commitments"
PROVIDER_NAMES = {
    "openai": "OpenAI", "anthropic": "Anthropic", "mistral": "Mistral AI", "aws": "AWS",
    "azure": "Microsoft Azure", "gcp": "Google Cloud",
}
# fontTools stamps the current time into every font it subsets (head.modified) unless
# SOURCE_DATE_EPOCH is set; only fallback fonts are subset (see InvoiceRenderer), but they too
# must give the same bytes. A constant, so setting it from several threads is harmless.
FONT_EPOCH = "0"
KIND_TITLES = {"invoice": "Invoice", "credit_note": "Credit note", "adjustment": "Adjustment invoice"}
UNIT_SIZE_LABELS = {1_000: "1K", 1_000_000: "1M", 1_000_000_000: "1B"}


class TemplateOnlyURLFetcher(URLFetcher):
    """Serves ``file:`` URLs inside the allowed folders; anything else stops the render.

    ``calls`` records every URL WeasyPrint asked for (tests assert on it).
    """

    def __init__(self, roots: list[Path]):
        super().__init__(allowed_protocols=("file",), fail_on_errors=True)
        self.roots = [root.resolve() for root in roots]
        self.calls: list[str] = []

    def fetch(self, url, headers=None):  # noqa: ARG002 - WeasyPrint's signature
        self.calls.append(url)
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise FatalURLFetchingError(f"refusing to fetch {url!r}: only template assets")
        path = Path(unquote(parts.path)).resolve()
        if not any(path.is_relative_to(root) for root in self.roots) or not path.is_file():
            raise FatalURLFetchingError(f"refusing to fetch {url!r}: outside the template folder")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(path.as_uri(), path.read_bytes(), {"Content-Type": mime})


# ---------------------------------------------------------------- formatting (text only)


def _date_text(value: str | None, missing: str = "\u2014") -> str:
    return date.fromisoformat(value).strftime("%-d %B %Y") if value else missing


def _period_text(start: str, end: str) -> str:
    s, e = date.fromisoformat(start), date.fromisoformat(end)
    if (s.year, s.month) == (e.year, e.month):
        return f"{s.day}\u2013{e.day} {e.strftime('%B %Y')}"
    return f"{_date_text(start)} \u2013 {_date_text(end)}"


def _exact_money(value: str | Decimal, currency: str) -> str:
    """An unrounded amount (tier subtotals): all its decimals, at least the currency's two."""
    text = fmt_price(exact(value))
    whole, _, frac = text.partition(".")
    grouped = f"{int(whole.lstrip('-') or 0):,}"
    sign = "-" if text.startswith("-") else ""
    if currency.upper() == "USD":
        return f"{sign}${grouped}.{frac}"
    return f"{sign}{grouped}.{frac} {currency.upper()}"


def _price_text(price: str | None, unit_size: int, unit: str, currency: str) -> str:
    """'$0.010 / 1K tokens', '$500.00 / month'."""
    if price is None:
        return "tiered"
    amount = fmt_price(exact(price))
    amount = f"${amount}" if currency.upper() == "USD" else f"{amount} {currency.upper()}"
    size = int(unit_size or 1)
    if size == 1:
        per = unit[:-1] if unit.endswith("s") and len(unit) > 3 else unit
        return f"{amount} / {per}"
    return f"{amount} / {UNIT_SIZE_LABELS.get(size, fmt_quantity(size))} {unit}"


def _quantity_text(quantity, unit: str) -> str:
    q = quantity if isinstance(quantity, int) else exact(quantity)
    return f"{fmt_quantity(q)} {unit}".strip()


def _rate_text(rate: str) -> str:
    pct = (exact(rate) * 100).normalize()
    return f"{format(pct, 'f')}%"


def _line_view(line: dict, currency: str) -> dict:
    unit = line.get("unit") or ""
    tiers = []
    for tier in line.get("tiers") or []:
        up_to = tier.get("up_to")
        span = (
            f"{fmt_quantity(tier['from'])}\u2013{fmt_quantity(up_to)}"
            if up_to is not None
            else f"above {fmt_quantity(tier['from'] - 1)}"
        )
        flat = exact(tier.get("flat_fee") or "0")
        tiers.append(
            {
                "label": f"Tier {tier['tier']}: {span} {unit}".strip(),
                "quantity": _quantity_text(tier["quantity"], unit),
                "unit_price": _price_text(tier.get("unit_price"), line["unit_size"], unit, currency)
                + (f" + {_exact_money(flat, currency)} flat" if flat else ""),
                "amount": _exact_money(tier["amount"], currency),
            }
        )
    return {
        "description": line["description"],
        "quantity": _quantity_text(line["quantity"], unit),
        "unit_price": _price_text(line.get("unit_price"), line.get("unit_size") or 1, unit, currency),
        "amount": fmt_money(exact(line["amount"]), currency),
        "explanation": line.get("explanation") or "",
        "tiers": tiers,
    }


def _provider_title(provider: str) -> str:
    """'openai' -> 'OpenAI'; a charge spanning providers ('anthropic+mistral+openai') lists them."""
    names = [PROVIDER_NAMES.get(p, p) for p in provider.split("+")]
    return names[0] if len(names) == 1 else "Several providers: " + ", ".join(names)


def _groups(lines: list[dict], currency: str) -> list[dict]:
    """Usage lines grouped by provider, then model; fixed lines last in their own group."""
    usage: dict[str, dict[str, list]] = {}
    fixed: list[dict] = []
    for line in lines:
        if line.get("consideration") == "fixed" or line.get("provider") is None:
            fixed.append(_line_view(line, currency))
            continue
        by_model = usage.setdefault(str(line["provider"]), OrderedDict())
        by_model.setdefault(str(line.get("model") or "All models"), []).append(
            _line_view(line, currency)
        )
    groups = [
        {
            "title": _provider_title(provider),
            "models": [{"title": m, "lines": usage[provider][m]} for m in sorted(usage[provider])],
        }
        for provider in sorted(usage)
    ]
    if fixed:
        groups.append({"title": FIXED_GROUP, "models": [{"title": None, "lines": fixed}]})
    return groups


def invoice_context(doc: dict) -> dict:
    """Everything the template shows, as display strings: the template does no arithmetic."""
    currency = doc["currency"]
    stamp = doc.get("issue_date") or doc["period_end"]
    credits = exact(doc.get("credits_applied") or "0")
    kind = doc.get("kind", "invoice")
    return {
        "doc": doc,
        "title": KIND_TITLES.get(kind, "Invoice"),
        "references": doc.get("references"),
        "total_label": "Total credited" if exact(doc["total"]) < 0 else "Total due",
        "number": doc.get("number") or "DRAFT",
        "is_draft": doc.get("number") is None,
        "issue_date": _date_text(doc.get("issue_date"), "not yet issued"),
        "due_date": _date_text(doc.get("due_date")),
        "period": _period_text(doc["period_start"], doc["period_end"]),
        "pdf_date": f"{stamp}T00:00:00Z",
        "groups": _groups(doc["lines"], currency),
        "subtotal": fmt_money(exact(doc["subtotal"]), currency),
        "tax_label": "Tax (reverse charge)" if doc.get("reverse_charge")
        else f"Tax ({_rate_text(doc['tax_rate'])})",
        "tax": fmt_money(exact(doc["tax"]), currency),
        "credits": fmt_money(-credits, currency) if credits else fmt_money(credits, currency),
        "total": fmt_money(exact(doc["total"]), currency),
        "chart_svg": usage_chart_svg(
            doc.get("usage_by_day") or [], doc["period_start"], doc["period_end"], currency
        ),
    }


class InvoiceRenderer:
    """Build once per process; ``render_pdf`` is then safe to call for many documents."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, *, full_fonts: bool = True):
        # full_fonts: embed the shipped ~80 KB faces whole instead of subsetting them per PDF:
        # ~110 KB PDFs, ~35 % faster, and byte-stable without depending on fontTools.
        self.full_fonts = full_fonts
        self.templates_dir = Path(templates_dir).resolve()
        self.env = Environment(
            loader=FileSystemLoader(self.templates_dir),
            autoescape=True,  # explicit: select_autoescape would key on ".j2" and turn it off
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.template = self.env.get_template(TEMPLATE_NAME)
        self.url_fetcher = TemplateOnlyURLFetcher([self.templates_dir, FONTS_DIR])
        self.base_url = self.templates_dir.as_uri() + "/"
        self.font_config = FontConfiguration()
        self.stylesheet = CSS(
            filename=str(self.templates_dir / STYLESHEET_NAME),
            base_url=self.base_url,
            url_fetcher=self.url_fetcher,
            font_config=self.font_config,
        )

    def render_html(self, doc: dict) -> str:
        return self.template.render(**invoice_context(doc))

    def render_pdf(self, doc: dict) -> bytes:
        html = HTML(string=self.render_html(doc), base_url=self.base_url, url_fetcher=self.url_fetcher)
        os.environ.setdefault("SOURCE_DATE_EPOCH", FONT_EPOCH)
        return html.write_pdf(
            stylesheets=[self.stylesheet],
            font_config=self.font_config,
            full_fonts=self.full_fonts,
            pdf_identifier=hashlib.sha256(
                f"{doc['customer_id']}|{doc['period']}|{doc.get('number')}".encode()
            ).hexdigest()[:32].encode(),
        )

    def write_pdf(self, doc: dict, path: str | os.PathLike) -> str:
        """Write atomically (temp file + rename: never a partial PDF); returns the sha256."""
        return write_atomically(self.render_pdf(doc), path)


def write_atomically(data: bytes, path: str | os.PathLike) -> str:
    """Temp file in the same folder + fsync + rename; returns the sha256 of ``data``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()
