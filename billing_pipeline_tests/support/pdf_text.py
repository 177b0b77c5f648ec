"""Where a PDF's text is: each text-showing operator's string, its page and its extent.

pypdf's text visitor gives the text matrix and the current transformation at each operator; the
width comes from the font's own glyph widths (WeasyPrint writes Type0 fonts with Identity-H
encoding: two bytes per glyph, widths in the descendant font's /W array), so a run that overflows
its cell, or the page, is seen where a reader would see it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.generic import IndirectObject


@dataclass(frozen=True)
class TextRun:
    page: int  # 1-based
    text: str  # the characters as pypdf decodes them (may be empty for a glyph-only run)
    x0: float
    x1: float
    y: float  # baseline
    size: float  # font size in user space (points)


def _resolved(value):
    return value.get_object() if isinstance(value, IndirectObject) else value


def _widths(font) -> tuple[dict[int, float], float]:
    """Glyph id -> width (1/1000 em) of a Type0 font, and its default width; a simple font's
    /Widths by code otherwise."""
    if "/DescendantFonts" in font:
        cid = _resolved(font["/DescendantFonts"][0])
        widths: dict[int, float] = {}
        w = [_resolved(v) for v in cid.get("/W", [])]
        i = 0
        while i < len(w):  # [first [w w ...]] or [first last w]
            first = int(w[i])
            if isinstance(w[i + 1], list):
                widths.update({first + k: float(v) for k, v in enumerate(w[i + 1])})
                i += 2
            else:
                widths.update(dict.fromkeys(range(first, int(w[i + 1]) + 1), float(w[i + 2])))
                i += 3
        return widths, float(cid.get("/DW", 1000))
    first = int(font.get("/FirstChar", 0))
    return {first + k: float(v) for k, v in enumerate(font.get("/Widths", []))}, 500.0


def _resources(resources, fonts: dict, forms: dict) -> None:
    """Every font and form XObject reachable from ``resources``, by resource name."""
    if resources is None:
        return
    resources = resources.get_object()
    for name, font in (resources.get("/Font") or {}).items():
        fonts.setdefault(name, font.get_object())
    for name, xobject in (resources.get("/XObject") or {}).items():
        xobject = xobject.get_object()
        if xobject.get("/Subtype") == "/Form" and name not in forms:
            forms[name] = xobject
            _resources(xobject.get("/Resources"), fonts, forms)


def _apply(matrix, x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f = (float(v) for v in matrix)
    return a * x + c * y + e, b * x + d * y + f


def _times(m, n) -> list[float]:
    a, b, c, d, e, f = (float(v) for v in m)
    a2, b2, c2, d2, e2, f2 = (float(v) for v in n)
    return [
        a * a2 + b * c2,
        a * b2 + b * d2,
        c * a2 + d * c2,
        c * b2 + d * d2,
        e * a2 + f * c2 + e2,
        e * b2 + f * d2 + f2,
    ]


def text_runs(data: bytes) -> list[TextRun]:
    """Every Tj/TJ/'/" of every page, with where it starts and ends in the page's space."""
    runs: list[TextRun] = []
    widths_of: dict[int, tuple[dict[int, float], float]] = {}
    page_no = [0]  # the page being read, for the visitors
    for number, page in enumerate(PdfReader(io.BytesIO(data)).pages, start=1):
        page_no[0] = number
        fonts: dict = {}
        forms: dict = {}
        _resources(page.get("/Resources"), fonts, forms)
        state = {"font": None, "size": 0.0, "tc": 0.0, "tz": 100.0}
        # pypdf reads a form XObject's content with a fresh matrix: where the form is drawn
        # (its /Matrix, then the matrix at its "Do") is kept here, one entry per open form
        outer = [[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]]

        def after(op, args, cm, tm, outer=outer):
            if op == b"Do":
                outer.pop()

        def before(op, args, cm, tm, state=state, fonts=fonts, forms=forms, outer=outer):
            if op == b"Do":
                form = forms.get(args[0])
                matrix = (
                    list(form.get("/Matrix", [1, 0, 0, 1, 0, 0])) if form else [1, 0, 0, 1, 0, 0]
                )
                outer.append(_times(_times(matrix, cm), outer[-1]))
            elif op == b"Tf":
                state["font"] = fonts.get(args[0])
                state["size"] = float(args[1])
                if state["font"] is not None and id(state["font"]) not in widths_of:
                    widths_of[id(state["font"])] = _widths(state["font"])
            elif op == b"Tc":
                state["tc"] = float(args[0])
            elif op == b"Tz":
                state["tz"] = float(args[0])
            elif op in (b"Tj", b"TJ", b"'", b'"') and state["font"] is not None:
                widths, default = widths_of[id(state["font"])]
                two_byte = "/DescendantFonts" in state["font"]
                parts = args[0] if op == b"TJ" else [args[-1]]
                advance, glyphs = 0.0, 0
                for part in parts:
                    if isinstance(part, bytes | str) or hasattr(part, "original_bytes"):
                        raw = (
                            part.original_bytes if hasattr(part, "original_bytes") else bytes(part)
                        )
                        codes = (
                            [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
                            if two_byte
                            else list(raw)
                        )
                        advance += sum(widths.get(c, default) for c in codes) / 1000 * state["size"]
                        glyphs += len(codes)
                    else:
                        advance -= float(part) / 1000 * state["size"]
                advance = (advance + state["tc"] * glyphs) * state["tz"] / 100
                full = _times(_times(tm, cm), outer[-1])
                x0, y0 = _apply(full, 0, 0)
                x1, _ = _apply(full, advance, 0)
                scale = abs(_apply(full, 0, 1)[1] - y0) or 1.0
                runs.append(
                    TextRun(page_no[0], "", min(x0, x1), max(x0, x1), y0, state["size"] * scale)
                )

        def text(t, cm, tm, font, size, runs=runs, number=number):
            for i in range(len(runs) - 1, -1, -1):  # the run this text belongs to: the last one
                if runs[i].page == number:
                    if not runs[i].text:
                        runs[i] = TextRun(
                            number, t, runs[i].x0, runs[i].x1, runs[i].y, runs[i].size
                        )
                    break

        page.extract_text(
            visitor_operand_before=before, visitor_operand_after=after, visitor_text=text
        )
    return runs


def page_boxes(data: bytes) -> list[tuple[float, float, float, float]]:
    """Each page's media box (x0, y0, x1, y1)."""
    return [tuple(float(v) for v in page.mediabox) for page in PdfReader(io.BytesIO(data)).pages]


def runs_outside_the_page(data: bytes, tolerance: float = 0.5) -> list[TextRun]:
    """The text runs that reach beyond their page's media box."""
    boxes = page_boxes(data)
    outside = []
    for run in text_runs(data):
        x0, y0, x1, y1 = boxes[run.page - 1]
        if (
            run.x0 < x0 - tolerance
            or run.x1 > x1 + tolerance
            or run.y < y0 - tolerance
            or run.y + run.size > y1 + tolerance
        ):
            outside.append(run)
    return outside


SUMMARY = re.compile(
    r"(ESTIMATED TOTAL|AMOUNT DUE|TOTAL CREDITED)\s+(-?\$[\d,]+\.\d+|-?[\d,]+(?:\.\d+)? [A-Z]{3})"
)


def page_one_summary(text: str) -> tuple[str, str]:
    """(label, amount) of the summary box that opens an invoice, from page 1's extracted text:
    ('ESTIMATED TOTAL', '$4,597.01') on a draft, ('AMOUNT DUE', ...) once issued."""
    found = SUMMARY.search(text)
    assert found, f"no summary on page 1:\n{text[:600]}"
    return found.group(1), found.group(2)
