"""An independent expected-invoice calculator: the landing files and the catalog YAML in, one
customer's invoice for one month out. Plain Python (json, csv, yaml, decimal, fnmatch) and nothing
from ``billing_pipeline``, so a bug in the engine cannot hide in here as well.

``expected_invoice(landing, catalog_path, customer_id, month)`` returns
``{"lines": {charge_id | "base_fee" | "minimum_commitment": Decimal}, "subtotal", "tax", "total",
"items": {(charge_id, model family or ""): rounded Decimal}, "quantities": {charge_id: billable
base units after the allowance}, "allowance_used": int, "unpriced": {meter: base units}}``.

Semantic choices (the engine should match these; where it differs, say so in DESIGN.md):

1. Attribution by the customer's ``keys``: OpenAI ``"openai:" + project_id``, Anthropic
   ``"anthropic:" + api_key_id``, gateway ``"gateway:" + customer_key``; FOCUS rows whose ``Tags``
   JSON contains every item of the customer's ``tags`` (a customer without tags gets no FOCUS
   rows); outcomes by ``customer_id``.
2. An event counts when its start (OpenAI ``start_time``, Anthropic ``starting_at``, gateway
   ``timestamp``, FOCUS ``ChargePeriodStart``, outcome ``timestamp``; all UTC) lies inside the month
   AND its UTC date is a day the customer is subscribed (``from`` .. ``to`` inclusive). Only one
   plan per customer per month is supported (NotImplementedError otherwise).
3. Meters. OpenAI: input_tokens = input_tokens - input_cached_tokens - input_cache_write_tokens,
   cached_input_tokens = input_cached_tokens, cache_write_tokens = input_cache_write_tokens,
   output_tokens. Anthropic: input_tokens = uncached_input_tokens, cached_input_tokens =
   cache_read_input_tokens, cache_write_tokens = ephemeral_5m + ephemeral_1h, output_tokens.
   Gateway: prompt_tokens -> input_tokens, completion_tokens -> output_tokens; a line with
   ``prompt``/``completion`` text instead of ``usage`` is counted with mistral-common's Tekken
   tokenizer (``tekken_240718.json`` for mistral-small-2409 / open-mistral-nemo-2407 /
   ministral-8b-2410, ``tekken_240911.json`` for pixtral-12b-2409), raw text, no BOS/EOS; other
   models raise. FOCUS: ChargeCategory "Usage" rows of a known GPU instance type (read from
   ChargeDescription / SkuId text, e.g. g5.4xlarge = 1 A10G): gpu_seconds = ConsumedQuantity
   (hours) x 3600 x GPUs per instance, dimensions {gpu_type}; other rows are not billed.
   Outcomes: 1 unit of meter ``outcomes`` per row, dimensions {outcome: outcome_type}.
   Zero quantities are dropped.
4. A charge claims an event when the meter is one of its meters, its ``models`` globs are absent
   or one matches (fnmatchcase) the model id or its family (id minus a trailing -YYYY-MM-DD,
   -YYYYMMDD or -NNNN), and its ``dimensions`` are a subset of the event's. Events without a model
   (GPU, outcomes) are claimed only by charges without ``models``. Unclaimed usage is not billed;
   it is returned under ``unpriced``.
5. Allowance: the plan's allowance is consumed by claimed events of its meters in order
   (start, position of the meter in allowance.meters, model, source, origin); only the rest is
   billed. The allowance is NOT prorated for a partial month. In the demo catalog every allowance
   meter is priced by the same charge (enterprise ``tokens``), so the amount does not depend on
   how ties are ordered.
6. Pricing on the month's billable quantity. per_unit charges give one item per model FAMILY
   (each rounded; the charge's line = sum of its rounded items); graduated, volume and package
   charges give one item for all models together. per_unit = q / unit_size x unit_price, exact; graduated = each tier's units
   (up_to inclusive, in base units) / unit_size x its price + its flat fee if it got any units;
   volume = q / unit_size x price of the tier where q <= up_to (q == up_to belongs to that tier)
   + that tier's flat fee; package = ceil(q / package_size) x package_price. A charge with zero
   billable quantity gives no line (compare with "missing = 0.00").
7. Each item is rounded once to cents, ROUND_HALF_UP. base_fee = base_fee x subscribed days in
   the month / days in the month, then rounded. Usage charges = sum of the rounded usage lines
   (base fee excluded); if below minimum_commitment (not prorated), line "minimum_commitment" =
   minimum - usage charges. subtotal = sum of lines; tax = round(subtotal x rate, HALF_UP), 0 when
   reverse_charge; total = subtotal + tax. Credits are not applied (the demo has none).

In the demo every customer uses one model id per family, so splitting per_unit items per model
id or per family gives the same amounts; payg/growth per_unit charges each cover one family, so
only the enterprise cached-input/cache-write lines are sums of several items.

8. LiteLLM spend logs (``litellm/spend_logs/*.json``, JSON arrays of rows): a row whose ``status``
   is ``success`` (or empty) belongs to the customer when the first of its identifiers that any
   customer of the catalog names (``litellm:end_user:``, ``litellm:tag:``, ``litellm:user:``,
   ``litellm:team:``, ``litellm:key:``) is one of this customer's keys. Its usage object
   (``metadata.usage_object``, else the two token columns): input_tokens = prompt_tokens - cached
   - cache writes, cached_input_tokens = ``prompt_tokens_details.cached_tokens``,
   cache_write_tokens = ``prompt_tokens_details.cache_creation_tokens`` (Anthropic: split into
   {cache_ttl: 1h} = ``ephemeral_1h_input_tokens`` and {cache_ttl: 5m} = the rest, and every
   Anthropic meter gets {context_window: 0-200k} or {200k-1M} by prompt_tokens), output_tokens =
   completion_tokens; provider = ``custom_llm_provider``, model = ``model`` without its
   ``<provider>/`` prefix. (Audio and image parts are not in the demo: not modelled.)
9. cost_plus charges: per charge and model family, the month is split on every day on which the
   list price of one of the family's (provider, model, meter, dimensions) changes; each part is
   sum(q x list price / unit_size) x (1 + markup) + sum(q) x unit_fee / unit_size, rounded once.
   The list price is the LAST price_book entry with the same provider and meter, a model glob
   matching the model or its family, its dimensions a subset of the event's, in effect that day.
   A cost-plus plan with an allowance or price changes is not modelled (NotImplementedError); an
   event without a list price raises (the engine holds the customer).
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import fnmatch
import json
import math
import re
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import yaml

CENT = Decimal("0.01")
UTC = dt.UTC
_FAMILY = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4})$")
# instance type -> (GPUs per instance, GPU type); public specs (PROVIDER_FORMATS.md)
GPU_INSTANCES = {
    "p4d.24xlarge": (8, "A100"),
    "p4de.24xlarge": (8, "A100"),
    "p5.48xlarge": (8, "H100"),
    "p5e.48xlarge": (8, "H200"),
    "p5en.48xlarge": (8, "H200"),
    "g5.xlarge": (1, "A10G"),
    "g5.2xlarge": (1, "A10G"),
    "g5.4xlarge": (1, "A10G"),
    "g5.8xlarge": (1, "A10G"),
    "g5.16xlarge": (1, "A10G"),
    "g5.12xlarge": (4, "A10G"),
    "g5.24xlarge": (4, "A10G"),
    "g5.48xlarge": (8, "A10G"),
}
_TEKKEN_FILES = {
    "mistral-small-2409": "tekken_240718.json",
    "open-mistral-nemo-2407": "tekken_240718.json",
    "ministral-8b-2410": "tekken_240718.json",
    "pixtral-12b-2409": "tekken_240911.json",
}


def family(model: str) -> str:
    return _FAMILY.sub("", model)


def _round(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def _utc(text: str) -> dt.datetime:
    text = text.strip().replace("Z", "+00:00").replace(" ", "T", 1)
    t = dt.datetime.fromisoformat(text)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _event(start, meter, qty, model, dims, source, origin) -> dict:
    return {
        "start": start,
        "meter": meter,
        "qty": int(qty),
        "model": model,
        "dims": dims,
        "source": source,
        "origin": origin,
    }


def _openai(landing: Path, keys: set[str]):
    for path in sorted((landing / "openai/usage/completions").glob("*.json")):
        page = json.loads(path.read_text(encoding="utf-8"))
        for b, bucket in enumerate(page.get("data", [])):
            start = dt.datetime.fromtimestamp(bucket["start_time"], UTC)
            for r, res in enumerate(bucket.get("results", [])):
                if f"openai:{res.get('project_id')}" not in keys:
                    continue
                cached = res.get("input_cached_tokens") or 0
                write = res.get("input_cache_write_tokens") or 0
                meters = {
                    "input_tokens": res["input_tokens"] - cached - write,
                    "cached_input_tokens": cached,
                    "cache_write_tokens": write,
                    "output_tokens": res["output_tokens"],
                }
                dims = {"service_tier": res.get("service_tier") or "default"}
                for meter, q in meters.items():
                    yield _event(
                        start, meter, q, res["model"], dims, "openai", f"{path.name}#{b}.{r}"
                    )


def _anthropic(landing: Path, keys: set[str]):
    for path in sorted((landing / "anthropic/usage_report").glob("*.json")):
        page = json.loads(path.read_text(encoding="utf-8"))
        for b, bucket in enumerate(page.get("data", [])):
            start = _utc(bucket["starting_at"])
            for r, res in enumerate(bucket.get("results", [])):
                if f"anthropic:{res.get('api_key_id')}" not in keys:
                    continue
                cc = res.get("cache_creation") or {}
                meters = {
                    "input_tokens": res.get("uncached_input_tokens") or 0,
                    "cached_input_tokens": res.get("cache_read_input_tokens") or 0,
                    "cache_write_tokens": (cc.get("ephemeral_5m_input_tokens") or 0)
                    + (cc.get("ephemeral_1h_input_tokens") or 0),
                    "output_tokens": res.get("output_tokens") or 0,
                }
                dims = {"service_tier": res.get("service_tier") or "standard"}
                for meter, q in meters.items():
                    yield _event(
                        start, meter, q, res["model"], dims, "anthropic", f"{path.name}#{b}.{r}"
                    )


_tokenizers: dict[str, object] = {}


def count_tokens(model: str, text: str) -> int:
    """Tekken token count of raw text (no BOS/EOS), as the gateway source should count it."""
    name = _TEKKEN_FILES.get(model)
    if name is None:
        raise NotImplementedError(f"oracle has no tokenizer for {model!r}")
    if name not in _tokenizers:
        import mistral_common
        from mistral_common.tokens.tokenizers.tekken import Tekkenizer

        path = Path(mistral_common.__file__).parent / "data" / name
        _tokenizers[name] = Tekkenizer.from_file(str(path))
    return len(_tokenizers[name].encode(text, bos=False, eos=False))


def _gateway(landing: Path, keys: set[str]):
    for path in sorted((landing / "gateway").glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if f"gateway:{rec.get('customer_key')}" not in keys:
                continue
            start, model = _utc(rec["timestamp"]), rec["model"]
            usage = rec.get("usage")
            if usage is not None:
                prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
            else:
                prompt = count_tokens(model, rec.get("prompt") or "")
                completion = count_tokens(model, rec.get("completion") or "")
            for meter, q in (("input_tokens", prompt), ("output_tokens", completion)):
                yield _event(start, meter, q, model, {}, "gateway", f"{path.name}:{n}")


def _focus(landing: Path, tags: dict):
    if not tags:
        return
    for path in sorted((landing / "cloud/focus").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.DictReader(fh), start=2):
                if row.get("ChargeCategory") != "Usage":
                    continue
                raw = row.get("Tags") or "NULL"
                row_tags = {} if raw == "NULL" else json.loads(raw)
                if any(row_tags.get(k) != v for k, v in tags.items()):
                    continue
                text = f"{row.get('ChargeDescription', '')} {row.get('SkuId', '')}"
                itype = next(
                    (
                        t
                        for t in re.findall(r"[a-z0-9]+\.[0-9]*x?large", text)
                        if t in GPU_INSTANCES
                    ),
                    None,
                )
                if itype is None or row.get("ConsumedUnit") != "Hours":
                    continue
                gpus, gpu_type = GPU_INSTANCES[itype]
                seconds = Decimal(row["ConsumedQuantity"]) * 3600 * gpus
                if seconds != seconds.to_integral_value():
                    raise ValueError(
                        f"{path.name}:{n}: {seconds} GPU-seconds is not a whole number"
                    )
                yield _event(
                    _utc(row["ChargePeriodStart"]),
                    "gpu_seconds",
                    int(seconds),
                    None,
                    {"gpu_type": gpu_type},
                    "focus",
                    f"{path.name}:{n}",
                )


def _outcomes(landing: Path, customer_id: str):
    for path in sorted((landing / "outcomes").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.DictReader(fh), start=2):
                if row["customer_id"] == customer_id:
                    yield _event(
                        _utc(row["timestamp"]),
                        "outcomes",
                        1,
                        None,
                        {"outcome": row["outcome_type"]},
                        "outcomes",
                        f"{path.name}:{n}",
                    )


_LITELLM_ORDER = (("end_user", "end_user"), ("request_tags", "tag"), ("user", "user"))
_LITELLM_ORDER += (("team_id", "team"), ("api_key", "key"))


def _litellm_owner(row: dict, owners: dict[str, str]) -> str | None:
    """The customer the row bills: the owner of its first identifier any customer names."""
    for column, kind in _LITELLM_ORDER:
        value = row.get(column)
        for v in value if isinstance(value, list) else [value]:
            if v and f"litellm:{kind}:{v}" in owners:
                return owners[f"litellm:{kind}:{v}"]
    return None


def _litellm(landing: Path, customer_id: str, owners: dict[str, str]):
    for path in sorted((landing / "litellm/spend_logs").glob("*.json")):
        for n, row in enumerate(json.loads(path.read_text(encoding="utf-8")), start=1):
            if row.get("status") not in (None, "", "success"):
                continue
            if _litellm_owner(row, owners) != customer_id:
                continue
            provider = row["custom_llm_provider"]
            model = row["model"].removeprefix(provider + "/")
            usage = (row.get("metadata") or {}).get("usage_object") or {}
            prompt = usage.get("prompt_tokens", row["prompt_tokens"])
            completion = usage.get("completion_tokens", row["completion_tokens"])
            details = usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens") or 0
            write = details.get("cache_creation_tokens") or 0
            hour = (details.get("cache_creation_token_details") or {}).get(
                "ephemeral_1h_input_tokens"
            ) or 0
            window = {}
            if provider == "anthropic":
                window = {"context_window": "200k-1M" if prompt > 200_000 else "0-200k"}
            parts = [
                ("input_tokens", prompt - cached - write, {}),
                ("cached_input_tokens", cached, {}),
                ("output_tokens", completion, {}),
            ]
            if provider == "anthropic":
                parts += [
                    ("cache_write_tokens", write - hour, {"cache_ttl": "5m"}),
                    ("cache_write_tokens", hour, {"cache_ttl": "1h"}),
                ]
            else:
                parts.append(("cache_write_tokens", write, {}))
            start = _utc(row["startTime"])
            for meter, q, dims in parts:
                ev = _event(
                    start, meter, q, model, {**dims, **window}, "litellm", f"{path.name}:{n}"
                )
                ev["provider"] = provider
                yield ev


def _list_price(book: list[dict], ev: dict, day: dt.date) -> tuple[Decimal, int] | None:
    """(price, unit_size) of the last price-book entry pricing the event on ``day``."""
    found = None
    for e in book:
        if e["provider"] != ev["provider"] or e["meter"] != ev["meter"]:
            continue
        globs = e.get("models")
        if globs is not None and not any(
            fnmatch.fnmatchcase(ev["model"], g) or fnmatch.fnmatchcase(family(ev["model"]), g)
            for g in globs
        ):
            continue
        if any(str(ev["dims"].get(k)) != str(v) for k, v in (e.get("dimensions") or {}).items()):
            continue
        if _as_date(e["from"]) <= day and (e.get("to") is None or day <= _as_date(e["to"])):
            found = (Decimal(str(e["unit_price"])), int(e.get("unit_size", 1)))
    return found


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _cost_plus_items(charge: dict, events: list[dict], book: list[dict], days: list) -> dict:
    """(model family, first day of the period or None) -> the rounded amount (rule 9)."""
    if charge.get("prices"):
        raise NotImplementedError(f"{charge['id']}: cost_plus price changes are not modelled")
    markup = Decimal(str(charge["markup"]))
    fee = Decimal(str(charge.get("unit_fee") or "0"))
    size = Decimal(charge.get("unit_size", 1))
    items = {}
    by_family: dict[str, list[dict]] = {}
    for ev in events:
        by_family.setdefault(family(ev["model"]), []).append(ev)
    for fam, evs in sorted(by_family.items()):
        bounds = [
            d
            for d in days[1:]
            if any(
                _list_price(book, ev, d) != _list_price(book, ev, d - dt.timedelta(days=1))
                for ev in evs
            )
        ]
        periods: dict[dt.date | None, list[dict]] = {}
        for ev in evs:
            day = ev["start"].date()
            periods.setdefault(max((b for b in bounds if b <= day), default=None), []).append(ev)
        for period, part in periods.items():
            with localcontext() as ctx:
                ctx.prec = 80
                listed = Decimal(0)
                for ev in part:
                    hit = _list_price(book, ev, ev["start"].date())
                    if hit is None:
                        raise ValueError(f"{ev['origin']}: no list price for {ev['meter']}")
                    listed += Decimal(ev["qty"]) * hit[0] / hit[1]
                units = sum(ev["qty"] for ev in part)
                items[(fam, period)] = _round(listed * (1 + markup) + Decimal(units) * fee / size)
    return items


def _claims(charge: dict, ev: dict) -> bool:
    meters = charge["meter"] if isinstance(charge["meter"], list) else [charge["meter"]]
    if ev["meter"] not in meters:
        return False
    if any(ev["dims"].get(k) != v for k, v in (charge.get("dimensions") or {}).items()):
        return False
    globs = charge.get("models")
    if globs is None:
        return True
    if ev["model"] is None:
        return False
    return any(
        fnmatch.fnmatchcase(ev["model"], g) or fnmatch.fnmatchcase(family(ev["model"]), g)
        for g in globs
    )


def price(charge: dict, q: int) -> Decimal:
    """Unrounded amount of a charge for q billable base units."""
    size = Decimal(charge.get("unit_size", 1))
    kind = charge.get("pricing", "per_unit")
    with localcontext() as ctx:
        ctx.prec = 80
        if kind == "per_unit":
            return Decimal(q) / size * Decimal(charge["unit_price"])
        if kind == "package":
            return math.ceil(Decimal(q) / Decimal(charge["package_size"])) * Decimal(
                charge["package_price"]
            )
        tiers = charge["tiers"]
        if kind == "volume":
            for t in tiers:
                if t["up_to"] is None or q <= t["up_to"]:
                    return Decimal(q) / size * Decimal(t["unit_price"]) + Decimal(
                        t.get("flat_fee", "0")
                    )
        if kind == "graduated":
            total, lower = Decimal(0), 0
            for t in tiers:
                upper = q if t["up_to"] is None else min(q, t["up_to"])
                units = max(0, upper - lower)
                if units:
                    total += Decimal(units) / size * Decimal(t["unit_price"]) + Decimal(
                        t.get("flat_fee", "0")
                    )
                if t["up_to"] is None or q <= t["up_to"]:
                    break
                lower = t["up_to"]
            return total
    raise ValueError(f"charge {charge['id']}: unknown pricing {kind!r}")


def expected_invoice(landing: Path, catalog_path: Path, customer_id: str, month: str) -> dict:
    landing = Path(landing)
    cat = yaml.safe_load(Path(catalog_path).read_text(encoding="utf-8"))
    cust = cat["customers"][customer_id]
    year, mon = (int(x) for x in month.split("-"))
    ndays = calendar.monthrange(year, mon)[1]
    days = [dt.date(year, mon, d) for d in range(1, ndays + 1)]
    subscribed: dict[dt.date, str] = {}
    for sub in cust["subscriptions"]:
        for d in days:
            if sub["from"] <= d and (sub.get("to") is None or d <= sub["to"]):
                subscribed[d] = sub["plan"]
    plans = set(subscribed.values())
    if len(plans) != 1:
        raise NotImplementedError(
            f"{customer_id}: {len(plans)} plans in {month}; oracle needs exactly one"
        )
    plan = cat["plans"][plans.pop()]
    keys = set(cust.get("keys") or [])
    owners = {k: cid for cid, c in cat["customers"].items() for k in c.get("keys") or []}
    sources = (
        _litellm(landing, customer_id, owners),
        _openai(landing, keys),
        _anthropic(landing, keys),
        _gateway(landing, keys),
        _focus(landing, cust.get("tags") or {}),
        _outcomes(landing, customer_id),
    )
    events = [e for src in sources for e in src if e["qty"] and e["start"].date() in subscribed]

    charges = plan.get("charges") or []
    by_id = {c["id"]: c for c in charges}
    billable: dict[tuple[str, str], int] = {}  # (charge_id, model family or "") -> base units
    unpriced: dict[str, int] = {}
    claimed = []
    for ev in events:
        owners = [c for c in charges if _claims(c, ev)]
        if len(owners) > 1:
            raise ValueError(f"charges {[c['id'] for c in owners]} overlap on {ev['origin']}")
        if not owners:
            unpriced[ev["meter"]] = unpriced.get(ev["meter"], 0) + ev["qty"]
        else:
            c = owners[0]
            split = (
                family(ev["model"])
                if c.get("pricing", "per_unit") == "per_unit" and ev["model"]
                else ""
            )
            claimed.append((ev, (c["id"], split)))

    allowance = plan.get("allowance") or {}
    left = int(allowance.get("quantity", 0))
    a_meters = list(allowance.get("meters") or [])
    used = 0

    def order(item):
        ev = item[0]
        return (
            ev["start"],
            a_meters.index(ev["meter"]),
            ev["model"] or "",
            ev["source"],
            ev["origin"],
        )

    for ev, cid in sorted((x for x in claimed if x[0]["meter"] in a_meters), key=order):
        take = min(left, ev["qty"])
        left, used = left - take, used + take
        billable[cid] = billable.get(cid, 0) + ev["qty"] - take
    for ev, cid in claimed:
        if ev["meter"] not in a_meters:
            billable[cid] = billable.get(cid, 0) + ev["qty"]

    cost_plus = {c["id"] for c in charges if c.get("pricing") == "cost_plus"}
    if cost_plus and a_meters:
        raise NotImplementedError("a cost_plus plan with an allowance is not modelled")
    items = {
        key: _round(price(by_id[key[0]], q))
        for key, q in sorted(billable.items())
        if q > 0 and key[0] not in cost_plus
    }
    for cid in sorted(cost_plus):
        found = _cost_plus_items(
            by_id[cid], [ev for ev, key in claimed if key[0] == cid], cat["price_book"], days
        )
        items.update(
            {(cid, f"{fam} {period or ''}".strip()): a for (fam, period), a in found.items()}
        )
    lines: dict[str, Decimal] = {}
    for (cid, _split), amount in items.items():
        lines[cid] = lines.get(cid, Decimal("0.00")) + amount
    quantities: dict[str, int] = {}
    for (cid, _split), q in billable.items():
        if q:
            quantities[cid] = quantities.get(cid, 0) + q
    usage_total = sum(lines.values(), Decimal("0.00"))
    if plan.get("base_fee") is not None:
        with localcontext() as ctx:
            ctx.prec = 60
            lines["base_fee"] = _round(Decimal(str(plan["base_fee"])) * len(subscribed) / ndays)
    minimum = plan.get("minimum_commitment")
    if minimum is not None and usage_total < Decimal(str(minimum)):
        lines["minimum_commitment"] = Decimal(str(minimum)) - usage_total
    subtotal = sum(lines.values(), Decimal("0.00"))
    tax_cfg = cust.get("tax") or {}
    rate = Decimal("0") if tax_cfg.get("reverse_charge") else Decimal(str(tax_cfg.get("rate", "0")))
    tax = _round(subtotal * rate)
    return {
        "lines": lines,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "items": items,
        "quantities": quantities,
        "allowance_used": used,
        "unpriced": unpriced,
    }
