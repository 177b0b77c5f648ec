"""How far long work has got (month-end steps, invoice PDFs, emails), for whoever is watching.

The work only counts: ``expect(name, total)`` when it knows how many, ``advance(name, n, what)``
as it goes. How that is shown is the CLI's choice of view: bars that count ``n/N`` on a terminal
(``RichView``), one line per step when the output is a file or a pipe (``LineView``), nothing
with ``--quiet`` (no view at all). With nobody watching (a Dagster worker, the library, a test)
every call returns at once.

One watcher per process, installed by ``watching``: the CLI runs the month-end's Dagster steps in
its own process, so the renderer's counts reach the view without a callback threaded through
Dagster. A view hears every change under one lock, whichever thread the step runs in.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, TextIO, TypeVar

T = TypeVar("T")

MONTH_END_STEPS = "month-end steps"
INVOICE_PDFS = "invoice PDFs"
EMAILS = "emails"


@dataclass
class Count:
    name: str
    done: int = 0
    total: int | None = None  # None until someone knows
    what: str = ""  # the last thing done (a step's name, a customer)


class View(Protocol):
    def changed(
        self, counts: dict[str, Count], count: Count, moved: int, steps: str | None
    ) -> None:
        """``count`` moved by ``moved`` (0: it learned its total or what is under way);
        ``steps`` names the count that is the work's own steps, if one was declared."""


class Board:
    """Every count of the work being watched, and its view."""

    def __init__(self, view: View):
        self.view = view
        self.counts: dict[str, Count] = {}
        self.steps: str | None = None
        self.lock = threading.Lock()

    def expect(self, name: str, total: int, steps: bool) -> None:
        with self.lock:
            count = self.counts.setdefault(name, Count(name))
            count.total = (count.total or 0) + total
            if steps:
                self.steps = name
            self.view.changed(self.counts, count, 0, self.steps)

    def advance(self, name: str, n: int, what: str) -> None:
        with self.lock:
            count = self.counts.setdefault(name, Count(name))
            count.done += n
            count.what = what
            if count.total is not None and count.done > count.total:
                count.total = count.done  # a step nobody announced: never show 5/4
            self.view.changed(self.counts, count, n, self.steps)


_board: Board | None = None


@contextmanager
def watching(view: View) -> Iterator[Board]:
    """Show the counts of the work done inside this block with ``view``."""
    global _board
    outer, _board = _board, Board(view)
    try:
        yield _board
    finally:
        _board = outer


@contextmanager
def shown(quiet: bool) -> Iterator[None]:
    """The CLI's choice: the work's progress on stderr (so a result on stdout stays clean to
    parse), as bars on a terminal, one line per step otherwise (a log, a pipe), not at all when
    ``quiet``."""
    if quiet:
        yield
        return
    stream = sys.stderr  # looked up now: click's test runner replaces it
    if stream.isatty():
        view = RichView(stream)
        with view, watching(view):
            yield
    else:
        with watching(LineView(stream)):
            yield


def expect(name: str, total: int, *, steps: bool = False) -> None:
    """``total`` more of ``name`` are coming; ``steps``: these are the work's own steps (a line
    view prints one line per step and folds the other counts into it)."""
    if _board is not None:
        _board.expect(name, total, steps)


def advance(name: str, n: int = 1, what: str = "") -> None:
    """``n`` more of ``name`` are done (0: ``what`` has started); ``what``: for the view."""
    if _board is not None:
        _board.advance(name, n, what)


def counted(name: str, items: Iterable[T], what: Callable[[T], str]) -> Iterator[T]:
    """``items``, each counted as done once the loop body over it finishes (a ``continue``
    included): ``for row in counted(EMAILS, rows, lambda r: r["number"]): ...``."""
    items = list(items)
    expect(name, len(items))
    for item in items:
        advance(name, 0, what(item))
        yield item
        advance(name, 1, what(item))


def count_text(count: Count) -> str:
    return f"{count.done}/{count.total}" if count.total is not None else str(count.done)


class LineView:
    """One line per step, for a log: 'month-end steps 7/20: reconciliation (invoice PDFs 0/21)'.
    Without declared steps, one line per change of any count ('invoice PDFs 3/21: acme')."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def changed(
        self, counts: dict[str, Count], count: Count, moved: int, steps: str | None
    ) -> None:
        if moved <= 0 or (steps is not None and count.name != steps):
            return  # a total learned, a step started, or a count the next step's line carries
        others = [c for c in counts.values() if c is not count and c.total is not None]
        line = f"{count.name} {count_text(count)}" + (f": {count.what}" if count.what else "")
        if others:
            line += " (" + ", ".join(f"{c.name} {count_text(c)}" for c in others) + ")"
        print(line, file=self.stream, flush=True)


class RichView:
    """A bar per count, with n/N and what is being done, on a terminal; gone when the work ends
    (the command's own output follows)."""

    def __init__(self, stream: TextIO):
        # rich is only needed when a person watches a terminal: imported here, not at start-up
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[what]}", style="dim"),
            console=Console(file=stream),
            transient=True,
        )
        self.tasks: dict[str, int] = {}

    def changed(
        self, counts: dict[str, Count], count: Count, moved: int, steps: str | None
    ) -> None:
        task = self.tasks.get(count.name)
        if task is None:
            task = self.tasks[count.name] = self.progress.add_task(
                count.name, total=count.total, what=""
            )
        self.progress.update(task, completed=count.done, total=count.total, what=count.what)

    def __enter__(self) -> RichView:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
