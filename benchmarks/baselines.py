"""The month's rating written twice more, as someone would without billing_pipeline: in pandas and
in DuckDB SQL. Both are benchmark baselines AND an independent check of the engine's money: on the
same Parquet and catalog they must produce the same invoice totals to the cent (``compare``).

Scope: the pricing both baselines implement is per-unit and graduated, one subscription per
customer covering the whole month, charges matched by meter and exact model family (or any model),
no allowances, fees, commitments, discounts, credits or price changes; ``charge_tables`` refuses
anything else with the plan and charge named, so a catalog outside the subset can never produce a
silently different "result".

Invoice lines, the same as ``billing_pipeline.rating.rate_month``'s:
- per-unit charge: one line per customer x charge x provider x model family, amount =
  month's quantity x unit_price / unit_size;
- graduated charge: one line per customer x charge, its tiers applied to the month's total
  quantity (across every model the charge covers); tier bounds are in base units (tokens);
- each line rounded once to the cent, half up (ties away from zero, money.ROUNDING); a customer's
  total is the sum of its rounded lines.

Money is never a float here either (see each implementation's docstring for how it stays exact).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path

from billing_pipeline.periods import parse_month

I64_MAX = 2**63 - 1
CENTS = 2  # the comparison catalog is single-currency USD


@dataclass(frozen=True)
class Totals:
    """Per-customer invoice totals (rounded lines summed) and the number of lines."""

    by_customer: dict[str, Decimal]
    lines: int

    @property
    def grand_total(self) -> Decimal:
        return sum(self.by_customer.values(), Decimal(0))

    def to_json(self) -> dict:
        return {
            "lines": self.lines,
            "by_customer": {c: str(v) for c, v in sorted(self.by_customer.items())},
        }

    @classmethod
    def from_json(cls, data: dict) -> Totals:
        return cls({c: Decimal(v) for c, v in data["by_customer"].items()}, data["lines"])


class Disagreement(AssertionError):
    """Two implementations billed different amounts: a bug in one of them, never a benchmark result."""


def compare(
    reference: Totals, other: Totals, name: str, reference_name: str = "billing_pipeline"
) -> None:
    """Raise ``Disagreement`` naming the first customer (in id order) whose total differs, or the
    grand total / line count; exact Decimal equality, no tolerance."""
    for customer in sorted(set(reference.by_customer) | set(other.by_customer)):
        a, b = reference.by_customer.get(customer), other.by_customer.get(customer)
        if a is None or b is None or a != b:
            raise Disagreement(
                f"{name} disagrees with {reference_name} for customer {customer}: "
                f"{reference_name} {a}, {name} {b}"
            )
    if (
        reference.grand_total != other.grand_total
    ):  # cannot differ if every customer agrees; kept as the stated check
        raise Disagreement(
            f"{name} grand total {other.grand_total} != {reference_name} {reference.grand_total}"
        )
    if reference.lines != other.lines:
        raise Disagreement(
            f"{name} has {other.lines} invoice lines, {reference_name} {reference.lines}: "
            "the line granularity differs, so per-line rounding would too"
        )


def pipeline_totals(lines) -> Totals:
    """Totals of ``rate_month(...).lines`` (a polars frame; ``amount`` is a decimal string)."""
    import polars as pl

    per = lines.group_by("customer_id").agg(pl.col("amount").cast(pl.Decimal(38, CENTS)).sum())
    return Totals({c: Decimal(v) for c, v in per.iter_rows()}, lines.height)


# ---------------------------------------------------------------------------------------------
# The catalog subset both baselines price


@dataclass(frozen=True)
class ChargeTables:
    subscriptions: list[tuple[str, str]]  # customer_id, plan_id
    # plan_id, charge_id, pricing, meter, model_family (None: any model), unit_size
    charges: list[tuple[str, str, str, str, str | None, int]]
    # plan_id, charge_id, tier (1-based), lower, upper (None: unbounded), unit_price; per_unit has one tier
    tiers: list[tuple[str, str, int, int, int | None, Decimal]]


def charge_tables(doc: dict, month: str) -> ChargeTables:
    """The catalog document (as YAML-loaded) as flat tables; refuses what the baselines don't price."""
    start, end = parse_month(month)
    subs = []
    for cid, customer in doc["customers"].items():
        active = [
            s
            for s in customer.get("subscriptions", [])
            if _date(s["from"]) < end and (s.get("to") is None or _date(s["to"]) >= start)
        ]
        if not active:
            continue
        s = active[0]
        if (
            len(active) > 1
            or _date(s["from"]) > start
            or (s.get("to") is not None and _date(s["to"]) < end - dt.timedelta(days=1))
        ):
            raise ValueError(
                f"customers.{cid}: the baselines price one subscription covering the whole month"
            )
        if customer.get("discounts") or customer.get("credits"):
            raise ValueError(f"customers.{cid}: discounts and credits are not in the baselines")
        subs.append((cid, s["plan"]))
    charges, tiers = [], []
    for pid, plan in doc["plans"].items():
        for key in ("base_fee", "minimum_commitment", "allowance"):
            if plan.get(key):
                raise ValueError(
                    f"plans.{pid}.{key}: not in the baselines (per-unit and graduated only)"
                )
        if plan.get("currency", "USD").upper() != "USD":
            raise ValueError(f"plans.{pid}.currency: the baselines round to cents (USD)")
        claimed: set[tuple[str, str | None]] = set()
        for c in plan["charges"]:
            where = f"plans.{pid}.charges.{c['id']}"
            pricing = c.get("pricing", "per_unit")
            if pricing not in ("per_unit", "graduated") or c.get("prices") or c.get("dimensions"):
                raise ValueError(
                    f"{where}: the baselines price per_unit and graduated charges without price changes "
                    "or dimensions"
                )
            meters = c["meter"] if isinstance(c["meter"], list) else [c["meter"]]
            models = c.get("models") or [None]
            for model in models:
                if model is not None and any(ch in model for ch in "*?"):
                    raise ValueError(f"{where}: model globs are not in the baselines")
                for meter in meters:
                    overlaps = (
                        (meter, model) in claimed
                        or (meter, None) in claimed
                        or (model is None and any(m == meter for m, _ in claimed))
                    )
                    if overlaps:
                        raise ValueError(
                            f"{where}: overlaps an earlier charge; the baselines need disjoint charges"
                        )
                    claimed.add((meter, model))
                    charges.append(
                        (pid, c["id"], pricing, meter, model, int(c.get("unit_size", 1)))
                    )
            if pricing == "per_unit":
                tiers.append((pid, c["id"], 1, 0, None, Decimal(str(c["unit_price"]))))
            else:
                lower = 0
                for n, t in enumerate(c["tiers"], start=1):
                    if Decimal(str(t.get("flat_fee", "0"))) != 0:
                        raise ValueError(
                            f"{where}.tiers[{n - 1}]: flat fees are not in the baselines"
                        )
                    upper = t.get("up_to")
                    tiers.append((pid, c["id"], n, lower, upper, Decimal(str(t["unit_price"]))))
                    lower = upper if upper is not None else lower
    return ChargeTables(subs, charges, tiers)


def _date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _price_scale(tables: ChargeTables) -> int:
    """Decimal places that make every unit_price an integer."""
    return max((max(0, -p.as_tuple().exponent) for *_, p in tables.tiers), default=0)


# ---------------------------------------------------------------------------------------------
# pandas


def pandas_rating(parquet: str, doc: dict, month: str) -> Totals:
    """Straightforward pandas: read the columns rating needs (month filter pushed into the Parquet
    read), group the events by customer, provider, model family and meter, merge plans and charges,
    price with numpy integers.

    Money: prices become int64 multiples of 10^-s (s = the catalog's most decimals, e.g. 0.00125
    -> 125 x 10^-5); a line's exact amount is ``sum(quantity x price_int) / (unit_size x 10^s)``
    and its cents are ``(2 x 100 x numerator + d) // (2 d)``: half up on non-negative integers.
    The product is bounds-checked against int64 (OverflowError, never a wrapped number); only the
    final cents become Decimal."""
    import numpy as np
    import pandas as pd

    start, end = parse_month(month)
    tables = charge_tables(doc, month)
    scale = _price_scale(tables)
    usage = pd.read_parquet(
        parquet,
        columns=["customer_id", "provider", "model_family", "meter", "quantity"],
        filters=[("day", ">=", start), ("day", "<", end)],
    )
    usage = usage[usage["customer_id"].notna()]
    agg = usage.groupby(
        ["customer_id", "provider", "model_family", "meter"], sort=False, dropna=False
    )["quantity"].sum()
    agg = agg.reset_index()
    subs = pd.DataFrame(tables.subscriptions, columns=["customer_id", "plan_id"])
    charges = pd.DataFrame(
        tables.charges,
        columns=["plan_id", "charge_id", "pricing", "meter", "model_family", "unit_size"],
    )
    tiers = pd.DataFrame(
        [
            (pid, cid, n, lower, I64_MAX if upper is None else upper, int(price.scaleb(scale)))
            for pid, cid, n, lower, upper, price in tables.tiers
        ],
        columns=["plan_id", "charge_id", "tier", "lower", "upper", "price_int"],
    ).astype({"lower": "int64", "upper": "int64", "price_int": "int64"})

    agg = agg.merge(subs, on="customer_id", how="inner")
    by_model = agg.merge(
        charges[charges["model_family"].notna()], on=["plan_id", "meter", "model_family"]
    )
    any_model = agg.merge(
        charges[charges["model_family"].isna()].drop(columns="model_family"),
        on=["plan_id", "meter"],
    )
    claimed = pd.concat([by_model, any_model], ignore_index=True)

    per_unit = (
        claimed[claimed["pricing"] == "per_unit"]
        .groupby(["customer_id", "plan_id", "charge_id", "provider", "model_family"], sort=False)
        .agg(quantity=("quantity", "sum"), unit_size=("unit_size", "first"))
        .reset_index()
    )
    graduated = (
        claimed[claimed["pricing"] == "graduated"]
        .groupby(["customer_id", "plan_id", "charge_id"], sort=False)
        .agg(quantity=("quantity", "sum"), unit_size=("unit_size", "first"))
        .reset_index()
    )
    graduated["line"] = np.arange(len(graduated))
    sliced = graduated.merge(tiers, on=["plan_id", "charge_id"])
    sliced["quantity"] = (
        sliced["quantity"].clip(lower=sliced["lower"], upper=sliced["upper"]) - sliced["lower"]
    )
    per_unit = per_unit.merge(
        tiers[["plan_id", "charge_id", "price_int"]], on=["plan_id", "charge_id"]
    )

    def numerator(frame: pd.DataFrame) -> pd.Series:
        if (
            len(frame)
            and int(frame["quantity"].max()) * int(frame["price_int"].max()) * 200 > I64_MAX
        ):
            raise OverflowError("pandas baseline: quantity x price exceeds int64")
        return frame["quantity"] * frame["price_int"]

    per_unit["numerator"] = numerator(per_unit)
    sliced["numerator"] = numerator(sliced)
    grad_lines = (
        sliced.groupby("line", sort=False)
        .agg(
            customer_id=("customer_id", "first"),
            numerator=("numerator", "sum"),
            unit_size=("unit_size", "first"),
        )
        .reset_index()
    )
    lines = pd.concat(
        [
            per_unit[["customer_id", "numerator", "unit_size"]],
            grad_lines[["customer_id", "numerator", "unit_size"]],
        ],
        ignore_index=True,
    )
    denominator = lines["unit_size"] * 10**scale
    if (
        len(lines)
        and int(lines["numerator"].max()) * 2 * 10**CENTS + int(denominator.max()) > I64_MAX
    ):
        raise OverflowError("pandas baseline: line numerator exceeds int64")
    lines["cents"] = (2 * 10**CENTS * lines["numerator"] + denominator) // (2 * denominator)
    per_customer = lines.groupby("customer_id", sort=False)["cents"].sum()
    return Totals({c: Decimal(int(v)).scaleb(-CENTS) for c, v in per_customer.items()}, len(lines))


# ---------------------------------------------------------------------------------------------
# DuckDB

DUCKDB_SQL = """
WITH usage AS (          -- the only pass over the events: one row per customer x model x meter
    SELECT customer_id, provider, model_family, meter, sum(quantity)::DECIMAL(38, 0) AS quantity
    FROM read_parquet($parquet)
    WHERE day >= $start AND day < $end AND customer_id IS NOT NULL
    GROUP BY ALL
),
claimed AS (             -- ~10^5 aggregate rows matched to their plan's charge
    SELECT u.customer_id, u.provider, u.model_family, u.quantity, c.plan_id, c.charge_id, c.pricing
    FROM usage u
    JOIN subs s USING (customer_id)
    JOIN charges c ON c.plan_id = s.plan_id AND c.meter = u.meter
                  AND (c.model_family IS NULL OR c.model_family = u.model_family)
),
line_quantity AS (       -- per_unit: a line per provider and model family; graduated: per charge
    SELECT customer_id, plan_id, charge_id,
           CASE WHEN pricing = 'per_unit' THEN provider END AS provider,
           CASE WHEN pricing = 'per_unit' THEN model_family END AS model_family,
           sum(quantity) AS quantity
    FROM claimed
    GROUP BY ALL
),
lines AS (               -- tiers over the month's total; per_unit is a single unbounded tier
    SELECT l.customer_id,
           round(sum((least(greatest(l.quantity, t.lower), t.upper) - t.lower) * t.price_per_unit), 2) AS amount
    FROM line_quantity l
    JOIN tiers t USING (plan_id, charge_id)
    GROUP BY l.customer_id, l.plan_id, l.charge_id, l.provider, l.model_family
)
SELECT customer_id, sum(amount) AS total, count(*) AS lines FROM lines GROUP BY customer_id
"""


# The same query for a file that carries usage_key and its code book (usage_keys.py): the scan
# groups on the one integer, and the code book names the keys, as an expert would write it once
# the table has the key. Everything after the first CTE is DUCKDB_SQL's.
DUCKDB_KEYED_SQL = DUCKDB_SQL.replace(
    """WITH usage AS (          -- the only pass over the events: one row per customer x model x meter
    SELECT customer_id, provider, model_family, meter, sum(quantity)::DECIMAL(38, 0) AS quantity
    FROM read_parquet($parquet)
    WHERE day >= $start AND day < $end AND customer_id IS NOT NULL
    GROUP BY ALL
),""",
    """WITH by_key AS (        -- the only pass over the events: one row per usage_key
    SELECT usage_key, sum(quantity)::DECIMAL(38, 0) AS quantity
    FROM read_parquet($parquet)
    WHERE day >= $start AND day < $end
    GROUP BY usage_key
),
codes AS (SELECT DISTINCT usage_key, customer_id, provider, model_family, meter FROM read_parquet($codes)),
usage AS (
    SELECT c.customer_id, c.provider, c.model_family, c.meter, sum(k.quantity) AS quantity
    FROM by_key k JOIN codes c USING (usage_key)
    WHERE c.customer_id IS NOT NULL
    GROUP BY ALL
),""",
)


def duckdb_keyed_rating(parquet: str, doc: dict, month: str) -> Totals:
    """``duckdb_rating`` on the usage_key column and the code book beside the file."""
    from benchmarks.generate import codes_path

    return duckdb_rating(parquet, doc, month, keyed=str(codes_path(Path(parquet))))


def duckdb_rating(parquet: str, doc: dict, month: str, keyed: str | None = None) -> Totals:
    """DuckDB SQL the way one would write it for speed (``DUCKDB_SQL``): aggregate the events per
    customer, provider, model family and meter in the scan, then match charges and apply tiers to
    those ~10^5 aggregates, never per event.

    Money: quantities as DECIMAL(38,0), each price pre-divided by its unit_size in Python into an
    exact DECIMAL(38,s) "price per base unit" (DuckDB's DECIMAL / DECIMAL would return DOUBLE), so
    every product is exact DECIMAL and overflow is an error, not a wrap. ``round(DECIMAL, 2)``
    rounds half away from zero, which is half up on these non-negative amounts (money.ROUNDING);
    the tier slices of a line are summed before the one rounding, as in the engine."""
    import duckdb
    import pyarrow as pa

    start, end = parse_month(month)
    tables = charge_tables(doc, month)
    unit_size = {(pid, cid): size for pid, cid, _, _, _, size in tables.charges}
    per_unit_price = {}
    for pid, cid, n, _, _, price in tables.tiers:
        with localcontext() as ctx:
            ctx.prec = 60
            value = price / unit_size[pid, cid]
        if value * unit_size[pid, cid] != price:
            raise ValueError(
                f"plans.{pid}.charges.{cid}: {price} per {unit_size[pid, cid]} has no exact decimal per unit"
            )
        per_unit_price[pid, cid, n] = value
    scale = max(
        (max(0, -v.normalize().as_tuple().exponent) for v in per_unit_price.values()), default=0
    )
    if scale > 30:
        raise ValueError(
            f"a price per base unit needs {scale} decimals; DECIMAL(38, s) holds at most 30 here"
        )
    decimal_type = pa.decimal128(38, scale)
    con = duckdb.connect()
    subs = pa.table(
        {
            "customer_id": [c for c, _ in tables.subscriptions],
            "plan_id": [p for _, p in tables.subscriptions],
        }
    )
    charges = pa.table(
        {
            "plan_id": [c[0] for c in tables.charges],
            "charge_id": [c[1] for c in tables.charges],
            "pricing": [c[2] for c in tables.charges],
            "meter": [c[3] for c in tables.charges],
            "model_family": pa.array([c[4] for c in tables.charges], pa.string()),
        }
    )
    tier_rows = [
        (pid, cid, lower, upper, per_unit_price[pid, cid, n])
        for pid, cid, n, lower, upper, _ in tables.tiers
    ]
    tiers = pa.table(
        {
            "plan_id": [t[0] for t in tier_rows],
            "charge_id": [t[1] for t in tier_rows],
            "lower": pa.array([Decimal(t[2]) for t in tier_rows], pa.decimal128(38, 0)),
            "upper": pa.array(
                [Decimal(10**37 if t[3] is None else t[3]) for t in tier_rows], pa.decimal128(38, 0)
            ),
            "price_per_unit": pa.array(
                [t[4].quantize(Decimal(1).scaleb(-scale)) for t in tier_rows], decimal_type
            ),
        }
    )
    con.register("subs", subs)
    con.register("charges", charges)
    con.register("tiers", tiers)
    params = {"parquet": str(parquet), "start": start, "end": end}
    if keyed is not None:
        if DUCKDB_KEYED_SQL == DUCKDB_SQL:
            raise AssertionError("DUCKDB_KEYED_SQL did not replace the first CTE")
        params["codes"] = keyed
    rows = con.execute(DUCKDB_KEYED_SQL if keyed else DUCKDB_SQL, params).fetchall()
    con.close()
    return Totals({c: Decimal(t) for c, t, _ in rows}, sum(n for _, _, n in rows))


# ---------------------------------------------------------------------------------------------
# The floor: a hand-written float polars group-by (issue #8's reference), not a billing system


def polars_float_floor(parquet: str, doc: dict, month: str) -> dict[str, float]:
    """What the issue calls the floor to approach: one streaming group-by of the events per
    customer, provider, model family and meter, charges joined, tiers by clip arithmetic, all in
    float64, no line items, no explanations, no exactness. Per-customer totals as floats: it is
    compared with the exact implementations only within a tolerance and never gates the run
    (a float total is allowed to be off by the float error it carries)."""
    import polars as pl

    start, end = parse_month(month)
    tables = charge_tables(doc, month)
    subs = pl.DataFrame(
        tables.subscriptions, schema={"customer_id": pl.String, "plan_id": pl.String}, orient="row"
    )
    charges = pl.DataFrame(
        [
            (pid, cid, pricing, meter, model, size)
            for pid, cid, pricing, meter, model, size in tables.charges
        ],
        schema={
            "plan_id": pl.String,
            "charge_id": pl.String,
            "pricing": pl.String,
            "meter": pl.String,
            "model_family": pl.String,
            "unit_size": pl.Int64,
        },
        orient="row",
    )
    tiers = pl.DataFrame(
        [
            (pid, cid, lower, float(upper) if upper is not None else float("inf"), float(price))
            for pid, cid, _, lower, upper, price in tables.tiers
        ],
        schema={
            "plan_id": pl.String,
            "charge_id": pl.String,
            "lower": pl.Float64,
            "upper": pl.Float64,
            "price": pl.Float64,
        },
        orient="row",
    )
    usage = (
        pl.scan_parquet(parquet)
        .filter(
            (pl.col("day") >= start) & (pl.col("day") < end) & pl.col("customer_id").is_not_null()
        )
        .group_by("customer_id", "provider", "model_family", "meter")
        .agg(pl.col("quantity").sum().cast(pl.Float64))
        .collect(engine="streaming")
        .join(subs, on="customer_id")
    )
    claimed = pl.concat(
        [
            usage.join(
                charges.filter(pl.col("model_family").is_not_null()),
                on=["plan_id", "meter", "model_family"],
            ),
            usage.join(
                charges.filter(pl.col("model_family").is_null()).drop("model_family"),
                on=["plan_id", "meter"],
            ),
        ],
        how="diagonal",
    )
    per_unit = pl.col("pricing") == "per_unit"
    lines = (
        claimed.with_columns(
            pl.when(per_unit).then(pl.col("provider")).alias("provider"),
            pl.when(per_unit).then(pl.col("model_family")).alias("model_family"),
        )
        .group_by("customer_id", "plan_id", "charge_id", "provider", "model_family")
        .agg(pl.sum("quantity"), pl.first("unit_size"))
        .join(tiers, on=["plan_id", "charge_id"])
        .with_columns(
            (
                (pl.col("quantity").clip(pl.col("lower"), pl.col("upper")) - pl.col("lower"))
                * pl.col("price")
                / pl.col("unit_size")
            ).alias("amount")
        )
        .group_by("customer_id", "plan_id", "charge_id", "provider", "model_family")
        .agg(pl.sum("amount"))
        .group_by("customer_id")
        .agg(pl.col("amount").round(2).sum())
    )
    return dict(lines.iter_rows())
