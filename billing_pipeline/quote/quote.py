"""The cost calculator: hypothetical usage through the same engine as month-end.

A quote is a month for a synthetic customer subscribed to one plan for the whole month, with one
usage event per ``METER[:MODEL]=QUANTITY`` given, all at the month's first instant in the order
given (so an allowance is consumed in that order). It goes through ``rate_month`` and
``build_documents`` unchanged: a quote and an invoice cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog, Customer
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.money import fmt_money, fmt_quantity, round_money
from billing_pipeline.periods import parse_month
from billing_pipeline.providers import model_family_expr, provider_of
from billing_pipeline.rating.cost_plus import UNPRICED_COST
from billing_pipeline.rating.engine import rate_month
from billing_pipeline.rating.vectorized import I64_MAX
from billing_pipeline.schema import METERS, USAGE_SCHEMA, canonical_json, conform

QUOTE_CUSTOMER = "quote"
# The provider of quoted usage no model id names (GPU-seconds, outcomes, a model providers.py
# does not know): on an invoice the source says, which a quote cannot know.
UNNAMED_PROVIDER = "quote"
_SPEC = re.compile(
    r"^(?P<meter>[a-z_]+)(?::(?P<model>[^={]+))?(?:\{(?P<dims>[^}]*)\})?=(?P<quantity>[0-9_,]+)$"
)


class QuoteError(ValueError):
    """Bad quote input: the message names the argument."""


@dataclass(frozen=True)
class UsageSpec:
    meter: str
    model: str | None
    quantity: int
    dimensions: str = "{}"  # canonical JSON, e.g. {"gpu_type":"H100"}


def parse_usage(spec: str) -> UsageSpec:
    m = _SPEC.match(spec.strip())
    if not m:
        raise QuoteError(
            f"--usage {spec!r}: expected METER[:MODEL][{{KEY=VALUE,...}}]=QUANTITY, "
            "e.g. output_tokens:gpt-4o=2500000 or gpu_seconds{gpu_type=H100}=7200"
        )
    if m["meter"] not in METERS:
        raise QuoteError(
            f"--usage {spec!r}: unknown meter {m['meter']!r}; known meters: {', '.join(METERS)}"
        )
    dims = dict(kv.split("=", 1) for kv in (m["dims"] or "").split(",") if "=" in kv)
    quantity = int(m["quantity"].replace("_", "").replace(",", ""))
    if quantity > I64_MAX:
        raise QuoteError(
            f"--usage {spec!r}: {m['meter']} quantity {quantity:,} exceeds 2^63-1 base units"
        )
    return UsageSpec(
        m["meter"],
        m["model"],
        quantity,
        canonical_json({k.strip(): v.strip() for k, v in dims.items()}),
    )


def quote_provider(model: str | None) -> str:
    """The provider a quote's line names: the model id's, as on an invoice (providers.py)."""
    return provider_of(model) or UNNAMED_PROVIDER


def quote(
    catalog: Catalog, plan_id: str, usage: list[UsageSpec], month: str, tax_rate: str = "0"
) -> dict:
    """The invoice document the plan would give for ``usage`` in ``month``."""
    if plan_id not in catalog.plans:
        raise QuoteError(
            f"--plan {plan_id!r}: no such plan; plans are: {', '.join(sorted(catalog.plans))}"
        )
    start, _ = parse_month(month)
    plan = catalog.plans[plan_id]
    customer = Customer.model_validate(
        {
            "name": "Quote",
            "currency": plan.currency,
            "tax": {"rate": tax_rate},
            "subscriptions": [{"plan": plan_id, "from": start}],
        }
    )
    synthetic = catalog.model_copy(update={"customers": {QUOTE_CUSTOMER: customer}})
    moment = dt.datetime(start.year, start.month, 1, tzinfo=dt.UTC)
    rows = [
        {
            "event_id": f"q{i:06d}",
            "record_id": f"q{i:06d}",
            "source": "quote",
            "provider": quote_provider(u.model),
            "account_key": None,
            "customer_id": QUOTE_CUSTOMER,
            "model": u.model,
            "meter": u.meter,
            "dimensions": u.dimensions,
            "quantity": u.quantity,
            "start": moment,
            "end": moment,
            "origin": f"--usage #{i + 1}",
            "day": start,
        }
        for i, u in enumerate(usage)
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            k: v for k, v in USAGE_SCHEMA.items() if k not in ("model_family", "reported_cost")
        },
    )
    frame = conform(frame.with_columns(model_family_expr().alias("model_family")), USAGE_SCHEMA)
    rated = rate_month(frame, synthetic, month)
    unpriced = rated.at_risk.filter(pl.col("reason") == UNPRICED_COST)
    if unpriced.height:  # month-end would hold it: never quoted at zero
        what = ", ".join(
            f"{m} of {model or '(no model)'} ({p})"
            for p, m, model in unpriced.select("provider", "meter", "model").iter_rows()
        )
        raise QuoteError(
            f"--usage {what}: no price in the price book on {start}, and a cost-plus charge "
            "prices from it"
        )
    if rated.at_risk.height:  # month-end would hold this customer: a quote must not price it lower
        meters = ", ".join(dict.fromkeys(rated.at_risk["meter"].to_list()))
        what = {
            "amount_overflow": "amounts to more than 2^63-1 minor units of currency",
            "negative_quantity": "has a negative quantity",
        }.get(rated.at_risk["reason"][0], "sums past 2^63-1 base units in the month")
        raise QuoteError(f"--usage {meters}: the usage {what}; it cannot be priced exactly")
    documents = build_documents(rated.lines, synthetic, month)
    document = documents[0] if documents else None
    unpriced = rated.unrated.to_dicts()
    if (
        document is None
    ):  # no usage and no fixed fee: zero, printed to the currency's minor unit like any total
        zero = str(round_money(Decimal(0), plan.currency))
        document = {
            "currency": plan.currency,
            "lines": [],
            "subtotal": zero,
            "tax": zero,
            "credits_applied": zero,
            "total": zero,
        }
    document["unpriced_usage"] = [
        {"meter": r["meter"], "model": r["model"], "quantity": r["quantity"], "reason": r["reason"]}
        for r in unpriced
    ]
    return document


def quote_text(document: dict) -> str:
    """The quote for a terminal: one block per line, then the totals."""
    currency = document["currency"]
    out = []
    for line in document["lines"]:
        out.append(f"{line['description']:<48} {fmt_money(Decimal(line['amount']), currency):>14}")
        out.append(f"    {line['explanation']}")
    for r in document["unpriced_usage"]:
        out.append(
            f"(not priced by this plan: {fmt_quantity(r['quantity'])} {r['meter']}"
            f"{' of ' + r['model'] if r['model'] else ''})"
        )
    for label in ("subtotal", "tax", "total"):
        out.append(f"{label:<48} {fmt_money(Decimal(document[label]), currency):>14}")
    return "\n".join(out)
