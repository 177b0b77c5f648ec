"""Invoice PDFs: what the customer reads, reproducible bytes, and no way for a value to fetch files."""

from __future__ import annotations

import copy
import io
import re

import pytest
from pypdf import PdfReader

from billing_pipeline.documents.chart import usage_chart_svg
from billing_pipeline.rendering.pdf import TEMPLATES_DIR, InvoiceRenderer, invoice_context
from billing_pipeline_tests.support.documents import make_document
from billing_pipeline_tests.support.pdf_text import page_one_summary

HOSTILE = '<img src="file:///etc/passwd">'
HOSTILE_LINK = '<link rel=attachment href="file:///etc/passwd">'


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_pdf_shows_customer_period_total_and_page_numbers(renderer):
    text = pdf_text(renderer.render_pdf(make_document()))
    assert "Acme Health Inc." in text
    assert "October 2026" in text
    assert "$861.80" in text
    assert "Page 1 of" in text
    assert "DRAFT" in text
    assert "each line is rounded once to the cent, half up" in text.replace("\n", " ").lower()


def test_same_document_renders_identical_bytes(renderer):
    doc = make_document()
    first = renderer.render_pdf(doc)
    assert renderer.render_pdf(copy.deepcopy(doc)) == first
    assert InvoiceRenderer().render_pdf(doc) == first


@pytest.mark.parametrize(
    "name", ["Acme Health Inc.", HOSTILE, HOSTILE_LINK, "Ça & Co <b>\u00a0\u2014"]
)
def test_xml_parsed_invoice_renders_the_same_bytes_as_the_html5_parser(renderer, monkeypatch, name):
    from weasyprint import HTML

    from billing_pipeline.rendering import pdf

    doc = make_document(customer_name=name)
    markup = renderer.render_html(doc)
    assert (
        pdf.parse_markup(markup, renderer.base_url, renderer.url_fetcher).etree_element.tag
        == "html"
    )
    fast = renderer.render_pdf(doc)
    monkeypatch.setattr(  # WeasyPrint's own parser and its own user-agent stylesheet
        pdf, "parse_markup", lambda m, b, u, **_: HTML(string=m, base_url=b, url_fetcher=u)
    )
    assert renderer.render_pdf(doc) == fast


def _long_document() -> dict:
    """Acme's invoice with its lines three times over: tiers, explanations, several pages."""
    doc = make_document()
    doc["lines"] = doc["lines"] * 3
    return doc


@pytest.mark.parametrize(
    "doc",
    [make_document(), make_document(customer_name=HOSTILE, days=3), _long_document()],
    ids=["month", "three-days", "three-pages"],
)
def test_invoices_render_the_same_bytes_without_the_footnote_rules(doc):
    """The user-agent stylesheet without WeasyPrint's footnote and note rules (they cost every
    element five computed styles) changes nothing an invoice shows, to the byte."""
    trimmed = InvoiceRenderer()
    assert trimmed.user_agent is not None  # the shipped templates make no footnote or note
    weasyprints_own = InvoiceRenderer()
    weasyprints_own.user_agent = None
    assert trimmed.render_pdf(doc) == weasyprints_own.render_pdf(doc)


def test_another_weasyprint_user_agent_stylesheet_is_used_whole(monkeypatch):
    """Only the five rules known to be footnote and note rules are ever left out: a WeasyPrint
    whose stylesheet has others (or fewer) gets its own stylesheet, untouched."""
    from billing_pipeline.rendering import pdf

    one_rule_fewer = re.sub(r"^::note-callback \{[^}]*\}\n", "", pdf.weasyprint_html.UA, flags=re.M)
    assert one_rule_fewer != pdf.weasyprint_html.UA
    monkeypatch.setattr(pdf.weasyprint_html, "UA", one_rule_fewer)
    pdf._ua_without_notes.cache_clear()
    try:
        assert pdf.user_agent_without_notes(TEMPLATES_DIR) is None
    finally:
        monkeypatch.undo()
        pdf._ua_without_notes.cache_clear()
    assert pdf.user_agent_without_notes(TEMPLATES_DIR) is not None


def test_templates_that_make_footnotes_keep_weasyprints_footnote_rules(tmp_path):
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    with (templates / "invoice.css").open("a", encoding="utf-8") as css:
        css.write("\n.tax-note td { float: footnote; }\n")
    renderer = InvoiceRenderer(templates)
    assert renderer.user_agent is None
    doc = make_document()
    doc["tax_note"] = "Reverse charge: VAT to be accounted for by the recipient."
    text = pdf_text(renderer.render_pdf(doc))
    assert "Reverse charge" in text


def test_line_break_in_an_attribute_keeps_the_html5_parser(renderer):
    from billing_pipeline.rendering.pdf import parse_markup

    html = parse_markup(
        '<html><head><meta name="author" content="A\nB"/></head><body/></html>',
        renderer.base_url,
        renderer.url_fetcher,
    )
    assert html.etree_element.find(".//meta").get("content") == "A\nB"


def test_markup_that_is_not_xml_still_renders(renderer):
    from billing_pipeline.rendering.pdf import parse_markup

    html = parse_markup("<p>unclosed<br>text &nbsp; here", renderer.base_url, renderer.url_fetcher)
    assert html.write_pdf().startswith(b"%PDF")


def test_fonts_parsed_and_deflated_once_give_the_same_bytes_as_per_pdf(renderer, monkeypatch):
    import pydyf
    import weasyprint.pdf.fonts
    from fontTools.ttLib import TTFont

    doc = make_document()
    renderer.render_pdf(make_document(customer_name="Warm-up"))  # fills both caches
    cached = renderer.render_pdf(doc)
    assert weasyprint.pdf.fonts.TTFont is not TTFont  # the per-process caches are in place
    assert weasyprint.pdf.fonts.pydyf is not pydyf
    monkeypatch.setattr(weasyprint.pdf.fonts, "TTFont", TTFont)
    monkeypatch.setattr(weasyprint.pdf.fonts, "pydyf", pydyf)
    assert renderer.render_pdf(doc) == cached


def test_pdf_dates_come_from_the_document(renderer):
    doc = make_document()
    meta = PdfReader(io.BytesIO(renderer.render_pdf(doc))).metadata
    assert meta["/CreationDate"].startswith("D:20261031")
    doc["issue_date"], doc["number"] = "2026-11-02", "INV-2026-000042"
    meta = PdfReader(io.BytesIO(renderer.render_pdf(doc))).metadata
    assert meta["/CreationDate"].startswith("D:20261102")


@pytest.mark.parametrize("hostile", [HOSTILE, HOSTILE_LINK])
def test_hostile_customer_name_is_text_and_fetches_nothing(renderer, hostile):
    doc = make_document(customer_name=hostile)
    doc["lines"][0]["description"] = hostile
    doc["usage_by_day"][0]["model"] = hostile
    renderer.url_fetcher.calls.clear()
    data = renderer.render_pdf(doc)
    assert renderer.url_fetcher.calls == []
    assert "file:///etc/passwd" in pdf_text(data)  # shown as text
    reader = PdfReader(io.BytesIO(data))
    assert "/EmbeddedFiles" not in str(reader.trailer["/Root"].get("/Names", {}))
    assert not reader.attachments


def test_html_is_autoescaped(renderer):
    html = renderer.render_html(make_document(customer_name=HOSTILE))
    assert HOSTILE not in html
    assert "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in html
    assert renderer.env.autoescape is True


def test_chart_escapes_model_names():
    svg = usage_chart_svg(
        [{"day": "2026-10-01", "model": "<script>x</script>", "quantity": 1, "amount": "1.00"}],
        "2026-10-01",
        "2026-10-31",
        "USD",
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_url_fetcher_serves_only_the_template_folder(renderer):
    from weasyprint.urls import FatalURLFetchingError

    with pytest.raises(FatalURLFetchingError):
        renderer.url_fetcher.fetch("file:///etc/passwd")
    with pytest.raises(FatalURLFetchingError):
        renderer.url_fetcher.fetch((TEMPLATES_DIR / ".." / "pyproject.toml").as_uri())
    with pytest.raises(FatalURLFetchingError):
        renderer.url_fetcher.fetch("http://169.254.169.254/latest/meta-data/")
    response = renderer.url_fetcher.fetch((TEMPLATES_DIR / "invoice.css").as_uri())
    assert b"@page" in response.read()


def test_template_refuses_missing_values(renderer):
    from jinja2 import UndefinedError

    doc = make_document()
    del doc["disclosure"]["summary"]
    with pytest.raises(UndefinedError):
        renderer.render_html(doc)


def test_reverse_charge_shows_the_legal_note(renderer):
    doc = make_document()
    doc.update(
        reverse_charge=True,
        tax="0.00",
        total="724.20",
        tax_note="Reverse charge: VAT to be accounted for by the recipient (Art. 196 VAT Directive).",
    )
    text = pdf_text(renderer.render_pdf(doc)).replace("\n", " ")
    assert "Tax (reverse charge)" in text and "Art. 196" in text


def test_write_pdf_is_atomic_and_returns_sha256(renderer, tmp_path):
    target = tmp_path / "out" / "acme-2026-10.pdf"
    digest = renderer.write_pdf(make_document(), target)
    assert target.read_bytes().startswith(b"%PDF")
    assert len(digest) == 64
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_draft_context_shows_draft_number_and_formatted_total():
    ctx = invoice_context(make_document())
    assert ctx["total"] == "$861.80" and ctx["number"] == "DRAFT"
    assert ctx["groups"][-1]["title"] == "Subscription and commitments"
    assert [g["title"] for g in ctx["groups"][:-1]] == ["Anthropic", "OpenAI"]


# (charge_id, description, provider, meter, model, quantity, unit_price, pricing, amount): lines
# with no explanation rows, so every row keeps with the next down to the totals. Laid out as given
# (shipped fonts, pinned WeasyPrint 70) the totals do not fit page 1, and WeasyPrint's page breaking
# fails an internal assertion instead of breaking anyway.
UNBREAKABLE_LINES = [
    (
        "tokens",
        "Tokens",
        "anthropic+mistral+openai",
        "input_tokens+output_tokens",
        None,
        555362,
        "0.010",
        "graduated",
        "5.55",
    ),
    *[
        ("cached", f"Cached ({m})", p, "cached_input_tokens", m, q, "0.001", "per_unit", a)
        for p, m, q, a in [
            ("anthropic", "claude-haiku-4-5", 3789, "0.00"),
            ("anthropic", "claude-sonnet-4-5", 19898, "0.02"),
            ("mistral", "mistral-large", 13798, "0.01"),
            ("mistral", "mistral-small", 1066, "0.00"),
            ("openai", "gpt-4o", 21858, "0.02"),
            ("openai", "gpt-4o-mini", 21599, "0.02"),
        ]
    ],
    (
        "tokens",
        "Tokens",
        "anthropic+mistral+openai",
        "input_tokens+output_tokens+cached_input_tokens",
        None,
        654036,
        "6.00",
        "volume",
        "3.92",
    ),
    *[
        (
            f"{m}-{meter}",
            f"{m.replace('-', ' ').capitalize()} {meter.replace('_', ' ')} ({m})",
            p,
            meter,
            m,
            q,
            price,
            "per_unit",
            a,
        )
        for p, m, meter, q, price, a in [
            ("openai", "gpt-4o-mini", "input_tokens", 100640, "0.0025", "0.25"),
            ("openai", "gpt-4o-mini", "output_tokens", 20159, "0.010", "0.20"),
            ("openai", "gpt-4o-mini", "cached_input_tokens", 22488, "0.00125", "0.03"),
            ("openai", "gpt-4o", "input_tokens", 108044, "0.0025", "0.27"),
            ("openai", "gpt-4o", "output_tokens", 23281, "0.010", "0.23"),
            ("openai", "gpt-4o", "cached_input_tokens", 18300, "0.00125", "0.02"),
            ("anthropic", "claude-sonnet-4-5", "input_tokens", 113263, "0.0025", "0.28"),
            ("anthropic", "claude-sonnet-4-5", "output_tokens", 22428, "0.010", "0.22"),
            ("anthropic", "claude-sonnet-4-5", "cached_input_tokens", 48568, "0.00125", "0.06"),
            ("anthropic", "claude-haiku-4-5", "input_tokens", 27636, "0.0025", "0.07"),
            ("anthropic", "claude-haiku-4-5", "output_tokens", 6474, "0.010", "0.06"),
            ("anthropic", "claude-haiku-4-5", "cached_input_tokens", 6514, "0.00125", "0.01"),
            ("mistral", "mistral-small", "input_tokens", 37865, "0.0025", "0.09"),
        ]
    ],
]


def unbreakable_document() -> dict:
    doc = make_document()
    lines = []
    for (
        charge,
        description,
        provider,
        meter,
        model,
        quantity,
        price,
        pricing,
        amount,
    ) in UNBREAKABLE_LINES:
        tiers = (
            []
            if pricing == "per_unit"
            else [
                {
                    "tier": 1,
                    "from": 1,
                    "up_to": 10_000_000,
                    "quantity": quantity,
                    "unit_price": price,
                    "flat_fee": "0",
                    "amount": amount,
                }
            ]
        )
        lines.append(
            {
                "charge_id": charge,
                "description": description,
                "provider": provider,
                "meter": meter,
                "model": model,
                "dimensions": {},
                "quantity": quantity,
                "included_quantity": 0,
                "unit": "tokens",
                "unit_size": 1000,
                "unit_price": price,
                "pricing": pricing,
                "amount": amount,
                "tiers": tiers,
                "explanation": "",
                "consideration": "variable",
            }
        )
    doc.update(
        customer_id="c00049",
        lines=lines,
        subtotal="11.75",
        tax="2.23",
        total="13.98",
        usage_by_day=[],
        issuer={"name": "Bench AI GmbH", "address": "", "vat_id": "", "email": ""},
        customer={"id": "c00049", "name": "Customer 49", "address": "", "email": ""},
        plan={"id": "growth", "name": "Growth / Scale / Pay as you go"},
        disclosure={**doc["disclosure"], "plan_table": []},
    )
    return doc


def test_an_invoice_whose_rows_all_keep_together_still_renders_every_line():
    """WeasyPrint's page breaking can fail on it; the renderer lays it out again with line rows
    free to break (RELAXED_BREAKS_CSS) rather than lose the invoice."""
    renderer = InvoiceRenderer()
    text = pdf_text(renderer.render_pdf(unbreakable_document()))
    assert renderer.relaxed_renders == 1, (
        "laid out at the first try: is the WeasyPrint bug fixed? (pdf.py)"
    )
    squeezed = "".join(text.split())  # a long description wraps inside its cell
    for _, description, *_ in UNBREAKABLE_LINES:
        assert "".join(description.split()) in squeezed
    assert "$13.98" in text


def test_an_ordinary_invoice_is_laid_out_once(renderer):
    before = renderer.relaxed_renders
    renderer.render_pdf(make_document())
    assert renderer.relaxed_renders == before


def gpu_and_outcome_lines() -> list[dict]:
    """Acme's GPU time (priced per 3,600 GPU-seconds) and outcomes (provider id ``internal``)."""
    line = make_document()["lines"][-1]
    return [
        {
            **line,
            "charge_id": "gpu-a10g",
            "description": "A10G GPU hours",
            "provider": "aws",
            "meter": "gpu_seconds",
            "model": "",
            "quantity": 1_575_000,
            "unit": "GPU-seconds",
            "unit_size": 3600,
            "unit_price": "2.40",
            "pricing": "per_unit",
            "amount": "1050.00",
            "explanation": "1,575,000 GPU-seconds at $2.40 per GPU-hour = $1,050.00",
            "consideration": "variable",
        },
        {
            **line,
            "charge_id": "diagnoses",
            "description": "Accepted diagnoses",
            "provider": "internal",
            "meter": "outcomes",
            "model": "",
            "quantity": 120,
            "unit": "outcomes",
            "unit_size": 1,
            "unit_price": "12.00",
            "pricing": "per_unit",
            "amount": "1440.00",
            "explanation": "120 outcomes at $12.00 each = $1,440.00",
            "consideration": "variable",
        },
    ]


def with_gpu_and_outcomes() -> dict:
    doc = make_document()
    doc["lines"] += gpu_and_outcome_lines()
    doc.update(subtotal="3214.20", tax="610.70", total="3824.90")  # + $1,050.00 + $1,440.00
    return doc


def test_sections_are_named_for_what_they_bill_and_add_up_to_the_subtotal():
    from billing_pipeline.documents.sections import sections

    doc = with_gpu_and_outcomes()
    assert sections(doc["lines"], "USD") == [
        {"title": "Anthropic", "amount": "4.20"},
        {"title": "OpenAI", "amount": "220.00"},
        {"title": "GPU compute", "amount": "1050.00"},
        {"title": "Outcomes", "amount": "1440.00"},
        {"title": "Subscription and commitments", "amount": "500.00"},
    ]
    groups = invoice_context(doc)["groups"]
    assert [g["title"] for g in groups] == [s["title"] for s in sections(doc["lines"], "USD")]
    assert [m["title"] for m in groups[2]["models"]] == ["AWS"]  # the cloud, under GPU compute


def test_gpu_seconds_priced_per_hour_are_shown_in_gpu_hours_with_the_seconds_explained(renderer):
    gpu = invoice_context(with_gpu_and_outcomes())["groups"][2]["models"][0]["lines"][0]
    assert (gpu["quantity"], gpu["unit_price"]) == ("437.5 GPU-hours", "$2.40 per GPU-hour")
    assert gpu["explanation"].startswith("1,575,000 GPU-seconds")
    tokens = invoice_context(make_document())["groups"][1]["models"][0]["lines"][1]
    assert (tokens["quantity"], tokens["unit_price"]) == (
        "40,000,000 tokens",  # tokens stay exact, priced per 1K
        "$0.0025 per 1K tokens",
    )
    text = " ".join(pdf_text(renderer.render_pdf(with_gpu_and_outcomes())).split())
    assert "437.5 GPU-hours $2.40 per GPU-hour $1,050.00" in text
    assert "Outcomes" in text and "internal" not in text


def test_a_line_without_one_unit_price_says_why_tiers_or_list_plus_markup():
    doc = make_document()
    tokens = doc["lines"][1]
    doc["lines"] = [
        {**tokens, "unit_price": None, "pricing": "graduated"},
        {**tokens, "unit_price": None, "pricing": "cost_plus"},
    ]
    shown = [line["unit_price"] for line in invoice_context(doc)["groups"][0]["models"][0]["lines"]]
    assert shown == ["tiered", "list + markup"]  # a cost-plus line has no tiers to point to


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (3600, "1 GPU-hour"),
        (1_800, "0.5 GPU-hours"),
        (2_678_400, "744 GPU-hours"),
        (1_000, "~0.28 GPU-hours"),  # not a whole hundredth of an hour: rounded and marked
        (1, "<0.01 GPU-hours"),
    ],
)
def test_a_quantity_in_gpu_hours_is_exact_or_says_it_is_rounded(seconds, shown):
    doc = make_document()
    doc["lines"] = [{**gpu_and_outcome_lines()[0], "quantity": seconds}]
    assert invoice_context(doc)["groups"][0]["models"][0]["lines"][0]["quantity"] == shown


def test_page_one_of_a_draft_shows_the_estimated_total_and_of_an_issued_one_the_amount_due(
    renderer,
):
    draft = PdfReader(io.BytesIO(renderer.render_pdf(make_document()))).pages[0].extract_text()
    assert page_one_summary(draft) == ("ESTIMATED TOTAL", "$861.80")
    assert "Draft: due date set when issued" in draft
    issued = make_document()
    issued.update(number="INV-2026-000042", issue_date="2026-11-02", due_date="2026-12-02")
    page = PdfReader(io.BytesIO(renderer.render_pdf(issued))).pages[0].extract_text()
    assert page_one_summary(page) == ("AMOUNT DUE", "$861.80")
    assert "Due by 2 December 2026" in page
    flat = " ".join(page.split())
    assert "OpenAI $220.00 Subscription and commitments $500.00 Subtotal $724.20" in flat


def test_a_credit_note_opens_with_the_total_credited_under_its_own_section(renderer):
    from billing_pipeline.documents.credit_notes import manual_credit_note

    issued = make_document()
    issued.update(number="INV-2026-000042", issue_date="2026-11-02", due_date="2026-12-02")
    note = manual_credit_note(issued, "150.00", "Goodwill credit: API outage on 14 October")
    assert note["sections"] == [{"title": "Credit", "amount": "-150.00"}]
    note.update(number="INV-2026-000043", issue_date="2026-11-09", due_date="2026-12-09")
    line = invoice_context(note)["groups"][0]["models"][0]["lines"][0]
    assert (line["quantity"], line["unit_price"]) == ("1", "-$150.00")  # no unit, no "per"
    page = PdfReader(io.BytesIO(renderer.render_pdf(note))).pages[0].extract_text()
    assert page_one_summary(page) == ("TOTAL CREDITED", "-$178.50")  # -150.00 - 19 % tax
    assert "Issued 9 November 2026" in page


def test_usage_of_a_model_no_provider_claims_is_under_other_providers_never_a_blank_heading():
    from billing_pipeline.documents.sections import sections

    doc = make_document()
    tokens = doc["lines"][1]
    doc["lines"] = [
        {**tokens, "provider": "", "model": "mystery-1"},  # the gateway named no provider
        {**tokens, "provider": "+openai", "model": None},  # a charge over that model and gpt-4o
    ]
    assert [s["title"] for s in sections(doc["lines"], "USD")] == [
        "Other providers",
        "Several providers: OpenAI, others",
    ]
    assert [g["title"] for g in invoice_context(doc)["groups"]] == [
        "Other providers",
        "Several providers: OpenAI, others",
    ]
