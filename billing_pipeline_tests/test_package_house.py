"""The package's house rules that a linter does not check: a private name (``_name``) stays in the
module that defines it, and an import sits at the top of its module unless it is heavy and only
some calls need it (listed below with the reason). The floors themselves (which package may import
which) are import-linter's contracts in pyproject.toml, run by .ci/run."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import billing_pipeline

ROOT = Path(billing_pipeline.__file__).resolve().parent

# Imports that stay inside a function, with the reason: each is heavy and most calls never need it.
LAZY_IMPORTS = {
    "alembic": "only migrate() runs Alembic",
    "alembic.config": "only migrate() runs Alembic",
    "dagster_celery": "the Celery executor, only when BILLING_EXECUTOR=celery",
    "dagster_celery.executor": "the Celery executor, only when BILLING_EXECUTOR=celery",
    "dagster_celery.make_app": "the Celery executor, only when BILLING_EXECUTOR=celery",
    "dagster_celery.tasks": "the Celery executor, only when BILLING_EXECUTOR=celery",
    "mistral_common.tokens.tokenizers.mistral": "a Mistral tokenizer, only for Mistral text",
    "mistral_common.tokens.tokenizers.tekken": "a Mistral tokenizer, only for Mistral text",
    "billing_pipeline.sources.drift": "loads the tokenizers, only for logs that carry text",
    "weasyprint": "only the finance summary's PDF needs it in reconcile",
    "rich.console": "the progress bars, only when a terminal watches",
    "rich.progress": "the progress bars, only when a terminal watches",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*parts, node.module] if node.module else parts)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_our_module(name: str) -> bool:
    if name.split(".")[0] != "billing_pipeline":
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name inside a module, not a submodule
        return False


def private_crossings(source: str, module: str) -> list[str]:
    """``from ours import _x`` and ``ours_module._x`` in ``module``'s source."""
    package = module if module.endswith("__init__") else module.rpartition(".")[0]
    tree = ast.parse(source)
    modules: set[str] = set()  # local names bound to one of our modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("billing_pipeline.") and alias.asname:
                    modules.add(alias.asname)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node, package)
            if base.split(".")[0] != "billing_pipeline" or base == module:
                continue
            for alias in node.names:
                if is_private(alias.name):
                    found.append(f"line {node.lineno}: from {base} import {alias.name}")
                elif is_our_module(f"{base}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and is_private(node.attr)
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def lazy_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function."""
    found = []
    for func in ast.walk(ast.parse(source)):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    found += [(node.lineno, alias.name) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found += [
                        (node.lineno, f"{node.module}.{alias.name}")
                        if is_our_module(f"{node.module}.{alias.name}")
                        else (node.lineno, node.module or "")
                        for alias in node.names
                    ]
    return found


def package_modules() -> list[tuple[str, str, Path]]:
    return [
        (module_name(p), p.read_text(), p)
        for p in sorted(ROOT.rglob("*.py"))
        if "migrations" not in p.parts  # Alembic's own files
    ]


def test_no_private_name_crosses_from_one_module_of_the_package_to_another():
    crossings = [
        f"{path.relative_to(ROOT.parent)} {found}"
        for module, source, path in package_modules()
        for found in private_crossings(source, module)
    ]
    assert crossings == []


def test_imports_sit_at_the_top_unless_heavy_and_rarely_needed():
    inside = [
        f"{path.relative_to(ROOT.parent)}:{line} imports {name} inside a function"
        for _, source, path in package_modules()
        for line, name in lazy_imports(source)
        if name not in LAZY_IMPORTS
    ]
    assert inside == []


def test_every_listed_lazy_import_is_still_made_lazily():
    made = {name for _, source, _ in package_modules() for _, name in lazy_imports(source)}
    assert set(LAZY_IMPORTS) - made == set()


def test_the_rules_catch_what_they_forbid():
    source = """
import billing_pipeline.rendering.pdf as pdf
from billing_pipeline.sources import files
from billing_pipeline.money import _secret, fmt_money

def f():
    import polars
    return files._name_day("x"), pdf._date_text(None), fmt_money
"""
    assert private_crossings(source, "billing_pipeline.example") == [
        "line 4: from billing_pipeline.money import _secret",
        "line 8: files._name_day",
        "line 8: pdf._date_text",
    ]
    assert lazy_imports(source) == [(7, "polars")]
    assert lazy_imports("def g():\n    from billing_pipeline.sources import drift\n") == [
        (2, "billing_pipeline.sources.drift")
    ]
