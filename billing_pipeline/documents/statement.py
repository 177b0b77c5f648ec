"""Month-to-date statements: what a customer has spent so far this month, and where it is heading.

A statement for day D is the draft invoice of D's month rated on the usage of days 1..D: the same
``rate_month`` and ``build_documents`` as month-end, so its totals (subtotal, tax, credits, total)
are exactly what the month's invoice will show if no more usage arrives. Around those totals it
adds breakdowns (by model, token type, day, project or API key), the projection to month end, the
allowance and credits left, and the share of the monthly limit used.

Money in breakdowns (``allocate``): a usage line's rounded amount is split in minor units over
the (day, model) cells of its charged units, in proportion to the units, by the largest-remainder
method (ties: earlier day, then model name); so by_model, by_day and by_token_type each add up
exactly to ``usage_charges``, and usage_charges + other_charges = the subtotal. Lines that are not
tied to units used (base fee, commitment true-up, discounts, a tier's flat fee with no charged
units) are listed in ``other_charges``. by_project has quantities only: a line's price (tiers,
allowance) depends on all of a customer's keys together, so no per-key amount would be exact.

Held customers (RELIABILITY.md 18): ``rate_month`` drops every line of a customer whose month it
cannot rate exactly (its ``at_risk`` rows: negative_quantity, quantity_overflow, amount_overflow,
unpriced_cost). Such a customer still gets a statement, saying ``held`` (reason and detail) with
every amount that depends on the rating null: a spend built from the lines left (fixed fees only,
or nothing) would tell the customer a false, too-low figure. The units used (by_project,
units_by_meter) come from the usage itself and are still shown. A customer whose *projected*
month alone is held keeps its spend so far and gets ``projection`` null with ``projection_held``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.documents.invoice import build_documents, parties, plan_block
from billing_pipeline.money import ZERO, amount_text, minor_unit, percent, round_div_expr
from billing_pipeline.periods import days_in_month, month_label, month_of, parse_month, utc_text
from billing_pipeline.rating import rate_month
from billing_pipeline.rating.billing_source import split_billing_source
from billing_pipeline.schema import USAGE_SCHEMA, conform, event_id_expr

KIND = "month_to_date_statement"
PROJECTION_METHOD = (
    "run_rate_rerated: each (provider, model, meter, dimensions) quantity used so far is scaled to "
    "the whole month (quantity x days in month / days elapsed, rounded half up to whole units), "
    "the extra units are spread evenly over the remaining days, and the month is rated again with "
    "the plan's own prices (tiers, allowance, minimum commitment, price changes) and invoiced with "
    "the same tax and credits. Tiered prices make the money not proportional to the days."
)


def allocate(total: Decimal, weights: list[int], currency: str) -> list[Decimal]:
    """Split ``total`` (already rounded to the currency's minor unit) in proportion to ``weights``
    by the largest-remainder method: parts are whole minor units and add up to ``total`` exactly;
    the remaining minor units go to the largest remainders, ties to the earliest weight."""
    unit = minor_unit(currency)
    minor = int((total / unit).to_integral_value())
    if minor * unit != total:
        raise ValueError(f"allocate: {total} is not a whole number of {unit} {currency}")
    whole = sum(weights)
    if whole <= 0:
        raise ValueError("allocate: weights must add up to more than zero")
    sign, minor = (
        (-1 if minor < 0 else 1),
        abs(minor),
    )  # a negative total: split its size, keep the sign
    floors = [minor * w // whole for w in weights]
    remainders = [minor * w - f * whole for w, f in zip(weights, floors, strict=True)]
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[: minor - sum(floors)]:
        floors[i] += 1
    return [Decimal(sign * f) * unit for f in floors]


def month_to_date(usage: pl.DataFrame | pl.LazyFrame, day: dt.date) -> pl.DataFrame:
    """Attributed usage of ``day``'s month up to and including ``day``: what the statement sees."""
    start = day.replace(day=1)
    return conform(
        usage.lazy().filter(
            pl.col("day").is_between(start, day) & pl.col("customer_id").is_not_null()
        ),
        USAGE_SCHEMA,
    )


def projected_usage(usage_mtd: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """The month's usage at the current run rate: days 1..D as they happened, plus synthetic
    events on days D+1..N so that each (customer, provider, model, meter, dimensions) reaches
    round(quantity x N / D) units (see PROJECTION_METHOD). A day's synthetic quantity is about
    the quantity so far / D, so it fits int64 when the customer's month so far does (a customer
    whose month does not is held, and build_statements leaves it out)."""
    n, d = days_in_month(month_of(day)), day.day
    if d == n or usage_mtd.height == 0:
        return usage_mtd
    keys = ["customer_id", "provider", "model", "model_family", "meter", "dimensions"]
    remaining = n - d
    later = pl.DataFrame(
        {"day": pl.date_range(day + dt.timedelta(days=1), day.replace(day=n), eager=True)}
    )
    later = later.with_row_index("k").with_columns(pl.col("k").cast(pl.Int64))
    extra = (
        usage_mtd.group_by(keys)
        # Int128: quantity x days in month passes int64 long before the quantity does (2^62
        # tokens x 31 wrapped to a negative extra, and the projection silently stayed at day D)
        .agg(pl.col("quantity").cast(pl.Int128).sum().alias("so_far"))
        .with_columns((round_div_expr(pl.col("so_far") * n, d) - pl.col("so_far")).alias("extra"))
        .join(later, how="cross")
        .with_columns(
            (
                pl.col("extra") // remaining
                + (pl.col("k") < pl.col("extra") % remaining).cast(pl.Int64)
            ).alias("quantity")
        )
        .filter(pl.col("quantity") > 0)
        .with_columns(
            pl.lit("projection").alias("source"),
            pl.lit("projection").alias("account_key"),
            pl.col("day").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("start"),
            pl.lit("projection").alias("origin"),
        )
        .with_columns(
            pl.col("start").alias("end"), event_id_expr("source", *keys, "day").alias("event_id")
        )
        .with_columns(pl.col("event_id").alias("record_id"))
    )
    return pl.concat([usage_mtd, conform(extra, USAGE_SCHEMA)], how="vertical")


def held_reasons(at_risk: pl.DataFrame) -> dict[str, dict]:
    """customer_id -> {"reason", "detail"} from ``RatedMonth.at_risk`` rows: the distinct reasons
    (comma-separated, in row order) and each row's detail (semicolon-separated)."""
    held: dict[str, dict[str, list[str]]] = {}
    for cid, reason, detail in at_risk.select("customer_id", "reason", "detail").iter_rows():
        entry = held.setdefault(cid, {"reason": [], "detail": []})
        for key, value in (("reason", reason), ("detail", detail)):
            if value and value not in entry[key]:
                entry[key].append(value)
    return {
        cid: {"reason": ", ".join(e["reason"]), "detail": "; ".join(e["detail"])}
        for cid, e in sorted(held.items())
    }


def held_customers(statements: list[dict]) -> dict[str, str]:
    """customer_id -> reason of every held statement (spend or projection), for run metadata."""
    out = {}
    for st in statements:
        if st["held"]:
            out[st["customer_id"]] = st["held"]["reason"]
        elif st["projection_held"]:
            out[st["customer_id"]] = f"projection: {st['projection_held']['reason']}"
    return out


def _tied_to_units(line: dict) -> bool:
    """A usage line with charged units: its amount is usage charges (the limit alerts' basis)."""
    return line["consideration"] == "variable" and line["quantity"] > 0


def _cells(doc: dict, rows: list[dict], currency: str) -> tuple[list[dict], list[dict], list[dict]]:
    """(cells, allocated lines, other charges): each usage line's amount over its (day, model)
    cells by ``allocate``; lines with no charged units are other charges."""
    cells: list[dict] = []
    allocated: list[dict] = []
    other: list[dict] = []
    for line, row in zip(doc["lines"], rows, strict=True):
        daily = json.loads(row["daily"]) if _tied_to_units(line) else []
        daily = [d for d in daily if d["quantity"] > 0]
        amount = Decimal(line["amount"])
        if not daily:
            if (
                line["consideration"] != "variable" or amount
            ):  # not a usage line whose units were all included
                other.append({"description": line["description"], "amount": line["amount"]})
            continue
        parts = allocate(amount, [d["quantity"] for d in daily], currency)
        for d, part in zip(daily, parts, strict=True):
            cells.append(
                {
                    "day": d["day"],
                    "model": d["model"] or line["description"],
                    "unit": line.get("unit") or "",
                    "quantity": d["quantity"],
                    "amount": part,
                }
            )
        allocated.append(line)
    return cells, allocated, other


def _sum_by(items: list[dict], *keys: str) -> list[dict]:
    """Charged units and amount per distinct ``keys``, in their order: per model and unit (a
    model's GPU-seconds are not its tokens), per day, per (day, model) for the chart."""
    out: dict[tuple, list] = {}
    for item in items:
        cell = out.setdefault(tuple(item[k] for k in keys), [0, ZERO])
        cell[0] += item["quantity"]
        cell[1] += item["amount"]
    return [
        {**dict(zip(keys, k, strict=True)), "quantity": q, "amount": str(a)}
        for k, (q, a) in sorted(out.items())
    ]


def _allowances(catalog: Catalog, lines: list[dict], rows: list[dict]) -> list[dict]:
    """Included units per plan with an allowance: granted, used so far (the lines' included
    units), remaining."""
    used: dict[str, int] = defaultdict(int)
    for line, row in zip(lines, rows, strict=True):
        used[row["plan_id"]] += line["included_quantity"] or 0
    out = []
    for plan_id in dict.fromkeys(r["plan_id"] for r in rows):
        allowance = catalog.plans[plan_id].allowance
        if allowance:
            out.append(
                {
                    "plan_id": plan_id,
                    "meters": list(allowance.meters),
                    "included": allowance.quantity,
                    "used": used[plan_id],
                    "remaining": max(allowance.quantity - used[plan_id], 0),
                }
            )
    return out


def limit_used_pct(usage_charges: Decimal, limit: Decimal | None) -> str | None:
    """Usage charges as a percentage of the monthly limit, to 0.1 half up: the same basis (usage
    lines only, before tax, fixed fees, discounts and credits) and rounding as the limit alerts
    (alerts/rules.py limit_alerts)."""
    if not limit:
        return None
    return str(percent(usage_charges, limit))


def _totals(doc: dict) -> dict:
    return {
        k: doc[k]
        for k in ("subtotal", "tax_rate", "tax", "reverse_charge", "credits_applied", "total")
    }


def build_statements(
    usage: pl.DataFrame | pl.LazyFrame,
    catalog: Catalog,
    day: dt.date,
    credits_used: Mapping[str, Mapping[int, Decimal]] | None = None,
    as_of: dt.datetime | None = None,
) -> list[dict]:
    """One statement per customer the month's invoice would have, as of the end of ``day``.

    ``usage``: attributed usage (other days and months are ignored); ``credits_used``: what earlier
    months' invoices drew from each credit grant, as for ``build_documents``; ``as_of``: the
    instant within ``day`` the usage was counted up to (an hourly refresh), written as the
    statement's ``as_of`` instead of the day (``periods.utc_text``)."""
    month = month_of(day)
    # The same one source per customer and provider as the invoice (catalog billing_source).
    mtd = split_billing_source(month_to_date(usage, day), catalog).billable
    rating = rate_month(mtd, catalog, month)
    rated, held = rating.lines, held_reasons(rating.at_risk)
    docs = build_documents(rated, catalog, month, credits_used)
    # A held customer has no projection: leaving it out also keeps every sum below within int64.
    unheld = mtd.filter(~pl.col("customer_id").is_in(list(held)))
    projected_rating = rate_month(projected_usage(unheld, day), catalog, month)
    projection_held = held_reasons(projected_rating.at_risk)
    projected = {
        d["customer_id"]: d
        for d in build_documents(projected_rating.lines, catalog, month, credits_used)
    }
    rows_of: dict[str, list[dict]] = {}
    for row in (
        rated.sort("customer_id", "position")
        .select("customer_id", "plan_id", "daily")
        .iter_rows(named=True)
    ):
        rows_of.setdefault(row["customer_id"], []).append(row)
    units = (
        mtd.group_by("customer_id", "account_key", "meter")
        .agg(pl.sum("quantity"))
        .sort("customer_id", "account_key", "meter")
    )
    units_of: dict[str, list[tuple]] = {}
    for cid, key, meter, q in units.iter_rows():
        units_of.setdefault(cid, []).append((key, meter, q))
    as_of_text = day.isoformat() if as_of is None else utc_text(as_of)
    statements = [
        _statement(
            doc,
            rows_of[doc["customer_id"]],
            units_of.get(doc["customer_id"], []),
            projected.get(doc["customer_id"]),
            projection_held.get(doc["customer_id"]),
            catalog,
            day,
            as_of_text,
        )
        for doc in docs
    ]
    statements += [
        _held_statement(cid, reason, units_of.get(cid, []), catalog, day, as_of_text)
        for cid, reason in held.items()
    ]
    return sorted(statements, key=lambda st: st["customer_id"])


def _statement(
    doc: dict,
    rows: list[dict],
    units: list[tuple],
    projected: dict | None,
    projection_held: dict | None,
    catalog: Catalog,
    day: dt.date,
    as_of: str,
) -> dict:
    currency, cid = doc["currency"], doc["customer_id"]
    customer = catalog.customers[cid]
    month = doc["period"]
    start, end = parse_month(month)
    cells, allocated, other = _cells(doc, rows, currency)
    usage_charges = sum((c["amount"] for c in cells), ZERO)
    by_meter: dict[str, list] = {}
    for line in allocated:
        cell = by_meter.setdefault(line["meter"], [0, 0, ZERO])
        cell[0] += line["quantity"]
        cell[1] += line["included_quantity"] or 0
        cell[2] += Decimal(line["amount"])
    days = [start + dt.timedelta(days=i) for i in range(day.day)]
    zero = amount_text(ZERO, currency)
    day_cells = _sum_by(cells, "day")
    by_day = {r["day"]: r for r in day_cells}
    allowances = _allowances(catalog, doc["lines"], rows)
    active = [c for c in doc["credits"] if c["status"] == "active"]
    limit = customer.monthly_limit
    projection = None
    if projected is not None:
        projection = {
            "method": PROJECTION_METHOD,
            **_totals(projected),
            "usage_charges": amount_text(
                sum(
                    (Decimal(ln["amount"]) for ln in projected["lines"] if _tied_to_units(ln)),
                    ZERO,
                ),
                currency,
            ),
            "limit_used_pct": None,
        }
        projection["limit_used_pct"] = limit_used_pct(Decimal(projection["usage_charges"]), limit)
    return {
        **_heading(cid, day, as_of, currency),
        "issuer": doc["issuer"],
        "customer": doc["customer"],
        "plan": doc["plan"],
        "held": None,
        "spend_so_far": {
            **_totals(doc),
            "usage_charges": amount_text(usage_charges, currency),
            "other_charges": amount_text(
                sum((Decimal(o["amount"]) for o in other), ZERO), currency
            ),
        },
        "other_charges": other,
        "by_model": _sum_by(cells, "model", "unit"),
        "by_token_type": [
            {"meter": m, "quantity": q, "included_quantity": inc, "amount": str(a)}
            for m, (q, inc, a) in sorted(by_meter.items())
        ],
        "by_day": [
            by_day.get(d.isoformat(), {"day": d.isoformat(), "quantity": 0, "amount": zero})
            for d in days
        ],
        **_units_used(units),
        "projection": projection,
        "projection_held": projection_held,
        "allowance": allowances,
        "allowance_remaining": sum(a["remaining"] for a in allowances) if allowances else None,
        "credits": doc["credits"],
        "credits_remaining": amount_text(
            sum((Decimal(c["closing"]) for c in active), ZERO), currency
        ),
        "monthly_limit": None if limit is None else str(limit),
        "limit_used_pct": limit_used_pct(usage_charges, limit),
        "usage_by_day": _sum_by(cells, "day", "model"),  # the chart's input, as an invoice's
        "lines": doc["lines"],
    }


def _heading(cid: str, day: dt.date, as_of: str, currency: str) -> dict:
    """The fields every statement opens with: whose, which month, as of when, in what currency."""
    month = month_of(day)
    start, end = parse_month(month)
    return {
        "kind": KIND,
        "customer_id": cid,
        "period": month,
        "period_label": month_label(month),
        "period_start": start.isoformat(),
        "period_end": (end - dt.timedelta(days=1)).isoformat(),
        "as_of": as_of,
        "days_elapsed": day.day,
        "days_in_month": (end - start).days,
        "currency": currency,
    }


def _units_used(units: list[tuple]) -> dict:
    """by_project and units_by_meter: the units used per key and meter, from the usage itself
    (not the rating), so a held statement shows them too."""
    by_project: dict[str, dict[str, int]] = {}
    units_by_meter: dict[str, int] = defaultdict(int)
    for key, meter, q in units:
        by_project.setdefault(key, {})[meter] = q
        units_by_meter[meter] += q
    return {
        "by_project": [
            {"account_key": key, "quantity": sum(meters.values()), "units": meters}
            for key, meters in sorted(by_project.items())
        ],
        "units_by_meter": dict(sorted(units_by_meter.items())),
    }


def _held_statement(
    cid: str, held: dict, units: list[tuple], catalog: Catalog, day: dt.date, as_of: str
) -> dict:
    """The statement of a customer ``rate_month`` holds: the same fields as ``_statement``, with
    ``held`` set and every amount that needs the rating (spend, breakdowns, projection, allowance,
    credits, limit used) null, never a number computed from the lines that are left."""
    customer = catalog.customers[cid]
    start, _ = parse_month(month_of(day))
    plan_ids = list(
        dict.fromkeys(
            p
            for i in range(day.day)
            if (p := catalog.plan_for(cid, start + dt.timedelta(days=i))) is not None
        )
    )
    return {
        **_heading(cid, day, as_of, customer.currency),
        **parties(catalog, cid),
        "plan": plan_block(catalog, plan_ids),
        "held": held,
        "spend_so_far": None,
        "other_charges": None,
        "by_model": None,
        "by_token_type": None,
        "by_day": None,
        **_units_used(units),
        "projection": None,
        "projection_held": None,
        "allowance": None,
        "allowance_remaining": None,
        "credits": None,
        "credits_remaining": None,
        "monthly_limit": None if customer.monthly_limit is None else str(customer.monthly_limit),
        "limit_used_pct": None,
        "usage_by_day": None,
        "lines": None,
    }


def statement_json(statement: dict) -> str:
    """Stable key order and formatting, so re-runs give identical bytes."""
    return json.dumps(statement, indent=2, ensure_ascii=False) + "\n"
