"""The tests' own house rule: no module imports a test module (shared fixtures live in conftest.py,
shared helpers in support/), and no private name crosses from one module of the tests to another.
A test module importing another runs with that module's fixtures and hides where they come from."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "billing_pipeline_tests"
ROOT = Path(__file__).resolve().parents[1]


def is_test_module(name: str) -> bool:
    """A test module or a conftest of the tests: ``billing_pipeline_tests.test_ledger``."""
    first, *rest = name.split(".")
    return first == PACKAGE and any(p.startswith("test_") or p == "conftest" for p in rest)


def absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from`` import names, relative imports resolved against ``package``."""
    if not node.level:
        return node.module
    parts = package.split(".")
    parts = parts[: len(parts) - node.level + 1]
    return ".".join([*parts, node.module] if node.module else parts)


def forbidden_imports(source: str, package: str) -> list[str]:
    """What a module of ``package`` imports that it must not, as ``line N: import ...``."""
    found = []
    for node in sorted(ast.walk(ast.parse(source)), key=lambda n: getattr(n, "lineno", 0)):
        if isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {alias.name}"
                for alias in node.names
                if is_test_module(alias.name)
            ]
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node, package)
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                if is_test_module(f"{base}.{alias.name}"):
                    found.append(f"line {node.lineno}: from {base} import {alias.name}")
                elif alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {base} import {alias.name} (private)")
    return found


def test_no_module_of_the_tests_imports_a_test_module_or_a_private_name():
    modules = sorted([*(ROOT / PACKAGE).rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")])
    assert ROOT / PACKAGE / "test_ledger.py" in modules  # the walk sees the test modules
    found = {}
    for path in modules:
        package = ".".join(path.relative_to(ROOT).parts[:-1])  # of a module or an __init__.py
        if imports := forbidden_imports(path.read_text(), package):
            found[str(path.relative_to(ROOT))] = imports
    assert found == {}, "shared fixtures belong in conftest.py, shared helpers in support/"


def test_the_rule_sees_every_spelling_of_such_an_import():
    source = """
import billing_pipeline_tests.test_ledger
import billing_pipeline_tests.test_ledger as ledger_tests
from billing_pipeline_tests.test_ledger import document
from billing_pipeline_tests import test_ledger
from billing_pipeline_tests.conftest import MONTH
from .test_ledger import document
from . import test_issuing
from .support.ledger import _private
def later():
    from billing_pipeline_tests.support.delivery import _send
from billing_pipeline_tests.support.ledger import document
from billing_pipeline_tests import support
from .support import ledger
import billing_pipeline.ledger.ledger
"""
    assert forbidden_imports(source, PACKAGE) == [
        "line 2: import billing_pipeline_tests.test_ledger",
        "line 3: import billing_pipeline_tests.test_ledger",
        "line 4: from billing_pipeline_tests.test_ledger import document",
        "line 5: from billing_pipeline_tests import test_ledger",
        "line 6: from billing_pipeline_tests.conftest import MONTH",
        "line 7: from billing_pipeline_tests.test_ledger import document",
        "line 8: from billing_pipeline_tests import test_issuing",
        "line 9: from billing_pipeline_tests.support.ledger import _private (private)",
        "line 11: from billing_pipeline_tests.support.delivery import _send (private)",
    ]
