"""Settings read from the environment, each parsed in one place: how many threads to use
(TASKRANK_THREADS) and where the per-user caches are (TASKRANK_CACHE, TASKRANK_FINETUNED)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import TaskrankError


class EnvironmentSettingError(TaskrankError):
    """An environment variable taskrank reads holds something it cannot use."""


def threads() -> int:
    """TASKRANK_THREADS, else (unset, empty or 0) the cores this process may use."""
    value = os.environ.get("TASKRANK_THREADS", "").strip()
    try:
        n = int(value or 0)
    except ValueError:
        n = -1
    if n < 0:
        raise EnvironmentSettingError(f"TASKRANK_THREADS={value!r}: expected a whole number of threads (0: all cores)")
    if n:
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def user_cache() -> Path:
    """The folder under which taskrank caches by default: ~/.cache/taskrank."""
    return Path.home() / ".cache" / "taskrank"


def artefact_cache() -> str:
    """Target-side artefacts: TASKRANK_CACHE, else :func:`user_cache`."""
    return os.environ.get("TASKRANK_CACHE") or str(user_cache())


def finetuned_cache() -> str:
    """Fine-tuned source models (about 90 MB each): TASKRANK_FINETUNED, else ``<user cache>/finetuned``
    (the transfer benchmark's default too)."""
    return os.environ.get("TASKRANK_FINETUNED") or str(user_cache() / "finetuned")
