"""Writing a command's outputs all or nothing.

Every output path is checked before any work (:func:`check_writable`), everything is written to a
temporary place beside its destination, and only when all of it is written are the files moved
into place (:class:`Outputs`). A failure on the way leaves nothing behind: no partial file, no
half of a report, no folder created for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import TaskrankError

__all__ = ["OutputError", "check_writable", "Outputs"]

TMP_PREFIX = ".taskrank-tmp-"


class OutputError(TaskrankError):
    """An output that cannot be written (read-only place, a folder where a file goes, ...)."""


def _why(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(path: str | os.PathLike, option: str = "--out", folder: bool = False) -> Path:
    """Fail now, naming ``option``, if ``path`` (a file, or a folder with ``folder``) cannot be
    written: its nearest existing folder must accept a new file (probed with a temporary file,
    which is removed), and the path must not be a folder (a file) or a file (a folder)."""
    path = Path(path).expanduser()
    if folder:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{option} {path}: is a file, not a folder")
    elif path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name")
    where = _existing(path if folder else path.parent)
    if not where.is_dir():
        raise OutputError(f"{option} {path}: {where} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=TMP_PREFIX, dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot write in {where} ({_why(e)})") from None
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{option} {path}: the file is read-only")
    return path


class Outputs:
    """Temporary places for a command's outputs, moved into place together by :meth:`commit`.

    ``file(dest)`` gives a temporary file path to write instead of ``dest``; ``folder(dest)`` a
    temporary folder whose files all go into ``dest``. Temporary folders are made inside the
    destination's nearest existing folder (same filesystem, so the final moves are renames). Used
    as a context manager: committed on success, discarded on any error.
    """

    def __init__(self, option: str = "--out"):
        self.option = option
        self._tmp: dict[Path, Path] = {}      # existing folder -> its temporary folder
        self._files: list[tuple[Path, Path]] = []
        self._folders: list[tuple[Path, Path]] = []

    def _tmpdir(self, dest: Path) -> Path:
        where = _existing(dest).resolve()
        if where not in self._tmp:
            try:
                self._tmp[where] = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=where))
            except OSError as e:
                raise OutputError(f"{self.option} {dest}: cannot write in {where} ({_why(e)})") from None
        return self._tmp[where]

    def file(self, dest: str | os.PathLike) -> Path:
        dest = Path(dest).expanduser()
        tmp = self._tmpdir(dest.parent) / f"{len(self._files)}-{dest.name}"
        self._files.append((tmp, dest))
        return tmp

    def folder(self, dest: str | os.PathLike) -> Path:
        dest = Path(dest).expanduser()
        tmp = self._tmpdir(dest) / f"folder-{len(self._folders)}"
        tmp.mkdir()
        self._folders.append((tmp, dest))
        return tmp

    def _moves(self) -> list[tuple[Path, Path]]:
        moves = [(tmp, dest) for tmp, dest in self._files if tmp.exists()]
        for tmp, dest in self._folders:
            moves += [(f, dest / f.relative_to(tmp)) for f in sorted(tmp.rglob("*")) if f.is_file()]
        return moves

    def commit(self) -> None:
        """Check every destination, then move every written file into place."""
        moves = self._moves()
        for _, dest in moves:
            if dest.is_dir():
                raise OutputError(f"{self.option}: cannot write {dest}: a folder of that name is in the way")
            if dest.exists() and not os.access(dest, os.W_OK):
                raise OutputError(f"{self.option}: cannot write {dest}: the file is read-only")
        try:
            for _, dest in moves:
                dest.parent.mkdir(parents=True, exist_ok=True)
            for tmp, dest in moves:
                os.replace(tmp, dest)
        except OSError as e:
            raise OutputError(f"{self.option}: cannot write {e.filename or ''}: {_why(e)}") from None
        finally:
            self.discard()

    def discard(self) -> None:
        for tmp in self._tmp.values():
            shutil.rmtree(tmp, ignore_errors=True)
        self._tmp.clear()

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
            return
        ours = isinstance(value, OSError) and any(str(value.filename or "").startswith(str(t))
                                                  for t in self._tmp.values())
        self.discard()
        if ours:  # e.g. the disk filled up while writing: one line, not a traceback
            raise OutputError(f"{self.option}: cannot write the output ({_why(value)})") from None
