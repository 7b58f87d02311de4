"""Text-embedding baselines: TextEmb (Vu et al. 2020) and SEMB (2407.16245), compared by cosine.

Both come from one forward pass over a seeded, stratified sample of the task's training texts:
TextEmb averages final-layer token vectors over all tokens of the sample (longer texts weigh
more), SEMB averages the pooled sentence embeddings (every example weighs the same).
"""

from __future__ import annotations

import numpy as np

from ..models import BaseModel, length_sorted_batches, pool, set_threads
from ..store import Artefact
from ..tasks import Task
from .base import Estimator, cosine_rows


def dataset_means(model: BaseModel, texts: list, progress: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(token-weighted mean of final-layer token vectors, mean of pooled sentence embeddings)."""
    import torch

    set_threads()
    encoder = model.load()[1]
    token_sum = torch.zeros(encoder.config.hidden_size, dtype=torch.float64)
    sentence_sum = torch.zeros_like(token_sum)
    n_tokens = 0
    for _, batch in length_sorted_batches(model, texts, model.batch_size, progress):
        with torch.inference_mode():
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"]
            token_sum += (hidden * mask.unsqueeze(-1)).sum((0, 1)).double()
            n_tokens += int(mask.sum())
            sentence_sum += pool(hidden, mask, model.pooling).sum(0).double()
    return (token_sum / max(n_tokens, 1)).numpy(), (sentence_sum / len(texts)).numpy()


# one forward pass serves both estimators when a pool prepares them one after the other
_last_means: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


class _MeanEmbedding(Estimator):
    vector: str  # which of the two means this estimator keeps

    def __init__(self, model: BaseModel | None = None, n_examples: int = 1000, seed: int = 0):
        super().__init__(model)
        self.n_examples = n_examples
        self.seed = seed

    def prepare(self, task: Task) -> Artefact:
        texts = task.texts(frame=task.sample(self.n_examples, self.seed))
        key = (self.model.model_id, self.model.pooling, self.model.max_length, task.fingerprint, self.n_examples,
               self.seed)
        if key not in _last_means:
            _last_means.clear()
            _last_means[key] = dataset_means(self.model, texts, progress=f"{self.name}: {task.name}")
        token_mean, sentence_mean = _last_means[key]
        vec = token_mean if self.vector == "token_mean" else sentence_mean
        return self.artefact(task, {"embedding": vec.astype(np.float32)}, n_examples=len(texts))

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        return cosine_rows(target.tensors["embedding"], np.stack([s.tensors["embedding"] for s in sources]))


class TextEmb(_MeanEmbedding):
    """Vu et al. 2020 TextEmb: mean of final-layer token representations over the dataset."""

    name = "textemb"
    summary = "mean final-layer token vector of the data, cosine (Vu et al. 2020)"
    vector = "token_mean"


class SEmb(_MeanEmbedding):
    """SEMB (2407.16245): mean pooled sentence embedding of the data, cosine."""

    name = "semb"
    summary = "mean sentence embedding of the data, cosine (2407.16245)"
    vector = "sentence_mean"
