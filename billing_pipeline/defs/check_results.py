"""A domain check's ``CheckOutcome`` (billing_pipeline/checks.py) as Dagster's ``AssetCheckResult``."""

import dagster as dg

from billing_pipeline.checks import ERROR, WARN, CheckOutcome, Markdown

SEVERITY = {ERROR: dg.AssetCheckSeverity.ERROR, WARN: dg.AssetCheckSeverity.WARN}


def metadata_value(value: object) -> object:
    """Markdown as Markdown, dicts as JSON; text, numbers and booleans as Dagster reads them."""
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(str(value))
    if isinstance(value, dict):
        return dg.MetadataValue.json(value)
    return value


def check_result(
    check_name: str, outcome: CheckOutcome, asset_key: str | None = None
) -> dg.AssetCheckResult:
    """The check result a multi-asset yields (``asset_key`` when it checks one of several assets)."""
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=outcome.passed,
        severity=SEVERITY[outcome.severity],
        description=outcome.description,
        metadata={key: metadata_value(value) for key, value in outcome.metadata.items()},
    )
