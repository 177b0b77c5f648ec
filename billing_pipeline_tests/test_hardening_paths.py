"""Output files stay inside --out whatever id names them (issue 16, item 2).

The catalog refuses unsafe ids at load (test_catalog_validation.py); ``paths.inside`` is the
second wall where invoices, receipts, statements and .eml files are written: a document whose id
would leave its folder (a ledger edited by hand, a catalog from before the rule) is refused there.
"""

from __future__ import annotations

import os

import pytest

from billing_pipeline.issuing.month import file_stem
from billing_pipeline.paths import UnsafePath, inside
from billing_pipeline.rendering.receipts import record_render, up_to_date


def test_a_safe_name_is_joined_in_the_callers_own_form(tmp_path):
    assert (
        inside(tmp_path, "2026-10", "invoices", "acme.pdf")
        == tmp_path / "2026-10" / "invoices" / "acme.pdf"
    )
    assert (
        inside(str(tmp_path), "acme.INV-2026-10-0001.json")
        == tmp_path / "acme.INV-2026-10-0001.json"
    )


@pytest.mark.parametrize(
    "name",
    [
        "../../../../x.pdf",
        "/abs/x.pdf",
        "a/b.pdf",
        "..",
        ".",
        "",
        "a\x00.pdf",
        "..\\..\\x.pdf",
        "invoices/../../x.pdf",
    ],
)
def test_a_name_that_climbs_out_is_absolute_or_has_a_separator_is_refused(tmp_path, name):
    with pytest.raises(UnsafePath, match="not a safe file name"):
        inside(tmp_path / "out", name)


def test_a_symlink_planted_where_the_file_goes_is_refused(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere / "acme.json", out / "acme.json")
    with pytest.raises(UnsafePath, match="outside"):
        inside(out, "acme.json")


def test_a_symlinked_out_folder_itself_is_fine(tmp_path):
    """--out may be a link to another disk: only escaping it is refused."""
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "out")
    assert inside(tmp_path / "out", "acme.pdf") == tmp_path / "out" / "acme.pdf"


def test_a_render_receipt_for_a_hostile_customer_id_is_not_written_outside_the_folder(tmp_path):
    folder = tmp_path / "out" / "2026-10" / "invoices"
    folder.mkdir(parents=True)
    with pytest.raises(UnsafePath):
        record_render(folder, {"customer_id": "../../../../x", "lines": []}, "fp", "0" * 64)
    assert not (tmp_path / "x.json").exists() and list(tmp_path.rglob("x.json")) == []
    # up_to_date reads receipts through the same helper: a hostile id is simply not up to date
    assert up_to_date(folder, {"/abs/x": "{}"}, "fp") == set()


def test_file_stems_of_credit_notes_keep_the_number_and_still_pass_the_check(tmp_path):
    stem = file_stem({"kind": "credit_note", "customer_id": "acme", "number": "CN-2026-10-0001"})
    assert inside(tmp_path, f"{stem}.pdf").name == "acme.CN-2026-10-0001.pdf"
    hostile = file_stem({"kind": "credit_note", "customer_id": "acme", "number": "../../x"})
    with pytest.raises(UnsafePath):
        inside(tmp_path, f"{hostile}.pdf")
