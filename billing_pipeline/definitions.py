"""The code location `dagster dev -w workspace.yaml` loads (resources from the environment)."""

from billing_pipeline.defs import build_definitions

defs = build_definitions()
