"""The ground-truth runner: resumable after SIGKILL, safe with concurrent workers, runs on Dask."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from taskrank.tasks import load_task_folder
from taskrank.transfer.executors import run_grid
from taskrank.transfer.journal import Journal
from taskrank.transfer.runner import TransferSetting, plan

TINY = ["--source-examples", "24", "--target-examples", "24", "--eval-examples", "16", "--source-epochs", "1",
        "--max-length", "32", "--batch-size", "8", "--seeds", "0"]
SETTING = TransferSetting.flat(source_examples=24, target_examples=24, eval_examples=16, source_epochs=1,
                               max_length=32, batch_size=8)


@pytest.fixture(scope="module")
def tiny_tasks(shared_tasks, tmp_path_factory) -> Path:
    """Three real tasks cut to 24 training and 16 validation rows."""
    root = tmp_path_factory.mktemp("tiny")
    for name in ("cr", "trec", "tweeteval-stance-climate"):
        (root / name).mkdir()
        for split, n in (("train", 24), ("validation", 16)):
            lines = (shared_tasks / name / f"{split}.jsonl").read_text().splitlines()[:n]
            (root / name / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def reference(tiny_tasks, tmp_path_factory) -> pd.DataFrame:
    """An uninterrupted in-process run of the tiny grid."""
    work = tmp_path_factory.mktemp("ref")
    runs = plan(load_task_folder(tiny_tasks), [0], SETTING)
    journal = Journal(work / "journal.sqlite")
    assert run_grid(runs, journal, work / "work") == len(runs) == 9
    assert run_grid(runs, journal, work / "work") == 0  # nothing left to do
    return journal.frame().set_index("key")


def cli(tiny_tasks, journal, *extra):
    env = {**os.environ, "TASKRANK_QUIET": "1", "TASKRANK_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "taskrank.cli", "transfer", "run", "--tasks", str(tiny_tasks),
                             "--journal", str(journal), *TINY, *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(journal, timeout=30) as db:
            return db.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def assert_same_results(journal: Path, reference: pd.DataFrame) -> None:
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    got = Journal(journal).frame().set_index("key")
    assert sorted(got.index) == sorted(reference.index)  # nothing lost, nothing duplicated
    pd.testing.assert_series_equal(got["value"].sort_index(), reference["value"].sort_index(), atol=1e-6)


def test_sigkill_then_resume(tiny_tasks, reference, tmp_path):
    journal = tmp_path / "journal.sqlite"
    proc = cli(tiny_tasks, journal)
    deadline = time.time() + 240
    while rows(journal) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the grid finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = rows(journal)
    assert 3 <= killed_at < 9
    resumed = cli(tiny_tasks, journal)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"{killed_at} already in" in err
    assert_same_results(journal, reference)


def test_two_concurrent_workers(tiny_tasks, reference, tmp_path):
    journal = tmp_path / "journal.sqlite"
    procs = [cli(tiny_tasks, journal, "--workdir", str(tmp_path / "work")) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    assert_same_results(journal, reference)


def test_dask_local_cluster_two_workers(tiny_tasks, reference, tmp_path):
    proc = cli(tiny_tasks, tmp_path / "journal.sqlite", "--cluster", "local", "--workers", "2")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert_same_results(tmp_path / "journal.sqlite", reference)


def test_export_and_import_round_trip(reference, tmp_path):
    journal = Journal(tmp_path / "a.sqlite")
    journal.import_frame(reference.reset_index())
    out = tmp_path / "runs.csv"
    subprocess.run([sys.executable, "-m", "taskrank.cli", "transfer", "export", "--journal", str(tmp_path / "a.sqlite"),
                    "--out", str(out), "--matrix", str(tmp_path / "m.csv")], check=True, capture_output=True)
    runs = pd.read_csv(out, keep_default_na=False)
    assert {"target", "source", "seed", "metric", "value"} <= set(runs.columns) and len(runs) == 9
    assert (runs["source"] == "").sum() == 3  # one baseline per target
    matrix = pd.read_csv(tmp_path / "m.csv")
    assert len(matrix) == 6 and {"PC", "PM", "score", "baseline"} <= set(matrix.columns)
    again = Journal(tmp_path / "b.sqlite")
    assert again.import_frame(pd.read_csv(out, keep_default_na=False)) == 9
    assert again.keys() == set(reference.index)
