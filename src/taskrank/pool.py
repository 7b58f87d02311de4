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

from .estimators import Composite, Estimator
from .progress import track
from .store import Artefact, ArtefactError, Store, atomic_write, url_to_fs
from .tasks import Task

SHIPPED_POOLS = Path(__file__).parent / "pools"
DEFAULT_POOL = SHIPPED_POOLS / "default"
POOL_FILE = "pool.json"


class PoolError(ValueError):
    pass


def with_members(estimators: list[Estimator]) -> list[Estimator]:
    """The estimators that have artefacts: composites replaced by their members, recursively."""
    out = []
    for estimator in estimators:
        out += with_members(estimator.members) if isinstance(estimator, Composite) else [estimator]
    return out


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
            artefact = self.store.load(estimator.artefact_id, estimator.model.model_id, meta["fingerprint"])
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
        for estimator in with_members(estimators):
            key = (estimator.artefact_id, estimator.model.model_id, task.fingerprint)
            if not estimator.supports(task.spec.type):
                continue  # e.g. a generation source for a method that tunes a head: ranked NaN
            if not self.store.has(*key):
                self.store.save(*key, estimator.prepare(task))
        tasks = [t for t in self.tasks if t["name"] != task.name] + [task.metadata()]
        self.meta["tasks"] = sorted(tasks, key=lambda t: t["name"])
        self.fs.makedirs(self._path, exist_ok=True)
        atomic_write(self.fs, f"{self._path}/{POOL_FILE}", json.dumps(self.meta, indent=1).encode())

    def build(self, tasks: list[Task], estimators: list[Estimator]) -> None:
        for task in track(tasks, description="pool build", total=len(tasks)):
            self.add(task, estimators)
