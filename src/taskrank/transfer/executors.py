"""Where a grid's runs execute: in this process, in local worker processes, or on a Dask cluster.

Every executor follows the same two steps: train the intermediate source models the pending runs
need, then run the pending runs. Results come back to this process, which alone writes the
journal, so a remote cluster needs no shared journal file (the work folder holding the source
models must be shared, though). Workers use one BLAS/torch thread each.

Devices: each local worker gets its own device (``devices.worker_devices``): with GPUs present and
``device`` auto or cuda, one GPU per worker in turn, and with several GPUs and ``workers=0`` one
worker per GPU; a Dask LocalCluster's workers also carry a ``GPU`` resource, one task at a time
each. On a machine without GPUs everything runs on the CPU as before.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import as_completed
from contextlib import contextmanager
from pathlib import Path

from ..devices import device_pool, local_workers, set_worker_device, worker_devices
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
             cluster: str | None = None, device: str = "cpu") -> int:
    """Execute what the journal does not have yet; returns the number of runs recorded now.

    workers=0 runs in this process; workers>=1 uses that many local processes; ``cluster`` is
    'local' (a Dask LocalCluster on 127.0.0.1 with ``workers`` workers) or a scheduler address.
    ``device``: auto, cpu, cuda, cuda:N or mps (see the module docstring for workers and GPUs).
    """
    worker_devices(device, 1)  # an absent device is said before any work
    pending = pending_runs(runs, journal)
    if not pending:
        return 0
    sources = needed_sources(pending, workdir)
    workdir = str(workdir)
    if cluster is not None:
        with dask_client(cluster, max(local_workers(workers, device), 1), device) as client:
            return _record(journal, _dask_results(client, workdir, sources, pending), len(pending))
    workers = local_workers(workers, device)
    if workers >= 1:
        return _record(journal, _process_results(workdir, sources, pending, workers, device), len(pending))
    return _record(journal, (execute_run(workdir, r, None, device) for r in pending), len(pending))


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


def _process_results(workdir: str, sources: list[tuple], runs: list[Run], workers: int,
                     device: str = "cpu") -> Iterator[dict]:
    """Seed by seed: that seed's source models first, then its runs (so results arrive early)."""
    with device_pool(workers, device, WORKER_ENV) as pool:
        for seed in sorted({r.seed for r in runs}):
            for future in as_completed([pool.submit(train, workdir, *item, 1, "auto")
                                        for item in sources if item[2] == seed]):
                future.result()
            for future in as_completed([pool.submit(execute_run, workdir, r, 1, "auto")
                                        for r in runs if r.seed == seed]):
                yield future.result()


def _dask_results(client, workdir: str, sources: list[tuple], runs: list[Run]) -> Iterator[dict]:
    from distributed import as_completed as dask_completed

    gpu = {"resources": {"GPU": 1}} if getattr(client, "taskrank_gpus", 0) else {}
    trained = {item: client.submit(train, workdir, *item, 1, "auto", pure=False, **gpu) for item in sources}
    futures = []
    for r in runs:
        dep = trained.get((r.setting.source_recipe(), r.source, r.seed)) if r.source else None
        # the dependency makes Dask wait for the source model; its value (a path) is not needed
        futures.append(client.submit(_after, dep, workdir, r, pure=False, **gpu))
    for future in dask_completed(futures):
        yield future.result()


def _after(_dependency, workdir: str, run: Run) -> dict:
    return execute_run(workdir, run, 1, "auto")


@contextmanager
def dask_client(cluster: str, workers: int, device: str | None = "cpu"):
    """A Dask client: 'local' starts a LocalCluster bound to 127.0.0.1 and shuts it down after; its
    workers get one device each (with GPUs: one GPU each, and a ``GPU`` resource). A remote
    cluster's workers use their own device ("auto": their first visible GPU, else the CPU)."""
    import dask
    from distributed import Client, LocalCluster

    if cluster != "local":
        with Client(cluster) as client:
            client.run(_worker_init)
            yield client
        return
    devices = worker_devices(device, workers)
    gpus = sum(d.startswith("cuda") for d in devices)
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which made torch training about
    # 1.5x slower here: unset it (None removes a variable) and pin workers to one thread.
    environ = {"MALLOC_TRIM_THRESHOLD_": None, **WORKER_ENV}
    with tempfile.TemporaryDirectory(prefix="taskrank-dask-") as scratch, dask.config.set({
        "distributed.nanny.pre-spawn-environ": environ,
        "distributed.worker.daemon": False,
        "temporary-directory": scratch,
    }):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0", local_directory=scratch,
                          **({"resources": {"GPU": 1}} if gpus else {})) as lc, Client(lc) as client:
            for address, d in zip(sorted(client.scheduler_info()["workers"]), devices):
                client.run(set_worker_device, d, workers=[address])
            client.taskrank_gpus = gpus
            yield client
