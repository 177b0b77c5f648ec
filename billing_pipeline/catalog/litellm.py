"""Build the provider price book (our cost side) from LiteLLM's public price list.

LiteLLM gives USD per token as JSON floats (``2.5e-06``). Each goes through ``Decimal(str(x))``
(the shortest repr, i.e. the number the file's authors wrote, not the binary float) and is
scaled to a price per 1M units (tokens; characters and seconds for the audio endpoints), exactly
(per 1M, the OpenAI, Anthropic and Mistral prices have at most 12 decimals, the cost calculator's
limit; per second some would not). The file's sha256 is recorded with the entries so a price book
can be traced to the exact list it came from.

A LiteLLM field is a base price (``input_cost_per_token``, ``cache_read_input_audio_token_cost``,
...: one of our meters) plus variant suffixes, each of which becomes a dimension the READERS emit
on the same usage, so the entry prices exactly that usage:

- ``_batches``: OpenAI ``{batch: "true"}`` (its Usage API's ``batch: true``, canonical JSON
  ``true``); Anthropic ``{service_tier: batch}`` (its usage report's tier);
- ``_priority`` / ``_flex``: ``{service_tier: priority}`` / ``{service_tier: flex}``;
- ``_above_1hr`` (cache writes): ``{cache_ttl: 1h}`` (the plain cache-write price is the 5-minute one);
- ``_above_200k_tokens``: Anthropic ``{context_window: 200k-1M}`` (its usage report's bucket).

A variant no reader can tell apart (OpenAI ``_above_272k_tokens``: the Usage API does not say
which requests were long; Anthropic ``_above_100k_tokens``: no such context_window bucket;
``_ultrafast``, ``_above_12hr``, audio cache writes, per-image or per-pixel prices) is not
guessed into an entry that would never match, or match the wrong usage: it is listed in
``skipped`` with the reason. Entries are ordered plain first, then by number of dimensions: the
price book's LAST matching entry wins, so a batch long-context price beats the batch price.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path

import yaml

from billing_pipeline.money import fmt_price
from billing_pipeline.providers import LITELLM_PROVIDERS

# LiteLLM base field -> our meter. A field is a base plus variant suffixes (see the docstring).
BASES: dict[str, str] = {
    "input_cost_per_token": "input_tokens",
    "output_cost_per_token": "output_tokens",
    "cache_read_input_token_cost": "cached_input_tokens",
    "cache_creation_input_token_cost": "cache_write_tokens",
    "input_cost_per_audio_token": "audio_input_tokens",
    "output_cost_per_audio_token": "audio_output_tokens",
    "cache_read_input_audio_token_cost": "cached_audio_input_tokens",
    "input_cost_per_image_token": "image_input_tokens",
    "output_cost_per_image_token": "image_output_tokens",
    "cache_read_input_image_token_cost": "cached_image_input_tokens",
    # the OpenAI audio endpoints' meters (openai_endpoints): speech characters, transcribed seconds
    "input_cost_per_character": "characters",
    "input_cost_per_second": "audio_seconds",
}
BATCH = "_batches"
LONG_CONTEXT = "_above_200k_tokens"
ONE_HOUR = "_above_1hr"
TIERS = {"_priority": "priority", "_flex": "flex"}
_OTHER_CONTEXT = re.compile(r"_above_(\d+k)_tokens")
PER = 1_000_000


def variant_dimensions(
    provider: str, base: str, rest: str
) -> tuple[dict[str, str] | None, str | None]:
    """(dimensions, None) for the suffixes ``rest`` of a base field, or (None, why it is skipped)."""
    dims: dict[str, str] = {}
    while rest:
        if rest.startswith(ONE_HOUR) and base == "cache_creation_input_token_cost":
            dims["cache_ttl"], rest = "1h", rest[len(ONE_HOUR) :]
        elif rest.startswith(LONG_CONTEXT):
            if provider != "anthropic":
                return None, f"no {provider} reader tells long-context requests apart"
            dims["context_window"], rest = "200k-1M", rest[len(LONG_CONTEXT) :]
        elif rest.startswith(BATCH):
            if provider == "openai":
                dims["batch"] = "true"
            else:
                dims["service_tier"] = "batch"
            rest = rest[len(BATCH) :]
        elif any(rest.startswith(t) for t in TIERS):
            suffix = next(t for t in TIERS if rest.startswith(t))
            dims["service_tier"], rest = TIERS[suffix], rest[len(suffix) :]
        elif _OTHER_CONTEXT.match(rest):
            return (
                None,
                f"no reader tells requests over the {_OTHER_CONTEXT.match(rest)[1]} tokens of {rest!r} apart",
            )
        else:
            return None, f"variant {rest!r} matches no dimension the readers emit"
    return dims, None


def parse_field(provider: str, field: str) -> tuple[str | None, dict[str, str] | None, str | None]:
    """(meter, dimensions, None) for a LiteLLM price field, or (None, None, why it is skipped)."""
    base = max((b for b in BASES if field == b or field.startswith(b + "_")), key=len, default=None)
    if base is None:
        return None, None, "not a per-token price of a meter we read"
    dims, why = variant_dimensions(provider, base, field[len(base) :])
    if why:
        return None, None, why
    return BASES[base], dims, None


class LiteLLMError(ValueError):
    """The price list cannot be read; the message names the file and the entry."""


def per_million(value: object, where: str) -> str:
    """USD per unit (a JSON number) -> exact decimal string per 1M units."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LiteLLMError(f"{where}: expected a number, got {value!r}")
    price = (Decimal(str(value)) * PER).normalize()
    if price < 0:
        raise LiteLLMError(f"{where}: negative price {value!r}")
    return fmt_price(price)  # at least two decimals: 2.50, 0.11, 0.0375


def price_book_from_litellm(
    path: str | Path,
    providers: list[str],
    effective_from: dt.date,
    skipped: list[tuple[str, str, str]] | None = None,
) -> tuple[list[dict], str]:
    """(price_book entries, sha256 of the file) for the models of ``providers``.

    ``skipped``, when given, receives (model key, field, why) for every price field not imported."""
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
        if (
            key == "sample_spec"
            or not isinstance(spec, dict)
            or spec.get("litellm_provider") not in wanted
        ):
            continue
        litellm_provider = spec["litellm_provider"]
        model = key.split("/", 1)[1] if key.startswith(litellm_provider + "/") else key
        provider = LITELLM_PROVIDERS.get(litellm_provider, litellm_provider)  # the usage's name
        for field in spec:
            if "cost" not in field or spec[field] is None:
                continue
            meter, dimensions, why = parse_field(provider, field)
            if why:
                if skipped is not None:
                    skipped.append((key, field, why))
                continue
            entry = {"provider": provider, "models": [model], "meter": meter}
            if dimensions:
                entry["dimensions"] = dict(sorted(dimensions.items()))
            entry.update(
                unit_size=PER,
                unit_price=per_million(spec[field], f"{path}: {key}.{field}"),
                **{"from": effective_from.isoformat()},
            )
            entries.append(entry)
    # plain entries first, then by how many dimensions narrow them: the last match wins
    entries.sort(key=lambda e: len(e.get("dimensions") or {}))
    return entries, sha256


def write_price_book(
    entries: list[dict], sha256: str, source: Path, out: Path, previous: Path | None = None
) -> None:
    """A YAML file with a ``price_book:`` list to paste into the catalog; the header names the
    source (and the price book it updated)."""
    updated = f"# updating {previous.name}: unchanged prices keep their dates\n" if previous else ""
    header = (
        f"# Provider price book imported from {source.name}\n# sha256 {sha256}\n{updated}"
        f"# {len(entries)} entries, USD; prices per 1,000,000 units (tokens, characters, seconds)\n"
    )
    entries = [
        {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in e.items()} for e in entries
    ]
    body = yaml.safe_dump({"price_book": entries}, sort_keys=False, allow_unicode=True, width=120)
    out.write_text(header + body, encoding="utf-8")


def _entry_key(entry: dict) -> tuple:
    dims = tuple(sorted((entry.get("dimensions") or {}).items()))
    return (entry["provider"], tuple(entry.get("models") or ()), entry["meter"], dims)


def _day(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def read_price_book(path: str | Path) -> list[dict]:
    """The ``price_book`` list of a YAML file (one ``write_price_book`` wrote, or a catalog)."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LiteLLMError(f"{path}: cannot read the price book: {exc}") from None
    entries = document.get("price_book") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise LiteLLMError(f"{path}: no price_book list")
    return entries


def update_price_book(
    previous: list[dict], imported: list[dict], effective_from: dt.date
) -> tuple[list[dict], dict[str, int]]:
    """The price book kept current: ``previous`` with ``imported`` (all from ``effective_from``)
    merged in, and counts of what happened.

    An entry whose price is unchanged stays as it was (no new date: nothing splits); a changed
    one is closed the day before (``to``) and followed by the new price from ``effective_from``,
    so a month with the change is split by date; a new one is added; a previous entry the list
    no longer has is kept (we may still be billed for it). Closed entries are history, kept as
    they are. Plain entries first, then by how many dimensions they carry (the last match wins)."""
    from_day = effective_from
    current = {_entry_key(e): e for e in imported}
    out: list[dict] = []
    counts = {"unchanged": 0, "changed": 0, "added": 0, "kept": 0}
    seen: set[tuple] = set()
    for entry in previous:
        start, end = _day(entry.get("from")), _day(entry.get("to"))
        key = _entry_key(entry)
        open_then = start is not None and start <= from_day and (end is None or end >= from_day)
        if not open_then or key not in current or key in seen:
            if open_then and key not in current:
                counts["kept"] += 1
            out.append(entry)
            continue
        seen.add(key)
        new = current[key]
        if Decimal(str(new["unit_price"])) == Decimal(str(entry["unit_price"])) and int(
            new.get("unit_size", 1)
        ) == int(entry.get("unit_size", 1)):
            counts["unchanged"] += 1
            out.append(entry)
            continue
        counts["changed"] += 1
        if start < from_day:  # the same day again: the new price replaces it
            out.append({**entry, "to": (from_day - dt.timedelta(days=1)).isoformat()})
        out.append(new)
    for key, new in current.items():
        if key not in seen:
            counts["added"] += 1
            out.append(new)
    out.sort(key=lambda e: len(e.get("dimensions") or {}))
    return out, counts
