"""One error base for everything a user can get wrong (a file, a column, an option, a parameter).

Each kind is a subclass of :class:`TaskrankError`, which is also a ``ValueError`` (so code that
catches ``ValueError`` keeps working); the CLI catches this one type and prints one line.
"""

from __future__ import annotations


class TaskrankError(ValueError):
    """Bad input: the message names the file, column, option or value, in one line."""


class ParameterError(TaskrankError):
    """An estimator or option parameter whose value cannot work (checked before any work)."""


__all__ = ["ParameterError", "TaskrankError"]
