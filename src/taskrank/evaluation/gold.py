"""The ground truth an evaluation judges against: a transfer matrix of one setting.

A pair table (``matrix.csv`` of ``taskrank transfer export``), a runs table (``runs.csv``: per-seed
runs, from which the pair table is computed and which also gives seed intervals), or TaskWeb's
release (:func:`taskrank.transfer.matrix.import_taskweb`). The gold *order* of a target's sources
comes from column ``by`` (default ``score``, TaskWeb's pair score 0.5·PC + 0.5·(0.2·PM − 0.1)); the
target performance after transfer from ``perf`` (default ``mean``); the no-transfer ``baseline``
joins the candidates of ESM's Regret.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..errors import TaskrankError
from ..transfer.matrix import PAIR_COLUMNS, RUN_COLUMNS, import_taskweb, pair_table

NUMERIC_PAIR = ["n_seeds", "n_paired", "mean", "std", "baseline", "PC", "PM", "score"]


class EvaluationError(TaskrankError):
    """Inputs that cannot be evaluated together; the message says which file, target or source."""



def read_csv(path: Path, numeric: Iterable[str]) -> pd.DataFrame:
    if not path.is_file():
        raise EvaluationError(f"{path}: no such file")
    try:
        return pd.read_csv(path, keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in numeric})
    except (ValueError, UnicodeDecodeError) as e:
        raise EvaluationError(f"{path}: cannot be read as CSV ({str(e).splitlines()[0]})") from None


def one_setting(df: pd.DataFrame, setting: str | None, where: str) -> pd.DataFrame:
    if "setting" not in df.columns:
        return df.assign(setting=setting or "")
    settings = sorted(df["setting"].astype(str).unique().tolist())
    if setting is None:
        if len(settings) > 1:
            raise EvaluationError(f"{where}: holds several settings {settings}; pick one with --setting")
        return df
    if setting not in settings:
        raise EvaluationError(f"{where}: no setting {setting!r}; has {settings}")
    return df[df["setting"].astype(str) == setting]


@dataclass
class Gold:
    """The ground truth of one setting: a pair table and, where known, the per-seed runs."""

    pairs: pd.DataFrame
    runs: pd.DataFrame | None = None
    by: str = "score"
    perf: str = "mean"
    origin: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        for col in (self.by, self.perf):
            if col not in self.pairs.columns:
                raise EvaluationError(f"{self.origin}: matrix has no column {col!r}; have {list(self.pairs.columns)}")
        self.pairs = self.pairs[self.pairs["source"].astype(str) != ""].copy()
        self.pairs["source"] = self.pairs["source"].astype(str)
        self.pairs["target"] = self.pairs["target"].astype(str)

    @property
    def setting(self) -> str:
        return str(self.pairs["setting"].iloc[0]) if len(self.pairs) else ""

    @property
    def targets(self) -> list[str]:
        """Targets with at least two sources that have a gold value and a performance."""
        ok = self.pairs.dropna(subset=[self.by, self.perf])
        n = ok.groupby("target")["source"].nunique()
        return sorted(n[n >= 2].index.tolist())

    def target(self, name: str, pairs: pd.DataFrame | None = None):
        """(gold Series, perf Series, baseline or None) of one target, by source."""
        d = (self.pairs if pairs is None else pairs)
        d = d[d["target"] == name].dropna(subset=[self.by, self.perf]).set_index("source").sort_index()
        base = d["baseline"].dropna() if "baseline" in d.columns else pd.Series(dtype=float)
        baseline = float(base.iloc[0]) if len(base) else None
        return d[self.by].astype(float), d[self.perf].astype(float), baseline

    @property
    def seeds(self) -> list[int]:
        if self.runs is None:
            return []
        return sorted(self.runs["seed"].astype(int).unique().tolist())

    def resampled(self, seeds: Sequence[int]) -> pd.DataFrame:
        """The pair table recomputed from the given seeds (repeats allowed: a bootstrap draw)."""
        if self.runs is None:
            raise EvaluationError("no per-seed runs: seed resampling needs a runs table")
        parts = [self.runs[self.runs["seed"] == s].assign(seed=j) for j, s in enumerate(seeds)]
        return pair_table(pd.concat(parts, ignore_index=True))


def _mtime(path: Path) -> float:
    files = [p for p in (path / "transfer_matrix.csv", path / "raw_per_seed_results.csv") if p.exists()]
    return max((p.stat().st_mtime for p in files), default=0.0)


@lru_cache(maxsize=4)
def _taskweb(path: str, mtime: float, model, adaptation) -> pd.DataFrame:
    """TaskWeb's import takes seconds; keep the last few in this process (keyed by file times)."""
    return import_taskweb(path, model, adaptation)


def load_gold(
    matrix: str | Path | None = None,
    taskweb: str | Path | None = None,
    model: str | None = "t5l",
    adaptation: str | None = "finetune",
    runs: str | Path | None = None,
    setting: str | None = None,
    by: str = "score",
    perf: str = "mean",
) -> Gold:
    """Ground truth from a matrix/runs CSV or TaskWeb's release (exactly one of the two)."""
    if (matrix is None) == (taskweb is None):
        raise EvaluationError("give a transfer matrix (--matrix CSV) or TaskWeb's release (--taskweb PATH), not both")
    notes: list[str] = []
    run_table = None
    if taskweb is not None:
        path = Path(taskweb)
        if not path.exists():
            raise EvaluationError(f"{path}: no such TaskWeb release")
        try:
            pairs = _taskweb(str(path.resolve()), _mtime(path), model, adaptation).copy()
        except (FileNotFoundError, ValueError) as e:
            raise EvaluationError(str(e)) from None
        origin = f"TaskWeb release {path}"
        notes.append("TaskWeb's release has no target-only runs per seed: no seed intervals")
    else:
        path = Path(matrix)
        head = read_csv(path, ["value", *NUMERIC_PAIR])
        origin = str(path)
        if {"seed", "value"} <= set(head.columns):
            missing = [c for c in RUN_COLUMNS if c not in head.columns]
            if missing:
                raise EvaluationError(f"{path}: runs table lacks columns {missing}")
            run_table = one_setting(head, setting, str(path))
            try:
                pairs = pair_table(run_table)
            except ValueError as e:
                raise EvaluationError(f"{path}: {e}") from None
        else:
            missing = [c for c in ("target", "source", by, perf) if c not in head.columns]
            if missing:
                raise EvaluationError(f"{path}: not a pair table (lacks {missing}; expected {PAIR_COLUMNS})")
            pairs = head
    pairs = one_setting(pairs, setting, origin)
    if runs is not None:
        if run_table is not None:
            raise EvaluationError("--runs is for a pair-table matrix; the matrix given is already a runs table")
        r = read_csv(Path(runs), ["value"])
        run_table = one_setting(r, setting or (str(pairs["setting"].iloc[0]) if len(pairs) else None), str(runs))
    if run_table is not None:
        run_table = run_table[RUN_COLUMNS].copy()
        run_table["source"] = run_table["source"].fillna("").astype(str)
        if not (run_table["source"] == "").any():
            notes.append("the runs have no target-only baselines: no seed intervals")
            run_table = None
    if pairs.empty:
        raise EvaluationError(f"{origin}: the transfer matrix is empty")
    return Gold(pairs.reset_index(drop=True), run_table, by, perf, origin, notes)
