"""Demo data: one month of provider usage exports in the landing zone, plus the catalog YAML.

``write_demo(landing, catalog_path)`` writes, for the month:

- ``openai/usage/completions/<day>_p1.json`` and ``_p2.json``: Usage API pages (one 1d bucket each;
  the first page has ``has_more``/``next_page``). Includes ``proj_orphan``, a project no customer
  owns (unattributed usage), and dated snapshots (gpt-4o-2024-08-06).
- ``anthropic/usage_report/<day>_p1.json``: usage_report/messages pages.
- ``gateway/<day>.jsonl``: the gateway's Mistral request log; a few lines carry prompt/completion
  text instead of ``usage`` (customers ``piedpiper`` and ``vandelay`` only).
- ``cloud/focus/focus_<month>.csv``: FOCUS 1.0 rows shaped like the real sample: hourly g5.4xlarge
  (1x A10G) instance hours tagged ``{"customer": ...}``, a few untagged GPU hours and non-GPU rows.
- ``outcomes/outcomes_<month>.csv``: outcome events (acme's accepted diagnoses).
- ``litellm/spend_logs/spend_logs_<month>.json``: Pinnacle's requests through a LiteLLM proxy, as
  the proxy's ``/spend/logs`` export (``demo/litellm.py``), billed cost-plus.

Deterministic: everything random comes from ``random.Random(seed)``, nothing reads the clock, and
files are written with fixed key order and ``\\n`` line ends, so the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import calendar
import copy
import datetime as dt
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from billing_pipeline.demo import litellm
from billing_pipeline.demo.catalog import (
    COST_PER_M,
    PROFILES,
    SPIKE_CUSTOMER,
    SPIKE_DAYS,
    SPIKE_FACTOR,
    Profile,
    assign_keys,
    catalog_document,
)
from billing_pipeline.demo.focus import focus_rows, write_focus_csv
from billing_pipeline.providers import provider_of

ORPHAN_PROJECT = "proj_orphan"
UTC = dt.UTC

_SENTENCES = [
    (
        "Summarize the attached delivery note in two sentences.",
        "The shipment of 40 boxes arrived on Monday. Two boxes were damaged and returned.",
    ),
    (
        "Translate 'the invoice is due in thirty days' into French.",
        "La facture est payable dans trente jours.",
    ),
    ("What is the capital of Australia?", "The capital of Australia is Canberra."),
    ("Write a short subject line for a renewal reminder.", "Your subscription renews next week."),
    ("Classify this ticket: my password reset link expired.", "Category: account access."),
    ("List three colours of the rainbow.", "Red, green and blue."),
]


@dataclass
class DemoSummary:
    month: str
    customers: int
    files: list[str] = field(default_factory=list)  # relative to the landing zone
    rows: dict[str, int] = field(default_factory=dict)  # source -> records written


def landing_is_empty(path: Path) -> bool:
    """True when the landing zone is missing or an empty directory (safe to write the demo)."""
    path = Path(path)
    if not path.exists():
        return True
    return path.is_dir() and not any(path.iterdir())


def _month_days(month: str) -> list[dt.date]:
    year, mon = (int(x) for x in month.split("-"))
    return [dt.date(year, mon, d) for d in range(1, calendar.monthrange(year, mon)[1] + 1)]


def _unix(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _rfc3339(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _daily_tokens(rng: random.Random, p: Profile, days: list[dt.date]) -> dict[dt.date, int]:
    """Total tokens per subscribed day: weekdays busier, +-20 % noise, the bot-run spike."""
    active = [d for d in days if p.start is None or d.day >= p.start.day]
    weights = {d: (1.0 if d.weekday() < 5 else 0.45) * rng.uniform(0.8, 1.2) for d in active}
    total_w = sum(weights.values())
    out = {}
    for d, w in weights.items():
        tokens = p.monthly_tokens * 1_000_000 * w / total_w
        if p.id == SPIKE_CUSTOMER and d.day in SPIKE_DAYS:
            tokens *= SPIKE_FACTOR
        out[d] = int(tokens)
    return out


def _split(rng: random.Random, p: Profile, tokens: int, model: str) -> dict[str, int]:
    """Split a day's tokens of one model into input-side parts and output."""
    out_ratio = p.output_ratio * rng.uniform(0.9, 1.1)
    input_side = int(tokens / (1 + out_ratio))
    output = tokens - input_side
    provider = provider_of(model)
    if provider == "mistral":
        return {"input": input_side, "cached": 0, "write_5m": 0, "write_1h": 0, "output": output}
    cached = int(input_side * p.cache_ratio * rng.uniform(0.8, 1.2))
    write_5m = write_1h = 0
    if provider == "anthropic":
        write = int(input_side * 0.04 * rng.uniform(0.5, 1.5))
        write_1h = write // 4
        write_5m = write - write_1h
    return {
        "input": input_side - cached - write_5m - write_1h,
        "cached": cached,
        "write_5m": write_5m,
        "write_1h": write_1h,
        "output": output,
    }


def _usage_plan(rng: random.Random, profiles: list[Profile], days: list[dt.date]) -> dict:
    """(day, customer, model) -> token parts, for every provider."""
    plan: dict[tuple[dt.date, str, str], dict[str, int]] = {}
    for p in profiles:
        daily = _daily_tokens(rng, p, days)
        for d, tokens in daily.items():
            for model, share in p.mix.items():
                plan[(d, p.id, model)] = _split(
                    rng, p, int(tokens * share * rng.uniform(0.9, 1.1)), model
                )
    return plan


def _dump_json(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"


def _cursor(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()[:18]
    return "page_" + base64.b64encode(digest).decode()


def _openai_pages(
    rng: random.Random, profiles: list[Profile], plan: dict, day: dt.date
) -> list[dict]:
    results = []
    for p in profiles:
        projects = p.keys.get("openai", [])
        for model in p.mix:
            if provider_of(model) != "openai" or (day, p.id, model) not in plan:
                continue
            parts = plan[(day, p.id, model)]
            shares = [1.0] if len(projects) == 1 else [0.7, 0.3]
            for project, share in zip(projects, shares, strict=True):
                results.append(_openai_result(rng, project, model, parts, share))
    orphan = {"input": int(400_000 * rng.uniform(0.5, 1.5)), "cached": 0, "output": 0}
    orphan["output"] = orphan["input"] // 4
    results.append(_openai_result(rng, ORPHAN_PROJECT, "gpt-4o-mini", orphan, 1.0))
    half = (len(results) + 1) // 2
    start, end = _unix(day), _unix(day + dt.timedelta(days=1))
    pages = []
    for i, chunk in enumerate((results[:half], results[half:])):
        last = i == 1
        pages.append(
            {
                "object": "page",
                "data": [
                    {"object": "bucket", "start_time": start, "end_time": end, "results": chunk}
                ],
                "has_more": not last,
                "next_page": None if last else _cursor("openai", day, i + 1),
            }
        )
    return pages


def _openai_result(rng: random.Random, project: str, model: str, parts: dict, share: float) -> dict:
    cached = int(parts["cached"] * share)
    uncached = int(parts["input"] * share)
    output = int(parts["output"] * share)
    total_in = uncached + cached
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": total_in,  # includes cached tokens, as OpenAI reports it
        "output_tokens": output,
        "num_model_requests": max(1, total_in // rng.randint(1500, 4000)),
        "input_cached_tokens": cached,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "project_id": project,
        "user_id": None,
        "api_key_id": None,
        "model": model,
        "batch": False,
        "service_tier": "default",
    }


def _anthropic_page(profiles: list[Profile], plan: dict, day: dt.date) -> dict:
    results = []
    for p in profiles:
        for model in p.mix:
            if provider_of(model) != "anthropic" or (day, p.id, model) not in plan:
                continue
            parts = plan[(day, p.id, model)]
            results.append(
                {
                    "api_key_id": p.keys["anthropic"][0],
                    "workspace_id": p.keys["anthropic_workspace"][0],
                    "model": model,
                    "service_tier": "standard",
                    "context_window": "0-200k",
                    "uncached_input_tokens": parts["input"],
                    "cache_creation": {
                        "ephemeral_1h_input_tokens": parts["write_1h"],
                        "ephemeral_5m_input_tokens": parts["write_5m"],
                    },
                    "cache_read_input_tokens": parts["cached"],
                    "output_tokens": parts["output"],
                    "server_tool_use": {"web_search_requests": 0},
                }
            )
    nxt = day + dt.timedelta(days=1)
    return {
        "data": [{"starting_at": _rfc3339(day), "ending_at": _rfc3339(nxt), "results": results}],
        "has_more": False,
        "next_page": None,
    }


def _weights(rng: random.Random, n: int) -> list[float]:
    w = [rng.uniform(0.3, 1.7) for _ in range(n)]
    s = sum(w)
    return [x / s for x in w]


def _gateway_lines(
    rng: random.Random,
    profiles: list[Profile],
    plan: dict,
    day: dt.date,
    text_days: dict[str, set[dt.date]],
) -> list[dict]:
    lines = []
    for p in profiles:
        for model in p.mix:
            if provider_of(model) != "mistral" or (day, p.id, model) not in plan:
                continue
            parts = plan[(day, p.id, model)]
            # requests of ~60k prompt tokens (inside a 128k context), 6 to 50 a day
            n = min(50, max(6, parts["input"] // 60_000 + rng.randint(0, 3)))
            for w_in, w_out in zip(_weights(rng, n), _weights(rng, n), strict=True):
                prompt, completion = int(parts["input"] * w_in), int(parts["output"] * w_out)
                lines.append(
                    {
                        "customer": p.id,
                        "model": model,
                        "second": rng.randrange(86400),
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                        },
                    }
                )
            if day in text_days.get(p.id, set()) and model.startswith("mistral-small"):
                prompt, completion = rng.choice(_SENTENCES)
                lines.append(
                    {
                        "customer": p.id,
                        "model": model,
                        "second": rng.randrange(86400),
                        "prompt": prompt,
                        "completion": completion,
                    }
                )
    lines.sort(key=lambda r: (r["second"], r["customer"], r["model"]))
    out = []
    for r in lines:
        ts = dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(
            seconds=r["second"]
        )
        rec = {
            "request_id": f"req_{rng.getrandbits(96):024x}",
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "customer_key": r["customer"],
            "provider": "mistral",
            "model": r["model"],
        }
        if "usage" in r:
            rec["usage"] = r["usage"]
        else:
            rec["prompt"], rec["completion"] = r["prompt"], r["completion"]
        out.append(rec)
    return out


def _outcome_rows(
    rng: random.Random, profiles: list[Profile], days: list[dt.date]
) -> list[list[str]]:
    rows = []
    for p in profiles:
        if not p.outcomes:
            continue
        for i in range(p.outcomes + p.outcomes // 8):
            kind = "accepted_diagnosis" if i < p.outcomes else "rejected_diagnosis"
            d = rng.choice(days)
            ts = dt.datetime(d.year, d.month, d.day, tzinfo=UTC) + dt.timedelta(
                seconds=rng.randrange(86400)
            )
            rows.append([p.id, kind, ts.strftime("%Y-%m-%dT%H:%M:%SZ")])
    rows.sort(key=lambda r: (r[2], r[0], r[1]))
    return [[f"out_{rng.getrandbits(64):016x}", *r] for r in rows]


class _NoAliasDumper(yaml.SafeDumper):
    """Safe YAML without &anchors/*aliases (shared date objects would otherwise become aliases)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _write(path: Path, text: str, summary: DemoSummary, landing: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    summary.files.append(path.relative_to(landing).as_posix())


def write_demo(
    landing: Path, catalog_path: Path, month: str = "2026-10", seed: int = 7
) -> DemoSummary:
    """Write one month of demo exports into ``landing`` and the catalog YAML to ``catalog_path``."""
    landing, catalog_path = Path(landing), Path(catalog_path)
    if not landing_is_empty(landing):
        raise FileExistsError(f"{landing}: landing zone is not empty; refusing to write demo data")
    rng = random.Random(seed)
    days = _month_days(month)
    profiles = copy.deepcopy(PROFILES)
    assign_keys(rng, profiles)
    for p in profiles:  # a mid-month start is the same day of whichever month is generated
        if p.start is not None:
            p.start = days[p.start.day - 1]
    summary = DemoSummary(month=month, customers=len(profiles) + 1)  # + Pinnacle (LiteLLM)

    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Demo catalog for {month} (billing_pipeline.demo.generator, seed {seed}).\n"
        "# Money is always a quoted decimal string; prices are per unit_size base units.\n"
    )
    body = yaml.dump(
        catalog_document(profiles, days[0]),
        Dumper=_NoAliasDumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=None,
    )
    catalog_path.write_bytes((header + body).encode("utf-8"))

    plan = _usage_plan(rng, profiles, days)
    text_days = {p.id: set(rng.sample(days, p.text_lines)) for p in profiles if p.text_lines}
    rows = {
        "openai_usage_api": 0,
        "anthropic_usage_report": 0,
        "gateway_log": 0,
        "focus": 0,
        "outcomes": 0,
        "litellm_spend_logs": 0,
    }
    landing.mkdir(parents=True, exist_ok=True)
    for day in days:
        for i, page in enumerate(_openai_pages(rng, profiles, plan, day), start=1):
            rows["openai_usage_api"] += sum(len(b["results"]) for b in page["data"])
            _write(
                landing / "openai/usage/completions" / f"{day.isoformat()}_p{i}.json",
                _dump_json(page),
                summary,
                landing,
            )
        page = _anthropic_page(profiles, plan, day)
        rows["anthropic_usage_report"] += len(page["data"][0]["results"])
        _write(
            landing / "anthropic/usage_report" / f"{day.isoformat()}_p1.json",
            _dump_json(page),
            summary,
            landing,
        )
        lines = _gateway_lines(rng, profiles, plan, day, text_days)
        rows["gateway_log"] += len(lines)
        _write(
            landing / "gateway" / f"{day.isoformat()}.jsonl",
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines),
            summary,
            landing,
        )

    frows = focus_rows(rng, profiles, days)
    rows["focus"] = len(frows)
    _write(
        landing / "cloud/focus" / f"focus_{month}.csv",
        write_focus_csv(frows, days),
        summary,
        landing,
    )

    orows = _outcome_rows(rng, profiles, days)
    rows["outcomes"] = len(orows)
    text = "outcome_id,customer_id,outcome_type,timestamp\n" + "".join(
        ",".join(r) + "\n" for r in orows
    )
    _write(landing / "outcomes" / f"outcomes_{month}.csv", text, summary, landing)

    logs = litellm.spend_logs(seed, days, COST_PER_M)
    rows["litellm_spend_logs"] = len(logs)
    _write(
        landing / litellm.EXPORT.format(month=month), litellm.export_json(logs), summary, landing
    )
    summary.rows = rows
    return summary
