"""Model ids: which provider serves a model, and which family it is priced as.

Each rule is one table read two ways, a Python function for a single id (quote, calculator, demo,
tokenizers) and a polars expression for a column (readers), both built here from the same table so
a quote, an invoice and the cost side cannot name different providers or families for one id.

- Provider: the first provider one of whose prefixes starts the lowercased id, after a fine-tune's
  ``ft:`` (``ft:gpt-4o-mini-2024-07-18:org::id`` is OpenAI's, ``ft:open-mistral-7b:...``
  Mistral's). An id no prefix claims (another lab's model that Mistral hosts, ``unknown-model``)
  has no provider here: the source must say (the gateway line's ``provider`` field, the report).
- Family: a dated snapshot is priced as its family (``gpt-4o-2024-08-06`` -> ``gpt-4o``,
  ``claude-sonnet-4-5-20250929`` -> ``claude-sonnet-4-5``, ``mistral-large-2411`` ->
  ``mistral-large``); other ids pass through unchanged.

Which offline tokenizer counts a model is not here: it follows tiktoken's and mistral-common's
own tables (``tokens/``).
"""

from __future__ import annotations

import re

import polars as pl

# (provider, id prefixes): first-party API model ids (LiteLLM's price list names these under the
# provider itself). No prefix of one provider starts another's, so the order decides nothing.
PROVIDER_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "openai",
        (
            "gpt",
            "chatgpt",
            "o1",
            "o3",
            "o4",
            "text-embedding",
            "text-moderation",
            "omni-moderation",
            "tts-1",
            "whisper-1",
            "dall-e",
            "sora",
            "computer-use",
            "codex-mini",
            "babbage",
            "davinci",
        ),
    ),
    ("anthropic", ("claude",)),
    (
        "mistral",
        (
            "mistral",
            "ministral",
            "open-mistral",
            "open-mixtral",
            "open-codestral",
            "codestral",
            "pixtral",
            "devstral",
            "magistral",
            "voxtral",
        ),
    ),
)
PROVIDERS = tuple(provider for provider, _ in PROVIDER_PREFIXES)
FINE_TUNE = "ft:"
# LiteLLM's names for these providers' own APIs (its ``codestral`` is Mistral's Codestral endpoint),
# so a price book imported from it names the provider the usage rows do.
LITELLM_PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "mistral": "mistral",
    "codestral": "mistral",
    "text-completion-codestral": "mistral",
}

# Dated snapshot suffixes: -2024-08-06, -20250929, -2411 (Mistral's YYMM), @20240620, -latest.
# No end anchor: Python's ``$`` also matches before a final newline, Rust's does not, so each
# side appends its own end-of-text anchor.
_SNAPSHOT_SUFFIX = r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|@\d{8}|-latest)"
_SNAPSHOT_RE = re.compile(_SNAPSHOT_SUFFIX + r"\Z")


def _column(column: str | pl.Expr) -> pl.Expr:
    return pl.col(column) if isinstance(column, str) else column


def provider_of(model: str | None) -> str | None:
    """``openai`` / ``anthropic`` / ``mistral`` for a model id, or None when no prefix claims it."""
    if model is None:
        return None
    bare = model.lower().removeprefix(FINE_TUNE)
    for provider, prefixes in PROVIDER_PREFIXES:
        if bare.startswith(prefixes):
            return provider
    return None


def provider_expr(column: str | pl.Expr = "model") -> pl.Expr:
    """``provider_of`` of every id in ``column`` (null where it gives None)."""
    bare = _column(column).str.to_lowercase().str.strip_prefix(FINE_TUNE)
    expr = pl.lit(None, pl.String)
    for provider, prefixes in reversed(PROVIDER_PREFIXES):  # built inside out: the first wins
        expr = (
            pl.when(pl.any_horizontal([bare.str.starts_with(p) for p in prefixes]))
            .then(pl.lit(provider))
            .otherwise(expr)
        )
    return expr


def model_family(model: str | None) -> str | None:
    """The family a dated snapshot is priced as; other ids unchanged."""
    return None if model is None else _SNAPSHOT_RE.sub("", model, count=1)


def model_family_expr(column: str | pl.Expr = "model") -> pl.Expr:
    """``model_family`` of every id in ``column``."""
    return _column(column).str.replace(_SNAPSHOT_SUFFIX + "$", "")
