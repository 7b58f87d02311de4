"""Retrieval-of-Experts (RoE), TaskWeb's best direct estimator (Kim et al. 2023; after Jang et al. 2023).

Sentence embeddings (the base model, mean pooling, L2-normalised as TaskWeb's ``encode_text``
does) of a seeded sample of 32 target examples and 100 examples of each source. For every target
example take the largest dot product with the source's examples; the score is the mean of those
maxima:

    sim(t, s) = mean_{i ∈ target sample} max_{j ∈ source sample} <e_i, e_j>

Reference: TaskWeb ``taskshop/roe_predict.py`` (``compute_scores``, method "dot") and
``taskshop/encode.py``. TaskWeb embeds its instruction-formatted prompts; taskrank embeds the
task's own inputs (sentence pairs as tokenizer pairs), which is all a new target has.

``inputs="taskweb"`` follows TaskWeb's own construction exactly (``roe_predict.py``,
``encode.py``): every entry of the task's RoE inputs (``roe32.jsonl`` of the taskweb-tasks layout:
32 examples × every prompt template, kept in ``Task.extras["roe32"]``) is embedded as the string
``f"{choices}</s>{text}"`` (choices printed as a Python list, or ``None``), mean-pooled over the
attention mask up to 512 tokens and L2-normalised, on both the source and the target side. A task
without such a file gets the same strings from 32 sampled examples (its class names, or the
example's own choices, as the choices). The TaskWeb pool uses it (its ``method_params``).

The artefact is the sampled examples' embeddings (float32), never their text. With
``inputs="examples"`` source and target artefacts differ in size (100 vs 32 rows); ``prepare``
makes the source side, ``prepare_target`` the target side.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..models import BaseModel
from ..store import Artefact, ArtefactError
from ..tasks import Task
from .base import Estimator
from .registry import register


TASKWEB_MAX_LENGTH = 512


def taskweb_strings(task: Task, n: int = 32, seed: int = 0) -> list[str]:
    """TaskWeb's RoE inputs of a task as the strings TaskWeb embeds: its roe32 entries when it has
    them, else ``n`` sampled examples in the same form."""
    if "roe32" in task.extras:
        rows = task.extras["roe32"]
        pairs = zip(rows["choices"].tolist(), rows["text"].tolist())
    else:
        frame = task.sample(n, seed)
        texts = [a if isinstance(a, str) else f"{a[0]} {a[1]}" for a in
                 (list(zip(frame["text"], frame["text_pair"])) if task.spec.is_pair else frame["text"].tolist())]
        if task.is_multiple_choice:
            choices = frame["choices"].tolist()
        elif task.spec.type == "classification":
            choices = [task.spec.labels] * len(frame)
        else:
            choices = [None] * len(frame)
        pairs = zip(choices, texts)
    return [f"{list(c) if c is not None else None}</s>{t}" for c, t in pairs]


def roe_similarity(target: np.ndarray, source: np.ndarray) -> float:
    """Mean over target rows of the max dot product with the source rows (float64)."""
    t = np.asarray(target, dtype=np.float64)
    s = np.asarray(source, dtype=np.float64)
    if t.ndim != 2 or s.ndim != 2 or t.shape[1] != s.shape[1] or not len(t) or not len(s):
        raise ValueError(f"RoE needs two non-empty (n, d) matrices of one width, got {t.shape} and {s.shape}")
    return float((t @ s.T).max(axis=1).mean())


@register
class RoE(Estimator):
    """Retrieval-of-Experts: example-level nearest-neighbour similarity of sentence embeddings."""

    name = "roe"
    summary = "Retrieval-of-Experts: mean over 32 target examples of the best dot product with 100 source examples (TaskWeb)"

    def __init__(self, model: BaseModel | None = None, n_source: int = 100, n_target: int = 32, seed: int = 0,
                 normalise: bool = True, inputs: str = "examples"):
        super().__init__(model)
        if n_source < 1 or n_target < 1:
            raise ParameterError(f"roe: n_source and n_target must be positive, got {n_source}, {n_target}")
        if inputs not in ("examples", "taskweb"):
            raise ParameterError(f"roe: inputs must be 'examples' or 'taskweb', not '{inputs}'")
        self.n_source = n_source
        self.n_target = n_target
        self.seed = seed
        self.normalise = normalise
        self.inputs = inputs

    def _embed(self, task: Task, n: int, role: str) -> Artefact:
        if self.inputs == "taskweb":
            texts = taskweb_strings(task, self.n_target, self.seed)
            model = BaseModel(self.model.name, pooling="mean", max_length=TASKWEB_MAX_LENGTH,
                              device=self.model.device)
        else:
            texts, model = task.texts(frame=task.sample(n, self.seed)), self.model
        emb = model.embed(texts, progress=f"{self.name}: {task.name}").astype(np.float64)
        if self.normalise:
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = emb / np.where(norms == 0, 1.0, norms)
        return self.artefact(task, {"embeddings": emb.astype(np.float32)}, role=role, n_examples=len(texts))

    def prepare(self, task: Task) -> Artefact:
        return self._embed(task, self.n_source, "source")

    def prepare_target(self, task: Task) -> Artefact:
        return self._embed(task, self.n_target, "target")

    @property
    def target_is_source(self) -> bool:
        return self.inputs == "taskweb"  # both sides embed the same entries

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        for a, role in [(target, "target")] + [(s, "source") for s in sources]:
            if self.inputs == "examples" and a.config.get("role", role) != role:
                raise ArtefactError(f"roe: artefact of task '{a.task}' is a {a.config.get('role')} artefact "
                                    f"({a.config.get('n_examples')} examples) but is used as the {role}")
        t = target.tensors["embeddings"]
        return np.array([roe_similarity(t, s.tensors["embeddings"]) for s in sources], dtype=np.float64)
