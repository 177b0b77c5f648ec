"""The cost calculator page: one static, self-contained HTML file per plan, built from the catalog.

A customer types quantities per model and meter and sees what ``billing-pipeline quote`` would
bill: the page re-does the engine's arithmetic in the browser in exact integers (BigInt, 10^-12
currency units as in rating/vectorized.py, one half-up rounding per line), with the engine's
rules: the same usage slots as ``quote --usage`` (all at the month's start, in page order, which is
the order an allowance is used up), one line per provider and model family for per-unit charges
and one per charge otherwise, the base fee, the minimum-commitment true-up and tax on the subtotal.

Why the numbers are computed in the page and the words here: the prices travel as the catalog's
own decimal strings (never floats), and every phrase that does not depend on the quantity (price
texts, subjects, the base fee line, the period label of a price change) is produced by the
engine's own functions, so the page's explanations read exactly like the invoice's.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path

import polars as pl
from jinja2 import Environment, FileSystemLoader, select_autoescape

from billing_pipeline import shipped
from billing_pipeline.catalog import Catalog, Charge
from billing_pipeline.catalog.model import PriceChange
from billing_pipeline.money import MINOR_UNITS, fmt_money, fmt_unit_price
from billing_pipeline.periods import month_label, parse_month
from billing_pipeline.quote.quote import quote, quote_provider
from billing_pipeline.rating import cost_plus, price_book
from billing_pipeline.rating.pricing import describe_prices, fee_words, markup_words, price_text
from billing_pipeline.rating.vectorized import charge_rows, price_units
from billing_pipeline.rating.wording import period_label, subject
from billing_pipeline.schema import METERS, canonical_json, model_family_expr, unit_name

PAGE_TEMPLATE = "calculator.html.j2"
SCRIPT = "calculator.js"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CalculatorError(ValueError):
    """A plan the page cannot be built for: the message names the plan or argument."""


def _dec(value: Decimal | None) -> str | None:
    """A catalog decimal as a plain decimal string (no exponent: 1E+1 -> 10), for BigInt parsing."""
    return None if value is None else format(value, "f")


def _families(models: list[str]) -> list[str]:
    """The family each model id is priced as (dated snapshots -> family), like the engine does."""
    if not models:
        return []
    frame = pl.DataFrame({"model": models}, schema={"model": pl.String})
    return frame.select(model_family_expr()).to_series().to_list()


def _is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


def known_models(catalog: Catalog) -> list[str]:
    """Model families the catalog names literally (plans' charges, then the price book): the rows
    offered for charges that price any model."""
    names = [m for plan in catalog.plans.values() for c in plan.charges for m in c.models or []]
    names += [m for entry in catalog.price_book for m in entry.models or []]
    return list(dict.fromkeys(_families([n for n in names if not _is_glob(n)])))


def _claimant(
    charges: list[Charge],
    meter: str,
    model: str | None,
    family: str | None,
    dimensions: dict[str, str],
) -> int | None:
    """Index of the first charge claiming the usage, as rating/assign.charge_expr picks it."""
    for i, c in enumerate(charges):
        if meter not in c.meters:
            continue
        if c.models is not None and (model is None or not c.claims(meter, model, family or model)):
            continue
        if any(dimensions.get(k) != v for k, v in (c.dimensions or {}).items()):
            continue
        return i
    return None


def _named_models(charge: Charge) -> list[str]:
    """The model ids a charge names literally, one per family (globs name no model to type)."""
    literal = [m for m in charge.models or [] if not _is_glob(m)]
    first: dict[str, str] = {}
    for family, model in zip(_families(literal), literal, strict=True):
        first.setdefault(family, model)
    return list(first.values())


def _slots(catalog: Catalog, charges: list[Charge]) -> list[dict]:
    """What a customer can type: (meter, model, dimensions) per input, in page order, which is the
    order quote gets them in and so the order an allowance is used up: model by model (as first
    named), meter by meter, then the inputs without a model. A charge naming models gets an input
    per model it names literally (else per catalog model it claims); a token charge for any model
    one per model the catalog names; other any-model charges (GPU-seconds, outcomes) one input."""
    everyone = known_models(catalog)
    wanted: list[tuple[str, str | None, dict[str, str]]] = []
    for c in charges:
        dims = dict(c.dimensions or {})
        for meter in c.meters:
            if c.models is not None:
                models = _named_models(c) or [m for m in everyone if c.claims(meter, m, m)]
            elif unit_name(meter) == "tokens" and everyone:
                models = everyone
            else:
                models = [None]
            wanted += [(meter, m, dims) for m in models]
    rank = {m: i for i, m in enumerate(dict.fromkeys(m for _, m, _ in wanted if m is not None))}
    wanted.sort(key=lambda w: (w[1] is None, rank.get(w[1], 0), METERS.index(w[0])))
    slots, seen = [], set()
    for meter, model, dims in wanted:
        key = (meter, model, json.dumps(dims, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        family = _families([model])[0] if model is not None else None
        index = _claimant(charges, meter, model, family, dims)
        if index is None:
            continue
        where = "".join(f" {k}={v}" for k, v in dims.items())
        slots.append(
            {
                "meter": meter,
                "model": model,
                "family": family,
                "provider": quote_provider(model),
                "dimensions": dims,
                "charge": index,
                "unit": unit_name(meter),
                "label": (
                    f"{meter.replace('_', ' ')} of {model}{where}"
                    if model
                    else f"{charges[index].title} ({unit_name(meter)}{where})"
                ),
            }
        )
    return slots


def _effective(charge: Charge, day: dt.date) -> tuple[Charge, dt.date | None]:
    """The charge with the prices in effect on ``day`` and the first day of that price period
    (None: the base prices), as rating/assign.price_from_expr picks it."""
    price_from = None
    for change in charge.prices or []:
        if day >= change.from_:
            price_from = change.from_
    return charge.price_from(price_from), price_from


def _charge_data(plan_id: str, charge: Charge, currency: str, day: dt.date, month: str) -> dict:
    priced, price_from = _effective(charge, day)
    charge_rows(plan_id, charge, currency)  # the engine's limits (12 decimals, int64): same refusal
    if charge.pricing == "cost_plus":
        price_units(priced.unit_fee or Decimal(0), f"charge {charge.id} unit_fee")
    tiers = []
    for tier in priced.tiers or []:
        tiers.append(
            {
                "up_to": None if tier.up_to is None else str(tier.up_to),
                "unit_price": _dec(tier.unit_price),
                "flat_fee": _dec(tier.flat_fee),
                "price_text": price_text(tier.unit_price, priced, currency),
                "fee_text": fmt_money(tier.flat_fee, currency) if tier.flat_fee else None,
            }
        )
    return {
        "id": charge.id,
        "title": charge.title,
        "pricing": charge.pricing,
        "meters": charge.meters,
        "models": charge.models,
        "dimensions": charge.dimensions or {},
        "unit_size": str(charge.unit_size),
        "unit_price": _dec(priced.unit_price),
        "package_size": None if priced.package_size is None else str(priced.package_size),
        "package_price": _dec(priced.package_price),
        "tiers": tiers,
        "price_from": None if price_from is None else price_from.isoformat(),
        "price_text": price_text(priced.unit_price, priced, currency)
        if priced.unit_price is not None
        else None,
        "package_price_text": fmt_unit_price(priced.package_price, currency)
        if priced.package_price is not None
        else None,
        "prices": describe_prices(priced, currency),
        "later": [
            {
                "from": c.from_.isoformat(),
                "prices": describe_prices(charge.price_from(c.from_), currency),
            }
            for c in charge.prices or []
            if c.from_ > day
        ],  # shown, not used: quote prices at day
        "what": subject(charge, []),
        "period": period_label(charge, price_from, month),
        # cost_plus: the markup and fee in effect on ``day``, as decimal strings and words
        "markup": _dec(priced.markup),
        "unit_fee": _dec(priced.unit_fee),
        "markup_text": markup_words(priced),
        "fee_text": fee_words(priced, currency),
        "fee_unit": unit_name(charge.meters[0]),
        "markup_days": _markup_days_in(charge, day, month),
    }


def _list_prices(
    catalog: Catalog, charges: list[Charge], slots: list[dict], month: str, currency: str
) -> dict:
    """Each cost-plus slot's list price on the month's first day (the price-book entry that
    prices it then, as rating/cost_plus.py picks it; None when none does: quote refuses it) and
    the days inside the month its list price changes. Returns the period labels of those days
    (the engine's words for a line whose first change is that day)."""
    start, _ = parse_month(month)
    keys = [(i, s) for i, s in enumerate(slots) if charges[s["charge"]].pricing == "cost_plus"]
    if not keys:
        return {}
    frame = pl.DataFrame(
        [
            (i, s["provider"], s["model"], s["family"], s["meter"], canonical_json(s["dimensions"]))
            for i, s in keys
        ],
        schema={
            "slot": pl.Int64,
            "provider": pl.String,
            "model": pl.String,
            "model_family": pl.String,
            "meter": pl.String,
            "dimensions": pl.String,
        },
        orient="row",
    )
    entries = frame.with_columns(
        price_book.entry_index_expr(catalog, pl.lit(start)).alias("entry"),
        pl.lit(start).alias("day"),
    )
    usage_key = ["provider", "model", "model_family", "meter", "dimensions"]
    days = cost_plus.price_change_days(frame.select(usage_key).unique(), catalog, month)
    days_of = frame.join(days, on=usage_key, how="inner", nulls_equal=True)
    changes: dict[int, list[str]] = {}
    for slot, day in days_of.select("slot", "_bday").sort("slot", "_bday").iter_rows():
        changes.setdefault(slot, []).append(day.isoformat())
    for slot, entry in entries.select("slot", "entry").iter_rows():
        s = slots[slot]
        price = None
        if entry is not None:
            e = catalog.price_book[entry]
            price = {
                "entry": entry,
                "unit_price": _dec(e.unit_price),
                "unit_size": str(e.unit_size),
                "price_text": cost_plus.list_price_text(e.unit_price, e.unit_size, currency),
            }
        s["list"] = {
            "price": price,
            "part": cost_plus.part_label(s["meter"], canonical_json(s["dimensions"])),
            "dims_key": canonical_json(s["dimensions"]),
            "rank": METERS.index(s["meter"]),
            "changes": changes.get(slot, []),
        }
    every_day = {d for c in charges for d in _markup_days_in(c, start, month)}
    every_day |= {d for days_ in changes.values() for d in days_}
    labels = {}
    for d in sorted(every_day):
        split = charges[0].model_copy(
            update={"prices": [PriceChange.model_construct(from_=dt.date.fromisoformat(d))]}
        )
        labels[d] = period_label(split, None, month)
    return labels


def _markup_days_in(charge: Charge, start: dt.date, month: str) -> list[str]:
    _, end = parse_month(month)
    return [c.from_.isoformat() for c in charge.prices or [] if start < c.from_ < end]


def page_data(catalog: Catalog, plan_id: str, month: str) -> dict:
    """Everything the page needs, JSON-ready: decimal strings and integer strings, never floats.
    Prices are those in effect on the month's first day, the moment ``quote`` prices at."""
    if plan_id not in catalog.plans:
        raise CalculatorError(
            f"--plan {plan_id!r}: no such plan; plans are: {', '.join(sorted(catalog.plans))}"
        )
    if not _SAFE_ID.match(plan_id):
        raise CalculatorError(
            f"plans.{plan_id}: the plan id cannot be a file name (letters, digits, . _ - only)"
        )
    start, _ = parse_month(month)
    plan = catalog.plans[plan_id]
    currency = plan.currency.upper()
    charges = [_charge_data(plan_id, c, plan.currency, start, month) for c in plan.charges]
    slots = _slots(catalog, plan.charges)
    period_labels = _list_prices(catalog, plan.charges, slots, month, plan.currency)
    # Fixed lines come from the engine itself: a quote with no usage has the base fee line as-is.
    empty = quote(catalog, plan_id, [], month)
    base = next((ln for ln in empty["lines"] if ln["charge_id"] == "base_fee"), None)
    minimum = plan.minimum_commitment or None
    return {
        "plan": {
            "id": plan_id,
            "name": plan.name,
            "description": plan.description,
            "currency": currency,
        },
        "minor": MINOR_UNITS.get(currency, 2),
        "month": month,
        "month_label": month_label(month),
        "prices_on": start.isoformat(),
        "allowance": None
        if not plan.allowance
        else {"quantity": str(plan.allowance.quantity), "meters": list(plan.allowance.meters)},
        "base_fee": None
        if base is None
        else {
            "price": _dec(plan.base_fee),
            "text": f"{fmt_money(plan.base_fee, currency)} per month",
            "amount": base["amount"],
            "description": base["description"],
            "explanation": base["explanation"],
        },
        "minimum_commitment": None
        if minimum is None
        else {
            "amount": _dec(minimum),
            "text": fmt_money(minimum, currency),
            "description": f"Minimum commitment true-up, {month_label(month)}",
        },
        "charges": charges,
        "slots": slots,
        "period_labels": period_labels,  # cost_plus: a line's first price change -> its label
    }


def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(shipped.templates_dir()),
        autoescape=select_autoescape(["j2", "html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _script_json(value: dict) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' can end the element."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _grid(slots: list[dict]) -> dict:
    """The input layout: a model x meter table of slot indexes (None: not priced), then the
    other inputs (no model, or dimensions), so the template only places them."""
    in_grid = [s["model"] is not None and not s["dimensions"] for s in slots]
    models = list(dict.fromkeys(s["model"] for s, g in zip(slots, in_grid, strict=True) if g))
    meters = [
        m for m in METERS if any(s["meter"] == m for s, g in zip(slots, in_grid, strict=True) if g)
    ]
    at = {
        (s["model"], s["meter"]): i
        for i, (s, g) in enumerate(zip(slots, in_grid, strict=True))
        if g
    }
    return {
        "models": models,
        "meters": meters,
        "rows": [(model, [at.get((model, m)) for m in meters]) for model in models],
        "others": [i for i, g in enumerate(in_grid) if not g],
    }


def render_page(data: dict) -> str:
    """One HTML file, script and data inline, and a CSP that forbids any fetch (no CDN, no network)."""
    script = (shipped.templates_dir() / SCRIPT).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (
        _env()
        .get_template(PAGE_TEMPLATE)
        .render(
            data=data,
            grid=_grid(data["slots"]),
            data_json=_script_json(data),
            script=script,
            script_hash=f"sha256-{digest}",
        )
    )


def render_index(plans: list[dict], month: str) -> str:
    """The list of plan pages (the same template, without the calculator)."""
    return (
        _env()
        .get_template(PAGE_TEMPLATE)
        .render(index=plans, month=month, month_label=month_label(month))
    )


def write_calculator(
    catalog: Catalog, out: Path, month: str, plan_ids: list[str] | None = None
) -> list[Path]:
    """``out/<plan_id>.html`` for each plan (all by default) and ``out/index.html`` linking them."""
    plan_ids = list(plan_ids or catalog.plans)
    pages = [page_data(catalog, pid, month) for pid in plan_ids]  # validate all before writing any
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for data in pages:
        path = out / f"{data['plan']['id']}.html"
        path.write_text(render_page(data), encoding="utf-8")
        written.append(path)
    index = out / "index.html"
    index.write_text(render_index([d["plan"] for d in pages], month), encoding="utf-8")
    return [*written, index]
