"""Metering drift: how far a provider's reported token counts are from our own recount.

Where a gateway line carries both the provider's ``usage`` and the prompt/completion text, the
text is recounted with the model family's offline tokenizer (``billing_pipeline.tokens``) and
compared per model: drift = provider - ours, drift % = (provider - ours) / ours * 100. A provider
that reports 850 tokens for text we count as 1,000 shows -15 %. Chat requests carry a few
formatting tokens per message that are not in the raw text, so a small positive input drift is
normal; a large or growing one (either sign) means we bill from wrong counts.

Models without an offline tokenizer (Claude, unknown ids) are listed with null counts and
``tokenizer`` null: never guessed.
"""

from __future__ import annotations

import polars as pl

from billing_pipeline import tokens

SAMPLE_SCHEMA = {
    "day": pl.Date,
    "model": pl.String,
    "provider_input": pl.Int64,
    "provider_output": pl.Int64,
    "prompt": pl.String,
    "completion": pl.String,
}
DRIFT_SCHEMA = {
    "day": pl.Date,
    "model": pl.String,
    "tokenizer": pl.String,
    "lines": pl.Int64,
    "provider_input": pl.Int64,
    "counted_input": pl.Int64,
    "input_drift": pl.Int64,
    "input_drift_pct": pl.Float64,
    "provider_output": pl.Int64,
    "counted_output": pl.Int64,
    "output_drift": pl.Int64,
    "output_drift_pct": pl.Float64,
    "provider_total": pl.Int64,
    "counted_total": pl.Int64,
    "drift": pl.Int64,
    "drift_pct": pl.Float64,
}


def empty_sample() -> pl.DataFrame:
    return pl.DataFrame(schema=SAMPLE_SCHEMA)


def _pct(drift: str, counted: str) -> pl.Expr:
    """Percent of our count, rounded to 0.01; null when we counted nothing (no base to compare)."""
    return pl.when(pl.col(counted) > 0).then((pl.col(drift) / pl.col(counted) * 100).round(2))


def drift_by_model(sample: pl.DataFrame) -> pl.DataFrame:
    """``sample`` (day, model, provider_input, provider_output, prompt, completion), one row per
    line -> one row per day and model (DRIFT_SCHEMA), sorted. One tokenizer batch per group."""
    rows = []
    for (day, model), group in sample.group_by(["day", "model"], maintain_order=True):
        name = tokens.tokenizer_for(model)
        counted_in = counted_out = None
        if name is not None:
            counted_in = sum(tokens.count_tokens(model, group["prompt"].fill_null("").to_list()))
            counted_out = sum(
                tokens.count_tokens(model, group["completion"].fill_null("").to_list())
            )
        rows.append(
            {
                "day": day,
                "model": model,
                "tokenizer": name,
                "lines": group.height,
                "provider_input": int(group["provider_input"].sum()),
                "counted_input": counted_in,
                "provider_output": int(group["provider_output"].sum()),
                "counted_output": counted_out,
            }
        )
    frame = pl.DataFrame(
        rows,
        schema={
            k: DRIFT_SCHEMA[k]
            for k in (
                "day",
                "model",
                "tokenizer",
                "lines",
                "provider_input",
                "counted_input",
                "provider_output",
                "counted_output",
            )
        },
    )
    frame = (
        frame.with_columns(
            provider_total=pl.col("provider_input") + pl.col("provider_output"),
            counted_total=pl.col("counted_input") + pl.col("counted_output"),
            input_drift=pl.col("provider_input") - pl.col("counted_input"),
            output_drift=pl.col("provider_output") - pl.col("counted_output"),
        )
        .with_columns(
            drift=pl.col("provider_total") - pl.col("counted_total"),
        )
        .with_columns(
            input_drift_pct=_pct("input_drift", "counted_input"),
            output_drift_pct=_pct("output_drift", "counted_output"),
            drift_pct=_pct("drift", "counted_total"),
        )
    )
    return frame.select(list(DRIFT_SCHEMA)).sort("day", "model")
