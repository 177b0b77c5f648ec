"""Which provider serves a model and which family it is priced as: one table (providers.py) that a
quote, an invoice, the imported price book and the demo all read, in Python and in polars alike."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.catalog.litellm import price_book_from_litellm
from billing_pipeline.demo.catalog import FAMILY_GLOBS, PROFILES, price_book
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.providers import (
    LITELLM_PROVIDERS,
    PROVIDER_PREFIXES,
    PROVIDERS,
    model_family,
    model_family_expr,
    provider_expr,
    provider_of,
)
from billing_pipeline.quote.quote import UNNAMED_PROVIDER, UsageSpec, quote
from billing_pipeline.rating import rate_month
from billing_pipeline.sources import gateway_log
from billing_pipeline.usage import normalize

LITELLM = (
    Path(__file__).resolve().parent / "data/external/litellm_model_prices_and_context_window.json"
)
MONTH = "2026-10"
OCT = (dt.date(2026, 10, 1), dt.date(2026, 11, 1))
CATALOG = parse_catalog(
    {
        "issuer": {"name": "Us"},
        "plans": {
            "tokens": {
                "name": "Tokens",
                "charges": [  # any model: one line per provider and model family
                    {"id": "input", "meter": "input_tokens", "unit_size": 1000, "unit_price": "1"}
                ],
            }
        },
        "customers": {
            "acme": {
                "name": "Acme",
                "subscriptions": [{"plan": "tokens", "from": "2026-10-01"}],
                "keys": ["gateway:acme"],
            }
        },
    }
)


def python_and_polars(function, expression, models: list[str | None]) -> tuple[list, list]:
    frame = pl.DataFrame({"model": models}, schema={"model": pl.String})
    return [function(m) for m in models], frame.select(expression("model").alias("out"))[
        "out"
    ].to_list()


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("codestral", "mistral"),
        ("codestral-2405", "mistral"),
        ("pixtral-large-latest", "mistral"),
        ("mistral-large", "mistral"),
        ("mistral-large-2411", "mistral"),
        ("ministral-8b-latest", "mistral"),
        ("open-mistral-nemo", "mistral"),
        ("voxtral-small-2507", "mistral"),
        ("text-embedding-3-small", "openai"),
        ("gpt-4o", "openai"),
        ("GPT-4o-2024-08-06", "openai"),  # ids are matched lowercased
        ("o3", "openai"),
        ("o3-mini-2025-01-31", "openai"),
        ("tts-1-hd", "openai"),
        ("whisper-1", "openai"),
        ("omni-moderation-latest", "openai"),
        ("ft:gpt-4o-mini-2024-07-18:acme::B2xYz", "openai"),  # a fine-tune is its base's
        ("ft:open-mistral-7b:587a6b29:20240514:7e773925", "mistral"),
        ("claude-sonnet-4-5", "anthropic"),
        ("claude-haiku-4-5-20251001", "anthropic"),
        ("claude-3-opus-20240229", "anthropic"),
        ("unknown-model", None),
        ("glm-5-2", None),  # another lab's model that Mistral also hosts: the line must say
        ("omni", None),
        ("", None),
        (None, None),
    ],
)
def test_a_model_id_names_the_same_provider_in_python_and_in_polars(model, provider):
    in_python, in_polars = python_and_polars(provider_of, provider_expr, [model])
    assert in_python == in_polars == [provider]


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("mistral-large-2411", "mistral-large"),
        ("gpt-4-0613", "gpt-4"),
        ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
        ("codestral-latest", "codestral"),
        ("gpt-4o", "gpt-4o"),
        ("o3", "o3"),
        ("gpt-4o-2024-08-06\n", "gpt-4o-2024-08-06\n"),  # not a snapshot id: left as it came
        (None, None),
    ],
)
def test_a_dated_snapshot_is_priced_as_its_family_in_python_and_in_polars(model, family):
    in_python, in_polars = python_and_polars(model_family, model_family_expr, [model])
    assert in_python == in_polars == [family]


_PREFIXES = [p for _, prefixes in PROVIDER_PREFIXES for p in prefixes]
# id = head + body + tail pieces: near misses of every rule (case, fine-tune marker, a final
# newline, non-ASCII letters and digits that lowercase or match \d, another lab's id)
_HEADS = ["", "ft:", "FT:", "ft", " ", "İ", "\u212a"]  # KELVIN SIGN lowercases to an ASCII k
_BODIES = [*_PREFIXES, *(p.upper() for p in _PREFIXES), "", "omni", "glm", "Claude"]
_TAILS = ["-", "@", "2024", "-08", "-20250929", "-2411", "-latest", "\n", "\u0663", "-mini"]
MODEL_IDS = st.builds(
    lambda head, body, tail: head + body + "".join(tail),
    st.sampled_from(_HEADS),
    st.sampled_from(_BODIES),
    st.lists(st.one_of(st.sampled_from(_TAILS), st.text(max_size=2)), max_size=5),
)


@given(MODEL_IDS)
def test_python_and_polars_agree_on_any_model_id(model):
    for function, expression in ((provider_of, provider_expr), (model_family, model_family_expr)):
        in_python, in_polars = python_and_polars(function, expression, [model])
        assert in_python == in_polars, (function.__name__, model)


def test_no_prefix_of_one_provider_starts_another_providers_so_order_decides_nothing():
    for provider, prefixes in PROVIDER_PREFIXES:
        for other, others in PROVIDER_PREFIXES:
            if other != provider:
                clash = [(p, o) for p in prefixes for o in others if o.startswith(p)]
                assert not clash, (provider, other, clash)


def litellm_models() -> dict[str, str]:
    """Every model id of the providers' own APIs in LiteLLM's price list, as the price-book
    import names it, with our name for LiteLLM's provider."""
    document = json.loads(LITELLM.read_text())
    models = {}
    for key, spec in document.items():
        litellm = spec.get("litellm_provider") if isinstance(spec, dict) else None
        if litellm in LITELLM_PROVIDERS:
            model = key.split("/", 1)[1] if key.startswith(litellm + "/") else key
            models[model] = LITELLM_PROVIDERS[litellm]
    return models


def demo_models() -> set[str]:
    """The ids the demo catalog names literally and the ones its customers use."""
    named = {m for globs in FAMILY_GLOBS.values() for m in globs if "*" not in m}
    return named | {m for p in PROFILES for m in p.mix}


def test_the_table_never_names_another_provider_than_litellms_price_list():
    models = litellm_models()
    assert set(models.values()) == set(PROVIDERS) and len(models) > 300
    wrong = {m: (provider_of(m), p) for m, p in models.items() if provider_of(m) not in (p, None)}
    assert wrong == {}
    # codestral and pixtral were the ids the quote used to call "quote" and the gateway "mistral"
    assert provider_of("codestral-latest") == provider_of("pixtral-large-latest") == "mistral"


def test_the_demo_catalog_prices_every_model_at_the_provider_its_usage_names():
    models = demo_models()
    assert {provider_of(m) for m in models} == {"openai", "anthropic", "mistral"}
    for entry in price_book():
        for model in entry.get("models") or []:
            if "*" not in model:
                assert provider_of(model) == entry["provider"], model


def test_the_imported_price_book_names_the_provider_the_usage_rows_name():
    entries, _ = price_book_from_litellm(LITELLM, list(LITELLM_PROVIDERS), dt.date(2026, 1, 1))
    assert {e["provider"] for e in entries} == set(PROVIDERS)  # LiteLLM's "codestral" is Mistral
    wrong = [e for e in entries if provider_of(e["models"][0]) not in (e["provider"], None)]
    assert wrong == []


def invoice_providers(landing: Path, models: list[str]) -> dict[str, str]:
    """Provider per model family on the month's invoice, from a gateway log whose lines name only
    the model (so the provider comes from the model id, as for a quote)."""
    (landing / "gateway").mkdir()
    lines = [
        {
            "request_id": f"r{i}",
            "timestamp": "2026-10-05T12:00:00Z",
            "customer_key": "acme",
            "model": model,
            "usage": {"prompt_tokens": 1000, "completion_tokens": 0},
        }
        for i, model in enumerate(models)
    ]
    (landing / "gateway" / "2026-10-05.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    read = gateway_log.read(landing, *OCT)
    assert read.quarantine.height == 0
    usage, _ = normalize([read.events], [read.quarantine], CATALOG)
    (document,) = build_documents(rate_month(usage, CATALOG, MONTH).lines, CATALOG, MONTH)
    return {line["model"]: line["provider"] for line in document["lines"]}


def test_a_quote_names_the_provider_the_invoice_names_for_every_model_of_the_demo_and_litellm(
    tmp_path,
):
    models = sorted(demo_models() | set(litellm_models()))
    invoiced = invoice_providers(tmp_path, models)
    quoted = quote(CATALOG, "tokens", [UsageSpec("input_tokens", m, 1000) for m in models], MONTH)
    assert len(invoiced) == len(quoted["lines"]) == len({model_family(m) for m in models})
    for line in quoted["lines"]:
        # where the model id names no provider the invoice takes the gateway line's (none here),
        # which a quote cannot know: it says so
        assert line["provider"] == (invoiced[line["model"]] or UNNAMED_PROVIDER), line["model"]
    # and that is the table's provider: no copy of it decides otherwise on either side
    assert {m: invoiced[model_family(m)] or None for m in models} == {
        m: provider_of(m) for m in models
    }
    assert set(invoiced.values()) >= set(PROVIDERS)
