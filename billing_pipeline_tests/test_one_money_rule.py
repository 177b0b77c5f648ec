"""One money rule in one place: only billing_pipeline/money.py rounds or writes money as text.

Copies drift (a rounding mode, a currency symbol, a sign), so every module of the package is read
with ``ast`` and each sign of a second copy is refused with its file and line:

- a Decimal rounding mode other than ceiling and floor (ROUND_HALF_UP, ROUND_HALF_EVEN,
  ROUND_DOWN, ...), by name or as a string: rounding is money.ROUNDING, via money's functions;
- a ``.quantize(`` call: money.round_money, truncate_money, round_to, round_units, percent;
- a decimal context with its own rounding (``Context(rounding=...)``, ``ctx.rounding = ...``);
- a function named like money text (``_money``, ``_money_text``, ``_exact_money``, ``fmt_money``)
  or like a rounding (``_round_half_up``, ``round_cents``): money.round_div_expr and the rest;
- grouped fixed decimals (``f"{x:,.2f}"``): money.fmt_money, or fmt_number without a currency;
- a dollar sign put before a value in an f-string, or a comparison with "USD": the currency's
  place is money.fmt_money's.

Ceilings and floors (a chart's tick count), ``to_integral_value`` checks, grouped whole numbers
(``{n:,}``) and ``.1f`` pixel coordinates are not money rules and pass.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import billing_pipeline

PACKAGE = Path(billing_pipeline.__file__).parent
MONEY = PACKAGE / "money.py"

ROUNDING_MODES = {
    "ROUND_HALF_UP",
    "ROUND_HALF_EVEN",
    "ROUND_HALF_DOWN",
    "ROUND_UP",
    "ROUND_DOWN",
    "ROUND_05UP",
}
MONEY_TEXT_NAME = re.compile(r"(^|_)money(_text)?$|^_?(fmt_)?money_text|^_?fmt_(money|price)")
ROUNDING_NAME = re.compile(r"(^|_)round(_|$)|half_(up|even)")
GROUPED_FIXED = re.compile(r",\.(\d+|\{\})f")
FORMAT_CALL_SPEC = re.compile(r"\{[^{}]*:[^{}]*,\.\d+f[^{}]*\}")

# Functions left out, with the reason. An entry whose function is gone fails
# test_each_exception_still_exists, so the list only shrinks.
EXCEPTIONS = {
    ("documents/chart.py", "_px"): "not money: chart coordinates to 0.1 px, half-even as the "
    "invoice PDFs have always been drawn (half up moves bars and changes the PDFs)",
}


class _Finder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[int, str, str | None]] = []  # (line, what, top-level function)
        self._function: str | None = None

    def _add(self, node: ast.AST, what: str) -> None:
        self.found.append((node.lineno, what, self._function))

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer = self._function
        self._function = outer or node.name
        if MONEY_TEXT_NAME.search(node.name):
            self._add(node, f"defines {node.name}(): money text is money.py's")
        if ROUNDING_NAME.search(node.name):
            self._add(node, f"defines {node.name}(): rounding is money.py's")
        self.generic_visit(node)
        self._function = outer

    visit_FunctionDef = _visit_function  # noqa: N815 (ast.NodeVisitor's naming)
    visit_AsyncFunctionDef = _visit_function  # noqa: N815

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ROUNDING_MODES:
            self._add(node, f"uses {node.id}: rounding is money.ROUNDING")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in ROUNDING_MODES:
            self._add(node, f"uses {node.attr}: rounding is money.ROUNDING")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name in ROUNDING_MODES:
                self._add(node, f"imports {alias.name}: rounding is money.ROUNDING")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            if node.value in ROUNDING_MODES:
                self._add(node, f"names {node.value}: rounding is money.ROUNDING")
            if FORMAT_CALL_SPEC.search(node.value):
                self._add(node, "formats grouped fixed decimals: money.fmt_money/fmt_number")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "quantize":
            self._add(node, "calls .quantize(): rounding is money.py's")
        if name in ("Context", "localcontext") and any(k.arg == "rounding" for k in node.keywords):
            self._add(node, f"makes a {name} with its own rounding")
        if name == "format" and len(node.args) == 2:
            spec = node.args[1]
            if isinstance(spec, ast.Constant) and GROUPED_FIXED.search(str(spec.value)):
                self._add(node, "formats grouped fixed decimals: money.fmt_money/fmt_number")
        self.generic_visit(node)

    def _rounding_target(self, targets: list[ast.expr], node: ast.AST) -> None:
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "rounding":
                self._add(node, "sets a decimal context's rounding")

    def visit_Assign(self, node: ast.Assign) -> None:
        self._rounding_target(node.targets, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._rounding_target([node.target], node)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if any(
            isinstance(side, ast.Constant) and side.value == "USD"
            for side in [node.left, *node.comparators]
        ):
            self._add(node, "compares with \"USD\": the currency's place is money.fmt_money's")
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        for before, part in zip(node.values, node.values[1:], strict=False):
            if (
                isinstance(before, ast.Constant)
                and str(before.value).endswith("$")
                and isinstance(part, ast.FormattedValue)
            ):
                self._add(node, "puts a $ before a value: money.fmt_money")
        for part in node.values:
            if isinstance(part, ast.FormattedValue) and part.format_spec is not None:
                spec = "".join(
                    str(p.value) if isinstance(p, ast.Constant) else "{}"
                    for p in part.format_spec.values
                )
                if GROUPED_FIXED.search(spec):
                    self._add(part, "formats grouped fixed decimals: money.fmt_money/fmt_number")
        self.generic_visit(node)


def findings(source: str, name: str = "<snippet>") -> list[str]:
    """Each sign of a second money rule in ``source``: 'name:line: what', EXCEPTIONS left out."""
    finder = _Finder()
    finder.visit(ast.parse(source))
    return [
        f"{name}:{line}: {what}"
        for line, what, function in finder.found
        if (name, function) not in EXCEPTIONS
    ]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != MONEY)


def test_no_module_but_money_py_rounds_or_writes_money():
    found = [
        f
        for path in _modules()
        for f in findings(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    ]
    assert not found, "a second money rule outside money.py:\n" + "\n".join(found)


def test_the_walk_reads_every_module_and_money_py_is_what_it_would_refuse():
    names = {p.relative_to(PACKAGE).as_posix() for p in _modules()}
    assert {"rating/pricing.py", "rendering/pdf.py", "ledger/ledger.py", "alerts/rules.py"} <= names
    assert findings(MONEY.read_text(encoding="utf-8"), "money.py")  # its rules, seen as rules


def test_each_exception_still_exists():
    for path, function in sorted(EXCEPTIONS):
        tree = ast.parse((PACKAGE / path).read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert function in defined, f"{path}: {function} is gone: remove it from EXCEPTIONS"


@pytest.mark.parametrize(
    "copy",
    [
        # the copies money.py replaced, as they were written
        "def _money(value, currency):\n    return str(round_money(value, currency))\n",
        "def _exact_money(value, currency):\n    return value\n",
        "def _money_text(micros, currency):\n    return str(micros)\n",
        "def _round_half_up(numerator, denominator):\n    return numerator // denominator\n",
        "def _round_half_up_int(numerator, denominator):\n    return numerator // denominator\n",
        "def f(q):\n    return int(q.quantize(Decimal(1), rounding=ROUND_HALF_UP))\n",
        'def f(q):\n    return q.quantize(Decimal("0.1"))\n',
        'x = amount.quantize(cent, rounding="ROUND_DOWN")\n',
        "from decimal import ROUND_HALF_EVEN\n",
        "import decimal\nmode = decimal.ROUND_HALF_UP\n",
        'def f(text, currency):\n    return f"${text}" if currency == "USD" else text\n',
        'def f(text):\n    return f"-${text[1:]}"\n',
        'line = f"{revenue:,.2f}"\n',
        'line = f"{rounded:,.{minor}f}"\n',
        'line = "{:,.2f}".format(revenue)\n',
        'line = format(revenue, ",.2f")\n',
        "ctx = Context(prec=28, rounding=ROUND_CEILING)\n",
        "getcontext().rounding = mode\n",
    ],
)
def test_a_second_money_rule_is_found(copy):
    assert findings(copy)


@pytest.mark.parametrize(
    "legitimate",
    [
        "n = int((total / step).to_integral_value(rounding=ROUND_CEILING))\n",
        "exact = q == q.to_integral_value()\n",
        'text = f"{quantity:,} tokens"\n',
        "svg = f'<rect x=\"{x:.1f}\"/>'\n",
        'path = f"$.{key}" if simple else f"$[\'{key}\']"\n',
        'pattern = "^" + re.escape(glob) + "$"\n',
        "def money_at_risk_message():\n    return None\n",
        "def background_colour():\n    return None\n",
        'currency = customer.currency if customer else "USD"\n',
        "_EXACT = Context(prec=80)\n",
        "text = fmt_money(amount, currency)\n",
    ],
)
def test_code_that_is_not_a_money_rule_passes(legitimate):
    assert findings(legitimate) == []
