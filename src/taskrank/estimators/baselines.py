"""Baselines every paper compares against: RANDOM (seeded), SIZE (DataSize: larger source first),
vocabulary overlap, and CurveGrad (steepness of the source's training-loss curve)."""

from __future__ import annotations

import hashlib

import numpy as np

from ..models import BaseModel
from ..store import Artefact
from ..tasks import Task
from .base import Estimator
from .fisher import FineTunedFamily


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


class VocabOverlap(Estimator):
    """Vocabulary overlap: Jaccard similarity of the sets of base-tokenizer token ids in seeded samples
    of the two tasks (both texts of pair tasks; special tokens left out). ``measure="weighted"`` uses
    token frequencies instead (Ruzicka: sum of minima over sum of maxima of relative frequencies).
    Artefacts keep token ids and counts only, no text."""

    name = "vocab"
    summary = "Jaccard overlap of the token vocabularies of data samples"
    score_only = ("measure",)

    def __init__(self, model: BaseModel | None = None, n_examples: int = 1000, seed: int = 0,
                 measure: str = "jaccard"):
        super().__init__(model)
        if measure not in ("jaccard", "weighted"):
            raise ValueError(f"measure must be 'jaccard' or 'weighted', not '{measure}'")
        self.n_examples = n_examples
        self.seed = seed
        self.measure = measure

    def prepare(self, task: Task) -> Artefact:
        tokenizer = self.model.load()[0]
        texts = task.texts(frame=task.sample(self.n_examples, self.seed))
        flat = [" ".join(t) if isinstance(t, tuple) else t for t in texts]
        ids = tokenizer(flat, add_special_tokens=False, truncation=True, max_length=self.model.max_length)["input_ids"]
        ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if ids else np.zeros(0, np.int64)
        tokens, counts = np.unique(ids, return_counts=True)
        return self.artefact(task, {"tokens": tokens, "counts": counts.astype(np.int64)}, n_examples=len(texts))

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        return np.array([vocab_similarity(target.tensors["tokens"], target.tensors["counts"],
                                          s.tensors["tokens"], s.tensors["counts"], self.measure) for s in sources])


def vocab_similarity(tokens_a, counts_a, tokens_b, counts_b, measure: str = "jaccard") -> float:
    """Jaccard of two token sets, or the weighted (Ruzicka) overlap of their relative frequencies."""
    if measure == "jaccard":
        union = len(np.union1d(tokens_a, tokens_b))
        return len(np.intersect1d(tokens_a, tokens_b)) / union if union else 0.0
    vocab = np.union1d(tokens_a, tokens_b)
    pa = np.zeros(len(vocab))
    pb = np.zeros(len(vocab))
    pa[np.searchsorted(vocab, tokens_a)] = np.asarray(counts_a, dtype=np.float64) / max(np.sum(counts_a), 1)
    pb[np.searchsorted(vocab, tokens_b)] = np.asarray(counts_b, dtype=np.float64) / max(np.sum(counts_b), 1)
    denom = np.maximum(pa, pb).sum()
    return float(np.minimum(pa, pb).sum() / denom) if denom else 0.0


CURVE_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7)
RRF_K = 60


def curve_gradients(losses, fractions=CURVE_FRACTIONS, window: float = 0.2) -> np.ndarray:
    """Slopes of the training-loss curve at fractions of training (Bingel & Søgaard 2017).

    Step losses are divided by the mean loss of the first ``window/2`` of training (so tasks with
    other numbers of classes compare), placed at x = (step + 0.5) / steps, and a least-squares line
    is fitted to the points within ``window/2`` of each fraction; the slope is in relative loss per
    whole training run (negative: still improving)."""
    y = np.asarray(losses, dtype=np.float64)
    n = len(y)
    if n < 2:
        return np.zeros(len(fractions))
    x = (np.arange(n) + 0.5) / n
    start = y[x <= window / 2]
    y = y / (start.mean() if len(start) and start.mean() > 0 else (y[0] or 1.0))
    out = []
    for f in fractions:
        near = np.abs(x - f) <= window / 2
        if near.sum() < 2:  # too few steps: the two nearest
            near = np.zeros(n, bool)
            near[np.argsort(np.abs(x - f), kind="stable")[:2]] = True
        out.append(np.polyfit(x[near], y[near], 1)[0])
    return np.array(out)


def reciprocal_rank_fusion(values: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """RRF over columns: rank the rows by each column ascending (1 = smallest, ties share the best
    rank) and sum 1 / (k + rank)."""
    values = np.asarray(values, dtype=np.float64)
    fused = np.zeros(len(values))
    for column in values.T:
        ranks = np.array([1 + np.sum(column < v) for v in column])
        fused += 1.0 / (k + ranks)
    return fused


class CurveGrad(FineTunedFamily):
    """CurveGrad (Bingel & Søgaard 2017, as Vu et al. 2020 use it): sources whose training-loss curve
    still falls steeply (most negative gradients at 10, 20, 30, 50, 70% of training) rank first;
    the five per-fraction rankings are merged by reciprocal rank fusion (k = 60).

    The features belong to the source alone, so the target does not change the order: the score of a
    source is its fused reciprocal rank among the sources being scored (Bingel & Søgaard's target
    features decide *whether* auxiliary training helps, not which source). The loss curve comes from
    the same full fine-tuning run as TaskEmb (family ``finetune``)."""

    name = "curvegrad"
    summary = "steepness of the source's training-loss curve, rank-fused (CurveGrad)"
    score_only = ("window",)

    def __init__(self, model: BaseModel | None = None, n_examples: int = 500, epochs: int = 2, lr: float = 1e-4,
                 batch_size: int = 16, n_fisher: int = 256, seed: int = 0, window: float = 0.2):
        super().__init__(model, n_examples, epochs, lr, batch_size, n_fisher, seed)
        self.window = window

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        grads = np.stack([curve_gradients(s.tensors["step_losses"], window=self.window) for s in sources])
        return reciprocal_rank_fusion(grads)
