"""Text-embedding baselines: TextEmb (Vu et al. 2020) and SEMB (2407.16245), compared by cosine.

Both come from one forward pass over a seeded, stratified sample of the task's training texts.

TextEmb, ``weighting="example"`` (default), as Vu et al.'s released ``run_textemb_CR.py``: each
example's final-layer token vectors are averaged over its non-padding tokens ([CLS] and [SEP]
included, as the attention mask has them), then those per-example vectors are averaged over the
examples, so every example weighs the same whatever its length. ``weighting="token"`` (taskrank's
earlier default) averages all token vectors of the sample at once, so longer texts weigh more.

SEMB averages the pooled sentence embeddings (every example weighs the same). With mean pooling
(the default model) the pooled embedding *is* the per-example token mean, so TextEmb with
``weighting="example"`` and SEMB are the same vector there; they differ for ``pooling="cls"``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..models import BaseModel, length_sorted_batches, set_threads
from ..store import Artefact
from ..tasks import Task
from .base import Estimator, cosine_rows
from .registry import register


WEIGHTINGS = ("example", "token")


def dataset_means(model: BaseModel, texts: list, progress: str | None = None) -> dict[str, np.ndarray]:
    """One forward pass, three dataset means of final-layer vectors: ``"token"`` (all token vectors
    of the sample averaged at once), ``"example"`` (per example the mean over its non-padding tokens,
    then the mean over examples) and ``"sentence"`` (the mean of the pooled sentence embeddings)."""
    import torch

    from ..devices import autocast, default_batch_size

    set_threads()
    encoder = model.load()[1]
    device = model.torch_device if model.torch_device.type == "cuda" else torch.device("cpu")
    token_sum = torch.zeros(encoder.config.hidden_size, dtype=torch.float64, device=device)
    example_sum = torch.zeros_like(token_sum)
    sentence_sum = torch.zeros_like(token_sum)
    n_tokens = 0
    for _, batch in length_sorted_batches(model, texts, default_batch_size(device, model.batch_size), progress):
        with torch.inference_mode(), autocast(model.torch_device):
            outputs = encoder(**model.inputs(batch))
            hidden = outputs.last_hidden_state.float().to(device)  # MPS has no float64: sums on the CPU there
            mask = batch["attention_mask"].to(device)
            token_sum += (hidden * mask.unsqueeze(-1)).sum((0, 1)).double()
            per_example = (hidden.double() * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            example_sum += per_example.sum(0)
            n_tokens += int(mask.sum())
            sentence_sum += model.pooled(outputs, batch["attention_mask"]).float().to(device).sum(0).double()
    token_sum, example_sum, sentence_sum = token_sum.cpu(), example_sum.cpu(), sentence_sum.cpu()
    n = max(len(texts), 1)
    return {"token": (token_sum / max(n_tokens, 1)).numpy(), "example": (example_sum / n).numpy(),
            "sentence": (sentence_sum / n).numpy()}


# one forward pass serves both estimators when a pool prepares them one after the other
_last_means: dict[tuple, dict[str, np.ndarray]] = {}


class _MeanEmbedding(Estimator):
    vector: str  # which of the dataset means (see dataset_means) this estimator keeps

    def __init__(self, model: BaseModel | None = None, n_examples: int = 1000, seed: int = 0):
        super().__init__(model)
        self.n_examples = n_examples
        self.seed = seed

    def prepare(self, task: Task) -> Artefact:
        texts = task.texts(frame=task.sample(self.n_examples, self.seed))
        key = (self.model.model_id, self.model.pooling, self.model.pairs, self.model.max_length, task.fingerprint,
               self.n_examples, self.seed)
        if key not in _last_means:
            _last_means.clear()
            _last_means[key] = dataset_means(self.model, texts, progress=f"{self.name}: {task.name}")
        vec = _last_means[key][self.vector]
        return self.artefact(task, {"embedding": vec.astype(np.float32)}, n_examples=len(texts))

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        return cosine_rows(target.tensors["embedding"], np.stack([s.tensors["embedding"] for s in sources]))


@register
class TextEmb(_MeanEmbedding):
    """Vu et al. 2020 TextEmb: mean of final-layer token representations over the dataset.

    ``weighting="example"`` (default; Vu et al.'s ``run_textemb_CR.py``): per example the mean over
    its non-padding tokens, then the mean over examples. ``weighting="token"``: the mean over every
    token of the sample (longer examples weigh more; taskrank's earlier default)."""

    name = "textemb"
    summary = "mean final-layer token vector of the data, cosine (Vu et al. 2020)"

    def __init__(self, model: BaseModel | None = None, n_examples: int = 1000, seed: int = 0,
                 weighting: str = "example"):
        super().__init__(model, n_examples, seed)
        if weighting not in WEIGHTINGS:
            raise ParameterError(f"{self.name}: weighting must be one of {', '.join(WEIGHTINGS)}, not '{weighting}'")
        self.weighting = weighting

    @property
    def vector(self) -> str:
        return self.weighting


@register
class SEmb(_MeanEmbedding):
    """SEMB (2407.16245): mean pooled sentence embedding of the data, cosine."""

    name = "semb"
    summary = "mean sentence embedding of the data, cosine (2407.16245)"
    vector = "sentence"
