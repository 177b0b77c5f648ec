"""Plans, customers and the provider price book."""

from billing_pipeline.catalog.loader import CatalogError, load_catalog, parse_catalog
from billing_pipeline.catalog.model import Catalog, Charge, Customer, Plan, PriceBookEntry, Tier

__all__ = [
    "Catalog",
    "CatalogError",
    "Charge",
    "Customer",
    "Plan",
    "PriceBookEntry",
    "Tier",
    "load_catalog",
    "parse_catalog",
]
