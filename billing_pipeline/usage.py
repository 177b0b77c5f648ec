"""From what the sources read to the canonical usage table: deduplicated and attributed.

A record seen twice (the same export ingested twice, overlapping exports, a re-fetched page)
counts once; the extra copies go to quarantine as ``duplicate`` so rows in = events + quarantine
still holds. The same natural key with different quantities is a ``conflict``: every copy is
quarantined, nothing is overwritten. Usage nobody owns keeps ``customer_id = null``.
"""

from __future__ import annotations

import re

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.schema import QUARANTINE_SCHEMA, USAGE_SCHEMA, conform

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def deduplicate(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep one copy of each source record; quarantine extra copies and conflicting versions.

    Only records read from more than one origin can be copies, so the payload comparison runs on
    those alone; the rest pass straight through.
    """
    repeated = (
        events.lazy().group_by("record_id").agg(pl.col("origin").n_unique().alias("_origins"))
        .filter(pl.col("_origins") > 1).select("record_id").collect()
    )
    if repeated.height == 0:  # the usual month: nothing read twice, no join over every event
        return conform(events, USAGE_SCHEMA), pl.DataFrame(schema=QUARANTINE_SCHEMA)
    repeated = repeated.lazy()
    single = events.lazy().join(repeated, on="record_id", how="anti")
    copies = (
        events.lazy().join(repeated, on="record_id", how="semi")
        .group_by("record_id", "origin")
        .agg(
            pl.concat_str([pl.col("meter"), pl.col("quantity").cast(pl.String)], separator="=")
            .sort()
            .str.join(";")
            .alias("payload"),
            pl.first("source"),
            pl.first("day"),
        )
        .with_columns(
            pl.col("payload").n_unique().over("record_id").alias("versions"),
            (pl.col("origin") == pl.col("origin").min().over("record_id")).alias("first_copy"),
        )
    )
    keep = copies.filter((pl.col("versions") == 1) & pl.col("first_copy")).select("record_id", "origin")
    rejected = copies.filter(~((pl.col("versions") == 1) & pl.col("first_copy"))).with_columns(
        pl.when(pl.col("versions") > 1)
        .then(pl.lit("conflict"))
        .otherwise(pl.lit("duplicate"))
        .alias("reason"),
        pl.lit("").alias("field"),
        pl.when(pl.col("versions") > 1)
        .then(pl.lit("the same record arrived with different quantities; none is billed until resolved"))
        .otherwise(pl.lit("the same record was already read from another file; counted once"))
        .alias("message"),
        pl.col("payload").alias("raw"),
    )
    kept = pl.concat([single, events.lazy().join(keep, on=["record_id", "origin"], how="semi")])
    return conform(kept, USAGE_SCHEMA), conform(rejected, QUARANTINE_SCHEMA)


def _glob_regex(glob: str) -> str:
    return "^" + re.escape(glob).replace(r"\*", ".*").replace(r"\?", ".") + "$"


def json_field(column: str, key: str) -> pl.Expr:
    """A top-level string field of a JSON object column (dimensions, tags)."""
    path = f"$.{key}" if _IDENTIFIER.match(key) else f"$['{key}']"
    return pl.col(column).str.json_path_match(path)


def models_match(globs: list[str] | None) -> pl.Expr:
    """Whether the row's model id or its family matches any of the catalog globs."""
    if globs is None:
        return pl.lit(True)
    pattern = "|".join(f"(?:{_glob_regex(g)})" for g in globs)
    return pl.col("model").str.contains(pattern) | pl.col("model_family").str.contains(pattern)


def dimensions_match(dimensions: dict[str, str] | None) -> pl.Expr:
    expr = pl.lit(True)
    for key, value in (dimensions or {}).items():
        expr = expr & (json_field("dimensions", key) == value).fill_null(False)
    return expr


def attribute(events: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """Fill ``customer_id`` from the catalog's keys, tags (cloud resources) and customer ids."""
    pairs = [(key, cid) for cid, c in catalog.customers.items() for key in c.keys]
    pairs += [(f"customer:{cid}", cid) for cid in catalog.customers]
    keys = pl.DataFrame(
        {"account_key": [k for k, _ in pairs], "_by_key": [c for _, c in pairs]},
        schema={"account_key": pl.String, "_by_key": pl.String},
    )
    tags = pl.col("account_key").str.strip_prefix("tags:")
    by_tags = pl.lit(None, dtype=pl.String)
    for cid, customer in reversed(list(catalog.customers.items())):
        if not customer.tags:
            continue
        cond = pl.col("account_key").str.starts_with("tags:")
        for key, value in customer.tags.items():
            path = f"$.{key}" if _IDENTIFIER.match(key) else f"$['{key}']"
            cond = cond & (tags.str.json_path_match(path) == value).fill_null(False)
        by_tags = pl.when(cond).then(pl.lit(cid)).otherwise(by_tags)
    dated = [(k.key, cid, k.from_, k.to) for cid, c in catalog.customers.items() for k in c.dated_keys]
    by_key = _dated_owners(events, keys, dated) if dated else events.lazy().join(keys.lazy(), on="account_key", how="left")
    return (
        by_key
        .with_columns(pl.coalesce("_by_key", by_tags).alias("customer_id"))
        .drop("_by_key")
        .select(list(USAGE_SCHEMA))
        .collect()
    )


def _dated_owners(events: pl.DataFrame, keys: pl.DataFrame, dated: list[tuple]) -> pl.LazyFrame:
    """Owner of each event's key on the event's day; a key two customers claim that day is
    left unattributed (reported), never billed twice."""
    owners = pl.concat([
        keys.with_columns(pl.lit(None, pl.Date).alias("_from"), pl.lit(None, pl.Date).alias("_to")),
        pl.DataFrame(dated, schema={"account_key": pl.String, "_by_key": pl.String, "_from": pl.Date, "_to": pl.Date},
                     orient="row"),
    ])
    ev = events.lazy().with_row_index("_row")
    in_effect = (pl.col("_from").is_null() | (pl.col("day") >= pl.col("_from"))) & (
        pl.col("_to").is_null() | (pl.col("day") <= pl.col("_to")))
    claims = (
        ev.select("_row", "account_key", "day")
        .join(owners.lazy(), on="account_key", how="inner")
        .filter(in_effect)
        .group_by("_row")
        .agg(pl.col("_by_key").unique())
        .select("_row", pl.when(pl.col("_by_key").list.len() == 1).then(pl.col("_by_key").list.first()).alias("_by_key"))
    )
    return ev.join(claims, on="_row", how="left").drop("_row")


def normalize(
    events: list[pl.DataFrame], quarantine: list[pl.DataFrame], catalog: Catalog
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Sources' rows in, the canonical usage table and the full quarantine out."""
    all_events = pl.concat([conform(e, USAGE_SCHEMA) for e in events]) if events else conform(pl.DataFrame(), USAGE_SCHEMA)
    kept, rejected = deduplicate(all_events)
    attributed = attribute(kept, catalog).sort("day", "source", "origin", "meter", "event_id")
    all_quarantine = pl.concat([conform(q, QUARANTINE_SCHEMA) for q in [*quarantine, rejected]])
    return attributed, all_quarantine.sort("day", "source", "origin", "reason", "field", "raw")
