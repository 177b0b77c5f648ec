"""The sections of an invoice, each named for what it bills, and what each comes to.

A reader looks for "what did OpenAI cost me, what did the GPUs cost me": token usage is grouped
by the provider that served it (OpenAI, Anthropic, ...), GPU time is "GPU compute" whichever cloud
ran it, outcomes are "Outcomes" (their provider id, ``internal``, is our bookkeeping, never
shown), and base fees and commitment true-ups are "Subscription and commitments". Page 1 of the
PDF lists one subtotal per section and the detail follows in the same sections; the invoice JSON
carries the same subtotals (``sections``), so the two cannot disagree.
"""

from __future__ import annotations

from decimal import Decimal

from billing_pipeline.money import ZERO, amount_text, exact

PROVIDER_NAMES = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "mistral": "Mistral AI",
    "aws": "AWS",
    "azure": "Microsoft Azure",
    "gcp": "Google Cloud",
}
OTHER_PROVIDERS = "Other providers"
GPU_COMPUTE = "GPU compute"
OUTCOMES = "Outcomes"
SUBSCRIPTION = "Subscription and commitments"
DISCOUNTS = "Discounts"
CREDIT = "Credit"
# Meters billed for what they are, whoever reports them; other meters are the provider's.
METER_SECTIONS = {"gpu_seconds": GPU_COMPUTE, "outcomes": OUTCOMES}
# Sections after the providers', in this order (the providers' come first, by provider id).
LATER_SECTIONS = (GPU_COMPUTE, OUTCOMES, SUBSCRIPTION, DISCOUNTS, CREDIT)


def provider_title(provider: str) -> str:
    """'openai' -> 'OpenAI'; a charge spanning providers ('anthropic+mistral+openai') lists them.
    Usage whose source named no provider and whose model id no provider claims (providers.py)
    has an empty one: its section is OTHER_PROVIDERS, never a heading with no name."""
    parts = provider.split("+")
    names = [PROVIDER_NAMES.get(p, p) for p in parts if p]
    if not names:
        return OTHER_PROVIDERS
    if len(names) == 1 and len(parts) == 1:
        return names[0]
    return "Several providers: " + ", ".join(names + ["others"] * (len(names) < len(parts)))


def is_fixed(line: dict) -> bool:
    """A line that is not usage: a base fee, a true-up, a discount, a credit."""
    return line.get("consideration") == "fixed" or line.get("provider") is None


def section_of(line: dict) -> str:
    """The title of the section ``line`` belongs to."""
    if is_fixed(line):
        if line.get("pricing") == "discount":
            return DISCOUNTS
        if line.get("charge_id") == "credit":
            return CREDIT
        return SUBSCRIPTION
    meter = (line.get("meter") or "").split("+")[0]
    return METER_SECTIONS.get(meter) or provider_title(str(line["provider"]))


def section_order(lines: list[dict]) -> list[str]:
    """The sections of ``lines`` in the order the invoice shows them: providers by id, then GPU
    compute, outcomes, subscription, discounts, credit."""
    providers = sorted(
        {str(ln["provider"]) for ln in lines if section_of(ln) not in LATER_SECTIONS}
    )
    present = {section_of(ln) for ln in lines}
    return [provider_title(p) for p in providers] + [s for s in LATER_SECTIONS if s in present]


def sections(lines: list[dict], currency: str) -> list[dict]:
    """One entry per section, in invoice order: its title and the sum of its lines' amounts (the
    lines are rounded already, so the sections add up to the subtotal exactly)."""
    totals: dict[str, Decimal] = {}
    for line in lines:
        title = section_of(line)
        totals[title] = totals.get(title, ZERO) + exact(line["amount"])
    return [
        {"title": title, "amount": amount_text(totals[title], currency)}
        for title in section_order(lines)
    ]
