"""Progress bars on stderr (rich), silent when TASKRANK_QUIET is set or no description is given.

When stderr is not a terminal (a background job writing a log), a bar shows nothing useful, so
``track`` with a ``line`` function prints one plain line per finished item instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return not os.environ.get("TASKRANK_QUIET")


def track(items: Iterable[T], description: str | None = None, total: int | None = None,
          line: Callable[[T], str] | None = None) -> Iterator[T]:
    """Iterate with a transient progress bar (with ETA) when a description is given; with ``line`` and
    stderr not a terminal, print "<description> i/total: <line(item)>" after each item instead."""
    if not description or not enabled():
        yield from items
        return
    if line is not None and not sys.stderr.isatty():
        for i, item in enumerate(items, 1):
            yield item
            print(f"{description} {i}/{total if total is not None else '?'}: {line(item)}", file=sys.stderr, flush=True)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def note(message: str) -> None:
    """One line on stderr saying what a long step is doing (silent when TASKRANK_QUIET is set)."""
    if enabled():
        print(message, file=sys.stderr, flush=True)
