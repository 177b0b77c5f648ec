"""The invoice, statement, reconciliation and calculator templates, stylesheets and script.

Edit the .j2, .css and .js files here to change how documents look. This folder is shipped inside
the wheel as the package ``billing_pipeline.templates`` (pyproject.toml ``package-dir``), so an
editable checkout and an installed wheel read the same files; a deployment can use its own copy
with BILLING_TEMPLATES_DIR (billing_pipeline/shipped.py).
"""
