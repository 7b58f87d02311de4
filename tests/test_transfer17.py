"""The committed 17-task transfer benchmark is complete, resumable and consistent with what ships.

These check the data under benchmarks/transfer17 (not a fresh run): every run of the grid (recipe L,
seeds 0-4: run.sh) is there exactly once under the key the runner computes today, the matrix is the
one the runs give, and TaskShop's shipped transfer table is that matrix's pair score.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskrank.tasks import load_task_folder
from taskrank.transfer.matrix import pair_table
from taskrank.transfer.runner import TransferSetting, plan

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks" / "transfer17"
SEEDS = [0, 1, 2, 3, 4]
# the benchmark's target recipe (issue #13): <= 250 examples, 5 epochs at lr 1e-4, scored on validation
# and test pooled up to 3,000 rows; sources and everything else are the runner's defaults, float32
L_RECIPE = dict(target_examples=250, target_epochs=5, target_lr=1e-4, eval_splits="validation+test", eval_examples=3000)
# the abandoned T2 grid that pilot_lowdata.py compares against (1,000 examples, 3 epochs)
T2_RECIPE = dict(target_epochs=3, target_lr=1e-4, eval_splits="validation+test", eval_examples=3000)


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return pd.read_csv(BENCH / "runs.csv", keep_default_na=False)


def assert_matrix_is_pair_table(path: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """The committed matrix at ``path`` is ``pair_table(runs)``, pair for pair; returns it."""
    numbers = ("mean", "std", "baseline", "PC", "PM", "score")  # std is empty while a pair has one seed
    committed = pd.read_csv(path, keep_default_na=False, na_values={column: [""] for column in numbers})
    fresh = pair_table(runs)
    assert len(committed) == len(fresh)
    merged = committed.merge(fresh, on=["target", "source"], suffixes=("", "_fresh"))
    assert len(merged) == len(fresh)
    for column in numbers:
        np.testing.assert_allclose(merged[column], merged[f"{column}_fresh"], rtol=0, atol=1e-12)
    return committed


def test_every_pair_and_baseline_on_five_seeds(runs):
    tasks = sorted(set(runs.target))
    assert len(tasks) == 17
    expected = {(t, "", s) for t in tasks for s in SEEDS}
    expected |= {(t, src, s) for t, src in itertools.permutations(tasks, 2) for s in SEEDS}
    got = list(zip(runs.target, runs.source, runs.seed))
    assert len(got) == len(set(got)) == len(expected) == 17 * 17 * 5
    assert set(got) == expected
    assert runs.value.between(0, 1).all()
    assert set(runs.metric) <= {"accuracy", "macro_f1"}


def test_committed_keys_are_the_runners_keys(runs, shared_tasks):
    """run.sh resumes from runs.csv: its keys must be what `taskrank transfer run` plans for the
    same grid (recipe L), or a resumed grid would redo everything."""
    planned = plan(load_task_folder(shared_tasks), SEEDS, TransferSetting.flat(**L_RECIPE))
    assert {r.key for r in planned} == set(runs.key)


def test_matrix_is_the_runs_pair_table(runs):
    committed = assert_matrix_is_pair_table(BENCH / "matrix.csv", runs)
    assert len(committed) == 272
    assert (committed.n_seeds == 5).all()


def test_shipped_taskshop_table_is_the_matrix():
    committed = pd.read_csv(BENCH / "matrix.csv", keep_default_na=False)
    shipped = pd.read_csv(REPO / "src" / "taskrank" / "pools" / "default" / "transfer.csv", keep_default_na=False)
    merged = committed.merge(shipped, on=["target", "source"], suffixes=("", "_shipped"))
    assert len(merged) == len(shipped) == 272
    np.testing.assert_allclose(merged.score, merged.score_shipped, rtol=0, atol=1e-9)


def test_abandoned_t2_grid_keeps_the_runners_keys(shared_tasks):
    """pilot_lowdata.py compares recipe L with the abandoned T2 grid (grid_t2_runs.csv): its runs must
    still be ones the runner plans for T2, each once."""
    runs = pd.read_csv(BENCH / "grid_t2_runs.csv", keep_default_na=False)
    planned = {r.key for r in plan(load_task_folder(shared_tasks), SEEDS, TransferSetting.flat(**T2_RECIPE))}
    assert len(planned) == 17 * 17 * 5
    assert runs.key.is_unique and set(runs.key) <= planned and len(runs) == 325
    assert runs.value.between(0, 1).all()
