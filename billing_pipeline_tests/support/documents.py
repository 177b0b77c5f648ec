"""An invoice document as the PDF template receives it: a full month of daily usage, three lines."""

from __future__ import annotations


def make_document(customer_name: str = "Acme Health Inc.", days: int = 31) -> dict:
    """Acme's October invoice: ``days`` days of gpt-4o usage (claude-sonnet-4 every other day)."""
    usage = []
    for day in range(1, days + 1):
        usage.append(
            {
                "day": f"2026-10-{day:02d}",
                "model": "gpt-4o",
                "quantity": 400000 + day * 1000,
                "amount": f"{3 + day % 7}.{day:02d}",
            }
        )
        if day % 2:
            usage.append(
                {
                    "day": f"2026-10-{day:02d}",
                    "model": "claude-sonnet-4",
                    "quantity": 90000,
                    "amount": f"1.{day:02d}",
                }
            )
    return {
        "number": None,
        "status": "draft",
        "customer_id": "acme",
        "period": "2026-10",
        "period_start": "2026-10-01",
        "period_end": "2026-10-31",
        "issue_date": None,
        "due_date": None,
        "currency": "USD",
        "issuer": {
            "name": "Example AI GmbH",
            "address": "Street 1\n10115 Berlin",
            "vat_id": "DE123456789",
            "email": "billing@example.ai",
        },
        "customer": {
            "id": "acme",
            "name": customer_name,
            "address": "1 Main St\nBoston, MA 02110\nUSA",
            "email": "billing@acme.example",
        },
        "plan": {"id": "enterprise", "name": "Enterprise"},
        "lines": [
            {
                "charge_id": "gpt4o-output",
                "description": "GPT-4o output tokens",
                "provider": "openai",
                "meter": "output_tokens",
                "model": "gpt-4o",
                "dimensions": {},
                "quantity": 12500000,
                "unit": "tokens",
                "unit_size": 1000,
                "unit_price": None,
                "pricing": "graduated",
                "amount": "120.00",
                "tiers": [
                    {
                        "tier": 1,
                        "from": 1,
                        "up_to": 10000000,
                        "quantity": 10000000,
                        "unit_price": "0.010",
                        "flat_fee": "0",
                        "amount": "100.000",
                    },
                    {
                        "tier": 2,
                        "from": 10000001,
                        "up_to": None,
                        "quantity": 2500000,
                        "unit_price": "0.008",
                        "flat_fee": "0",
                        "amount": "20.000",
                    },
                ],
                "explanation": "12,500,000 output tokens of gpt-4o: first 10,000,000 at $0.010 per 1K = "
                "$100.00; next 2,500,000 at $0.008 per 1K = $20.00",
                "consideration": "variable",
            },
            {
                "charge_id": "gpt4o-input",
                "description": "GPT-4o input tokens",
                "provider": "openai",
                "meter": "input_tokens",
                "model": "gpt-4o",
                "dimensions": {},
                "quantity": 40000000,
                "unit": "tokens",
                "unit_size": 1000,
                "unit_price": "0.0025",
                "pricing": "per_unit",
                "amount": "100.00",
                "tiers": [],
                "explanation": "40,000,000 input tokens of gpt-4o at $0.0025 per 1K = $100.00",
                "consideration": "variable",
            },
            {
                "charge_id": "sonnet",
                "description": "Claude Sonnet 4 tokens",
                "provider": "anthropic",
                "meter": "input_tokens",
                "model": "claude-sonnet-4",
                "dimensions": {},
                "quantity": 1400000,
                "unit": "tokens",
                "unit_size": 1000,
                "unit_price": "0.003",
                "pricing": "per_unit",
                "amount": "4.20",
                "tiers": [],
                "explanation": "1,400,000 input tokens of claude-sonnet-4 at $0.003 per 1K = $4.20",
                "consideration": "variable",
            },
            {
                "charge_id": "base_fee",
                "description": "Enterprise subscription, October 2026",
                "provider": None,
                "meter": None,
                "model": None,
                "dimensions": {},
                "quantity": 1,
                "unit": "month",
                "unit_size": 1,
                "unit_price": "500.00",
                "pricing": "fixed",
                "amount": "500.00",
                "tiers": [],
                "explanation": "Monthly base fee, full month.",
                "consideration": "fixed",
            },
        ],
        "subtotal": "724.20",
        "tax_rate": "0.19",
        "tax": "137.60",
        "reverse_charge": False,
        "tax_note": "",
        "credits_applied": "0.00",
        "total": "861.80",
        "usage_by_day": usage,
        "disclosure": {
            "plan_table": [
                {
                    "charge": "GPT-4o output tokens",
                    "meter": "output_tokens",
                    "models": "gpt-4o, gpt-4o-20*",
                    "pricing": "graduated",
                    "prices": "first 10,000,000 at $0.010 per 1K; above at $0.008 per 1K",
                }
            ],
            "summary": "You pay per 1,000 tokens. Output tokens get cheaper above 10 million a month.",
            "worked_example": "Your October usage of gpt-4o output: 12,500,000 tokens = $120.00",
        },
    }
