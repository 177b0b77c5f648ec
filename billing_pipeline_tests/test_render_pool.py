"""Rendering many invoices over worker processes gives the same files as one renderer."""

from __future__ import annotations

import copy
import hashlib

import pytest

from billing_pipeline.rendering.pdf import InvoiceRenderer
from billing_pipeline.rendering.render_pool import render_many
from billing_pipeline_tests.support.documents import make_document


def documents(n: int) -> list[dict]:
    docs = []
    for i in range(n):
        doc = make_document(customer_name=f"Customer {i}")
        doc["customer_id"] = doc["customer"]["id"] = f"c{i:02d}"
        docs.append(doc)
    return docs


def test_pool_writes_every_pdf_with_the_bytes_one_renderer_gives(tmp_path):
    docs = documents(3)
    result = render_many(docs, tmp_path, workers=2)
    assert [customer for customer, _ in result] == [
        d["customer_id"] for d in docs
    ]  # document order
    renderer = InvoiceRenderer()
    for doc, (customer, sha) in zip(docs, result, strict=True):
        data = (tmp_path / f"{customer}.pdf").read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        assert data == renderer.render_pdf(doc)  # which worker rendered it does not matter


def test_one_worker_renders_in_process_with_the_given_renderer(tmp_path):
    renderer = InvoiceRenderer()
    docs = documents(2)
    render_many(docs, tmp_path, workers=1, renderer=renderer)
    assert sorted(p.name for p in tmp_path.glob("*.pdf")) == ["c00.pdf", "c01.pdf"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_document_names_its_customer(tmp_path, workers):
    docs = documents(4)
    broken = copy.deepcopy(docs[2])
    del broken["total"]  # an invoice without its total cannot be rendered
    docs[2] = broken
    with pytest.raises(RuntimeError, match="'c02'"):
        render_many(docs, tmp_path, workers=workers)
