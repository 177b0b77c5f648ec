"""The cost calculator page: a customer types usage and sees what `billing-pipeline quote` bills.

The browser tests drive Debian's Chromium (headless, through Playwright) on the generated pages,
served from 127.0.0.1, and compare every line, explanation and total with `quote --json` for the
same usage: the quote is the expectation, nothing is copied from the page's output.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import http.server
import json
import os
import re
import threading
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from billing_pipeline.catalog import load_catalog
from billing_pipeline.cli import main
from billing_pipeline.demo.catalog import ISSUER, PAYG_PER_M, plans, price_book
from billing_pipeline.money import fmt_money
from billing_pipeline.quote.calculator import page_data, render_page

MONTH = "2026-10"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Beside the demo's three plans (per-unit, graduated, volume + allowance + base fee + minimum):
# package pricing, effective-dated prices (one change before the month, one inside it), volume
# tiers with flat fees, a minimum with a sub-cent part, another currency and a zero-decimal one.
EXTRA_PLANS = {
    "bundles": {
        "name": "Bundles",
        "currency": "EUR",
        "allowance": {"quantity": 500_000, "meters": ["input_tokens"]},
        "minimum_commitment": "99.995",
        "charges": [
            {
                "id": "small-input",
                "name": "Mistral Small input",
                "meter": "input_tokens",
                "models": ["mistral-small", "mistral-small-2*"],
                "unit_size": 1000,
                "unit_price": "0.00020",
                "prices": [
                    {"from": "2026-09-01", "unit_price": "0.00015"},
                    {"from": "2026-10-15", "unit_price": "0.00012"},
                ],
            },
            {
                "id": "small-output-packs",
                "name": "Mistral Small output packs",
                "meter": "output_tokens",
                "models": ["mistral-small"],
                "pricing": "package",
                "package_size": 1_000_000,
                "package_price": "4.50",
            },
            {
                "id": "h100",
                "name": "H100 GPU hours",
                "meter": "gpu_seconds",
                "dimensions": {"gpu_type": "H100"},
                "unit_size": 3600,
                "pricing": "volume",
                "tiers": [
                    {"up_to": 360_000, "unit_price": "3.10", "flat_fee": "10.00"},
                    {"up_to": None, "unit_price": "2.75", "flat_fee": "50.00"},
                ],
            },
        ],
    },
    # cost-plus on some models only, with a markup change inside the month (the demo's ``resale``
    # plan is cost-plus on any model, with a fee, and a list price cut on the 15th)
    "listed": {
        "name": "Claude at list",
        "charges": [
            {
                "id": "claude",
                "name": "Claude at list + 12.5 %",
                "meter": ["input_tokens", "cache_write_tokens", "output_tokens"],
                "models": ["claude-sonnet-4-5", "claude-sonnet-4-5-20*"],
                "pricing": "cost_plus",
                "markup": "0.125",
                "prices": [{"from": "2026-10-20", "markup": "0.25"}],
            }
        ],
    },
    "yen": {
        "name": "Yen",
        "currency": "JPY",
        "base_fee": "1000.5",
        "charges": [
            {
                "id": "tokens",
                "meter": ["input_tokens", "output_tokens"],
                "unit_size": 1000,
                "unit_price": "0.45",
            }
        ],
    },
}


def catalog_document() -> dict:
    return {
        "issuer": ISSUER,
        "plans": {**plans(), **EXTRA_PLANS},
        "customers": {},
        "price_book": price_book(),
    }


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calculator") / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog_document(), sort_keys=False), encoding="utf-8")
    return path


def _fail_on_float(text: str):
    pytest.fail(f"float {text} in the page data")


def _embedded(html: str) -> dict:
    m = re.search(
        r'<script type="application/json" id="calculator-data">(.*?)</script>', html, re.S
    )
    assert m, "the page embeds its data"
    return json.loads(m.group(1), parse_float=_fail_on_float)


# ---- the page data, without a browser ----


def test_page_data_carries_the_catalogs_prices_as_decimal_strings(catalog_file):
    catalog = load_catalog(catalog_file)
    for plan_id, plan in catalog.plans.items():
        data = _embedded(render_page(page_data(catalog, plan_id, MONTH)))
        assert data["plan"]["currency"] == plan.currency
        for embedded, charge in zip(data["charges"], plan.charges, strict=True):
            assert embedded["id"] == charge.id and embedded["pricing"] == charge.pricing
            assert int(embedded["unit_size"]) == charge.unit_size
            since = embedded["price_from"]
            priced = charge.price_from(dt.date.fromisoformat(since) if since else None)
            for field in ("unit_price", "package_price"):
                value = getattr(priced, field)
                assert (embedded[field] is None) == (value is None)
                if value is not None:
                    assert Decimal(embedded[field]) == value and "E" not in embedded[field]
            for tier, want in zip(embedded["tiers"], priced.tiers or [], strict=True):
                assert (Decimal(tier["unit_price"]), Decimal(tier["flat_fee"])) == (
                    want.unit_price,
                    want.flat_fee,
                )
                assert tier["up_to"] == (None if want.up_to is None else str(want.up_to))
        if plan.minimum_commitment:
            assert Decimal(data["minimum_commitment"]["amount"]) == plan.minimum_commitment
        if plan.allowance:
            assert int(data["allowance"]["quantity"]) == plan.allowance.quantity


def test_every_charge_of_a_plan_has_an_input_on_its_page(catalog_file):
    catalog = load_catalog(catalog_file)
    for plan_id, plan in catalog.plans.items():
        slots = page_data(catalog, plan_id, MONTH)["slots"]
        assert {s["charge"] for s in slots} == set(range(len(plan.charges))), plan_id
        for s in slots:
            charge = plan.charges[s["charge"]]
            assert s["meter"] in charge.meters
            assert charge.models is None or charge.claims(s["meter"], s["model"], s["family"])


def test_the_page_uses_the_prices_in_effect_on_the_months_first_day(catalog_file):
    catalog = load_catalog(catalog_file)
    charge = catalog.plans["bundles"].charges[0]
    changes = {c.from_.isoformat(): c.unit_price for c in charge.prices}

    def effective(month):
        return next(
            c for c in page_data(catalog, "bundles", month)["charges"] if c["id"] == charge.id
        )

    assert Decimal(effective("2026-08")["unit_price"]) == charge.unit_price  # before any change
    october = effective("2026-10")
    assert Decimal(october["unit_price"]) == changes["2026-09-01"]
    assert october["period"], "a change inside the month is named, as the invoice line names it"
    assert Decimal(effective("2026-11")["unit_price"]) == changes["2026-10-15"]


def test_the_page_is_one_self_contained_file_that_may_fetch_nothing(catalog_file):
    html = render_page(page_data(load_catalog(catalog_file), "enterprise", MONTH))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<link" not in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp, "the inline script is the one the CSP allows"


def test_calculator_command_writes_a_page_per_plan_and_an_index(catalog_file, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "calculator",
            "--catalog",
            str(catalog_file),
            "--out",
            str(tmp_path / "site"),
            "--month",
            MONTH,
        ],
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "site").iterdir())
    assert names == sorted([f"{p}.html" for p in catalog_document()["plans"]] + ["index.html"])
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    for plan_id in catalog_document()["plans"]:
        assert f'href="{plan_id}.html"' in index


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--plan", "gold"],
            "error: --plan 'gold': no such plan; plans are: bundles, enterprise, growth, listed, "
            "payg, resale, yen",
        ),
        (["--month", "2026-13"], "error: month must look like YYYY-MM, got '2026-13'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_naming_them(catalog_file, tmp_path, args, message):
    result = CliRunner().invoke(
        main, ["calculator", "--catalog", str(catalog_file), "--out", str(tmp_path), *args]
    )
    assert result.exit_code == 2
    assert result.output.strip() == message
    assert not list(tmp_path.iterdir()), "nothing is written when an argument is bad"


def test_an_invalid_catalog_exits_2_naming_the_file_and_the_path(tmp_path):
    document = catalog_document()
    last = len(document["plans"]["growth"]["charges"]) - 1
    document["plans"]["growth"]["charges"][last]["tiers"][0]["unit_price"] = 12.0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    result = CliRunner().invoke(
        main, ["calculator", "--catalog", str(path), "--out", str(tmp_path / "site")]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {path}: plans.growth.charges[{last}].tiers[0].unit_price: "
        'a float where a decimal string is required: write it quoted, e.g. "12.0"'
    )


# ---- in the browser, against quote ----


@pytest.fixture(scope="module")
def site(catalog_file, tmp_path_factory):
    """The generated pages, served by a local HTTP server on 127.0.0.1."""
    out = tmp_path_factory.mktemp("site")
    result = CliRunner().invoke(
        main, ["calculator", "--catalog", str(catalog_file), "--out", str(out), "--month", MONTH]
    )
    assert result.exit_code == 0, result.output
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    in_ci = os.environ.get("CI", "").lower() == "true"
    if not Path(CHROMIUM).exists():
        message = (
            f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)"
        )
        if in_ci:
            pytest.fail(message)
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            raise
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


READ_PAGE = """() => ({
  error: document.getElementById("error").hidden ? null : document.getElementById("error").textContent,
  lines: [...document.querySelectorAll("#lines tr.line")].map((r) => ({
    description: r.querySelector(".description").textContent,
    explanation: r.querySelector(".explanation").textContent,
    amount: r.dataset.amount, shown: r.querySelector(".amount").textContent})),
  subtotal: document.getElementById("subtotal").dataset.amount,
  tax: document.getElementById("tax").dataset.amount,
  total: document.getElementById("total").dataset.amount,
  total_shown: document.getElementById("total").textContent,
})"""


def _slot(data: dict, meter: str, model: str | None = None) -> int:
    return next(
        i for i, s in enumerate(data["slots"]) if s["meter"] == meter and s["model"] == model
    )


def _usage_arg(slot: dict, quantity: int) -> str:
    model = f":{slot['model']}" if slot["model"] else ""
    dims = (
        "{" + ",".join(f"{k}={v}" for k, v in slot["dimensions"].items()) + "}"
        if slot["dimensions"]
        else ""
    )
    return f"{slot['meter']}{model}{dims}={quantity}"


def _quote(
    catalog_file: Path, plan_id: str, data: dict, quantities: dict[int, int], tax_rate: str
) -> dict:
    """quote --json for the same usage, in the page's input order (the order an allowance is used)."""
    usage = [_usage_arg(data["slots"][i], q) for i, q in sorted(quantities.items()) if q]
    args = [
        "quote",
        "--catalog",
        str(catalog_file),
        "--plan",
        plan_id,
        "--month",
        MONTH,
        "--tax-rate",
        tax_rate,
        "--json",
    ]
    result = CliRunner().invoke(main, args + [a for u in usage for a in ("--usage", u)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output, parse_float=_fail_on_float)


def _typed(quantity: int, style: str) -> str:
    return {"plain": str(quantity), "commas": f"{quantity:,}", "underscores": f"{quantity:_}"}[
        style
    ]


# (plan, [(meter, model, quantity)], tax rate): ties at half a cent, tier boundaries, the allowance
# used up exactly and overrun, a minimum commitment, zero usage and 10^12 tokens.
CASES = [
    (
        "payg",
        [
            ("input_tokens", "gpt-4o", 15_000),
            ("output_tokens", "gpt-4o", 1_250),
            ("cache_write_tokens", "claude-sonnet-4-5", 2_500_000),
            ("input_tokens", "mistral-small", 10**12),
        ],
        "0.19",
    ),
    ("payg", [], "0.19"),
    ("growth", [("input_tokens", "gpt-4o-mini", 1), ("output_tokens", "gpt-4o", 10_000_000)], "0"),
    (
        "growth",
        [
            ("output_tokens", "gpt-4o", 9_999_999),
            ("output_tokens", "claude-sonnet-4-5", 40_000_002),
        ],
        "0.19",
    ),
    ("growth", [("output_tokens", "mistral-large", 10**12)], "0"),
    (
        "enterprise",
        [
            ("input_tokens", "gpt-4o", 600_000),
            ("output_tokens", "claude-sonnet-4-5", 400_000),
            ("gpu_seconds", None, 36_000),
        ],
        "0.19",
    ),
    (
        "enterprise",
        [
            ("input_tokens", "gpt-4o", 101_000_000),
            ("cached_input_tokens", "gpt-4o", 12_500),
            ("cached_input_tokens", "claude-haiku-4-5", 37_500),
            ("outcomes", None, 3),
        ],
        "0.19",
    ),
    ("enterprise", [("output_tokens", "gpt-4o-mini", 10**12)], "0.07"),
    (
        "bundles",
        [
            ("input_tokens", "mistral-small", 1_734_567),
            ("output_tokens", "mistral-small", 1_000_001),
            ("gpu_seconds", None, 360_000),
        ],
        "0.2",
    ),
    ("bundles", [("input_tokens", "mistral-small", 400_000), ("gpu_seconds", None, 3_600)], "0"),
    ("bundles", [("gpu_seconds", None, 360_001)], "0"),
    (
        "yen",
        [("input_tokens", "gpt-4o", 1_111), ("output_tokens", "claude-haiku-4-5", 3_333)],
        "0.1",
    ),
    # cost-plus: list prices x 1.15 + $0.10 per 1M; gpt-4.1's price is cut on the 15th (its line
    # says Oct 1-14); exact list costs with many decimals; 10^12 tokens; a markup change
    (
        "resale",
        [
            ("input_tokens", "gpt-4.1", 1_234_567),
            ("cached_input_tokens", "gpt-4.1", 333_333),
            ("output_tokens", "gpt-4.1", 300_001),
            ("cache_write_tokens", "claude-sonnet-4-5", 2_500_000),
            ("input_tokens", "mistral-large", 7),
        ],
        "0.19",
    ),
    ("resale", [("output_tokens", "gpt-4o-mini", 10**12), ("input_tokens", "gpt-4o", 1)], "0"),
    (
        "listed",
        [("input_tokens", "claude-sonnet-4-5", 4_000), ("output_tokens", "claude-sonnet-4-5", 1)],
        "0",
    ),
]


@pytest.mark.parametrize(
    ("plan_id", "usage", "tax_rate"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_the_page_shows_what_quote_bills_for_the_same_usage(
    browser, site, catalog_file, plan_id, usage, tax_rate
):
    data = page_data(load_catalog(catalog_file), plan_id, MONTH)
    quantities = {_slot(data, meter, model): q for meter, model, q in usage}
    expected = _quote(catalog_file, plan_id, data, quantities, tax_rate)

    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{site}/{plan_id}.html")
    page.wait_for_selector("body[data-ready=true]")
    for n, (i, quantity) in enumerate(quantities.items()):
        page.locator(f"#q-{i}").press_sequentially(
            _typed(quantity, ("plain", "commas", "underscores")[n % 3])
        )
    page.locator("#tax-rate").fill("")
    page.locator("#tax-rate").press_sequentially(tax_rate)
    shown = page.evaluate(READ_PAGE)
    page.close()

    assert errors == [] and shown["error"] is None
    assert requests == [f"{site}/{plan_id}.html"], "the page fetches nothing but itself"
    assert [(ln["description"], ln["explanation"], ln["amount"]) for ln in shown["lines"]] == [
        (ln["description"], ln["explanation"], ln["amount"]) for ln in expected["lines"]
    ]
    assert [ln["shown"] for ln in shown["lines"]] == [
        fmt_money(Decimal(ln["amount"]), expected["currency"]) for ln in expected["lines"]
    ]
    totals = ("subtotal", "tax", "total")  # as numbers: an empty quote writes "0", not "0.00"
    assert [Decimal(shown[k]) for k in totals] == [Decimal(expected[k]) for k in totals]
    assert shown["total_shown"] == fmt_money(Decimal(expected["total"]), expected["currency"])


def test_the_payg_case_really_rounds_ties_half_up():
    """The first case's inputs are chosen to land on half a cent; this checks the choice, so the
    browser test above exercises ties rather than passing by luck."""
    prices = {
        ("input_tokens", "gpt-4o"): Decimal(PAYG_PER_M["gpt-4o"][0]),
        ("output_tokens", "gpt-4o"): Decimal(PAYG_PER_M["gpt-4o"][3]),
    }
    for meter, model, quantity in CASES[0][1][:2]:
        exact = quantity * prices[(meter, model)] / 1_000_000
        assert (exact * 100) % 1 == Decimal("0.5"), (meter, model, exact)


def test_cost_plus_usage_the_price_book_cannot_price_is_refused_by_page_and_quote(
    browser, site, catalog_file
):
    # the demo's price book has no cache-write price for gpt-4o: a cost-plus charge cannot price it
    data = page_data(load_catalog(catalog_file), "resale", MONTH)
    slot = _slot(data, "cache_write_tokens", "gpt-4o")
    assert data["slots"][slot]["list"]["price"] is None
    result = CliRunner().invoke(
        main,
        ["quote", "--catalog", str(catalog_file), "--plan", "resale", "--month", MONTH]
        + ["--usage", "cache_write_tokens:gpt-4o=1000"],
    )
    assert result.exit_code == 2
    assert "cache_write_tokens of gpt-4o (openai): no price in the price book" in result.output
    page = browser.new_page()
    page.goto(f"{site}/resale.html")
    page.locator(f"#q-{slot}").press_sequentially("1000")
    shown = page.evaluate(READ_PAGE)
    page.close()
    assert "cache_write_tokens of gpt-4o (openai): no price in the price book" in shown["error"]
    assert shown["total"] == ""


def test_the_page_refuses_input_quote_would_refuse(browser, site):
    page = browser.new_page()
    page.goto(f"{site}/payg.html")
    page.locator("#q-0").press_sequentially("12.5")
    shown = page.evaluate(READ_PAGE)
    assert "is not a whole number" in shown["error"]
    assert page.locator("#q-0").get_attribute("aria-invalid") == "true"
    assert shown["total"] == "", "no total is shown for input that cannot be priced"
    page.locator("#q-0").fill(str(2**63))
    assert "exceeds 2^63" in page.evaluate(READ_PAGE)["error"]
    page.locator("#q-0").fill("")
    page.locator("#tax-rate").fill("19%")
    assert "tax rate" in page.evaluate(READ_PAGE)["error"]
    page.close()
