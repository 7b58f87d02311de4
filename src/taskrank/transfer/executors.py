"""Where a grid's runs execute: in this process, in local worker processes, or on a Dask cluster.

Every executor follows the same two steps: train the intermediate source models the pending runs
need, then run the pending runs. Results come back to this process, which alone writes the
journal, so a remote cluster needs no shared journal file (the work folder holding the source
models must be shared, though). Workers use one BLAS/torch thread each.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from ..progress import track
from .journal import Journal
from ..finetuned import model_dir, train
from .runner import Run, execute_run

WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "TASKRANK_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "TASKRANK_QUIET": "1"}


def pending_runs(runs: list[Run], journal: Journal) -> list[Run]:
    done = journal.keys()
    return [r for r in runs if r.key not in done]


def needed_sources(runs: list[Run], workdir: str | Path) -> list[tuple]:
    """(recipe, source, seed) of intermediate models that pending runs need and nobody saved yet."""
    seen, out = set(), []
    for r in runs:
        if r.source is None:
            continue
        item = (r.setting.source_recipe(), r.source, r.seed)
        if item not in seen and not (model_dir(workdir, *item) / "model.safetensors").exists():
            seen.add(item)
            out.append(item)
    return out


def run_grid(runs: list[Run], journal: Journal, workdir: str | Path, workers: int = 0,
             cluster: str | None = None) -> int:
    """Execute what the journal does not have yet; returns the number of runs recorded now.

    workers=0 runs in this process; workers>=1 uses that many local processes; ``cluster`` is
    'local' (a Dask LocalCluster on 127.0.0.1 with ``workers`` workers) or a scheduler address.
    """
    pending = pending_runs(runs, journal)
    if not pending:
        return 0
    sources = needed_sources(pending, workdir)
    workdir = str(workdir)
    if cluster is not None:
        with dask_client(cluster, max(workers, 1)) as client:
            return _record(journal, _dask_results(client, workdir, sources, pending), len(pending))
    if workers >= 1:
        return _record(journal, _process_results(workdir, sources, pending, workers), len(pending))
    return _record(journal, (execute_run(workdir, r) for r in pending), len(pending))


def run_line(result: dict) -> str:
    """One finished run for a log: its key, value and seconds."""
    value = result.get("value")
    shown = f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
    return (f"target={result['target']} source={result['source'] or '(baseline)'} seed={result['seed']} "
            f"{result.get('metric', 'value')}={shown} {result.get('seconds', float('nan')):.1f}s")


def _record(journal: Journal, results: Iterator[dict], total: int) -> int:
    stored = 0
    for result in track(results, description="transfer runs", total=total, line=run_line):
        stored += journal.record(result)
    return stored


def _worker_init() -> None:
    os.environ.update(WORKER_ENV)


def _process_results(workdir: str, sources: list[tuple], runs: list[Run], workers: int) -> Iterator[dict]:
    """Seed by seed: that seed's source models first, then its runs (so results arrive early)."""
    import multiprocessing as mp

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        for seed in sorted({r.seed for r in runs}):
            for future in as_completed([pool.submit(train, workdir, *item, 1)
                                        for item in sources if item[2] == seed]):
                future.result()
            for future in as_completed([pool.submit(execute_run, workdir, r, 1) for r in runs if r.seed == seed]):
                yield future.result()


def _dask_results(client, workdir: str, sources: list[tuple], runs: list[Run]) -> Iterator[dict]:
    from distributed import as_completed as dask_completed

    trained = {item: client.submit(train, workdir, *item, 1, pure=False) for item in sources}
    futures = []
    for r in runs:
        dep = trained.get((r.setting.source_recipe(), r.source, r.seed)) if r.source else None
        # the dependency makes Dask wait for the source model; its value (a path) is not needed
        futures.append(client.submit(_after, dep, workdir, r, pure=False))
    for future in dask_completed(futures):
        yield future.result()


def _after(_dependency, workdir: str, run: Run) -> dict:
    return execute_run(workdir, run, 1)


@contextmanager
def dask_client(cluster: str, workers: int):
    """A Dask client: 'local' starts a LocalCluster bound to 127.0.0.1 and shuts it down after."""
    import dask
    from distributed import Client, LocalCluster

    if cluster != "local":
        with Client(cluster) as client:
            client.run(_worker_init)
            yield client
        return
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which made torch training about
    # 1.5x slower here: unset it (None removes a variable) and pin workers to one thread.
    environ = {"MALLOC_TRIM_THRESHOLD_": None, **WORKER_ENV}
    with tempfile.TemporaryDirectory(prefix="taskrank-dask-") as scratch, dask.config.set({
        "distributed.nanny.pre-spawn-environ": environ,
        "distributed.worker.daemon": False,
        "temporary-directory": scratch,
    }):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0", local_directory=scratch) as lc, Client(lc) as client:
            yield client
