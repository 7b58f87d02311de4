"""Retrieval-of-Experts (RoE), TaskWeb's best direct estimator (Kim et al. 2023; after Jang et al. 2023).

Sentence embeddings (the base model, mean pooling, L2-normalised as TaskWeb's ``encode_text``
does) of a seeded sample of 32 target examples and 100 examples of each source. For every target
example take the largest dot product with the source's examples; the score is the mean of those
maxima:

    sim(t, s) = mean_{i ∈ target sample} max_{j ∈ source sample} <e_i, e_j>

Reference: TaskWeb ``taskshop/roe_predict.py`` (``compute_scores``, method "dot") and
``taskshop/encode.py``. TaskWeb embeds its instruction-formatted prompts; taskrank embeds the
task's own inputs (sentence pairs as tokenizer pairs), which is all a new target has.

The artefact is the sampled examples' embeddings (float32), never their text. Source and
target artefacts differ in size (100 vs 32 rows); ``prepare`` makes the source side,
``prepare_target`` the target side.
"""

from __future__ import annotations

import numpy as np

from ..models import BaseModel
from ..store import Artefact, ArtefactError
from ..tasks import Task
from .base import Estimator


def roe_similarity(target: np.ndarray, source: np.ndarray) -> float:
    """Mean over target rows of the max dot product with the source rows (float64)."""
    t = np.asarray(target, dtype=np.float64)
    s = np.asarray(source, dtype=np.float64)
    if t.ndim != 2 or s.ndim != 2 or t.shape[1] != s.shape[1] or not len(t) or not len(s):
        raise ValueError(f"RoE needs two non-empty (n, d) matrices of one width, got {t.shape} and {s.shape}")
    return float((t @ s.T).max(axis=1).mean())


class RoE(Estimator):
    """Retrieval-of-Experts: example-level nearest-neighbour similarity of sentence embeddings."""

    name = "roe"
    summary = "Retrieval-of-Experts: mean over 32 target examples of the best dot product with 100 source examples (TaskWeb)"

    def __init__(self, model: BaseModel | None = None, n_source: int = 100, n_target: int = 32, seed: int = 0,
                 normalise: bool = True):
        super().__init__(model)
        if n_source < 1 or n_target < 1:
            raise ValueError(f"roe: n_source and n_target must be positive, got {n_source}, {n_target}")
        self.n_source = n_source
        self.n_target = n_target
        self.seed = seed
        self.normalise = normalise

    def _embed(self, task: Task, n: int, role: str) -> Artefact:
        texts = task.texts(frame=task.sample(n, self.seed))
        emb = self.model.embed(texts, progress=f"{self.name}: {task.name}").astype(np.float64)
        if self.normalise:
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = emb / np.where(norms == 0, 1.0, norms)
        return self.artefact(task, {"embeddings": emb.astype(np.float32)}, role=role, n_examples=len(texts))

    def prepare(self, task: Task) -> Artefact:
        return self._embed(task, self.n_source, "source")

    def prepare_target(self, task: Task) -> Artefact:
        return self._embed(task, self.n_target, "target")

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        for a, role in [(target, "target")] + [(s, "source") for s in sources]:
            if a.config.get("role", role) != role:
                raise ArtefactError(f"roe: artefact of task '{a.task}' is a {a.config.get('role')} artefact "
                                    f"({a.config.get('n_examples')} examples) but is used as the {role}")
        t = target.tensors["embeddings"]
        return np.array([roe_similarity(t, s.tensors["embeddings"]) for s in sources], dtype=np.float64)
