"""What ships: every file the package reads at run time is inside it, found through
importlib.resources, and a deployment's own templates folder is the one documents are made with.

The wheel itself is built, installed outside the checkout and run by .ci/run (the demo renders its
invoices from the installed package); these tests pin the parts a unit test can see.
"""

from __future__ import annotations

import io
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml
from pypdf import PdfReader

from billing_pipeline import shipped
from billing_pipeline.rendering.pdf import FONTS_DIR, TEMPLATES_DIR, InvoiceRenderer
from billing_pipeline_tests.support.documents import make_document

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject.toml lists the packages (templates/ is mapped in, so nothing is found): a new
    subpackage left off the list would be missing from every installed copy."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]
    on_disk = {
        ".".join(folder.relative_to(ROOT).parts)
        for folder in [ROOT / "billing_pipeline", *(ROOT / "billing_pipeline").rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__"
    }
    assert set(config["packages"]) == on_disk | {"billing_pipeline.templates"}
    assert config["package-dir"] == {"billing_pipeline.templates": "templates"}
    data = config["package-data"]
    for folder, package in [
        (ROOT / "templates", "billing_pipeline.templates"),
        (ROOT / "billing_pipeline" / "fonts", "billing_pipeline.fonts"),
    ]:
        for path in folder.iterdir():
            if path.is_file() and path.suffix != ".py":
                assert any(path.match(glob) for glob in data[package]), (
                    f"{path.name} would not ship"
                )


def test_resources_are_the_checkouts_folders_read_through_the_package():
    # An editable checkout and a wheel read the same folders: here, the checkout's own.
    assert shipped.shipped_templates_dir() == TEMPLATES_DIR == ROOT / "templates"
    assert shipped.fonts_dir() == FONTS_DIR == ROOT / "billing_pipeline" / "fonts"
    assert (shipped.migrations_dir() / "env.py").is_file()
    assert (
        sorted(p.name for p in (shipped.migrations_dir() / "versions").glob("0*.py"))[0]
        == "0001_initial.py"
    )
    from billing_pipeline.ledger.ledger import MIGRATIONS_DIR

    assert shipped.migrations_dir() == MIGRATIONS_DIR


def test_invoices_embed_the_shipped_fonts_whatever_folder_the_templates_are_in(
    tmp_path, monkeypatch
):
    """The stylesheets name the fonts "billing-font:<file>", not a path relative to templates/,
    which would not hold in site-packages or in a deployment's own copy of the folder."""
    copy = tmp_path / "house-style"
    shutil.copytree(TEMPLATES_DIR, copy)
    monkeypatch.setenv(shipped.TEMPLATES_ENV, str(copy))
    renderer = InvoiceRenderer()
    pdf = PdfReader(io.BytesIO(renderer.render_pdf(make_document())))
    fonts = {
        str(font["/BaseFont"])
        for page in pdf.pages
        for font in page["/Resources"]["/Font"].get_object().values()
    }
    assert all(name.endswith(("+Invoice-Sans", "+Invoice-Sans-Bold")) for name in fonts), (
        fonts
    )  # @font-face, not the system
    assert "billing-font:DejaVuSans-Latin.ttf" in renderer.url_fetcher.calls


def test_a_deployments_own_templates_folder_is_used(tmp_path, monkeypatch):
    copy = tmp_path / "house-style"
    shutil.copytree(TEMPLATES_DIR, copy)
    template = copy / "invoice.html.j2"
    template.write_text(
        template.read_text(encoding="utf-8").replace(
            "</body>", "<p>Payable by bank transfer only</p></body>"
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv(shipped.TEMPLATES_ENV, str(copy))

    renderer = InvoiceRenderer()

    assert renderer.templates_dir == copy.resolve()
    assert "Payable by bank transfer only" in renderer.render_html(make_document())
    text = "".join(
        page.extract_text()
        for page in PdfReader(io.BytesIO(renderer.render_pdf(make_document()))).pages
    )
    assert "Payable by bank transfer only" in text
    monkeypatch.delenv(shipped.TEMPLATES_ENV)
    assert "Payable by bank transfer only" not in InvoiceRenderer().render_html(make_document())


def test_the_calculator_page_uses_the_deployments_script(tmp_path, monkeypatch):
    from billing_pipeline.catalog import load_catalog
    from billing_pipeline.demo.catalog import ISSUER, plans, price_book
    from billing_pipeline.quote.calculator import SCRIPT, page_data, render_page

    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(
        yaml.safe_dump(
            {"issuer": ISSUER, "plans": plans(), "customers": {}, "price_book": price_book()},
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    catalog = load_catalog(catalog_path)
    copy = tmp_path / "house-style"
    shutil.copytree(TEMPLATES_DIR, copy)
    (copy / SCRIPT).write_text(
        "/* house calculator */\n" + (copy / SCRIPT).read_text(encoding="utf-8"), encoding="utf-8"
    )
    monkeypatch.setenv(shipped.TEMPLATES_ENV, str(copy))

    page = render_page(page_data(catalog, next(iter(plans())), "2026-10"))

    assert "/* house calculator */" in page


def test_a_missing_override_folder_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv(shipped.TEMPLATES_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="BILLING_TEMPLATES_DIR"):
        InvoiceRenderer()
