"""Offline tokenizers: same counts as tiktoken / mistral-common, and never the network."""

import socket

import pytest
import tiktoken

from billing_pipeline import tokens


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tokenizers must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for cached in (tokens._tiktoken, tokens._tekken, tokens._mistral_listed):
        cached.cache_clear()  # force a fresh load under the no-network guard


def test_model_to_tokenizer():
    assert tokens.tokenizer_for("gpt-4o-2024-08-06") == "o200k_base"
    assert tokens.tokenizer_for("gpt-4") == "cl100k_base"
    assert tokens.tokenizer_for("pixtral-12b-2409") == "mistral_common:pixtral-12b-2409"
    assert tokens.tokenizer_for("ministral-3b-latest") == "tekken_240718"
    assert tokens.tokenizer_for("claude-sonnet-4-5") is None
    assert (
        tokens.tokenizer_for("mistral-large-2411") == "mistral_common:mistral-large-2411"
    )  # SentencePiece v7
    assert tokens.tokenizer_for("some-unknown-model") is None
    with pytest.raises(LookupError):
        tokens.count_tokens("claude-sonnet-4-5", ["hi"])


def test_openai_counts_match_tiktoken_encoding():
    assert tokens.count_tokens("gpt-4o", ["hello world", ""]) == [2, 0]
    assert tokens.count_tokens("gpt-4", ["hello world"]) == [2]
    text = "Invoices explain themselves: 1,234,567 tokens at $0.0025 per 1K. <|endoftext|>"
    enc = tokens._tiktoken("o200k_base")
    assert isinstance(enc, tiktoken.Encoding) and enc.n_vocab == 200019
    assert tokens.count_tokens("gpt-4o", [text]) == [len(enc.encode_ordinary(text))]
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_mistral_counts_match_mistral_common_without_bos_eos():
    import importlib.resources

    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    path = importlib.resources.files("mistral_common") / "data" / "tekken_240718.json"
    tek = Tekkenizer.from_file(str(path))
    text = "Bonjour le monde, 12345!"
    expected = len(tek.encode(text, bos=False, eos=False))
    assert tokens.count_tokens("open-mistral-nemo-2407", [text]) == [expected]
    assert tokens.count_tokens("mistral-small-2501", [text]) == [expected]
    assert tokens.count_tokens("open-mistral-nemo-2407", ["hello world"]) == [2]
