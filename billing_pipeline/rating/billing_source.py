"""One source of truth per customer and provider: the gateway log OR the provider's usage report.

A customer whose requests go through our gateway to OpenAI shows up twice: once in the gateway
log (``gateway:acme``) and once in OpenAI's Usage API for the customer's project
(``openai:proj_acme``). Rating both bills the same tokens twice. The catalog says which one bills
(``billing_source``, per provider, overridable per customer; default: the provider's report, the
number the provider charges us by); the other is set aside, still read, and still feeds the
metering-drift report, which compares the two.

Rules (per customer x provider x month, attributed usage only):
- only the gateway logs (ours, and a LiteLLM proxy's spend logs) and the providers' usage
  reports compete; every other source (cloud
  exports, outcomes) is always billed, and unattributed usage is left as it is (it bills nobody);
- a provider we have no usage-report reader for (e.g. mistral) defaults to the gateway log;
- when the authoritative source has NO usage for the pair in the month but the other source does,
  the other source is billed and the pair is reported as a fallback (``fallback`` = true): money
  is never dropped because the catalog's choice of source had nothing to say. A partial month in
  the authoritative source is a landing-zone problem (money at risk in quarantine), not a
  fallback: the set-aside source is not mixed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from billing_pipeline.catalog.model import Catalog

GATEWAY_LOG = "gateway_log"
PROVIDER_REPORT = "provider_report"
BILLING_SOURCES = (PROVIDER_REPORT, GATEWAY_LOG)

# Which usage rows belong to each side (the same lists as reconcile/drift.py's metering drift).
# A LiteLLM proxy is a gateway too: its spend logs are the gateway side (``gateway_log`` in the
# catalog's ``billing_source``).
GATEWAY_SOURCES = ("gateway_log", "litellm_spend_logs")
PROVIDER_REPORT_SOURCES = {"openai": "openai_usage_api", "anthropic": "anthropic_usage_report"}

DECISION_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "provider": pl.String,
    "authoritative": pl.String,  # provider_report | gateway_log: what the catalog says
    "billed_from": pl.String,  # what was billed: the authoritative source, or the other on fallback
    "fallback": pl.Boolean,  # the authoritative source had no usage: the other one was billed
    "gateway_units": pl.Int64,
    "report_units": pl.Int64,
    "set_aside_units": pl.Int64,
}


@dataclass(frozen=True)
class BillingSourceSplit:
    # USAGE_SCHEMA: what rating sees; a LazyFrame when the usage given was one and no pair has
    # usage on both sides (nothing to set aside: the scan is handed on, not read into memory)
    billable: pl.DataFrame | pl.LazyFrame
    set_aside: pl.DataFrame | pl.LazyFrame  # USAGE_SCHEMA: the non-authoritative source's usage
    decisions: (
        pl.DataFrame
    )  # DECISION_SCHEMA: one row per customer x provider both sides could bill

    @property
    def fallbacks(self) -> pl.DataFrame:
        return self.decisions.filter(pl.col("fallback"))

    def set_aside_by_source(self) -> dict[str, int]:
        """Units set aside per source (attributed by construction): what the rated check adds to
        rated + included + unrated so that every attributed unit is accounted for."""
        rows = (
            self.set_aside.lazy()
            .group_by("source")
            .agg(pl.col("quantity").sum())
            .sort("source")
            .collect()
        )
        return {source: int(units) for source, units in rows.iter_rows()}


def _side_expr() -> pl.Expr:
    """gateway_log | provider_report | null (a source that never competes)."""
    report = pl.lit(None, dtype=pl.String)
    for provider, source in PROVIDER_REPORT_SOURCES.items():
        report = (
            pl.when((pl.col("source") == source) & (pl.col("provider") == provider))
            .then(pl.lit(PROVIDER_REPORT))
            .otherwise(report)
        )
    return (
        pl.when(pl.col("source").is_in(GATEWAY_SOURCES)).then(pl.lit(GATEWAY_LOG)).otherwise(report)
    )


def _choices(catalog: Catalog) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(customer overrides: customer_id, provider, choice; catalog defaults: provider, choice)."""
    overrides = pl.DataFrame(
        [
            (cid, provider, source)
            for cid, c in catalog.customers.items()
            for provider, source in c.billing_source.items()
        ],
        schema={"customer_id": pl.String, "provider": pl.String, "customer_choice": pl.String},
        orient="row",
    )
    defaults = pl.DataFrame(
        list(catalog.billing_source.items()),
        schema={"provider": pl.String, "catalog_choice": pl.String},
        orient="row",
    )
    return overrides, defaults


def split_billing_source(
    usage: pl.DataFrame | pl.LazyFrame, catalog: Catalog
) -> BillingSourceSplit:
    """Usage -> (billable, set aside, decisions): per customer x provider, only the authoritative
    source of the gateway log and the provider's report is billed (see the module docstring).

    A scan (``pl.LazyFrame``) is read for the decisions only (four columns, summed as read) and
    handed on as the billable usage when no pair has usage on both sides; otherwise the month is
    read into memory and split row by row, as a DataFrame always is."""
    side = (
        pl.when(pl.col("customer_id").is_not_null() & pl.col("provider").is_not_null())
        .then(_side_expr())
        .alias("_side")
    )
    pair = ["customer_id", "provider"]

    # Four columns decide, in streaming passes, and the month is split by one mask at most: a
    # month of usage is never copied whole on the way (10 M events: ~3.5 GB less at the peak).
    def tagged(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
        return frame.lazy().select(*pair, "source", "quantity").with_columns(side)

    units = (
        tagged(usage)
        .filter(pl.col("_side").is_not_null())
        .group_by(pair)
        .agg(
            pl.col("quantity").filter(pl.col("_side") == GATEWAY_LOG).sum().alias("gateway_units"),
            pl.col("quantity")
            .filter(pl.col("_side") == PROVIDER_REPORT)
            .sum()
            .alias("report_units"),
            (pl.col("_side") == GATEWAY_LOG).any().alias("_has_gateway"),
            (pl.col("_side") == PROVIDER_REPORT).any().alias("_has_report"),
        )
        .collect(engine="streaming")
    )
    overrides, defaults = _choices(catalog)
    default = (
        pl.when(pl.col("provider").is_in(list(PROVIDER_REPORT_SOURCES)))
        .then(pl.lit(PROVIDER_REPORT))
        .otherwise(pl.lit(GATEWAY_LOG))
    )
    has = {GATEWAY_LOG: pl.col("_has_gateway"), PROVIDER_REPORT: pl.col("_has_report")}
    other = (
        pl.when(pl.col("authoritative") == GATEWAY_LOG)
        .then(pl.lit(PROVIDER_REPORT))
        .otherwise(pl.lit(GATEWAY_LOG))
    )
    authoritative_present = (
        pl.when(pl.col("authoritative") == GATEWAY_LOG)
        .then(has[GATEWAY_LOG])
        .otherwise(has[PROVIDER_REPORT])
    )
    decided = (
        units.join(overrides, on=pair, how="left")
        .join(defaults, on="provider", how="left")
        .with_columns(
            pl.coalesce("customer_choice", "catalog_choice", default).alias("authoritative")
        )
        .with_columns(authoritative_present.alias("_present"))
        .with_columns(
            pl.when(pl.col("_present"))
            .then(pl.col("authoritative"))
            .otherwise(other)
            .alias("billed_from"),
            (~pl.col("_present")).alias("fallback"),
        )
        .with_columns(
            pl.when(pl.col("billed_from") == GATEWAY_LOG)
            .then(pl.col("report_units"))
            .otherwise(pl.col("gateway_units"))
            .alias("set_aside_units")
        )
    )
    decisions = decided.select(list(DECISION_SCHEMA)).cast(DECISION_SCHEMA).sort(pair)
    # Only a pair with usage on both sides has rows set aside (one side bills).
    both = decided.filter(pl.col("_has_gateway") & pl.col("_has_report"))
    if both.is_empty():
        return BillingSourceSplit(billable=usage, set_aside=usage.clear(), decisions=decisions)
    # rows to set aside: a scan is read into memory here, and the month split by one mask
    frame = usage.collect() if isinstance(usage, pl.LazyFrame) else usage
    aside = pl.col("_side").is_not_null() & (pl.col("_side") != pl.col("billed_from"))
    aside = (
        tagged(frame)
        .join(both.lazy().select(*pair, "billed_from"), on=pair, how="left", maintain_order="left")
        .select(aside.fill_null(False))
        .collect()
        .to_series()
    )
    return BillingSourceSplit(
        billable=frame.filter(~aside), set_aside=frame.filter(aside), decisions=decisions
    )
