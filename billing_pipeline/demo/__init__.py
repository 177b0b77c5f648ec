"""Demo data: a month of provider exports and a matching catalog (``write_demo``)."""

from billing_pipeline.demo.generator import DemoSummary, landing_is_empty, write_demo

__all__ = ["DemoSummary", "landing_is_empty", "write_demo"]
