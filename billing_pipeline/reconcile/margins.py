"""Revenue against cost per customer, provider and model: where we make and lose money.

Revenue of a line that spans several models (a tiered charge over all tokens) is allocated to its
models in proportion to their quantity, in cents, with the rounding remainder on the largest part,
so the allocated revenue sums exactly to the invoice lines. Fixed fees (base fee, commitment
true-up) appear under provider ``subscription``.
"""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl

from billing_pipeline.money import minor_places, truncate_div_expr, truncate_money
from billing_pipeline.schema import COST_DECIMAL

RECONCILIATION_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "provider": pl.String,
    "model": pl.String,
    "quantity": pl.Int64,
    "revenue": COST_DECIMAL,
    "cost": COST_DECIMAL,
    "margin": COST_DECIMAL,
    "margin_pct": pl.Float64,  # display only; money columns stay Decimal
    "flags": pl.String,
    "reported_tokens": pl.Int64,  # the provider's token count for the customer's keys (drift check)
    "at_stake": COST_DECIMAL,  # revenue the tokens our meter missed would have billed
}


REVENUE_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "provider": pl.String,
    "model": pl.String,
    "revenue": COST_DECIMAL,
}
_PART = pl.Struct({"provider": pl.String, "model": pl.String, "quantity": pl.Int64})
_LINE = ["customer_id", "currency", "amount", "components", "_variable"]  # what _exact_shares reads
_PLAIN_AMOUNT = r"^-?[0-9]+(\.[0-9]*)?$"
# Below this |amount x quantity| in minor units (~2e27) a share has the same cents in integers as
# in Decimal's 28 digits: the product is exact, and the quotient rounded to 28 digits cannot reach
# the next minor unit (that would need a total above 2 x 10^(28 - its digits)).
_EXACT_PRODUCT = 10**27
_I64_MAX = 2**63 - 1


def allocate_revenue(lines: pl.DataFrame) -> pl.DataFrame:
    """One row per customer x provider x model with the revenue its lines earned.

    A variable line's amount is shared by quantity in integers of the currency's minor unit, each
    share cut toward zero (``truncate_div_expr``, the rule of ``truncate_money``), the remainder
    on the first part with the largest quantity; a fixed line, or one without components, is the
    customer's ``subscription``. A line those integers cannot hold exactly (amount beyond int64 or
    with more decimals than its currency has, a quantity negative or beyond int64, amount x
    quantity above ~10^27) is shared in Decimal by ``_exact_shares``: the same cents either way."""
    currencies = lines["currency"].drop_nulls().unique().to_list()
    minor = pl.col("currency").replace_strict(
        currencies, [minor_places(c) for c in currencies], default=None, return_dtype=pl.Int64
    )
    point = pl.col("amount").str.find(".", literal=True)
    decimals = (pl.col("amount").str.len_chars() - point - 1).fill_null(0).cast(pl.Int64)
    plain = pl.col("amount").str.contains(_PLAIN_AMOUNT) & (decimals <= minor)
    digits = pl.col("amount").str.replace(".", "", literal=True).cast(pl.Int64, strict=False)
    amount_minor = digits.cast(pl.Int128) * pl.lit(10, dtype=pl.Int128).pow(
        (minor - decimals).clip(0)
    )
    frame = lines.select(
        "customer_id",
        "currency",
        "amount",
        "components",
        (pl.col("consideration") == "variable").fill_null(False).alias("_variable"),
        pl.lit(10, dtype=pl.Int64).pow(minor).alias("_pow10"),
        pl.when(plain).then(amount_minor).alias("_amount"),
    )
    in_integers = (
        pl.col("_amount").is_not_null()
        & (pl.col("_amount").abs() <= _I64_MAX)
        & (~pl.col("_variable") | pl.col("components").is_not_null())
    )
    decimal_lines = [frame.filter(~in_integers)]
    frame = frame.filter(in_integers)
    variable = frame.filter("_variable").with_columns(
        pl.col("components").str.json_decode(pl.List(_PART)).alias("_parts")
    )
    shared = pl.col("_parts").list.len() > 0
    whole = pl.concat(
        [
            frame.filter(~pl.col("_variable")),
            variable.filter(~shared.fill_null(False)).drop("_parts"),
        ]
    )
    quantities = pl.col("_parts").list.eval(pl.element().struct.field("quantity"))
    variable = variable.filter(shared).with_columns(
        quantities.list.eval(pl.element().cast(pl.Int128)).list.sum().alias("_total"),
        quantities.list.arg_max().alias("_largest"),
        pl.int_ranges(pl.col("_parts").list.len()).alias("_position"),
        (
            ~quantities.list.eval(pl.element().is_null()).list.any()
            & (quantities.list.min() >= 0)
            & (pl.col("_amount").abs() * quantities.list.max() < _EXACT_PRODUCT)
        ).alias("_exact"),
    )
    decimal_lines.append(variable.filter(~pl.col("_exact")).select(frame.columns))
    quantity = pl.col("_parts").struct.field("quantity").cast(pl.Int128)
    cut = pl.when(pl.col("_total") > 0).then(
        truncate_div_expr(pl.col("_amount") * quantity, pl.col("_total"))
    )
    parts = (
        variable.filter("_exact")
        .with_row_index("_line")
        .explode("_parts", "_position", empty_as_null=False)
        .with_columns(cut.fill_null(0).alias("_share"))
        .with_columns(
            pl.when(pl.col("_position") == pl.col("_largest"))
            .then(pl.col("_share") + pl.col("_amount") - pl.col("_share").sum().over("_line"))
            .otherwise(pl.col("_share"))
            .alias("_share")
        )
    )

    def revenue(minor_units: pl.Expr) -> pl.Expr:  # exact: a power of ten at most 10^12
        return (minor_units.cast(COST_DECIMAL) / pl.col("_pow10")).alias("revenue")

    by_integers = [
        whole.select(
            "customer_id",
            pl.lit("subscription").alias("provider"),
            pl.lit("").alias("model"),
            revenue(pl.col("_amount")),
        ),
        parts.select(
            "customer_id",
            pl.col("_parts").struct.field("provider"),
            pl.col("_parts").struct.field("model").fill_null(""),
            revenue(pl.col("_share")),
        ),
    ]
    by_decimal = pl.DataFrame(
        _exact_shares(pl.concat(decimal_lines).select(_LINE)),
        schema=REVENUE_SCHEMA,
        orient="row",
    )
    return (
        pl.concat([*by_integers, by_decimal])
        .group_by("customer_id", "provider", "model")
        .agg(pl.col("revenue").sum())
        .cast(REVENUE_SCHEMA)
        .sort("customer_id", "provider", "model")
    )


def _exact_shares(lines: pl.DataFrame) -> list[tuple[str, str, str, Decimal]]:
    """(customer, provider, model, share) of each line in Decimal, for the lines the integers of
    ``allocate_revenue`` cannot hold: the same rule, written for one line at a time."""
    rows = []
    for customer, currency, amount, components, variable in lines.iter_rows():
        amount = Decimal(amount)
        parts = json.loads(components) if variable else []
        if not parts:
            rows.append((customer, "subscription", "", amount))
            continue
        total = sum(p["quantity"] for p in parts)
        shares = [
            truncate_money(amount * p["quantity"] / total, currency) if total else Decimal(0)
            for p in parts
        ]
        largest = max(range(len(parts)), key=lambda i: parts[i]["quantity"])
        shares[largest] += amount - sum(shares)
        rows.extend(
            (customer, p["provider"], p["model"] or "", share)
            for p, share in zip(parts, shares, strict=True)
        )
    return rows


def reconcile(
    lines: pl.DataFrame, costs: pl.DataFrame, drift: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Margin per customer x provider x model; unattributed cost has customer_id null.

    ``drift`` (``metering_drift``'s table) adds the provider's token count, the amount at stake
    and a ``metering_drift`` flag to the rows of flagged customers."""
    revenue = allocate_revenue(lines)
    cost = costs.group_by(
        "customer_id", "provider", pl.col("model_family").fill_null("").alias("model")
    ).agg(
        pl.sum("quantity"),
        pl.col("cost").sum(),
        (pl.col("cost_basis") == "unpriced").any().alias("_unpriced"),
    )
    joined = (
        cost.join(
            revenue,
            on=["customer_id", "provider", "model"],
            how="full",
            coalesce=True,
            nulls_equal=True,
        )
        .with_columns(
            pl.col("quantity").fill_null(0),
            pl.col("revenue").fill_null(Decimal(0)).cast(COST_DECIMAL),
            pl.col("cost").fill_null(Decimal(0)).cast(COST_DECIMAL),
            pl.col("_unpriced").fill_null(False),
        )
        .with_columns((pl.col("revenue") - pl.col("cost")).cast(COST_DECIMAL).alias("margin"))
    )
    keys = ["customer_id", "provider", "model"]
    if drift is None:
        drift = pl.DataFrame(
            schema={
                **dict.fromkeys(keys, pl.String),
                "reported_tokens": pl.Int64,
                "amount_at_stake": COST_DECIMAL,
                "flagged": pl.Boolean,
            }
        )
    joined = joined.join(
        drift.select(
            *keys,
            "reported_tokens",
            pl.col("amount_at_stake").alias("at_stake"),
            pl.col("flagged").alias("_drift"),
        ),
        on=keys,
        how="left",
    ).with_columns(pl.col("_drift").fill_null(False))
    flags = pl.concat_str(
        [
            pl.when(pl.col("customer_id").is_null()).then(pl.lit("unattributed")),
            pl.when(pl.col("customer_id").is_not_null() & (pl.col("margin") < 0)).then(
                pl.lit("negative_margin")
            ),
            pl.when(
                (pl.col("revenue") > 0)
                & (pl.col("cost") == 0)
                & (pl.col("provider") != "subscription")
            ).then(pl.lit("revenue_without_cost")),
            pl.when(
                pl.col("customer_id").is_not_null()
                & (pl.col("revenue") == 0)
                & (pl.col("cost") > 0)
            ).then(pl.lit("cost_without_revenue")),
            pl.when(pl.col("_unpriced")).then(pl.lit("unpriced")),
            pl.when(pl.col("_drift")).then(pl.lit("metering_drift")),
        ],
        separator=",",
        ignore_nulls=True,
    )
    return (
        joined.with_columns(
            pl.when(pl.col("revenue") != 0)
            .then(
                (
                    pl.col("margin").cast(pl.Float64) / pl.col("revenue").cast(pl.Float64) * 100
                ).round(2)
            )
            .alias("margin_pct"),
            flags.alias("flags"),
        )
        .select(list(RECONCILIATION_SCHEMA))
        .cast(RECONCILIATION_SCHEMA)
        .sort("customer_id", "provider", "model", nulls_last=True)
    )
