"""The files the package reads at run time: templates, fonts, Alembic migrations.

Found through ``importlib.resources``, never relative to a source file, so ``pip install .`` (a
wheel in site-packages) and ``pip install -e .`` (the checkout) read the same files: the top-level
``templates/`` folder is mapped into the wheel as ``billing_pipeline.templates`` (pyproject.toml
``package-dir``), the fonts and migrations live inside the package. Every install we make is a
plain folder, so each resource is returned as a real ``Path`` (WeasyPrint's URL fetcher, Jinja2's
loader and Alembic's ``script_location`` all want one); a zipped install is refused with a message.

A deployment that restyles its documents points ``BILLING_TEMPLATES_DIR`` at its own copy of the
templates folder (it must hold every template and stylesheet; the fonts stay the shipped ones).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

TEMPLATES_ENV = "BILLING_TEMPLATES_DIR"


def package_folder(package: str) -> Path:
    """The folder of one of our packages, as a real path."""
    root = importlib.resources.files(package)
    if not isinstance(root, Path):  # a zip import: no folder to hand to WeasyPrint or Alembic
        raise RuntimeError(
            f"{package} is not installed as a folder ({root!r}); install the wheel with pip"
        )
    return root


def shipped_templates_dir() -> Path:
    """The templates that ship with the package (the checkout's top-level templates/)."""
    try:
        return package_folder("billing_pipeline.templates")
    except ModuleNotFoundError:
        # An editable install made before templates/ was mapped into the package (running
        # `pip install -e .` again fixes it): the same folder, found from the checkout.
        checkout = Path(__file__).resolve().parents[1] / "templates"
        if (checkout / "__init__.py").is_file():
            return checkout
        raise


def templates_dir() -> Path:
    """The templates documents are rendered with: $BILLING_TEMPLATES_DIR if set, else the shipped ones.

    Read when a renderer is built (not at import), so a deployment's setting is seen by every
    process that renders, and an unreadable setting fails loudly instead of falling back."""
    override = os.environ.get(TEMPLATES_ENV, "").strip()
    if not override:
        return shipped_templates_dir()
    folder = Path(override).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{TEMPLATES_ENV}={override!r}: not a folder")
    return folder


def fonts_dir() -> Path:
    """The fonts embedded in every PDF (billing_pipeline/fonts)."""
    return package_folder("billing_pipeline") / "fonts"


def migrations_dir() -> Path:
    """The Alembic environment and revisions of the invoice ledger."""
    return package_folder("billing_pipeline.ledger.migrations")
