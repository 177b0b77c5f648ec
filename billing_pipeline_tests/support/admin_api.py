"""OpenAI's and Anthropic's admin APIs as a local server answers them (the ``api`` fixture in
conftest.py serves these pages): three pages per paginated endpoint, in the documented shape."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from billing_pipeline.sources.api.client import RetryPolicy

DAY = date(2026, 10, 5)
T0 = int(datetime(2026, 10, 5, tzinfo=UTC).timestamp())
OPENAI_KEY = "sk-admin-TESTSECRET-openai"
ANTHROPIC_KEY = "sk-ant-admin-TESTSECRET"


def completions(project, model, n):
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": 1000 * n,
        "output_tokens": 300 * n,
        "num_model_requests": n,
        "input_cached_tokens": 100 * n,
        "input_cache_write_tokens": 10 * n,
        "project_id": project,
        "api_key_id": None,
        "model": model,
        "user_id": None,
        "batch": None,
        "service_tier": None,
    }


def openai_page(results, cursor=None):
    return {
        "object": "page",
        "has_more": cursor is not None,
        "next_page": cursor,
        "data": [
            {"object": "bucket", "start_time": T0, "end_time": T0 + 86400, "results": results}
        ],
    }


def anthropic_result(key, model, n):
    return {
        "api_key_id": key,
        "workspace_id": "wrkspc_1",
        "model": model,
        "service_tier": "standard",
        "context_window": "0-200k",
        "uncached_input_tokens": 1500 * n,
        "cache_creation": {
            "ephemeral_1h_input_tokens": 1000 * n,
            "ephemeral_5m_input_tokens": 500 * n,
        },
        "cache_read_input_tokens": 200 * n,
        "output_tokens": 500 * n,
        "server_tool_use": {"web_search_requests": n},
    }


def anthropic_page(results, cursor=None):
    return {
        "data": [
            {
                "starting_at": "2026-10-05T00:00:00Z",
                "ending_at": "2026-10-06T00:00:00Z",
                "results": results,
            }
        ],
        "has_more": cursor is not None,
        "next_page": cursor,
    }


OPENAI_COMPLETIONS = [  # three pages, chained by next_page
    openai_page([completions("proj_a", "gpt-4o-2024-08-06", 1)], "c2"),
    openai_page(
        [completions("proj_a", "gpt-4o-mini", 2), completions("proj_b", "gpt-4o-2024-08-06", 3)],
        "c3",
    ),
    openai_page([completions("proj_b", "gpt-4.1", 4)]),
]
OPENAI_OTHER = {
    "embeddings": [
        openai_page(
            [
                {
                    "object": "organization.usage.embeddings.result",
                    "input_tokens": 5000,
                    "num_model_requests": 7,
                    "project_id": "proj_a",
                    "model": "text-embedding-3-small",
                }
            ]
        )
    ],
    "images": [
        openai_page(
            [
                {
                    "object": "organization.usage.images.result",
                    "images": 4,
                    "num_model_requests": 2,
                    "project_id": "proj_b",
                    "model": "dall-e-3",
                    "size": "1024x1024",
                    "source": "image.generation",
                }
            ]
        )
    ],
    "audio_speeches": [
        openai_page(
            [
                {
                    "object": "organization.usage.audio_speeches.result",
                    "characters": 1200,
                    "num_model_requests": 3,
                    "project_id": "proj_a",
                    "model": "tts-1",
                }
            ]
        )
    ],
    "audio_transcriptions": [
        openai_page(
            [
                {
                    "object": "organization.usage.audio_transcriptions.result",
                    "seconds": 95,
                    "num_model_requests": 1,
                    "project_id": "proj_a",
                    "model": "whisper-1",
                }
            ]
        )
    ],
}
OPENAI_COSTS = [
    openai_page(
        [
            {
                "object": "organization.costs.result",
                "amount": {"value": 2.1125, "currency": "usd"},
                "line_item": "gpt-4o-2024-08-06, input",
                "project_id": "proj_a",
                "api_key_id": None,
                "quantity": 845000,
            },
            {
                "object": "organization.costs.result",
                "amount": {"value": 0.1, "currency": "usd"},
                "line_item": "gpt-4o-mini-2024-07-18, cached input",
                "project_id": "proj_b",
                "api_key_id": None,
            },
        ]
    )
]
ANTHROPIC_USAGE = [
    anthropic_page([anthropic_result("apikey_1", "claude-sonnet-4-5", 1)], "p2"),
    anthropic_page([anthropic_result("apikey_2", "claude-sonnet-4-5", 2)], "p3"),
    anthropic_page([anthropic_result("apikey_1", "claude-haiku-4-5", 3)]),
]
ANTHROPIC_COSTS = [
    anthropic_page(
        [
            {
                "currency": "USD",
                "amount": "123.45",
                "workspace_id": "wrkspc_1",
                "description": "Claude Sonnet 4.5 Usage - Input Tokens",
                "cost_type": "tokens",
                "model": "claude-sonnet-4-5",
                "token_type": "uncached_input_tokens",
                "service_tier": "standard",
            },
            {
                "currency": "USD",
                "amount": "0.5",
                "workspace_id": "wrkspc_1",
                "description": "Web search",
                "cost_type": "web_search",
                "model": None,
                "token_type": None,
                "service_tier": None,
            },
        ]
    )
]


class FakeAdminApi(BaseHTTPRequestHandler):
    routes: dict[str, list[dict]] = {}
    faults: dict[tuple[str, str], list[int]] = {}  # (path, cursor) -> statuses to answer first
    seen: list[tuple[str, dict, dict]] = []

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.seen.append((url.path, query, dict(self.headers)))
        cursor = query.get("page", [""])[0]
        pending = self.faults.get((url.path, cursor))
        if pending:
            status = pending.pop(0)
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "2")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "try later"}}')
            return
        pages = self.routes.get(url.path)
        if pages is None:
            self.send_response(404)
            self.end_headers()
            return
        index = {"": 0, "c2": 1, "c3": 2, "p2": 1, "p3": 2}[cursor]
        body = json.dumps(
            pages[index], indent=1
        ).encode()  # indent: saved bytes must be these bytes
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def fast_policy(waits):
    """Four attempts that never sleep: each wait is appended to ``waits`` instead."""
    return RetryPolicy(attempts=4, base_delay=0.5, sleep=waits.append)
