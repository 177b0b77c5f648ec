"""Build the provider price book (our cost side) from LiteLLM's public price list.

LiteLLM gives USD per token as JSON floats (``2.5e-06``). Each goes through ``Decimal(str(x))``
(the shortest repr, i.e. the number the file's authors wrote, not the binary float) and is
scaled to a price per 1M tokens, exactly. The file's sha256 is recorded with the entries so a
price book can be traced to the exact list it came from.

Variants become dimensions on the usage rows the sources already emit: batch prices
``{service_tier: batch}``, one-hour cache writes ``{cache_ttl: 1h}`` (the plain cache-write price
is the 5-minute one). The price book's latest matching entry wins, so variants come after the
plain entry of the same model and meter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from pathlib import Path

import yaml

from billing_pipeline.money import fmt_price

# (LiteLLM field, our meter, dimensions), plain entries first: later entries override earlier ones.
FIELDS: list[tuple[str, str, dict[str, str] | None]] = [
    ("input_cost_per_token", "input_tokens", None),
    ("output_cost_per_token", "output_tokens", None),
    ("cache_read_input_token_cost", "cached_input_tokens", None),
    ("cache_creation_input_token_cost", "cache_write_tokens", None),
    ("cache_creation_input_token_cost_above_1hr", "cache_write_tokens", {"cache_ttl": "1h"}),
    ("input_cost_per_token_batches", "input_tokens", {"service_tier": "batch"}),
    ("output_cost_per_token_batches", "output_tokens", {"service_tier": "batch"}),
    ("cache_read_input_token_cost_batches", "cached_input_tokens", {"service_tier": "batch"}),
    ("cache_creation_input_token_cost_batches", "cache_write_tokens", {"service_tier": "batch"}),
]
PER = 1_000_000


class LiteLLMError(ValueError):
    """The price list cannot be read; the message names the file and the entry."""


def per_million(value: object, where: str) -> str:
    """USD per token (a JSON number) -> exact decimal string per 1M tokens."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LiteLLMError(f"{where}: expected a number, got {value!r}")
    price = (Decimal(str(value)) * PER).normalize()
    if price < 0:
        raise LiteLLMError(f"{where}: negative price {value!r}")
    return fmt_price(price)  # at least two decimals: 2.50, 0.11, 0.0375


def price_book_from_litellm(path: str | Path, providers: list[str], effective_from: dt.date) -> tuple[list[dict], str]:
    """(price_book entries, sha256 of the file) for the models of ``providers``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        document = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise LiteLLMError(f"{path}: cannot read the LiteLLM price list: {exc}") from None
    if not isinstance(document, dict):
        raise LiteLLMError(f"{path}: expected a JSON object of models")
    sha256 = hashlib.sha256(raw).hexdigest()
    wanted = set(providers)
    entries = []
    for key in sorted(document):
        spec = document[key]
        if key == "sample_spec" or not isinstance(spec, dict) or spec.get("litellm_provider") not in wanted:
            continue
        provider = spec["litellm_provider"]
        model = key.split("/", 1)[1] if key.startswith(provider + "/") else key
        for field, meter, dimensions in FIELDS:
            if spec.get(field) is None:
                continue
            entry = {"provider": provider, "models": [model], "meter": meter}
            if dimensions:
                entry["dimensions"] = dict(dimensions)
            entry.update(unit_size=PER, unit_price=per_million(spec[field], f"{path}: {key}.{field}"),
                         **{"from": effective_from.isoformat()})
            entries.append(entry)
    return entries, sha256


def write_price_book(entries: list[dict], sha256: str, source: Path, out: Path) -> None:
    """A YAML file with a ``price_book:`` list to paste into the catalog; the header names the source."""
    header = (f"# Provider price book imported from {source.name}\n# sha256 {sha256}\n"
              f"# {len(entries)} entries, USD; prices per 1,000,000 tokens\n")
    body = yaml.safe_dump({"price_book": entries}, sort_keys=False, allow_unicode=True, width=120)
    out.write_text(header + body, encoding="utf-8")
