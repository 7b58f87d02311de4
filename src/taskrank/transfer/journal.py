"""The results journal: one SQLite row per completed run, keyed by a hash of its configuration.

SQLite gives atomic commits (a run killed mid-write leaves no trace), WAL mode lets readers and
several writers share the file, and ``INSERT OR IGNORE`` on the key means a run recorded twice
(two workers racing, or a re-run) is stored once.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pandas as pd

from ..errors import TaskrankError

COLUMNS = ("key", "target", "source", "seed", "setting", "metric", "value", "seconds", "config", "finished")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    source TEXT NOT NULL,        -- '' for the target-only baseline
    seed INTEGER NOT NULL,
    setting TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    seconds REAL,
    config TEXT NOT NULL,        -- the full run configuration as JSON
    finished TEXT NOT NULL
)
"""


class JournalError(TaskrankError):
    """A journal that cannot be opened: not an SQLite file, not a journal, or not writable."""


class Journal:
    """``readonly``: only read (export), so a journal on read-only storage can still be exported."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if self.path.is_dir():
            raise JournalError(f"{self.path}: is a folder, not a journal file")
        try:
            if readonly:
                for query in ("mode=ro", "immutable=1"):  # read-only storage: SQLite cannot make its -shm file
                    self._db = sqlite3.connect(f"{self.path.absolute().as_uri()}?{query}", uri=True, timeout=120,
                                               isolation_level=None)
                    try:
                        self._db.execute("SELECT key FROM runs LIMIT 1").fetchall()
                        return
                    except sqlite3.OperationalError as e:
                        self._db.close()
                        if "unable to open" not in str(e) or query == "immutable=1":
                            raise
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
            self._db.execute("BEGIN IMMEDIATE")  # may we write? (fails now, not after the first run)
            try:
                self._db.execute("DELETE FROM runs WHERE 0")
            finally:
                self._db.execute("ROLLBACK")
        except (sqlite3.Error, OSError) as e:
            why = str(e) or type(e).__name__
            if "not a database" in why:
                why = "not an SQLite file"
            elif "no such table" in why:
                why = "an SQLite file, but not a taskrank journal (no runs table)"
            elif "readonly" in why or "unable to open" in why or isinstance(e, OSError):
                why = f"cannot be {'read' if readonly else 'opened for writing'} ({why})"
            raise JournalError(f"{self.path}: {why}") from None

    def keys(self) -> set[str]:
        return {k for (k,) in self._db.execute("SELECT key FROM runs")}

    def record(self, result: dict) -> bool:
        """Store one finished run; False if its key was already there."""
        row = dict(result)
        row["config"] = json.dumps(row["config"], sort_keys=True)
        row.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%S"))
        cur = self._db.execute(
            f"INSERT OR IGNORE INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            [row.get(c) for c in COLUMNS])
        return cur.rowcount == 1

    def frame(self) -> pd.DataFrame:
        """All runs as a tidy table (key, target, source, seed, setting, metric, value, seconds, config)."""
        df = pd.read_sql_query("SELECT * FROM runs ORDER BY setting, target, source, seed", self._db)
        return df.drop(columns=["finished"])

    def import_frame(self, runs: pd.DataFrame) -> int:
        """Record runs exported earlier (a committed runs.csv with its key and config columns)."""
        missing = [c for c in COLUMNS if c not in runs.columns and c not in ("seconds", "finished")]
        if missing:
            raise ValueError(f"runs table lacks column(s) {', '.join(missing)}")
        stored = 0
        for row in runs.to_dict("records"):
            row["config"] = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]
            row["source"] = "" if pd.isna(row["source"]) else row["source"]
            stored += self.record(row)
        return stored

    def close(self) -> None:
        self._db.close()
