"""The Estimator protocol: ``prepare(task) -> Artefact`` once per task, ``score(target, sources)`` cheaply.

Like scikit-learn estimators, every parameter is a constructor argument and ``get_params`` returns
them; the parameters that change artefacts are hashed into ``artefact_id`` so artefacts made with
other settings are never mixed up.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ..models import BaseModel
from ..store import Artefact
from ..tasks import TASK_TYPES, Task, TaskError


# what the methods that tune or fine-tune a model can train on (a generation task has no head here)
TRAINABLE_TYPES = ("classification", "regression", "multiple_choice")


class Estimator(ABC):
    """One transferability estimation method. Higher score = more transferable source."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    # estimators that differ only in how they score share artefacts under one family name
    family: ClassVar[str | None] = None
    # parameters that do not change what `prepare` produces (left out of artefact_id)
    score_only: ClassVar[tuple[str, ...]] = ()
    # whether `taskrank pool build` prepares this estimator by default (cheap enough on CPU)
    in_default_pool: ClassVar[bool] = True
    # task types the method is defined for; a source of another type is not scored (NaN, ranked
    # last) and a target of another type is refused with one line
    task_types: ClassVar[tuple[str, ...]] = TASK_TYPES

    def supports(self, task_type: str) -> bool:
        return task_type in self.task_types

    def check_task(self, task: Task) -> None:
        """One line saying why this method cannot use ``task``, before any work."""
        if not self.supports(task.spec.type):
            raise TaskError(f"method '{self.name}' cannot use task '{task.name}': it is a {task.spec.type} task "
                            f"and the method needs {' or '.join(t.replace('_', '-') for t in self.task_types)} examples")

    def __init__(self, model: BaseModel | None = None):
        self.model = model or BaseModel()

    def get_params(self) -> dict:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p not in ("self", "model", "defaults")]
        return {p: getattr(self, p) for p in names}

    @property
    def artefact_id(self) -> str:
        """Names a source artefact: the family (or name) and a hash of the parameters it depends on."""
        params = {k: v for k, v in self.get_params().items() if k not in self.score_only}
        return _with_digest(self.family or self.name, {**params, **self._model_options()})

    @property
    def target_artefact_id(self) -> str:
        """Names a target artefact (kept in the user's cache): every parameter counts."""
        return _with_digest(f"{self.name}.target", {**self.get_params(), **self._model_options()})

    def _model_options(self) -> dict:
        """The base model's non-default pooling / pair joining (BaseModel.identity), hashed with the
        parameters so artefacts of other poolings never mix; empty (ids unchanged) by default."""
        options = self.model.identity()
        return {"base_model_options": options} if options else {}

    def artefact(self, task: Task, tensors: dict[str, np.ndarray], **extra) -> Artefact:
        """An artefact for ``task`` whose config records what made it."""
        config = {
            "estimator": self.name,
            "artefact_id": self.artefact_id,
            "params": self.get_params(),
            "base_model": self.model.model_id,
            "task": task.name,
            "fingerprint": task.fingerprint,
            "task_type": task.spec.type,
            **self.model.identity(),  # pooling / pairs where not the defaults (mean, tokenizer)
            **extra,
        }
        return Artefact(tensors, config)

    @abstractmethod
    def prepare(self, task: Task) -> Artefact:
        """The expensive, cacheable per-task step (for a task used as a source)."""

    def prepare_target(self, task: Task) -> Artefact:
        """The per-task step for the target; the same as for a source unless a method differs."""
        return self.prepare(task)

    @property
    def target_is_source(self) -> bool:
        """Whether a target's artefact is made as a source's is, so a pool task's own artefact can
        serve when it is the target (no tuning or embedding again)."""
        return type(self).prepare_target is Estimator.prepare_target

    @abstractmethod
    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        """Scores (len(sources),), higher = better source for the target."""


def _with_digest(stem: str, params: dict) -> str:
    if not params:
        return stem
    return f"{stem}-{hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]}"


class Composite(Estimator):
    """An estimator built on other estimators' scores (ensembles, TaskShop): it has no artefacts of
    its own; ranking scores every member on the pool and hands the scores to ``combine``."""

    in_default_pool = False
    members: list[Estimator]

    def prepare(self, task: Task) -> Artefact:
        raise TypeError(f"{self.name} combines other estimators; prepare its members instead")

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        raise TypeError(f"{self.name} combines other estimators; rank with it through taskrank.ranking")

    @abstractmethod
    def combine(self, target: str, sources: list[str], member_scores: list[np.ndarray]) -> np.ndarray:
        """Scores for ``sources`` (pool task names) from each member's scores of the same sources."""


def cosine_rows(target: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Cosine similarity of one vector with each row of a matrix, in float64."""
    t = np.asarray(target, dtype=np.float64).ravel()
    s = np.asarray(sources, dtype=np.float64).reshape(len(sources), -1)
    denom = np.linalg.norm(s, axis=1) * np.linalg.norm(t)
    return (s @ t) / np.where(denom == 0, 1.0, denom)
