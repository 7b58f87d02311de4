"""Baselines every paper compares against: RANDOM (seeded) and SIZE (DataSize: larger source first)."""

from __future__ import annotations

import hashlib

import numpy as np

from ..models import BaseModel
from ..store import Artefact
from ..tasks import Task
from .base import Estimator


class RandomEstimator(Estimator):
    """A seeded random score per (target, source) pair: stable across runs and pool orderings."""

    name = "random"
    summary = "seeded random scores (the floor every method must beat)"
    score_only = ("seed",)

    def __init__(self, model: BaseModel | None = None, seed: int = 0):
        super().__init__(model)
        self.seed = seed

    def prepare(self, task: Task) -> Artefact:
        return self.artefact(task, {})

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        def draw(source: Artefact) -> float:
            key = f"{self.seed}|{target.config['fingerprint']}|{source.config['fingerprint']}".encode()
            return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64

        return np.array([draw(s) for s in sources], dtype=np.float64)


class SizeEstimator(Estimator):
    """DataSize (Vu et al. 2020): bigger training sets transfer more; score = log of the train size."""

    name = "size"
    summary = "training-set size of the source (DataSize)"

    def prepare(self, task: Task) -> Artefact:
        return self.artefact(task, {"size": np.array([task.size], dtype=np.int64)})

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        return np.log(np.array([float(s.tensors["size"][0]) for s in sources]))
