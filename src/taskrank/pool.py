"""Source pools: task metadata (numbers and names only, no text) plus prepared artefacts.

``<pool>/pool.json`` lists the tasks; ``<pool>/artefacts/`` is a :class:`Store`. Two pools ship
inside the package so ranking works on a fresh machine with no data and no network: ``default``
(taskrank's 17 tasks) and ``taskweb`` (TaskWeb's 22 tasks). ``pool.json`` may also hold
``method_params``: parameters the pool's artefacts were made with where they differ from a
method's defaults (e.g. TaskWeb's RoE inputs), applied whenever that pool ranks; a relative
``transfer`` path (TaskShop's transfer table) is read from the pool's folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import TaskrankError
from .estimators import Estimator
from .progress import track
from .resolve import find_source, leaves, source_artefact, source_key
from .store import Artefact, ArtefactError, Store, atomic_write, url_to_fs
from .tasks import Task

SHIPPED_POOLS = Path(__file__).parent / "pools"
DEFAULT_POOL = SHIPPED_POOLS / "default"
POOL_FILE = "pool.json"


class PoolError(TaskrankError):
    pass


class Pool:
    """A set of candidate source tasks and their artefacts."""

    def __init__(self, root: str | Path):
        self.root = str(root)
        self.fs, self._path = url_to_fs(self.root)
        self.store = Store(f"{self.root.rstrip('/')}/artefacts")
        self._meta: dict | None = None

    @classmethod
    def open(cls, name: str | Path = "default") -> "Pool":
        shipped = SHIPPED_POOLS / str(name)
        pool = cls(shipped if "/" not in str(name) and (shipped / POOL_FILE).is_file() else name)
        if not pool.fs.exists(f"{pool._path}/{POOL_FILE}"):
            raise PoolError(f"{name}: not a taskrank pool ({POOL_FILE} missing); build one with 'taskrank pool build'")
        return pool

    @property
    def meta(self) -> dict:
        if self._meta is None:
            path = f"{self._path}/{POOL_FILE}"
            try:
                meta = json.loads(self.fs.cat_file(path)) if self.fs.exists(path) else {"tasks": []}
            except ValueError as e:  # not JSON, not UTF-8
                raise PoolError(f"{self.root}: {POOL_FILE} is not valid JSON ({e})") from None
            tasks = meta.get("tasks") if isinstance(meta, dict) else None
            need = {"name", "fingerprint", "type", "size", "labels"}  # what Task.metadata() writes
            if not isinstance(tasks, list) or not all(isinstance(t, dict) and need <= t.keys() for t in tasks):
                raise PoolError(f"{self.root}: {POOL_FILE} is not a pool's list of tasks (expected "
                                f"{{\"tasks\": [...]}}, each task with {', '.join(sorted(need))})")
            self._meta = meta
        return self._meta

    @property
    def tasks(self) -> list[dict]:
        return self.meta["tasks"]

    @property
    def method_params(self) -> dict:
        """Per method name (or composite prefix), the parameters this pool's artefacts were made with."""
        out = {}
        for method, params in self.meta.get("method_params", {}).items():
            params = dict(params)
            if "transfer" in params and "://" not in self.root and not Path(params["transfer"]).is_absolute():
                params["transfer"] = str(Path(self._path) / params["transfer"])
            out[method] = params
        return out

    def estimator(self, name: str, model=None, **params) -> Estimator:
        """An estimator by name with this pool's ``method_params`` applied (``params`` override them)."""
        from .estimators import get_estimator

        return get_estimator(name, model=model, defaults=self.method_params, **params)

    def artefacts(self, estimator: Estimator, tasks: list[dict] | None = None) -> list[Artefact]:
        """The estimator's artefacts for the pool's tasks (all of them unless given)."""
        out = []
        for meta in tasks if tasks is not None else self.tasks:
            artefact = find_source(estimator, self.store, meta["fingerprint"])
            if artefact is None:
                made_for = self.store.models(estimator.artefact_id)
                why = (f"it has them for base model(s) {', '.join(made_for)} only" if made_for
                       else "run 'taskrank pool build' with this method")
                raise ArtefactError(f"pool {self.root}: no '{estimator.name}' artefact for task '{meta['name']}' "
                                    f"with base model '{estimator.model.model_id}'; {why}")
            out.append(artefact)
        return out

    def add(self, task: Task, estimators: list[Estimator]) -> None:
        """Prepare what is missing for one task and record its metadata (resumable); a composite
        (ensemble, TaskShop) has its members prepared."""
        self.prepare(task, estimators)
        self.record(task.metadata())

    def prepare(self, task: Task, estimators: list[Estimator]) -> None:
        """Prepare the artefacts one task misses (no pool.json change)."""
        for estimator in leaves(estimators):
            if not estimator.supports(task.spec.type):
                continue  # e.g. a generation source for a method that tunes a head: ranked NaN
            if not self.store.has(*source_key(estimator, task.fingerprint)):
                source_artefact(estimator, task, self.store)

    def record(self, metadata: dict) -> None:
        """Add (or replace) one task's metadata in pool.json."""
        tasks = [t for t in self.tasks if t["name"] != metadata["name"]] + [metadata]
        self.meta["tasks"] = sorted(tasks, key=lambda t: t["name"])
        self.fs.makedirs(self._path, exist_ok=True)
        atomic_write(self.fs, f"{self._path}/{POOL_FILE}", json.dumps(self.meta, indent=1).encode())

    def build(self, tasks: list[Task], estimators: list[Estimator], workers: int = 0, device: str | None = None) -> None:
        """Prepare every task. ``workers`` >= 1 (or, with ``device`` auto/cuda, several GPUs): tasks
        are prepared in that many local processes, each on its own device (one per GPU); this
        process alone writes pool.json, as each task finishes."""
        from .devices import device_pool, local_workers

        workers = local_workers(workers, device)
        if workers < 1:
            for task in track(tasks, description="pool build", total=len(tasks), line=lambda t: t.name):
                self.add(task, estimators)
            return
        from concurrent.futures import as_completed

        env = {"TASKRANK_THREADS": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        with device_pool(workers, device, env) as pool:
            futures = [pool.submit(_prepare_in_worker, self.root, task, estimators) for task in tasks]
            done = track(as_completed(futures), description="pool build", total=len(futures),
                         line=lambda f: f.result()["name"])
            for future in done:
                self.record(future.result())


def _prepare_in_worker(root: str, task: Task, estimators: list[Estimator]) -> dict:
    """One task's artefacts, prepared in a worker process on its own device; returns its metadata."""
    from .devices import resolve_device

    device = str(resolve_device("auto"))  # the worker's device (devices.device_pool)
    for estimator in leaves(estimators):
        estimator.model.device = device
    Pool(root).prepare(task, estimators)
    return task.metadata()
