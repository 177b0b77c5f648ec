"""The HTTP plumbing both provider admin-API clients share: bounded retries and saving pages.

Why here and not in each client: the retry rules (429 and 5xx retried, ``Retry-After`` honoured,
a hard cap on attempts and on any single wait) and the landing-zone write rules (bytes exactly as
returned, written atomically, stale higher-numbered pages of a re-fetched day removed) must be
the same for every provider, or a replay from files would differ from a live run.

The admin key travels only in request headers, and no text we store or log may carry it: a
provider (or a proxy in front of it) can echo the request, key included, in an error body. So every
error path passes its text through ``redact``, which removes the key in the client's auth headers
and the value of every known secret environment variable (``SECRET_ENV_VARS`` and any
``BILLING_WEBHOOK_SECRET_*``), *before* the text is cut to length (a cut key would survive as a
prefix).
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx

from billing_pipeline.atomic import write_bytes

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# Environment variables whose values are secrets: the admin keys the clients read, the SMTP
# password, and every webhook signing secret (by prefix). Their values never reach a message.
SECRET_ENV_VARS = ("OPENAI_ADMIN_KEY", "ANTHROPIC_ADMIN_KEY", "BILLING_SMTP_PASSWORD")
SECRET_ENV_PREFIX = "BILLING_WEBHOOK_SECRET_"
SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "proxy-authorization")
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4  # shorter values would blank ordinary words; no real key is that short
SNIPPET_CHARS = 300
log = logging.getLogger(__name__)


class ApiError(RuntimeError):
    """The provider refused or kept failing, or a day could not be fetched whole; the message names
    the URL path, the page or status, and a redacted start of the error body."""


@dataclass
class RetryPolicy:
    """At most ``attempts`` tries; waits double from ``base_delay`` unless ``Retry-After`` says
    otherwise, and no single wait exceeds ``max_delay`` (a bogus header cannot hang a run)."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unusable."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def known_secrets(environ: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Every secret value a message could leak: the known variables' values and ``extra``
    (e.g. the key in the client's headers, which may have been passed explicitly)."""
    environ = os.environ if environ is None else environ
    values = [environ.get(name, "") for name in SECRET_ENV_VARS]
    values += [value for name, value in environ.items() if name.startswith(SECRET_ENV_PREFIX)]
    values += list(extra)
    found = {v.strip() for v in values if v and len(v.strip()) >= MIN_SECRET_LENGTH}
    return sorted(
        found, key=len, reverse=True
    )  # longest first: a key containing another goes whole


def redact(text: str, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every known secret (see ``known_secrets``) replaced by ``[REDACTED]``,
    also in its JSON-escaped and URL-encoded spellings (an echoed request is often one of them)."""
    for secret in known_secrets(environ, extra):
        escaped = json.dumps(secret)[1:-1]
        for spelling in {secret, escaped, escaped.replace("/", "\\/"), quote(secret, safe="")}:
            text = text.replace(spelling, REDACTED)
    return text


def client_secrets(client: httpx.Client) -> list[str]:
    """The credentials in a client's default headers (``Bearer <key>``, ``x-api-key``)."""
    found = []
    for name in SECRET_HEADERS:
        value = client.headers.get(name)
        if value:
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "basic", "token"):
                found.append(token)
    return found


def get_with_retries(
    client: httpx.Client, path: str, params: list[tuple[str, str]], policy: RetryPolicy
) -> httpx.Response:
    """GET that retries 429/5xx and transport errors; any other non-2xx fails at once. Every
    message raised or logged is redacted (the provider may echo the key in its body)."""
    secrets = client_secrets(client)
    last = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            response = client.get(path, params=params)
        except httpx.TransportError as exc:
            response, last = None, f"{type(exc).__name__}"
        if response is not None:
            if response.status_code < 300:
                return response
            last = f"HTTP {response.status_code}: {_snippet(response, secrets)}"
            if response.status_code not in RETRY_STATUS:
                raise ApiError(f"GET {path}: {last}")
        if attempt == policy.attempts:
            break
        log.warning("GET %s: attempt %d of %d failed: %s", path, attempt, policy.attempts, last)
        wait = (
            retry_after_seconds(response.headers.get("retry-after"))
            if response is not None
            else None
        )
        if wait is None:
            wait = policy.base_delay * 2 ** (attempt - 1)
        policy.sleep(min(wait, policy.max_delay))
    raise ApiError(f"GET {path}: gave up after {policy.attempts} attempts, last: {last}")


def _snippet(response: httpx.Response, secrets: Iterable[str] = ()) -> str:
    """The start of an error body, redacted first and cut after (a cut key would survive)."""
    return redact(response.text, secrets)[:SNIPPET_CHARS].replace("\n", " ")


def admin_key(env_var: str, explicit: str | None = None) -> str:
    """The admin key from the environment (or given); a clear error naming the variable."""
    key = explicit if explicit is not None else os.environ.get(env_var, "")
    if not key:
        raise ApiError(
            f"{env_var} is not set: the admin API key is read from this environment variable"
        )
    return key


def save_pages(folder: Path, day: str, pages: list[bytes]) -> list[Path]:
    """Write ``<day>_p<N>.json`` for each page as returned; drop older extra pages of that day.

    Each file is written atomically (``atomic.write_bytes``), so a reader never sees half a page.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for n, body in enumerate(pages, start=1):
        path = folder / f"{day}_p{n}.json"
        written.append(write_bytes(path, body))
    for stale in folder.glob(f"{day}_p*.json"):
        m = re.fullmatch(rf"{re.escape(day)}_p(\d+)\.json", stale.name)
        if m and int(m[1]) > len(pages):
            stale.unlink()
    return written


def fetch_all_pages(
    client: httpx.Client,
    path: str,
    params: list[tuple[str, str]],
    policy: RetryPolicy,
    max_pages: int = 1000,
) -> list[bytes]:
    """Follow ``has_more``/``next_page`` (cursor sent back as ``page``) until the last page.

    Returns only when a page says ``has_more: false`` (or omits it): a day that cannot be fetched
    whole is an ``ApiError`` naming the path and page, never a silent partial day that would bill
    less. ``has_more: true`` without a cursor, a cursor seen before (a loop) and more than
    ``max_pages`` pages all fail."""
    bodies: list[bytes] = []
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        number = len(bodies) + 1
        response = get_with_retries(
            client, path, params + ([("page", cursor)] if cursor else []), policy
        )
        try:
            page = json.loads(response.content)
        except ValueError as exc:
            raise ApiError(f"GET {path}: page {number} is not JSON: {exc}") from None
        if not isinstance(page, dict):
            raise ApiError(f"GET {path}: page {number} is not a JSON object")
        bodies.append(response.content)
        if not page.get("has_more"):
            return bodies
        cursor = page.get("next_page")
        if not isinstance(cursor, str) or not cursor:
            raise ApiError(
                f"GET {path}: page {number} says has_more but gives no next_page cursor; "
                "the day is incomplete"
            )
        if cursor in seen:
            raise ApiError(
                f"GET {path}: page {number} repeats an earlier next_page cursor; refusing to loop"
            )
        seen.add(cursor)
        if len(bodies) >= max_pages:
            raise ApiError(
                f"GET {path}: page {number} says has_more after {max_pages} pages (the limit); "
                "the day is incomplete"
            )
