"""The demo catalog: issuer, three plans, the price book, and ~22 customers with usage profiles.

Everything here is plain data. ``demo_customers`` draws the random parts (key ids, volumes) from
the generator's ``random.Random`` so the same seed always gives the same catalog.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from dataclasses import dataclass, field

from billing_pipeline.demo import litellm
from billing_pipeline.providers import provider_of

ISSUER = {
    "name": "Example AI GmbH",
    "address": "Torstraße 100, 10119 Berlin, Germany",
    "vat_id": "DE123456789",
    "email": "billing@example-ai.example",
    "invoice_prefix": "INV",
    "payment_terms_days": 30,
}

# Model families and the globs that claim them without claiming a neighbour: "gpt-4o*" would also
# claim gpt-4o-mini, so dated snapshots are matched with "-20*" and Mistral's "-YYMM" with "-2*".
FAMILY_GLOBS = {
    "gpt-4o": ["gpt-4o", "gpt-4o-20*"],
    "gpt-4o-mini": ["gpt-4o-mini", "gpt-4o-mini-20*"],
    "claude-sonnet-4-5": ["claude-sonnet-4-5", "claude-sonnet-4-5-20*"],
    "claude-haiku-4-5": ["claude-haiku-4-5", "claude-haiku-4-5-20*"],
    "mistral-large": ["mistral-large", "mistral-large-2*"],
    "mistral-small": ["mistral-small", "mistral-small-2*"],
    "gpt-4.1": ["gpt-4.1", "gpt-4.1-20*"],  # only Pinnacle's LiteLLM proxy calls it
}

# Our cost per 1,000,000 tokens: (input, cached input, cache write, output); None = no such meter.
COST_PER_M = {
    "gpt-4o": ("2.50", "1.25", None, "10.00"),
    "gpt-4o-mini": ("0.15", "0.075", None, "0.60"),
    "claude-sonnet-4-5": ("3.00", "0.30", "3.75", "15.00"),
    "claude-haiku-4-5": ("1.00", "0.10", "1.25", "5.00"),
    "mistral-large": ("2.00", None, None, "6.00"),
    "mistral-small": ("0.10", None, None, "0.30"),
}
# What pay-as-you-go customers pay per 1,000,000 tokens (cost plus margin), same layout.
PAYG_PER_M = {
    "gpt-4o": ("3.00", "1.50", None, "12.00"),
    "gpt-4o-mini": ("0.18", "0.09", None, "0.72"),
    "claude-sonnet-4-5": ("3.60", "0.36", "4.50", "18.00"),
    "claude-haiku-4-5": ("1.20", "0.12", "1.50", "6.00"),
    "mistral-large": ("2.40", None, None, "7.20"),
    "mistral-small": ("0.12", None, None, "0.36"),
}
# Growth: input-side prices per 1,000,000 tokens; output is one graduated charge for all models.
GROWTH_PER_M = {
    "gpt-4o": ("2.80", "1.40", None),
    "gpt-4o-mini": ("0.17", "0.085", None),
    "claude-sonnet-4-5": ("3.40", "0.34", "4.25"),
    "claude-haiku-4-5": ("1.10", "0.11", "1.40"),
    "mistral-large": ("2.20", None, None),
    "mistral-small": ("0.11", None, None),
}
METER_NAMES = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens")
METER_SLUG = {
    "input_tokens": "input",
    "cached_input_tokens": "cached-input",
    "cache_write_tokens": "cache-write",
    "output_tokens": "output",
}
METER_LABEL = {
    "input_tokens": "input tokens",
    "cached_input_tokens": "cached input tokens",
    "cache_write_tokens": "cache write tokens",
    "output_tokens": "output tokens",
}
FAMILY_LABEL = {
    "gpt-4o": "GPT-4o",
    "gpt-4o-mini": "GPT-4o mini",
    "claude-sonnet-4-5": "Claude Sonnet 4.5",
    "claude-haiku-4-5": "Claude Haiku 4.5",
    "mistral-large": "Mistral Large",
    "mistral-small": "Mistral Small",
}


def _per_unit_charges(prices: dict[str, tuple], meters: tuple[str, ...]) -> list[dict]:
    charges = []
    for family, row in prices.items():
        for meter, price in zip(meters, row, strict=True):
            if price is None:
                continue
            charges.append(
                {
                    "id": f"{family}-{METER_SLUG[meter]}",
                    "name": f"{FAMILY_LABEL[family]} {METER_LABEL[meter]}",
                    "meter": meter,
                    "models": list(FAMILY_GLOBS[family]),
                    "unit_size": 1_000_000,
                    "pricing": "per_unit",
                    "unit_price": price,
                }
            )
    return charges


def plans() -> dict:
    return {
        "payg": {
            "name": "Pay as you go",
            "currency": "USD",
            "description": "Per-token prices per model family, billed monthly in arrears.",
            "charges": _per_unit_charges(PAYG_PER_M, METER_NAMES),
        },
        "growth": {
            "name": "Growth",
            "currency": "USD",
            "description": "Input per model family; output tokens of all models on a graduated scale.",
            "charges": _per_unit_charges(GROWTH_PER_M, METER_NAMES[:3])
            + [
                {
                    "id": "output-graduated",
                    "name": "Output tokens, all models (graduated)",
                    "meter": "output_tokens",
                    "unit_size": 1_000_000,
                    "pricing": "graduated",
                    "tiers": [
                        {"up_to": 10_000_000, "unit_price": "12.00"},
                        {"up_to": 50_000_000, "unit_price": "10.00", "flat_fee": "25.00"},
                        {"up_to": None, "unit_price": "8.00"},
                    ],
                }
            ],
        },
        "resale": {
            "name": "Reseller list price",
            "currency": "USD",
            "description": "The AI providers' list prices of your usage (our price book, as in "
            "effect each day) plus 15 %, and USD 0.10 per 1M tokens.",
            "charges": [
                {
                    "id": "tokens-at-list",
                    "name": "Tokens at list price + 15 %",
                    "meter": list(METER_NAMES),
                    "pricing": "cost_plus",
                    "markup": "0.15",
                    "unit_fee": "0.10",
                    "unit_size": 1_000_000,
                }
            ],
        },
        "enterprise": {
            "name": "Enterprise",
            "currency": "USD",
            "description": "Monthly platform fee with 1M included tokens, volume token pricing, "
            "GPU hours and outcome-based charges; USD 1,000 minimum per month.",
            "base_fee": "500.00",
            "allowance": {"quantity": 1_000_000, "meters": ["input_tokens", "output_tokens"]},
            "minimum_commitment": "1000.00",
            "charges": [
                {
                    "id": "tokens",
                    "name": "Tokens, all models (volume)",
                    "meter": ["input_tokens", "output_tokens"],
                    "unit_size": 1000,
                    "pricing": "volume",
                    "tiers": [
                        {"up_to": 100_000_000, "unit_price": "0.0040"},
                        {"up_to": 300_000_000, "unit_price": "0.0032"},
                        {"up_to": None, "unit_price": "0.0025"},
                    ],
                },
                {
                    "id": "cached-input",
                    "name": "Cached input tokens, all models",
                    "meter": "cached_input_tokens",
                    "unit_size": 1000,
                    "pricing": "per_unit",
                    "unit_price": "0.0004",
                },
                {
                    "id": "cache-write",
                    "name": "Cache write tokens, all models",
                    "meter": "cache_write_tokens",
                    "unit_size": 1000,
                    "pricing": "per_unit",
                    "unit_price": "0.0042",
                },
                {
                    "id": "gpu-a10g",
                    "name": "A10G GPU hours",
                    "meter": "gpu_seconds",
                    "dimensions": {"gpu_type": "A10G"},
                    "unit_size": 3600,
                    "pricing": "per_unit",
                    "unit_price": "2.40",
                },
                {
                    "id": "diagnoses",
                    "name": "Accepted diagnoses",
                    "meter": "outcomes",
                    "dimensions": {"outcome": "accepted_diagnosis"},
                    "pricing": "per_unit",
                    "unit_price": "12.00",
                },
            ],
        },
    }


def price_book(month_start: dt.date = dt.date(2026, 10, 1)) -> list[dict]:
    since = dt.date(2024, 1, 1)
    entries = []
    for family, row in COST_PER_M.items():
        for meter, price in zip(METER_NAMES, row, strict=True):
            if price is not None:
                entries.append(
                    {
                        "provider": provider_of(family),
                        "models": list(FAMILY_GLOBS[family]),
                        "meter": meter,
                        "unit_size": 1_000_000,
                        "unit_price": price,
                        "from": since,
                    }
                )
    # gpt-4.1 (Pinnacle's proxy only): a price cut on the 15th, as a re-import of LiteLLM's list
    # with ``import-prices --previous`` writes it: the old price ends the day before.
    cut = month_start.replace(day=litellm.PRICE_CUT_DAY)
    for meter, before, after in zip(
        ("input_tokens", "cached_input_tokens", "output_tokens"),
        litellm.GPT41_BEFORE,
        litellm.GPT41_FROM_15TH,
        strict=True,
    ):
        common = {"provider": "openai", "models": list(FAMILY_GLOBS["gpt-4.1"]), "meter": meter}
        if before == after:
            entries.append({**common, "unit_size": 1_000_000, "unit_price": before, "from": since})
            continue
        entries.append(
            {
                **common,
                "unit_size": 1_000_000,
                "unit_price": before,
                "from": since,
                "to": cut - dt.timedelta(days=1),
            }
        )
        entries.append({**common, "unit_size": 1_000_000, "unit_price": after, "from": cut})
    # Providers do not charge per request: say so explicitly, so requests are costed (at zero)
    # rather than flagged as unpriced.
    for provider in sorted({provider_of(family) for family in COST_PER_M}):
        entries.append(
            {
                "provider": provider,
                "meter": "requests",
                "unit_size": 1,
                "unit_price": "0",
                "from": since,
            }
        )
    # Outcome events are our own product's results: no provider bills us for them.
    entries.append(
        {
            "provider": "internal",
            "meter": "outcomes",
            "unit_size": 1,
            "unit_price": "0",
            "from": since,
        }
    )
    return entries


@dataclass
class Profile:
    """One demo customer: catalog fields plus how it uses models."""

    id: str
    name: str
    plan: str
    country: str  # DE, US, or an EU country code (reverse charge)
    address: str
    monthly_tokens: float  # millions of tokens over the subscribed days of the month
    mix: dict[str, float]  # model id -> share of tokens
    output_ratio: float = 0.25  # output tokens / input-side tokens
    cache_ratio: float = 0.2  # cached share of input-side tokens
    gpu_instances: int = 0
    gpu_hours_per_day: int = 0
    gpu_every_day: bool = False
    outcomes: int = 0
    start: dt.date | None = None  # None = subscribed since 2026-01-01
    openai_projects: int = 1
    text_lines: int = 0  # gateway lines with prompt/completion text instead of usage
    monthly_limit: str = "5000.00"
    keys: dict[str, list[str]] = field(default_factory=dict)  # provider -> key ids


# id, name, plan, country, address, Mtokens, mix, output_ratio, cache_ratio
_S45, _H45 = "claude-sonnet-4-5", "claude-haiku-4-5"
_G4O, _G4O_D, _MINI, _MINI_D = (
    "gpt-4o",
    "gpt-4o-2024-08-06",
    "gpt-4o-mini",
    "gpt-4o-mini-2024-07-18",
)
_ML, _MS = "mistral-large-2411", "mistral-small-2409"

PROFILES: list[Profile] = [
    # Enterprise: acme (big, GPUs, outcomes), nakatomi (GPU), gringotts (GPU 24/7), weyland (GPU,
    # stays inside the token allowance, below minimum), blackmesa (below minimum), dunder (joins
    # on the 15th: proration).
    Profile(
        "acme",
        "Acme Health GmbH",
        "enterprise",
        "DE",
        "Friedrichstraße 68, 10117 Berlin, Germany",
        400,
        {_G4O_D: 0.45, _S45: 0.35, _ML: 0.2},
        0.3,
        0.25,
        gpu_instances=2,
        gpu_hours_per_day=10,
        outcomes=120,
        openai_projects=2,
        monthly_limit="4000.00",
    ),
    Profile(
        "nakatomi",
        "Nakatomi Trading Corp.",
        "enterprise",
        "US",
        "2121 Avenue of the Stars, Los Angeles, CA 90067, USA",
        180,
        {_G4O: 0.6, _MINI: 0.25, _H45: 0.15},
        0.25,
        0.2,
        gpu_instances=1,
        gpu_hours_per_day=12,
        monthly_limit="2500.00",
    ),
    Profile(
        "gringotts",
        "Gringotts Wizarding Bank AG",
        "enterprise",
        "DE",
        "Diagonstraße 1, 80331 München, Germany",
        260,
        {_S45: 0.5, _H45: 0.3, _MS: 0.2},
        0.22,
        0.3,
        gpu_instances=1,
        gpu_hours_per_day=24,
        gpu_every_day=True,
        monthly_limit="4000.00",
    ),
    Profile(
        "weyland",
        "Weyland-Yutani Corp.",
        "enterprise",
        "US",
        "1 Weyland Plaza, San Francisco, CA 94105, USA",
        0.7,
        {_MINI: 1.0},
        0.3,
        0.1,
        gpu_instances=1,
        gpu_hours_per_day=5,
        monthly_limit="1500.00",
    ),
    Profile(
        "blackmesa",
        "Black Mesa Recherche SAS",
        "enterprise",
        "FR",
        "12 Rue de la Paix, 75002 Paris, France",
        40,
        {_G4O: 0.7, _H45: 0.3},
        0.25,
        0.15,
        monthly_limit="1500.00",
    ),
    Profile(
        "dunder",
        "Dunder Mifflin Paper Inc.",
        "enterprise",
        "US",
        "1725 Slough Avenue, Scranton, PA 18505, USA",
        90,
        {_MINI_D: 0.6, _ML: 0.4},
        0.3,
        0.1,
        gpu_instances=2,
        gpu_hours_per_day=12,
        start=dt.date(2026, 10, 15),
        monthly_limit="2000.00",
    ),
    # Growth
    Profile(
        "globex",
        "Globex GmbH",
        "growth",
        "DE",
        "Hafenstraße 12, 20359 Hamburg, Germany",
        240,
        {_G4O_D: 0.5, _S45: 0.3, _MS: 0.2},
        0.3,
        0.25,
        monthly_limit="3000.00",
    ),
    Profile(
        "cyberdyne",
        "Cyberdyne Systems Inc.",
        "growth",
        "US",
        "18144 El Camino Real, Sunnyvale, CA 94087, USA",
        90,
        {_G4O: 0.7, _MINI: 0.3},
        0.3,
        0.2,
        monthly_limit="1500.00",
    ),  # the bot-run spike
    Profile(
        "tyrell",
        "Tyrell Corporation",
        "growth",
        "US",
        "2019 Wilshire Blvd, Los Angeles, CA 90057, USA",
        380,
        {_S45: 0.6, _G4O: 0.4},
        0.35,
        0.3,
        monthly_limit="6000.00",
    ),
    Profile(
        "wonka",
        "Wonka Süßwaren GmbH",
        "growth",
        "DE",
        "Schokoladenweg 5, 50667 Köln, Germany",
        35,
        {_H45: 0.6, _MINI_D: 0.4},
        0.2,
        0.15,
        monthly_limit="500.00",
    ),
    Profile(
        "aperture",
        "Aperture Science Inc.",
        "growth",
        "US",
        "1 Enrichment Center Way, Cleveland, OH 44101, USA",
        150,
        {_MINI: 0.5, _H45: 0.3, _ML: 0.2},
        0.4,
        0.1,
        monthly_limit="1500.00",
    ),
    Profile(
        "piedpiper",
        "Pied Piper Inc.",
        "growth",
        "US",
        "5230 Newell Road, Palo Alto, CA 94303, USA",
        25,
        {_MS: 0.6, _MINI: 0.4},
        0.3,
        0.1,
        text_lines=4,
        monthly_limit="300.00",
    ),
    Profile(
        "massive",
        "Massive Dynamic S.L.",
        "growth",
        "ES",
        "Calle de Alcalá 45, 28014 Madrid, Spain",
        110,
        {_G4O: 0.5, _S45: 0.5},
        0.25,
        0.2,
        monthly_limit="2000.00",
    ),
    # Pay as you go
    Profile(
        "hooli",
        "Hooli Inc.",
        "payg",
        "US",
        "1401 N Shoreline Blvd, Mountain View, CA 94043, USA",
        200,
        {_G4O: 0.5, _MINI: 0.3, _S45: 0.2},
        0.25,
        0.2,
        monthly_limit="2500.00",
    ),
    Profile(
        "initech",
        "Initech LLC",
        "payg",
        "US",
        "4120 Freidrich Lane, Austin, TX 78744, USA",
        30,
        {_MINI: 0.8, _H45: 0.2},
        0.2,
        0.1,
        monthly_limit="100.00",
    ),
    Profile(
        "umbrella",
        "Umbrella Pharma GmbH",
        "payg",
        "DE",
        "Rheinufer 3, 40213 Düsseldorf, Germany",
        120,
        {_G4O_D: 0.4, _S45: 0.4, _ML: 0.2},
        0.3,
        0.2,
        monthly_limit="2000.00",
    ),
    Profile(
        "vandelay",
        "Vandelay Industries Inc.",
        "payg",
        "US",
        "129 West 81st Street, New York, NY 10024, USA",
        45,
        {_MS: 0.7, _MINI: 0.3},
        0.25,
        0.1,
        text_lines=5,
        monthly_limit="200.00",
    ),
    Profile(
        "wayne",
        "Wayne Enterprises B.V.",
        "payg",
        "NL",
        "Herengracht 500, 1017 CB Amsterdam, Netherlands",
        160,
        {_S45: 0.5, _H45: 0.5},
        0.3,
        0.35,
        monthly_limit="2500.00",
    ),
    Profile(
        "stark",
        "Stark Industries Inc.",
        "payg",
        "US",
        "10880 Malibu Point, Malibu, CA 90265, USA",
        70,
        {_G4O: 0.6, _ML: 0.4},
        0.3,
        0.15,
        monthly_limit="1000.00",
    ),
    Profile(
        "oscorp",
        "Oscorp Biotech GmbH",
        "payg",
        "DE",
        "Leopoldstraße 20, 80802 München, Germany",
        22,
        {_H45: 0.5, _MINI: 0.5},
        0.2,
        0.1,
        monthly_limit="100.00",
    ),
    Profile(
        "soylent",
        "Soylent Foods Ltd.",
        "payg",
        "IE",
        "1 Grand Canal Square, Dublin 2, Ireland",
        85,
        {_MINI_D: 0.5, _S45: 0.3, _MS: 0.2},
        0.25,
        0.2,
        monthly_limit="800.00",
    ),
]
SPIKE_CUSTOMER = "cyberdyne"
SPIKE_DAYS = (20, 21)  # days of the month (Tue and Wed in 2026-10)
SPIKE_FACTOR = 9


def _rand_id(rng: random.Random, n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(n))


def assign_keys(rng: random.Random, profiles: list[Profile]) -> None:
    """Provider key ids, drawn from the seed: openai project ids, anthropic api key ids."""
    for p in profiles:
        providers = {provider_of(m) for m in p.mix}
        keys: dict[str, list[str]] = {}
        if "openai" in providers:
            keys["openai"] = [f"proj_{_rand_id(rng, 20)}" for _ in range(p.openai_projects)]
        if "anthropic" in providers:
            keys["anthropic"] = [f"apikey_01{_rand_id(rng, 22)}"]
            keys["anthropic_workspace"] = [f"wrkspc_01{_rand_id(rng, 22)}"]
        if "mistral" in providers:
            keys["gateway"] = [p.id]
        p.keys = keys


def _tax(country: str) -> dict:
    if country == "DE":
        return {"rate": "0.19", "reverse_charge": False}
    if country == "US":
        return {"rate": "0", "reverse_charge": False}
    return {"rate": "0", "reverse_charge": True}  # EU B2B outside Germany


def catalog_document(profiles: list[Profile], month_start: dt.date) -> dict:
    since = min(dt.date(2026, 1, 1), month_start)
    customers = {}
    for p in profiles:
        keys = [f"openai:{k}" for k in p.keys.get("openai", [])]
        keys += [f"anthropic:{k}" for k in p.keys.get("anthropic", [])]
        keys += [f"gateway:{k}" for k in p.keys.get("gateway", [])]
        start = (
            p.start.replace(year=month_start.year, month=month_start.month) if p.start else since
        )
        entry = {
            "name": p.name,
            "address": p.address,
            "email": f"billing@{p.id}.example",
            "currency": "USD",
            "tax": _tax(p.country),
            "subscriptions": [{"plan": p.plan, "from": start, "to": None}],
            "keys": keys,
        }
        if p.gpu_instances:
            entry["tags"] = {"customer": p.id}
        entry["monthly_limit"] = p.monthly_limit
        customers[p.id] = entry
    customers[litellm.CUSTOMER] = {
        "name": "Pinnacle Legal Tech Inc.",
        "address": "500 Boylston Street, Boston, MA 02116, USA",
        "email": f"billing@{litellm.CUSTOMER}.example",
        "currency": "USD",
        "tax": _tax("US"),
        "subscriptions": [{"plan": "resale", "from": since, "to": None}],
        # the proxy's team for Pinnacle: its requests name their own end users too, which no
        # customer claims, so the team bills them (README "LiteLLM proxy spend logs")
        "keys": [f"litellm:team:{litellm.TEAM}"],
        # the proxy's traffic is billed from its spend logs, not a provider report
        "billing_source": {"openai": "gateway_log", "anthropic": "gateway_log"},
        "monthly_limit": "1000.00",
    }
    return {
        "issuer": dict(ISSUER),
        "plans": plans(),
        "customers": customers,
        "price_book": price_book(month_start),
    }
