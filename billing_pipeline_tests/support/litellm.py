"""A LiteLLM proxy database for the spend log tests: the real PostgreSQL on 127.0.0.1, a throwaway
schema, the ``LiteLLM_SpendLogs`` table from LiteLLM's own schema (data/providers/litellm)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

DATA = Path(__file__).resolve().parent.parent / "data" / "providers" / "litellm"
BASE_URL = os.environ.get(
    "BILLING_TEST_LITELLM_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
JSON_COLUMNS = ("metadata", "request_tags", "messages", "response", "proxy_server_request")


def spend_log_rows() -> list[dict]:
    """The rows as the proxy writes them (data/providers/litellm/spend_logs_rows.json)."""
    return json.loads((DATA / "spend_logs_rows.json").read_text(encoding="utf-8"))


def insert_rows(url: str, rows: list[dict]) -> None:
    """INSERT rows the way the proxy's Prisma client does: JSON columns as JSON, the rest as is."""
    with psycopg.connect(url, autocommit=True) as conn:
        for row in rows:
            names = ", ".join(f'"{k}"' for k in row)
            marks = ", ".join(["%s"] * len(row))
            values = [Jsonb(v) if k in JSON_COLUMNS else v for k, v in row.items()]
            conn.execute(f'INSERT INTO "LiteLLM_SpendLogs" ({names}) VALUES ({marks})', values)


@contextmanager
def proxy_database(rows: list[dict] | None = None) -> Iterator[str]:
    """A URL whose search_path is a fresh schema holding the spend log table (with ``rows``,
    default the data file's); the schema is dropped afterwards. Skips without a server, except
    under CI."""
    try:
        admin = psycopg.connect(BASE_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    schema = f"litellm_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{BASE_URL}?options=-csearch_path%3D{schema}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((DATA / "spend_logs_table.sql").read_text(encoding="utf-8"))
        insert_rows(url, spend_log_rows() if rows is None else rows)
        yield url
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()
