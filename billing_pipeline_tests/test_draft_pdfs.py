"""A draft PDF is rendered again exactly when what it shows could differ: a changed document, a
changed renderer, or a PDF that is no longer the one rendered (rendering/receipts.py)."""

from __future__ import annotations

import json

import pytest

from billing_pipeline.documents.invoice import document_json
from billing_pipeline.rendering.invoice_files import prepare_draft_files
from billing_pipeline.rendering.pdf import renderer_fingerprint
from billing_pipeline.rendering.receipts import prune
from billing_pipeline.rendering.receipts import up_to_date as up_to_date_texts
from billing_pipeline.rendering.render_pool import render_drafts, render_many
from billing_pipeline_tests.support.documents import make_document


def up_to_date(folder, docs, fingerprint):
    return up_to_date_texts(
        folder, {doc["customer_id"]: document_json(doc) for doc in docs}, fingerprint
    )


@pytest.fixture
def rendered(tmp_path, renderer):
    docs = [make_document(), {**make_document("Globex"), "customer_id": "globex"}]
    render_many(docs, tmp_path, workers=1, renderer=renderer, record_renders=True)
    return tmp_path, docs


def test_pdfs_rendered_from_these_documents_by_this_renderer_are_up_to_date(rendered, renderer):
    folder, docs = rendered
    assert renderer.fingerprint == renderer_fingerprint()
    assert up_to_date(folder, docs, renderer.fingerprint) == {"acme", "globex"}


def test_a_changed_document_is_not_up_to_date(rendered, renderer):
    folder, docs = rendered
    late = {**docs[0], "total": "900.00"}
    assert up_to_date(folder, [late, docs[1]], renderer.fingerprint) == {"globex"}


def test_a_changed_renderer_makes_every_pdf_out_of_date(rendered):
    folder, docs = rendered
    assert up_to_date(folder, docs, "another template or WeasyPrint") == set()


def test_the_fingerprint_follows_the_template(tmp_path, renderer):
    from billing_pipeline.rendering.pdf import STYLESHEET_NAME, TEMPLATE_NAME, TEMPLATES_DIR

    for name in (TEMPLATE_NAME, STYLESHEET_NAME):
        (tmp_path / name).write_bytes((TEMPLATES_DIR / name).read_bytes())
    assert renderer_fingerprint(tmp_path) == renderer.fingerprint  # same bytes, same fingerprint
    with open(tmp_path / STYLESHEET_NAME, "a", encoding="utf-8") as fh:
        fh.write("\nh1 { color: black; }\n")
    assert renderer_fingerprint(tmp_path) != renderer.fingerprint


def test_a_pdf_replaced_or_deleted_since_is_not_up_to_date(rendered, renderer):
    folder, docs = rendered
    (folder / "acme.pdf").write_bytes(
        (folder / "globex.pdf").read_bytes()
    )  # say, an issued invoice's
    (folder / "globex.pdf").unlink()
    assert up_to_date(folder, docs, renderer.fingerprint) == set()


def test_without_a_receipt_nothing_is_up_to_date(rendered, renderer):
    folder, docs = rendered
    prune(folder, keep=["globex"])  # acme's draft is gone, and with it its receipt
    (folder / ".rendered" / "globex.json").write_text("{not json", encoding="utf-8")
    assert up_to_date(folder, docs, renderer.fingerprint) == set()


def test_pdfs_rendered_without_receipts_are_rendered_again(tmp_path, renderer):
    docs = [make_document()]
    render_many(docs, tmp_path, workers=1, renderer=renderer)  # issued invoices, benchmarks
    assert (tmp_path / "acme.pdf").is_file()
    assert up_to_date(tmp_path, docs, renderer.fingerprint) == set()


def test_month_end_renders_each_draft_from_its_json_copy_and_the_next_run_keeps_it(
    tmp_path, renderer
):
    """The render steps get the names of the JSON copies, not the documents: each PDF is the
    PDF of the copy beside it, and its receipt makes the next month-end leave it alone."""
    docs = [make_document(), {**make_document("Globex"), "customer_id": "globex"}]
    files = prepare_draft_files(tmp_path, docs, set(), renderer.fingerprint)
    assert [d.customer_id for d in files.to_render] == ["acme", "globex"]

    render_drafts(files.to_render, tmp_path, workers=1, renderer=renderer)

    for doc in docs:
        assert (tmp_path / f"{doc['customer_id']}.pdf").read_bytes() == renderer.render_pdf(doc)
    again = prepare_draft_files(tmp_path, docs, set(), renderer.fingerprint)
    assert again.to_render == [] and again.up_to_date == 2


@pytest.mark.parametrize("change", ["edited", "deleted"])
def test_a_json_copy_that_changed_after_month_end_wrote_it_is_not_rendered(
    tmp_path, renderer, change
):
    """A PDF beside a document it was not made from would be a wrong invoice: the render step
    stops, naming the file, and writes no PDF."""
    files = prepare_draft_files(tmp_path, [make_document()], set(), renderer.fingerprint)
    copy = tmp_path / "acme.json"
    if change == "edited":
        copy.write_text(json.dumps({**json.loads(copy.read_text()), "total": "1.00"}))
    else:
        copy.unlink()

    with pytest.raises(RuntimeError, match=r"acme\.json: the draft's JSON copy"):
        render_drafts(files.to_render, tmp_path, workers=1, renderer=renderer)
    assert not (tmp_path / "acme.pdf").exists()
