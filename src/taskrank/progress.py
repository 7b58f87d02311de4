"""Progress bars on stderr (rich), silent when TASKRANK_QUIET is set or no description is given."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return not os.environ.get("TASKRANK_QUIET")


def track(items: Iterable[T], description: str | None = None, total: int | None = None) -> Iterator[T]:
    """Iterate with a transient progress bar (with ETA) when a description is given."""
    if not description or not enabled():
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
