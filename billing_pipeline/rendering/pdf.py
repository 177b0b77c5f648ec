"""Invoice PDFs: the invoice document (a plain dict, = the JSON copy) -> HTML (Jinja2) -> PDF.

Security (RELIABILITY.md "PDFs from HTML"): autoescape on, StrictUndefined, customer values only
ever in element text (never in <style>, style="", url() or href), and a URL fetcher that serves
only our own asset folders and stops the render on anything else.

Reproducible bytes: the PDF's creation/modification dates come from the document (issue date,
else period end) and fonts come from a fixed file, so the same document gives the same bytes.

Performance (DESIGN.md): build one ``InvoiceRenderer`` per process and reuse it; the parsed CSS
and the FontConfiguration are shared between documents. Many documents: ``render_pool.render_many``
(one renderer per worker process). What makes a page cheap to lay out is in invoice.css (fixed
table layout, floats instead of flex/grid, separate borders, few cells a row) and chart.py (few
SVG elements, little SVG text, an inline-text legend); every cell or inline-block is a layout of
its own, so fewer boxes is what pays (benchmarks/RESULTS.md has the figures). With full_fonts the shipped faces are
parsed and deflated once per process (``_parsed_ttfont``, ``_FontStream``), and the invoice
markup is parsed by expat (``parse_markup``), with WeasyPrint's user-agent stylesheet less its
footnote rules where the templates use none (``user_agent_without_notes``). ``python -m
benchmarks.render`` measures it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import io
import mimetypes
import os
import re
import threading
import types
import xml.etree.ElementTree as ElementTree
import zlib
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cssselect2
import pydyf
import weasyprint
import weasyprint.pdf.fonts as weasyprint_pdf_fonts
from fontTools.ttLib import TTFont
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from weasyprint import CSS, HTML
from weasyprint import html as weasyprint_html
from weasyprint.css.counters import CounterStyle
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from billing_pipeline import money, schema, shipped
from billing_pipeline.atomic import write_bytes
from billing_pipeline.documents import chart
from billing_pipeline.documents import sections as invoice_sections
from billing_pipeline.documents.chart import usage_chart_svg
from billing_pipeline.documents.sections import (
    GPU_COMPUTE,
    LATER_SECTIONS,
    is_fixed,
    provider_title,
    section_of,
    section_order,
    sections,
)
from billing_pipeline.money import (
    exact,
    fmt_exact_money,
    fmt_money,
    fmt_quantity,
    fmt_quoted_quantity,
    fmt_unit_price,
)
from billing_pipeline.schema import QUOTED_UNITS

TEMPLATES_DIR = (
    shipped.shipped_templates_dir()
)  # renderers use shipped.templates_dir(): it honours an override
FONTS_DIR = shipped.fonts_dir()
# Stylesheets name the shipped fonts "billing-font:<file name>" (invoice.css): a URL that does not
# depend on where the templates are (checkout, wheel, a deployment's own copy), served from FONTS_DIR.
FONT_SCHEME = "billing-font"
TEMPLATE_NAME = "invoice.html.j2"
STYLESHEET_NAME = "invoice.css"
# fontTools stamps the current time into every font it subsets (head.modified) unless
# SOURCE_DATE_EPOCH is set; only fallback fonts are subset (see InvoiceRenderer), but they too
# must give the same bytes. A constant, so setting it from several threads is harmless.
FONT_EPOCH = "0"
KIND_TITLES = {
    "invoice": "Invoice",
    "credit_note": "Credit note",
    "adjustment": "Adjustment invoice",
}
UNIT_SIZE_LABELS = {1_000: "1K", 1_000_000: "1M", 1_000_000_000: "1B"}
# invoice.css keeps a line with its tier rows and explanation (break-after: avoid). Where a run of
# such rows has no allowed break before the totals, WeasyPrint 70 can fail an internal assertion
# instead of breaking anyway (make_page: "assert not page_is_empty"); the invoice is then laid out
# again with these rows free to break, headings still kept with their first line.
RELAXED_BREAKS_CSS = "tr.line, tr.tier { break-after: auto; }"


def renderer_fingerprint(templates_dir: Path | None = None, full_fonts: bool = True) -> str:
    """Everything an invoice PDF depends on besides its document: WeasyPrint's version, the
    template, stylesheet and fonts, and the code that turns the document into markup. Equal
    fingerprints and equal documents give equal PDFs (draft_pdfs.py relies on it)."""
    templates_dir = Path(templates_dir) if templates_dir is not None else shipped.templates_dir()
    digest = hashlib.sha256(
        f"weasyprint {weasyprint.__version__} pydyf {pydyf.__version__} "
        f"full_fonts {full_fonts}".encode()
    )
    for path in [
        templates_dir / TEMPLATE_NAME,
        templates_dir / STYLESHEET_NAME,
        *sorted(FONTS_DIR.glob("*.ttf")),
        Path(__file__),
        Path(chart.__file__),
        Path(money.__file__),
        Path(invoice_sections.__file__),
        Path(schema.__file__),
    ]:  # small files: read every time, so an edit is never missed
        digest.update(f"\n{path.name} ".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class TemplateOnlyURLFetcher(URLFetcher):
    """Serves ``file:`` URLs inside the allowed folders and ``billing-font:<name>`` from the
    shipped fonts; anything else stops the render.

    ``calls`` records every URL WeasyPrint asked for (tests assert on it).
    """

    def __init__(self, roots: list[Path]):
        super().__init__(allowed_protocols=("file",), fail_on_errors=True)
        self.roots = [root.resolve() for root in roots]
        self.calls: list[str] = []

    def fetch(self, url, headers=None):
        self.calls.append(url)
        parts = urlsplit(url)
        if parts.scheme == FONT_SCHEME:
            name = unquote(parts.path)
            path = FONTS_DIR / name
            if (
                parts.netloc
                or not name
                or "/" in name
                or "\\" in name
                or name.startswith(".")
                or not path.is_file()
            ):
                raise FatalURLFetchingError(f"refusing to fetch {url!r}: not a shipped font")
            return URLFetcherResponse(
                path.as_uri(), path.read_bytes(), {"Content-Type": "font/ttf"}
            )
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise FatalURLFetchingError(f"refusing to fetch {url!r}: only template assets")
        path = Path(unquote(parts.path)).resolve()
        if not any(path.is_relative_to(root) for root in self.roots) or not path.is_file():
            raise FatalURLFetchingError(f"refusing to fetch {url!r}: outside the template folder")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(path.as_uri(), path.read_bytes(), {"Content-Type": mime})


# ---------------------------------------------------------------- formatting (text only)


def date_text(value: str | None, missing: str = "\u2014") -> str:
    return date.fromisoformat(value).strftime("%-d %B %Y") if value else missing


def period_text(start: str, end: str) -> str:
    s, e = date.fromisoformat(start), date.fromisoformat(end)
    if (s.year, s.month) == (e.year, e.month):
        return f"{s.day}\u2013{e.day} {e.strftime('%B %Y')}"
    return f"{date_text(start)} \u2013 {date_text(end)}"


def _per(unit: str, size: int) -> str:
    """What one price is for: 'GPU-hour', '1K tokens', 'outcome', 'month'."""
    quoted = QUOTED_UNITS.get((unit, size))
    if quoted:
        return quoted[0]
    if size == 1:
        return unit[:-1] if unit.endswith("s") and len(unit) > 3 else unit
    return f"{UNIT_SIZE_LABELS.get(size, fmt_quantity(size))} {unit}"


# A line without one unit price: the tiers listed under it, or (cost-plus) each token type's list
# price plus the markup, spelled out in its explanation.
NO_SINGLE_PRICE = {"cost_plus": "list + markup"}


def _price_text(
    price: str | None, unit_size: int, unit: str, currency: str, pricing: str | None = None
) -> str:
    """'$0.010 per 1K tokens', '$2.40 per GPU-hour', '$500.00 per month'."""
    if price is None:
        return NO_SINGLE_PRICE.get(pricing or "", "tiered")
    amount, per = fmt_unit_price(exact(price), currency), _per(unit, int(unit_size or 1))
    return f"{amount} per {per}" if per else amount  # a credit note's line has no unit


def _quantity_text(quantity, unit: str, unit_size: int = 1) -> str:
    """In the unit the price is quoted in: '437.5 GPU-hours' for seconds priced per hour (the
    explanation keeps the exact seconds); tokens and other units exactly: '1,200,000 tokens'."""
    q = quantity if isinstance(quantity, int) else exact(quantity)
    quoted = QUOTED_UNITS.get((unit, int(unit_size or 1)))
    if quoted:
        text = fmt_quoted_quantity(q, int(unit_size))
        return f"{text} {quoted[0] if text == '1' else quoted[1]}"
    return f"{fmt_quantity(q)} {unit}".strip()


def _span_text(first: int, up_to: int | None, unit: str, unit_size: int) -> str:
    """A tier's range, in the unit of its quantities: '1–10,000,000 tokens', '0–100 GPU-hours'."""
    quoted = QUOTED_UNITS.get((unit, int(unit_size or 1)))
    if quoted:
        size = int(unit_size)
        low = fmt_quoted_quantity(first - 1, size)
        return (
            f"{low}\u2013{fmt_quoted_quantity(up_to, size)} {quoted[1]}"
            if up_to is not None
            else f"above {low} {quoted[1]}"
        )
    span = (
        f"{fmt_quantity(first)}\u2013{fmt_quantity(up_to)}"
        if up_to is not None
        else f"above {fmt_quantity(first - 1)}"
    )
    return f"{span} {unit}".strip()


def rate_text(rate: str) -> str:
    pct = (exact(rate) * 100).normalize()
    return f"{format(pct, 'f')}%"


def _line_view(line: dict, currency: str) -> dict:
    unit = line.get("unit") or ""
    size = line.get("unit_size") or 1
    tiers = []
    for tier in line.get("tiers") or []:
        flat = exact(tier.get("flat_fee") or "0")
        tiers.append(
            {
                "label": f"Tier {tier['tier']}: "
                + _span_text(tier["from"], tier.get("up_to"), unit, size),
                "quantity": _quantity_text(tier["quantity"], unit, size),
                "unit_price": _price_text(tier.get("unit_price"), size, unit, currency)
                + (f" + {fmt_exact_money(flat, currency)} flat" if flat else ""),
                "amount": fmt_exact_money(exact(tier["amount"]), currency),
            }
        )
    return {
        "description": line["description"],
        "quantity": _quantity_text(line["quantity"], unit, size),
        "unit_price": _price_text(
            line.get("unit_price"), size, unit, currency, line.get("pricing")
        ),
        "amount": fmt_money(exact(line["amount"]), currency),
        "explanation": line.get("explanation") or "",
        "tiers": tiers,
    }


def _subgroup(line: dict, section: str) -> str | None:
    """The heading a line sits under inside its section: the model in a provider's section, the
    cloud in GPU compute, none in the others (outcomes, subscription)."""
    if section == GPU_COMPUTE:
        return provider_title(str(line["provider"]))
    if is_fixed(line) or section in LATER_SECTIONS:
        return None
    return str(line.get("model") or "All models")


def _groups(lines: list[dict], currency: str) -> list[dict]:
    """The lines in their invoice sections (documents/sections.py), each with its subtotal, and
    inside a section by model (providers) or cloud (GPU compute); fixed lines in their order."""
    by_section: dict[str, dict[str | None, list]] = {}
    for line in lines:
        section = section_of(line)
        by_section.setdefault(section, {}).setdefault(_subgroup(line, section), []).append(
            _line_view(line, currency)
        )
    totals = {s["title"]: s["amount"] for s in sections(lines, currency)}
    groups = []
    for title in section_order(lines):
        parts = by_section[title]
        order = list(parts) if None in parts else sorted(parts)
        groups.append(
            {
                "title": title,
                "amount": fmt_money(exact(totals[title]), currency),
                "models": [{"title": m, "lines": parts[m]} for m in order],
            }
        )
    return groups


def _summary(doc: dict, currency: str, is_draft: bool, credited: bool) -> dict:
    """Page 1's box: the amount (estimated while a draft), when it is due, for which period, and
    what each section of the invoice comes to."""
    if credited:
        label, due = "Total credited", f"Issued {date_text(doc.get('issue_date'))}"
    elif is_draft:
        label, due = "Estimated total", "Draft: due date set when issued"
    else:
        label, due = "Amount due", f"Due by {date_text(doc.get('due_date'))}"
    return {
        "label": label,
        "amount": fmt_money(exact(doc["total"]), currency),
        "due": due,
        "sections": [
            {"title": s["title"], "amount": fmt_money(exact(s["amount"]), currency)}
            for s in sections(doc["lines"], currency)
        ],
    }


def invoice_context(doc: dict) -> dict:
    """Everything the template shows, as display strings: the template does no arithmetic."""
    currency = doc["currency"]
    stamp = doc.get("issue_date") or doc["period_end"]
    credits = exact(doc.get("credits_applied") or "0")
    kind = doc.get("kind", "invoice")
    credited = exact(doc["total"]) < 0
    is_draft = doc.get("number") is None
    return {
        "doc": doc,
        "title": KIND_TITLES.get(kind, "Invoice"),
        "references": doc.get("references"),
        "total_label": "Total credited" if credited else "Total due",
        "number": doc.get("number") or "DRAFT",
        "is_draft": is_draft,
        "issue_date": date_text(doc.get("issue_date"), "not yet issued"),
        "due_date": date_text(doc.get("due_date")),
        "period": period_text(doc["period_start"], doc["period_end"]),
        "pdf_date": f"{stamp}T00:00:00Z",
        "summary": _summary(doc, currency, is_draft, credited),
        "groups": _groups(doc["lines"], currency),
        "subtotal": fmt_money(exact(doc["subtotal"]), currency),
        "tax_label": "Tax (reverse charge)"
        if doc.get("reverse_charge")
        else f"Tax ({rate_text(doc['tax_rate'])})",
        "tax": fmt_money(exact(doc["tax"]), currency),
        "credits": fmt_money(-credits, currency) if credits else fmt_money(credits, currency),
        "total": fmt_money(exact(doc["total"]), currency),
        "chart_svg": usage_chart_svg(
            doc.get("usage_by_day") or [], doc["period_start"], doc["period_end"], currency
        ),
    }


# ---------------------------------------------------------------- parsed shipped fonts, once per process

_FULL_FONT_RENDER = threading.local()  # .active: this thread is inside a full_fonts write_pdf
_PARSED_FONTS: dict[bytes, TTFont] = {}  # shipped font file bytes -> fully loaded TTFont
_FONT_CACHE_LOCK = threading.Lock()


def _parsed_ttfont(file, *args, **kwargs):
    """Stands in for fontTools' ``TTFont`` in ``weasyprint.pdf.fonts``.

    With full_fonts WeasyPrint parses every embedded face again for every PDF, only to read its
    glyph widths and cmap, a noticeable share of each invoice. For the faces we ship,
    inside a full_fonts render, this returns one TTFont parsed (all tables loaded) once per
    process. Safe because in that case WeasyPrint only reads it: the paths that change a TTFont
    (fontTools subsetting, variable or colour fonts) need subsetting or tables our faces lack.
    Anything else (fallback fonts, subsetting renders) gets a fresh TTFont, as before.
    """
    if (
        getattr(_FULL_FONT_RENDER, "active", False)
        and isinstance(file, io.BytesIO)
        and not args
        and kwargs.get("fontNumber", 0) in (0, -1)
        and set(kwargs) <= {"fontNumber"}
    ):
        font = _PARSED_FONTS.get(file.getvalue())
        if font is not None:
            return font
    return TTFont(file, *args, **kwargs)


class _FontStream(pydyf.Stream):
    """pydyf's Stream for the font objects WeasyPrint writes (font files, ToUnicode CMaps): the
    same bytes, but a large stream met before is not deflated again (level 9, the costliest step
    of writing our two embedded faces, which are the same in every PDF)."""

    _deflated: dict[bytes, bytes] = {}  # raw stream -> deflated; only large ones, a few per process
    MIN_CACHED = 4096
    MAX_CACHED_BYTES = 4 << 20  # raw bytes kept at most (a large fallback font is simply not kept)
    _cached_bytes = 0

    @property
    def data(self):
        if not self.compress:
            return super().data
        stream = b"\n".join(pydyf._to_bytes(item) for item in self.stream)
        deflated = self._deflated.get(stream) if len(stream) >= self.MIN_CACHED else None
        if deflated is None:
            compressobj = zlib.compressobj(level=9)  # as pydyf.Stream.data
            deflated = compressobj.compress(stream) + compressobj.flush()
            if self.MIN_CACHED <= len(stream) <= self.MAX_CACHED_BYTES - _FontStream._cached_bytes:
                _FontStream._cached_bytes += len(stream)
                self._deflated[stream] = deflated
        extra = pydyf.Dictionary(self.extra.copy())
        extra["Filter"] = "/FlateDecode"
        extra["Length"] = len(deflated)
        return b"\n".join((extra.data, b"stream", deflated, b"endstream"))


def _install_parsed_fonts() -> None:
    with _FONT_CACHE_LOCK:
        if _PARSED_FONTS:
            return
        for path in sorted(FONTS_DIR.glob("*.ttf")):
            data = path.read_bytes()
            font = TTFont(io.BytesIO(data))
            if {"fvar", "CBDT", "SVG ", "COLR", "sbix"} & set(font.keys()):
                continue  # WeasyPrint would rewrite it: keep it out of the cache
            for tag in font.keys():  # noqa: SIM118 - a TTFont loads a table on item access, not on iteration
                font[tag]
            font.getGlyphSet()
            font.getBestCmap()
            _PARSED_FONTS[data] = font
        if weasyprint_pdf_fonts.TTFont is TTFont:
            weasyprint_pdf_fonts.TTFont = _parsed_ttfont
        if weasyprint_pdf_fonts.pydyf is pydyf:  # only weasyprint.pdf.fonts sees _FontStream
            weasyprint_pdf_fonts.pydyf = types.SimpleNamespace(
                **{**vars(pydyf), "Stream": _FontStream}
            )


# ---------------------------------------------------------------- the HTML tree, parsed in C


# XML replaces tabs and line breaks in attribute values with spaces, HTML keeps them: markup that
# may have one (say an issuer name with a line break in <meta content>) takes the HTML5 parser.
# Text that only looks like an attribute matches too, which merely costs the faster parse.
_ATTRIBUTE_WITH_BREAK = re.compile(r'="[^"]*[\t\n\r]')


class _InvoiceHTML(HTML):
    """WeasyPrint's HTML document, laid out with ``user_agent`` as its user-agent stylesheet
    when one is set (forms need WeasyPrint's own)."""

    user_agent: CSS | None = None

    def __init__(self, *args, user_agent: CSS | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user_agent = user_agent

    def _ua_stylesheets(self, forms=False):
        if self.user_agent is None or forms:
            return super()._ua_stylesheets(forms)
        return [self.user_agent]


def parse_markup(
    markup: str, base_url: str, url_fetcher: URLFetcher, *, user_agent: CSS | None = None
) -> HTML:
    """``HTML(string=markup)``, with the tree built by the C XML parser (expat) when the markup is
    well-formed XML (invoice.html.j2 is): the same elements, attributes and text as the HTML5
    parser gives for it, several times faster. Anything expat
    refuses (not XML, control characters) goes through WeasyPrint's HTML5 parser as before.
    ``user_agent``: the user-agent stylesheet to lay it out with (None: WeasyPrint's).

    Relies on the attributes ``HTML.__init__`` sets (WeasyPrint is pinned; the tests render the
    same bytes both ways)."""
    try:
        if _ATTRIBUTE_WITH_BREAK.search(markup):
            raise ElementTree.ParseError("XML would turn these characters into spaces")
        root = ElementTree.fromstring(markup)
    except ElementTree.ParseError:
        return _InvoiceHTML(
            string=markup, base_url=base_url, url_fetcher=url_fetcher, user_agent=user_agent
        )
    html = _InvoiceHTML.__new__(_InvoiceHTML)
    html.user_agent = user_agent
    html.base_url = base_url
    html.url_fetcher = url_fetcher
    html.media_type = "print"
    html.wrapper_element = cssselect2.ElementWrapper.from_html_root(root, content_language=None)
    html.etree_element = html.wrapper_element.etree_element
    return html


# ---------------------------------------------------------------- the user-agent stylesheet, less its notes

# WeasyPrint's HTML5 user-agent stylesheet styles five pseudo-elements of footnotes and notes with
# universal selectors ("::footnote-call { ... }"), so every element of an invoice got five computed
# styles more (~1,200 a document, ~5 % of its CPU time), which WeasyPrint reads only for an element
# floated as a footnote or positioned as a note. Without those five rules the cascade of every
# other element and pseudo-element is the same, so are the PDF's bytes (tested).
_NOTE_RULE = re.compile(r"^::(?:footnote|note)-[a-z]+ *\{[^}]*\}\n", re.MULTILINE)
_NOTE_RULES = 5
# What in a template or stylesheet could make a footnote or a note (float: footnote, position:
# note()). Document values are only ever element text, so the templates decide this, not a document.
_USES_NOTES = re.compile(rb"footnote|note\(", re.IGNORECASE)


def user_agent_without_notes(templates_dir: Path) -> CSS | None:
    """WeasyPrint's user-agent stylesheet without its footnote and note rules, for templates that
    use neither; None (WeasyPrint's own) if a file of ``templates_dir`` mentions a footnote or a
    note, or if the stylesheet no longer has exactly those rules (another WeasyPrint)."""
    if any(
        _USES_NOTES.search(path.read_bytes()) for path in templates_dir.rglob("*") if path.is_file()
    ):
        return None
    return _ua_without_notes()


@functools.cache
def _ua_without_notes() -> CSS | None:
    """Parsed once per process (~70 ms) and shared, as WeasyPrint shares its own."""
    text, removed = _NOTE_RULE.subn("", weasyprint_html.UA)
    if removed != _NOTE_RULES:
        return None
    # its own CounterStyle: WeasyPrint's already holds the stylesheet's @counter-style rules
    return CSS(string=text, counter_style=CounterStyle())


@contextlib.contextmanager
def _no_cyclic_gc():
    """Python's cyclic garbage collector paused for one render: WeasyPrint allocates some
    hundred thousand objects a PDF (boxes, styles, layouts), and the collections they trigger
    were ~12 % of an invoice's CPU time; freed by reference counting, or at the next collection
    once the render is done. Left off if someone else turned it off (or another thread's render
    has it paused)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class InvoiceRenderer:
    """Build once per process; ``render_pdf`` is then safe to call for many documents."""

    def __init__(self, templates_dir: Path | None = None, *, full_fonts: bool = True):
        """templates_dir: None renders with shipped.templates_dir() ($BILLING_TEMPLATES_DIR, else
        the shipped templates)."""
        # full_fonts: embed the shipped ~80 KB faces whole instead of subsetting them per PDF:
        # ~110 KB PDFs, ~35 % faster, and byte-stable without depending on fontTools.
        self.full_fonts = full_fonts
        self.templates_dir = Path(
            templates_dir if templates_dir is not None else shipped.templates_dir()
        ).resolve()
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
        if full_fonts:
            _install_parsed_fonts()
        self.stylesheet = CSS(
            filename=str(self.templates_dir / STYLESHEET_NAME),
            base_url=self.base_url,
            url_fetcher=self.url_fetcher,
            font_config=self.font_config,
        )
        self.relaxed_breaks = CSS(string=RELAXED_BREAKS_CSS, font_config=self.font_config)
        self.user_agent = user_agent_without_notes(self.templates_dir)
        self.relaxed_renders = 0  # invoices that needed RELAXED_BREAKS_CSS (tests, benchmarks)
        self.fingerprint = renderer_fingerprint(self.templates_dir, full_fonts)

    def render_html(self, doc: dict) -> str:
        return self.template.render(**invoice_context(doc))

    def render_pdf(self, doc: dict) -> bytes:
        markup = self.render_html(doc)
        with _no_cyclic_gc():
            try:
                return self._write_pdf(markup, doc, [self.stylesheet])
            except AssertionError:  # WeasyPrint's page breaking, see RELAXED_BREAKS_CSS
                self.relaxed_renders += 1
                return self._write_pdf(markup, doc, [self.stylesheet, self.relaxed_breaks])

    def _write_pdf(self, markup: str, doc: dict, stylesheets: list[CSS]) -> bytes:
        if self.template.name == TEMPLATE_NAME:  # written as XML; other templates: the HTML5 parser
            html = parse_markup(markup, self.base_url, self.url_fetcher, user_agent=self.user_agent)
        else:
            html = _InvoiceHTML(
                string=markup,
                base_url=self.base_url,
                url_fetcher=self.url_fetcher,
                user_agent=self.user_agent,
            )
        os.environ.setdefault("SOURCE_DATE_EPOCH", FONT_EPOCH)
        _FULL_FONT_RENDER.active = self.full_fonts
        try:
            return html.write_pdf(
                stylesheets=stylesheets,
                font_config=self.font_config,
                full_fonts=self.full_fonts,
                pdf_identifier=hashlib.sha256(
                    f"{doc['customer_id']}|{doc['period']}|{doc.get('number')}".encode()
                )
                .hexdigest()[:32]
                .encode(),
            )
        finally:
            _FULL_FONT_RENDER.active = False

    def write_pdf(self, doc: dict, path: str | os.PathLike) -> str:
        """Write atomically (temp file + rename: never a partial PDF); returns the sha256."""
        return write_atomically(self.render_pdf(doc), path)


def write_atomically(data: bytes, path: str | os.PathLike) -> str:
    """``atomic.write_bytes`` (never a partial PDF); returns the sha256 of ``data``."""
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()
