"""The demo's LiteLLM proxy: one reseller customer, Pinnacle, whose requests go through a LiteLLM
proxy and are billed cost-plus (plan ``resale``: the price book's list price + 15 % + a fee).

``spend_logs(seed, days)`` gives the proxy's spend log rows for the month, shaped as the proxy
stores them (``LiteLLM_SpendLogs``: metadata with the usage object, the hashed key, the team),
and ``export_json`` writes them as ``GET /spend/logs?summarize=false`` returns them: the export a
team without database access drops into ``litellm/spend_logs/``. Its own ``random.Random``, so
adding it changed nothing the other customers' data draws.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from decimal import Decimal

CUSTOMER = "pinnacle"
TEAM = "team-pinnacle"
KEY_HASH = hashlib.sha256(b"sk-pinnacle-prod-0001").hexdigest()  # LiteLLM stores sha256(key)
EXPORT = "litellm/spend_logs/spend_logs_{month}.json"
# The models Pinnacle calls: (model as LiteLLM stores it, custom_llm_provider, share of
# requests, the proxy's public model name)
MODELS = (
    ("gpt-4.1-2025-04-14", "openai", 0.5, "gpt-4.1"),
    ("claude-sonnet-4-5-20250929", "anthropic", 0.35, "claude-sonnet"),
    ("mistral/mistral-large-2411", "mistral", 0.15, "mistral-large"),
)
# gpt-4.1 list prices per 1M tokens, cut on the 15th in this demo: (input, cached input, output)
GPT41_BEFORE = ("2.00", "0.50", "8.00")
GPT41_FROM_15TH = ("1.60", "0.50", "6.40")
PRICE_CUT_DAY = 15


def _usage(rng: random.Random, provider: str) -> dict:
    """A usage object as LiteLLM stores it (its OpenAI-shaped ``Usage``; for Anthropic the prompt
    includes the cache reads and writes)."""
    completion = rng.randint(500, 6_000)
    if provider == "anthropic":  # under 200,000 input tokens: standard context prices
        uncached, read = rng.randint(5_000, 100_000), rng.choice([0, rng.randint(5_000, 60_000)])
        write = rng.choice([0, 0, rng.randint(2_000, 20_000)])
        one_hour = write if write and rng.random() < 0.3 else 0
        prompt = uncached + read + write
        return {
            "completion_tokens": completion,
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": 0, "text_tokens": completion},
            "prompt_tokens_details": {
                "cached_tokens": read,
                "cache_creation_tokens": write,
                "cache_creation_token_details": {
                    "ephemeral_5m_input_tokens": write - one_hour,
                    "ephemeral_1h_input_tokens": one_hour,
                },
                "text_tokens": uncached,
            },
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
        }
    prompt = rng.randint(10_000, 150_000)
    cached = rng.choice([0, (prompt * rng.randint(10, 60) // 100) // 128 * 128])
    usage = {
        "completion_tokens": completion,
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
    }
    if provider == "openai":
        usage["completion_tokens_details"] = {"audio_tokens": 0, "reasoning_tokens": 0}
        usage["prompt_tokens_details"] = {"audio_tokens": 0, "cached_tokens": cached}
    return usage


def _row(rng: random.Random, at: dt.datetime, spec: tuple, usage, status: str) -> dict:
    model, provider, _, group = spec
    prompt = usage["prompt_tokens"] if usage else 0
    completion = usage["completion_tokens"] if usage else 0
    request_id = (
        f"chatcmpl-{rng.getrandbits(96):024x}" if status == "success" else str(rng.getrandbits(128))
    )
    end_user = rng.choice(["", "", f"pl-user-{rng.randint(1, 40):02d}"])  # the app's own users
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"
    return {
        "request_id": request_id,
        "call_type": "acompletion",
        "api_key": KEY_HASH,
        "spend": 0.0,  # filled in by spend_logs from the list prices
        "total_tokens": prompt + completion,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "startTime": stamp,
        "endTime": stamp,
        "completionStartTime": stamp,
        "model": model,
        "model_id": hashlib.sha256(model.encode()).hexdigest()[:12],
        "model_group": group,
        "custom_llm_provider": provider,
        "api_base": "",
        "user": "pinnacle-admin",
        "metadata": {
            "user_api_key": KEY_HASH,
            "user_api_key_alias": "pinnacle-prod",
            "user_api_key_team_id": TEAM,
            "user_api_key_user_id": "pinnacle-admin",
            "usage_object": usage,
            "status": status,
            "error_information": None
            if status == "success"
            else {"error_code": "529", "error_class": "InternalServerError"},
        },
        "cache_hit": "False",
        "cache_key": "Cache OFF",
        "request_tags": [],
        "team_id": TEAM,
        "organization_id": None,
        "end_user": end_user,
        "requester_ip_address": None,
        "session_id": None,
        "status": status,
    }


def _spend(row: dict, prices: dict[str, tuple[str, ...]]) -> float:
    """LiteLLM's own price of the request (its ``spend``): the list price, as a float like the
    proxy writes it."""
    usage = row["metadata"]["usage_object"] or {}
    details = usage.get("prompt_tokens_details") or {}
    cached, write = details.get("cached_tokens", 0), details.get("cache_creation_tokens", 0)
    fresh = usage.get("prompt_tokens", 0) - cached - write
    p = [Decimal(x) for x in prices[row["model"]]]  # (input, cached, cache write, output)
    cost = fresh * p[0] + cached * p[1] + write * p[2] + usage.get("completion_tokens", 0) * p[3]
    return float(cost / 1_000_000)


def spend_logs(seed: int, days: list[dt.date], cost_per_m: dict[str, tuple]) -> list[dict]:
    """The month's spend log rows in ``startTime`` order. ``cost_per_m``: the demo price book's
    (input, cached, cache write, output) per family, for LiteLLM's ``spend``."""
    rng = random.Random(f"{seed}-litellm")
    rows = []
    for day in days:
        for _ in range(rng.randint(8, 14)):
            spec = rng.choices(MODELS, weights=[m[2] for m in MODELS])[0]
            at = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(
                seconds=rng.randrange(86_400), microseconds=rng.randrange(1000) * 1000
            )
            rows.append(_row(rng, at, spec, _usage(rng, spec[1]), "success"))
        if rng.random() < 0.25:  # an upstream outage: logged as a failure, not billed
            at = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
            rows.append(_row(rng, at, MODELS[1], None, "failure"))
    for row in rows:
        day = dt.date.fromisoformat(row["startTime"][:10])
        gpt41 = GPT41_BEFORE if day.day < PRICE_CUT_DAY else GPT41_FROM_15TH
        prices = {
            MODELS[0][0]: (gpt41[0], gpt41[1], "0", gpt41[2]),
            MODELS[1][0]: cost_per_m["claude-sonnet-4-5"],
            MODELS[2][0]: cost_per_m["mistral-large"],
        }
        row["spend"] = _spend(row, {k: tuple(x or "0" for x in v) for k, v in prices.items()})
    rows.sort(key=lambda r: (r["startTime"], r["request_id"]))
    return rows


def export_json(rows: list[dict]) -> str:
    """The rows as ``GET /spend/logs?summarize=false`` returns them (a JSON array)."""
    return json.dumps(rows, ensure_ascii=False) + "\n"
