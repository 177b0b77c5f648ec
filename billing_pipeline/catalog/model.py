"""The catalog: issuer, plans, customers and the provider price book (README "The catalog").

Field names here are a public contract: finance writes them by hand, scripts generate them, and
the cost calculator reads them. Money is a decimal *string* in YAML: a bare float such as
``0.0025`` is refused, because YAML would hand us a binary float.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import ipaddress
import os
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from billing_pipeline.schema import METERS


def _decimal_string(value: object) -> Decimal:
    if isinstance(value, bool | float):
        raise ValueError(
            f'a float where a decimal string is required: write it quoted, e.g. "{value}"'
        )
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not parsed.is_finite():
            raise ValueError(f"{value!r} is not a finite decimal number")
        return parsed
    raise ValueError(f"expected a decimal string, got {type(value).__name__}")


Money = Annotated[Decimal, BeforeValidator(_decimal_string)]

# Ids become file names (invoices/<customer>.json, receipts, statements, .eml) and URL parts:
# letters, digits, '-', '_' and '.', not starting with '.', at most 64 characters. No '/', '\\',
# '..' as a whole name, absolute paths, spaces or control characters can get through.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
ID_RULE = "use only letters, digits, '-', '_' and '.' (not first), at most 64 characters"


def safe_id(value: object, what: str) -> str:
    """``value`` if it is a safe identifier (ID_PATTERN), else a ValueError naming ``what``."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise ValueError(f"{what} {shown} is not a safe identifier: {ID_RULE}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Issuer(_Strict):
    name: str
    address: str = ""
    vat_id: str = ""
    email: str = ""
    invoice_prefix: str = "INV"
    payment_terms_days: int = 30

    @field_validator("invoice_prefix")
    @classmethod
    def _safe_prefix(cls, v: str) -> str:
        return safe_id(v, "invoice_prefix")


class Tier(_Strict):
    up_to: int | None = Field(
        ..., description="inclusive upper bound in base units; null = no bound"
    )
    unit_price: Money
    flat_fee: Money = Decimal("0")

    @field_validator("up_to")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v <= 0:
            raise ValueError("must be a positive number of base units")
        return v


PricingModel = Literal["per_unit", "graduated", "volume", "package", "cost_plus"]
# A cost-plus charge prices usage at the provider price book's list price, which is in USD.
PRICE_BOOK_CURRENCY = "USD"
MAX_MARKUP = Decimal(100)  # 10,000 %: beyond any margin, and keeps the exact arithmetic bounded


def _check_tiers(tiers: list[Tier]) -> None:
    """Tiers are contiguous by construction (each starts after the previous up_to); what can go
    wrong is the order and the end: a missing final ``up_to: null`` leaves usage above it unpriced."""
    for i, t in enumerate(tiers[:-1]):
        if t.up_to is None:
            raise ValueError(f"tiers[{i}].up_to: only the last tier may have up_to: null")
    if tiers[-1].up_to is not None:
        raise ValueError(
            f"tiers[{len(tiers) - 1}].up_to: the last tier must have up_to: null "
            f"(usage above {tiers[-1].up_to:,} would fall in a gap with no price)"
        )
    for i in range(1, len(tiers) - 1):
        if tiers[i].up_to <= tiers[i - 1].up_to:
            raise ValueError(
                f"tiers[{i}].up_to: tiers out of order: up_to must increase "
                f"({tiers[i].up_to:,} is not above {tiers[i - 1].up_to:,})"
            )


class PriceChange(_Strict):
    """A charge's new price from a day on (inclusive, UTC): usage is split by event day."""

    from_: dt.date = Field(alias="from")
    unit_price: Money | None = None
    tiers: list[Tier] | None = None
    package_price: Money | None = None
    markup: Money | None = None  # cost_plus
    unit_fee: Money | None = None  # cost_plus


# The fields a price change of each pricing model may set (the first of them at least).
PRICE_FIELDS = {
    "per_unit": ("unit_price",),
    "graduated": ("tiers",),
    "volume": ("tiers",),
    "package": ("package_price",),
    "cost_plus": ("markup", "unit_fee"),
}


def _check_markup(markup: Decimal | None, unit_fee: Decimal | None, where: str) -> None:
    if markup is not None and not Decimal(0) <= markup <= MAX_MARKUP:
        raise ValueError(
            f"{where}markup: {markup} is not a share between 0 and {MAX_MARKUP} "
            '(write 20 % as "0.20")'
        )
    if unit_fee is not None and unit_fee < 0:
        raise ValueError(f"{where}unit_fee: {unit_fee} is negative")
    for name, value in (("markup", markup), ("unit_fee", unit_fee)):
        if value is not None and value.normalize().as_tuple().exponent < -12:
            raise ValueError(f"{where}{name}: {value} has more than 12 decimal places")


def known_meters(value: str | list[str]) -> str | list[str]:
    """A meter (or list) a reader emits: plans and the price book name the same list (schema.METERS)."""
    for meter in [value] if isinstance(value, str) else value:
        if meter not in METERS:
            raise ValueError(f"unknown meter {meter!r}; known meters: {', '.join(METERS)}")
    return value


def positive_unit_size(value: int) -> int:
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


class Charge(_Strict):
    id: str
    name: str | None = None
    meter: str | list[str]
    models: list[str] | None = None  # globs on the model id (or its family); None = any model
    dimensions: dict[str, str] | None = None
    unit_size: int = 1
    pricing: PricingModel = "per_unit"
    unit_price: Money | None = None
    tiers: list[Tier] | None = None
    package_size: int | None = None
    package_price: Money | None = None
    # cost_plus: the price book's list price of the usage x (1 + markup), plus unit_fee per
    # unit_size base units (0 when absent)
    markup: Money | None = None
    unit_fee: Money | None = None
    prices: list[PriceChange] | None = None  # effective-dated price changes, in date order

    @property
    def meters(self) -> list[str]:
        return [self.meter] if isinstance(self.meter, str) else list(self.meter)

    @property
    def title(self) -> str:
        return self.name or self.id.replace("-", " ").replace("_", " ").capitalize()

    @field_validator("id")
    @classmethod
    def _safe_charge_id(cls, v: str) -> str:
        return safe_id(v, "charge id")

    _known_meter = field_validator("meter")(classmethod(lambda cls, v: known_meters(v)))
    _unit_size = field_validator("unit_size")(classmethod(lambda cls, v: positive_unit_size(v)))

    @model_validator(mode="after")
    def _pricing_fields(self) -> Charge:
        if self.pricing == "per_unit" and self.unit_price is None:
            raise ValueError("per_unit pricing needs unit_price")
        if self.pricing in ("graduated", "volume"):
            if not self.tiers:
                raise ValueError(f"{self.pricing} pricing needs tiers")
            _check_tiers(self.tiers)
        if self.pricing == "package" and (self.package_size is None or self.package_price is None):
            raise ValueError("package pricing needs package_size and package_price")
        if self.pricing == "cost_plus":
            self._cost_plus_fields()
        elif self.markup is not None or self.unit_fee is not None:
            raise ValueError("markup and unit_fee are cost_plus fields")
        allowed = PRICE_FIELDS[self.pricing]
        for i, change in enumerate(self.prices or []):
            given = [
                f
                for f in ("unit_price", "tiers", "package_price", "markup", "unit_fee")
                if getattr(change, f) is not None
            ]
            if not given or any(f not in allowed for f in given):
                raise ValueError(
                    f"prices[{i}]: a {self.pricing} charge changes its {' and/or '.join(allowed)} "
                    "(and nothing else)"
                )
            if self.pricing == "cost_plus":
                _check_markup(change.markup, change.unit_fee, f"prices[{i}].")
            if change.tiers is not None:
                try:
                    _check_tiers(change.tiers)
                except ValueError as exc:
                    raise ValueError(f"prices[{i}].{exc}") from None
            if i and change.from_ <= self.prices[i - 1].from_:
                raise ValueError(
                    f"prices[{i}].from: price changes must be in increasing date order"
                )
        return self

    def _cost_plus_fields(self) -> None:
        if self.markup is None:
            raise ValueError(
                'cost_plus pricing needs markup: the share added to the list price, e.g. "0.20" '
                'for 20 % over list ("0" for the list price plus a unit_fee)'
            )
        if self.unit_price is not None or self.tiers or self.package_price is not None:
            raise ValueError(
                "cost_plus prices from the provider price book: no unit_price, tiers or package_price"
            )
        _check_markup(self.markup, self.unit_fee, "")

    def price_from(self, day: dt.date | None) -> Charge:
        """The charge with the prices in effect from ``day`` on (None: the base prices): the
        latest of its price changes on or before ``day``. A cost-plus charge changes its markup
        and fee here; its list prices follow the price book."""
        change = None
        for c in self.prices or []:
            if day is not None and c.from_ <= day:
                change = c
        if change is None:
            return self
        fields = {
            f: getattr(change, f)
            for f in ("unit_price", "tiers", "package_price", "markup", "unit_fee")
            if getattr(change, f) is not None
        }
        return self.model_copy(update=fields)

    def claims(self, meter: str, model: str, family: str) -> bool:
        """Whether this charge prices one unit of (meter, model)."""
        if meter not in self.meters:
            return False
        if self.models is None:
            return True
        return any(
            fnmatch.fnmatchcase(model, g) or fnmatch.fnmatchcase(family, g) for g in self.models
        )


class Allowance(_Strict):
    quantity: int
    meters: list[str]


class Plan(_Strict):
    name: str
    currency: str = "USD"
    base_fee: Money | None = None
    allowance: Allowance | None = None
    minimum_commitment: Money | None = None
    description: str = ""
    charges: list[Charge] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cost_plus_in_usd(self) -> Plan:
        cost_plus = [c.id for c in self.charges if c.pricing == "cost_plus"]
        if cost_plus and self.currency.upper() != PRICE_BOOK_CURRENCY:
            raise ValueError(
                f"charge {cost_plus[0]!r} is cost_plus: the price book's list prices are in "
                f"{PRICE_BOOK_CURRENCY}, so the plan's currency must be {PRICE_BOOK_CURRENCY}, "
                f"not {self.currency}"
            )
        return self

    @model_validator(mode="after")
    def _no_overlap(self) -> Plan:
        ids = [c.id for c in self.charges]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate charge id {dupes[0]!r}")
        for i, a in enumerate(self.charges):
            for b in self.charges[i + 1 :]:
                if _overlap(a, b):
                    raise ValueError(
                        f"charges {a.id!r} and {b.id!r} both claim the same usage "
                        "(same meter, overlapping models and dimensions): one unit of usage "
                        "must be priced by exactly one charge"
                    )
        return self


def _overlap(a: Charge, b: Charge) -> bool:
    if not set(a.meters) & set(b.meters):
        return False
    da, db = a.dimensions or {}, b.dimensions or {}
    if any(k in db and db[k] != v for k, v in da.items()):
        return False
    if a.models is None or b.models is None:
        return True
    return any(
        ga == gb or fnmatch.fnmatchcase(ga, gb) or fnmatch.fnmatchcase(gb, ga)
        for ga in a.models
        for gb in b.models
    )


class Subscription(_Strict):
    plan: str
    from_: dt.date = Field(alias="from")
    to: dt.date | None = None  # inclusive last day; null = open-ended


class Tax(_Strict):
    rate: Money = Decimal("0")
    reverse_charge: bool = False


class Credit(_Strict):
    """A prepaid credit grant; usable on invoices whose month ends in [from, expires]."""

    amount: Money
    from_: dt.date = Field(alias="from")
    expires: dt.date | None = None

    @field_validator("amount")
    @classmethod
    def _positive(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise ValueError("must be a positive amount")
        return v


class Discount(_Strict):
    """A percentage or fixed discount, as its own negative line in every month it overlaps."""

    name: str | None = None
    percent: Money | None = None
    amount: Money | None = None
    from_: dt.date | None = Field(default=None, alias="from")
    to: dt.date | None = None  # inclusive last day

    @model_validator(mode="after")
    def _one_kind(self) -> Discount:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("a discount has either percent or amount")
        if self.percent is not None and not Decimal(0) < self.percent <= Decimal(100):
            raise ValueError("percent must be above 0 and at most 100")
        if self.amount is not None and self.amount <= 0:
            raise ValueError("amount must be positive")
        return self


class AttributionKey(_Strict):
    """A key owned only from ``from`` to ``to`` (inclusive UTC days; null = open): projects and
    API keys get reassigned, and usage must follow the owner on the day it happened."""

    key: str
    from_: dt.date | None = Field(default=None, alias="from")
    to: dt.date | None = None

    @model_validator(mode="after")
    def _order(self) -> AttributionKey:
        if self.from_ and self.to and self.to < self.from_:
            raise ValueError(f"key {self.key!r}: to {self.to} is before from {self.from_}")
        return self


class Webhook(_Strict):
    """Where a customer's usage alerts go: an HTTPS endpoint and the name of the environment
    variable holding the signing secret (the secret itself never sits in the catalog).

    A catalog author must not be able to make us POST into our own network (SSRF), so the URL is
    ``https`` (``http`` only with ``allow_http: true``, for tests and local receivers), has a
    host and no user:password, and a literal IP address or ``localhost`` must be a public
    address. Host names are resolved and every address checked again at each delivery
    (``alerts/webhooks.py``): the rules here are the early, offline half. ``secret_env`` must
    start with ``BILLING_WEBHOOK_SECRET_`` so a catalog cannot have an alert signed with (and so
    disclose a MAC of) an unrelated secret such as a provider admin key."""

    url: str
    secret_env: str
    allow_http: bool = (
        False  # plain http (tests, a receiver on a trusted network); never the default
    )

    SECRET_PREFIX: ClassVar[str] = "BILLING_WEBHOOK_SECRET_"
    # The test opt-in for loopback/private receivers: an environment variable, never a catalog field.
    ALLOW_PRIVATE_ENV: ClassVar[str] = "BILLING_WEBHOOK_ALLOW_PRIVATE"
    LOCAL_NAMES: ClassVar[tuple[str, ...]] = (
        "localhost",
        "localhost.localdomain",
        "metadata.google.internal",
        "metadata",
        "instance-data",
    )
    # Cloud metadata endpoints by address (most are also link-local or private; listed to be sure).
    METADATA_ADDRESSES: ClassVar[frozenset[str]] = frozenset(
        {
            "169.254.169.254",
            "169.254.170.2",
            "169.254.169.253",
            "100.100.100.200",
            "fd00:ec2::254",
            "fd00:ec2::23",
        }
    )

    @field_validator("secret_env")
    @classmethod
    def _secret_prefix(cls, v: str) -> str:
        if not re.fullmatch(rf"{cls.SECRET_PREFIX}[A-Z0-9_]+", v):
            raise ValueError(
                f"{v!r}: a webhook secret must be an environment variable named "
                f"{cls.SECRET_PREFIX}<NAME> (capital letters, digits, _)"
            )
        return v

    @model_validator(mode="after")
    def _url_rules(self) -> Webhook:
        problem = self.url_problem(self.url, self.allow_http, self.private_allowed())
        if problem:
            raise ValueError(f"url {self.url!r}: {problem}")
        return self

    @staticmethod
    def private_allowed(environ: Mapping[str, str] | None = None) -> bool:
        """The documented test opt-in: ``BILLING_WEBHOOK_ALLOW_PRIVATE=1`` in the environment."""
        return (os.environ if environ is None else environ).get(Webhook.ALLOW_PRIVATE_ENV) == "1"

    @classmethod
    def url_problem(cls, url: str, allow_http: bool, allow_private: bool = False) -> str | None:
        """Why ``url`` may not receive alerts (None: it may, as far as can be told without DNS)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            return f"not a valid URL ({exc})"
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            return f"scheme {scheme or '(none)'!r} is not supported: webhooks are https"
        if scheme == "http" and not allow_http:
            return "plain http is refused: use https (allow_http: true is for tests and trusted networks)"
        if parts.username is not None or parts.password is not None:
            return "credentials in the URL are refused (they would be stored and logged)"
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            return "no host"
        if port == 0:
            return "port 0"
        if allow_private:
            return None
        if host in cls.LOCAL_NAMES or host.endswith((".localhost", ".internal", ".local")):
            return f"host {host!r} is a local or metadata name"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: resolved and checked at each delivery
        return cls.address_problem(address)

    @classmethod
    def address_problem(cls, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        """Why an address is not a public one a webhook may reach (None: it is)."""
        if address.version == 6:
            embedded = address.ipv4_mapped or (address.sixtofour if address.sixtofour else None)
            if embedded is None and address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
                embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            if embedded is not None:
                return cls.address_problem(embedded)
        if str(address) in cls.METADATA_ADDRESSES:
            return f"{address} is a cloud metadata address"
        for label, words in (
            ("unspecified", "an unspecified"),
            ("loopback", "a loopback"),
            ("link_local", "a link-local"),
            ("multicast", "a multicast"),
            ("private", "a private"),
            ("reserved", "a reserved"),
        ):
            if getattr(address, f"is_{label}"):
                return f"{address} is {words} address"
        if not address.is_global:  # shared (100.64/10), documentation, benchmarking ranges
            return f"{address} is not a public address"
        return None


BillingSource = Literal["provider_report", "gateway_log"]


def _known_sources(value: dict[str, str]) -> dict[str, str]:
    """Provider names are lower case everywhere in the usage table (``openai``, ``anthropic``)."""
    for provider in value:
        if provider != provider.strip().lower() or not provider:
            raise ValueError(
                f"provider {provider!r}: write the provider name in lower case, e.g. 'openai'"
            )
    return value


class Customer(_Strict):
    name: str
    address: str = ""
    email: str = ""

    @field_validator("email")
    @classmethod
    def _one_plain_address(cls, v: str) -> str:
        """An address that could not form one email header (a line break could inject another
        header; two addresses would mail an invoice to a stranger) is refused at load."""
        if v and (
            any(ord(c) < 32 or ord(c) == 127 for c in v)
            or v.count("@") != 1
            or any(c in v for c in ",; <>")
        ):
            raise ValueError(
                f"{v!r} is not one plain email address (name@domain, no spaces, commas or line breaks)"
            )
        return v

    currency: str = "USD"
    tax: Tax = Tax()
    subscriptions: list[Subscription]
    keys: list[str] = Field(default_factory=list)  # always owned
    dated_keys: list[AttributionKey] = Field(default_factory=list)  # `keys` entries with from/to
    tags: dict[str, str] = Field(default_factory=dict)
    monthly_limit: Money | None = None  # alerts at 50/75/90/100 % of month-to-date usage charges
    hard_cap: Money | None = None  # month-to-date usage charges at which the gateway should block
    webhook: Webhook | None = None  # usage alerts (signed), see billing_pipeline/alerts
    credits: list[Credit] = Field(default_factory=list)
    discounts: list[Discount] = Field(default_factory=list)
    # per provider: which of the gateway log and the provider's usage report bills this customer
    # (overrides the catalog's billing_source; see rating/billing_source.py)
    billing_source: dict[str, BillingSource] = Field(default_factory=dict)

    @field_validator("billing_source")
    @classmethod
    def _providers(cls, v: dict[str, str]) -> dict[str, str]:
        return _known_sources(v)

    @model_validator(mode="before")
    @classmethod
    def _split_dated_keys(cls, data):
        """``keys`` may mix plain strings and ``{key, from, to}`` entries (backward compatible)."""
        if isinstance(data, dict) and isinstance(data.get("keys"), list):
            keys = data["keys"]
            dated = [k for k in keys if isinstance(k, dict)]
            if dated:
                data = {
                    **data,
                    "keys": [k for k in keys if not isinstance(k, dict)],
                    "dated_keys": [*data.get("dated_keys", []), *dated],
                }
        return data


def _dimension_text(value: object) -> object:
    """A dimension value as the usage table writes it: usage dimensions are canonical JSON, so
    OpenAI's ``"batch": true`` reads back as the text ``true``; YAML's bare ``batch: true`` (a bool)
    and ``"true"`` must both match it. Integers likewise (``12``); anything else is left to fail."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value


DimensionValue = Annotated[str, BeforeValidator(_dimension_text)]


class PriceBookEntry(_Strict):
    """What a provider charges us for one meter of some models, from a day on.

    ``dimensions`` narrow the entry to usage carrying them (``{batch: true}`` for OpenAI batch,
    ``{service_tier: priority}``, Anthropic ``{context_window: 200k-1M}``); where several entries
    match one usage row, the LAST one in the list wins, so variants follow their plain entry."""

    provider: str
    models: list[str] | None = None
    meter: str
    dimensions: dict[str, DimensionValue] | None = None
    unit_size: int = 1
    unit_price: Money
    from_: dt.date = Field(alias="from")
    to: dt.date | None = None  # inclusive last day

    _known_meter = field_validator("meter")(classmethod(lambda cls, v: known_meters(v)))
    _unit_size = field_validator("unit_size")(classmethod(lambda cls, v: positive_unit_size(v)))


class Catalog(_Strict):
    issuer: Issuer
    plans: dict[str, Plan]
    customers: dict[str, Customer]
    price_book: list[PriceBookEntry] = Field(default_factory=list)
    # per provider: the source that bills when both the gateway log and the provider's usage
    # report describe the same traffic; unnamed providers: the report where one is read (openai,
    # anthropic), else the gateway log (rating/billing_source.py)
    billing_source: dict[str, BillingSource] = Field(default_factory=dict)

    @field_validator("billing_source")
    @classmethod
    def _providers(cls, v: dict[str, str]) -> dict[str, str]:
        return _known_sources(v)

    @field_validator("plans", "customers", mode="before")
    @classmethod
    def _safe_keys(cls, v, info):
        if isinstance(v, dict):
            for key in v:
                safe_id(key, f"{info.field_name[:-1]} id")
        return v

    @model_validator(mode="after")
    def _references(self) -> Catalog:
        """Every unknown plan and every key claimed twice, not only the first: one line each."""
        seen_keys: dict[str, str] = {}
        problems = []
        for cid, customer in self.customers.items():
            for i, sub in enumerate(customer.subscriptions):
                if sub.plan not in self.plans:
                    problems.append(
                        f"customers.{cid}.subscriptions[{i}].plan: unknown plan {sub.plan!r}; "
                        f"plans are: {', '.join(sorted(self.plans))}"
                    )
            for key in customer.keys:
                if key in seen_keys and seen_keys[key] != cid:
                    problems.append(
                        f"customers.{cid}.keys: key {key!r} is already attributed to "
                        f"{seen_keys[key]!r}"
                    )
                seen_keys.setdefault(key, cid)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def plan_for(self, customer_id: str, day: dt.date) -> str | None:
        """The plan a customer is subscribed to on a day, or None."""
        for sub in self.customers[customer_id].subscriptions:
            if sub.from_ <= day and (sub.to is None or day <= sub.to):
                return sub.plan
        return None
