"""Fixtures shared by the test modules. Helpers that are not fixtures live in support/."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from billing_pipeline.delivery.smtp import SmtpSettings, SmtpTransport
from billing_pipeline.demo.generator import write_demo
from billing_pipeline.issuing.month import issue_month
from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline.rendering.pdf import InvoiceRenderer
from billing_pipeline.runner import run_month_end
from billing_pipeline_tests.support.admin_api import (
    ANTHROPIC_COSTS,
    ANTHROPIC_USAGE,
    OPENAI_COMPLETIONS,
    OPENAI_COSTS,
    OPENAI_OTHER,
    FakeAdminApi,
)
from billing_pipeline_tests.support.delivery import CUSTOMERS, Mailbox, free_port
from billing_pipeline_tests.support.demo import MONTH, DemoMonth
from billing_pipeline_tests.support.ledger import ISSUED_ON, document
from billing_pipeline_tests.support.postgres import PG, drop_schema, postgres_ledger


@pytest.fixture(scope="session")
def demo_month(tmp_path_factory) -> DemoMonth:
    """The demo month, materialized once on the embedded default. Tests must not modify it."""
    root = tmp_path_factory.mktemp("demo_month")
    landing, catalog, out = root / "landing", root / "catalog.yaml", root / "out"
    write_demo(landing, catalog, month=MONTH)
    return DemoMonth(landing, catalog, out, run_month_end(MONTH, landing, catalog, out))


@pytest.fixture(autouse=True)
def _fresh_reconstructed_jobs():
    """Dagster keeps the last reconstructed job in a process-wide lru_cache keyed by its code
    pointer, so a job rebuilt from the environment (``month_end_job_from_env``) in one test would
    come back with another test's executor and folders. Clear it around every test."""
    from dagster._core.definitions.reconstruct import (
        ReconstructableJob,
    )  # no public way to reset it

    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    yield
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()


# ---------------------------------------------------------------- databases


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    """A migrated ledger; every test using it runs on SQLite and on PostgreSQL (a throwaway
    schema, skipped only when PostgreSQL is unreachable and CI is not "true")."""
    if request.param == "sqlite":
        ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
        ledger.migrate()
        yield ledger
        ledger.engine.dispose()
        return
    ledger, admin, schema = postgres_ledger()
    ledger.migrate()
    try:
        yield ledger
    finally:
        drop_schema(ledger, admin, schema)


@pytest.fixture
def postgres_database(new_postgres_database) -> str:
    """A throwaway PostgreSQL database on the local server; dropped afterwards."""
    return new_postgres_database("dagster")


# ---------------------------------------------------------------- invoices and their delivery


@pytest.fixture(scope="session")
def renderer() -> InvoiceRenderer:
    """One renderer for the session: building one parses the templates and fonts."""
    return InvoiceRenderer()


@pytest.fixture
def issued(ledger, renderer, tmp_path):
    """Three issued invoices with their final PDFs under tmp_path/out."""
    out = tmp_path / "out"
    ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS])
    ledger.record_checks(MONTH, [{"name": "month_end_run_completed", "passed": True}])
    issue_month(
        ledger,
        MONTH,
        out,
        prefix="INV",
        payment_terms_days=30,
        issue_date=ISSUED_ON,
        renderer=renderer,
    )
    return out


@pytest.fixture
def mailbox():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that accepts the login s3cret."""
    box = Mailbox()

    def authenticate(server, session, envelope, mechanism, auth_data):
        box.logins.append(auth_data.login.decode())
        return AuthResult(success=auth_data.password == b"s3cret")

    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def smtp(mailbox):
    with SmtpTransport(
        SmtpSettings("127.0.0.1", mailbox.port, security="none", timeout=10)
    ) as transport:
        yield transport


# ---------------------------------------------------------------- webhooks and provider APIs


@pytest.fixture
def receivers_on_loopback(monkeypatch):
    """The documented test opt-in: these tests' webhook receivers listen on 127.0.0.1."""
    monkeypatch.setenv("BILLING_WEBHOOK_ALLOW_PRIVATE", "1")


@pytest.fixture
def api():
    """OpenAI's and Anthropic's admin APIs on 127.0.0.1, answering the pages of
    support/admin_api.py, each paginated endpoint once with 429 and once with 500 on the way: the
    base URL."""
    FakeAdminApi.routes = {
        "/v1/organization/usage/completions": OPENAI_COMPLETIONS,
        "/v1/organization/costs": OPENAI_COSTS,
        "/v1/organizations/usage_report/messages": ANTHROPIC_USAGE,
        "/v1/organizations/cost_report": ANTHROPIC_COSTS,
    }
    FakeAdminApi.routes |= {f"/v1/organization/usage/{e}": p for e, p in OPENAI_OTHER.items()}
    FakeAdminApi.faults = {
        ("/v1/organization/usage/completions", "c2"): [429],
        ("/v1/organization/usage/completions", "c3"): [500],
        ("/v1/organizations/usage_report/messages", "p2"): [429],
        ("/v1/organizations/usage_report/messages", "p3"): [500],
    }
    FakeAdminApi.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAdminApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def new_postgres_database() -> Iterator[Callable[[str], str]]:
    """Makes throwaway databases on the local PostgreSQL server (``new("dagster")`` returns a fresh
    name); all of them are dropped afterwards. Skips without a server, except under CI."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="test", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        if os.getenv("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    admin.autocommit = True
    made: list[str] = []

    def new(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name

    try:
        yield new
    finally:
        for name in made:
            admin.cursor().execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
