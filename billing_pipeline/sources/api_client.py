"""The HTTP plumbing both provider admin-API clients share: bounded retries and saving pages.

Why here and not in each client: the retry rules (429 and 5xx retried, ``Retry-After`` honoured,
a hard cap on attempts and on any single wait) and the landing-zone write rules (bytes exactly as
returned, written atomically, stale higher-numbered pages of a re-fetched day removed) must be
the same for every provider, or a replay from files would differ from a live run.

The admin key travels only in request headers: it is never part of an error message, a log line
or a saved file.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import httpx

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class ApiError(RuntimeError):
    """The provider refused or kept failing; the message names the URL path and status only."""


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
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def get_with_retries(client: httpx.Client, path: str, params: list[tuple[str, str]], policy: RetryPolicy) -> httpx.Response:
    """GET that retries 429/5xx and transport errors; any other non-2xx fails at once."""
    last = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            response = client.get(path, params=params)
        except httpx.TransportError as exc:
            response, last = None, f"{type(exc).__name__}"
        if response is not None:
            if response.status_code < 300:
                return response
            last = f"HTTP {response.status_code}"
            if response.status_code not in RETRY_STATUS:
                raise ApiError(f"GET {path}: {last}: {_snippet(response)}")
        if attempt == policy.attempts:
            break
        wait = retry_after_seconds(response.headers.get("retry-after")) if response is not None else None
        if wait is None:
            wait = policy.base_delay * 2 ** (attempt - 1)
        policy.sleep(min(wait, policy.max_delay))
    raise ApiError(f"GET {path}: gave up after {policy.attempts} attempts, last: {last}")


def _snippet(response: httpx.Response) -> str:
    return response.text[:300].replace("\n", " ")


def admin_key(env_var: str, explicit: str | None = None) -> str:
    """The admin key from the environment (or given); a clear error naming the variable."""
    key = explicit if explicit is not None else os.environ.get(env_var, "")
    if not key:
        raise ApiError(f"{env_var} is not set: the admin API key is read from this environment variable")
    return key


def save_pages(folder: Path, day: str, pages: list[bytes]) -> list[Path]:
    """Write ``<day>_p<N>.json`` for each page as returned; drop older extra pages of that day.

    Each file is written to a temporary name and renamed, so a reader never sees half a page.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for n, body in enumerate(pages, start=1):
        path = folder / f"{day}_p{n}.json"
        tmp = folder / f".{path.name}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, path)
        written.append(path)
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
    """Follow ``has_more``/``next_page`` (cursor sent back as ``page``) until the last page."""
    bodies: list[bytes] = []
    cursor: str | None = None
    while True:
        response = get_with_retries(client, path, params + ([("page", cursor)] if cursor else []), policy)
        try:
            page = json.loads(response.content)
        except ValueError as exc:
            raise ApiError(f"GET {path}: page {len(bodies) + 1} is not JSON: {exc}") from None
        bodies.append(response.content)
        cursor = page.get("next_page") if isinstance(page, dict) else None
        if not (isinstance(page, dict) and page.get("has_more") and cursor):
            return bodies
        if len(bodies) >= max_pages:
            raise ApiError(f"GET {path}: more than {max_pages} pages; refusing to loop forever")
