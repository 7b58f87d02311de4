"""TaskEmb (Vu et al. 2020): the empirical Fisher information of a model fine-tuned on the task.

The base encoder is fully fine-tuned (with a fresh head) on a seeded, stratified sample of the
task; then, in eval mode, the loss of each of ``n_fisher`` training examples under its *gold*
label (empirical Fisher) is backpropagated and the squared gradients with respect to chosen
activations are accumulated:

- ``component="layers"`` (default): the output of every transformer layer (the hidden states
  after each layer's final LayerNorm, as Vu et al.'s ``layer_output``), squared gradients summed
  over tokens (padding excluded), divided by the token count and then by the example count; the
  per-layer diagonals are concatenated (layers x hidden).
- ``component="pooled"``: the head input (the pooled sentence vector), divided by the example
  count. With mean pooling the last layer's token gradients are this gradient divided by the
  length, so the last layer alone adds little; earlier layers do.

Task embeddings are compared by cosine. Both components are kept in one artefact (``component``
is a score-time choice). The same fine-tuning run records the training-loss curve that
CurveGrad (``estimators.baselines.CurveGrad``) scores, so the two share the ``finetune`` family.
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np

from ..models import BaseModel, length_sorted_batches, pool
from ..store import Artefact
from ..tasks import Task
from .base import Estimator, cosine_rows

DATA_SEED = 0
COMPONENTS = ("layers", "pooled")


def empirical_fisher(base: BaseModel, task: Task, task_model, frame, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Diagonal empirical Fisher of ``task_model`` on ``frame`` w.r.t. each layer's output (layers x
    hidden; per token, normalised by tokens then examples) and the pooled head input (hidden)."""
    import torch

    texts = task.texts(frame=frame)
    labels = task.label_ids(frame=frame)
    encoder = task_model.encoder
    task_model.eval()
    flags = {n: p.requires_grad for n, p in task_model.named_parameters()}
    for p in task_model.parameters():
        p.requires_grad_(False)
    # gradients flow from the embeddings' output on, without parameter gradients
    hook = encoder.embeddings.register_forward_hook(lambda module, args, output: output.requires_grad_())
    n_layers, hidden = encoder.config.num_hidden_layers, encoder.config.hidden_size
    layers = torch.zeros(n_layers, hidden, dtype=torch.float64)
    pooled_sum = torch.zeros(hidden, dtype=torch.float64)
    n_tokens = 0
    model = BaseModel(base.name, base.pooling, base.max_length, batch_size=batch_size)
    try:
        for idx, batch in length_sorted_batches(model, texts, batch_size):
            mask = batch["attention_mask"]
            out = encoder(**batch, output_hidden_states=True)
            states = out.hidden_states[1:]
            for h in states:
                h.retain_grad()
            pooled = pool(out.last_hidden_state, mask, base.pooling)
            pooled.retain_grad()
            logits = task_model.head(pooled)
            if task.is_regression:
                y = torch.tensor(labels[idx], dtype=torch.float32)
                loss = torch.nn.functional.mse_loss(logits.squeeze(-1), y, reduction="sum")
            else:
                y = torch.tensor(labels[idx], dtype=torch.long)
                loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            # summed loss: each example's activations get that example's own gradient
            loss.backward()
            m = mask.unsqueeze(-1).to(torch.float64)
            for i, h in enumerate(states):
                layers[i] += (h.grad.double() ** 2 * m).sum((0, 1))
            pooled_sum += (pooled.grad.double() ** 2).sum(0)
            n_tokens += int(mask.sum())
    finally:
        hook.remove()
        for n, p in task_model.named_parameters():
            p.requires_grad_(flags[n])
    n = max(len(texts), 1)
    return {"layers": (layers / max(n_tokens, 1) / n).numpy(), "pooled": (pooled_sum / n).numpy()}


class FineTunedFamily(Estimator):
    """Full fine-tuning on a sample of the task, shared by TaskEmb and CurveGrad (family ``finetune``):
    the artefact keeps the Fisher diagonals and the per-step training losses."""

    family = "finetune"
    in_default_pool = True
    score_only: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: BaseModel | None = None, n_examples: int = 500, epochs: int = 2, lr: float = 1e-4,
                 batch_size: int = 16, n_fisher: int = 256, seed: int = 0):
        super().__init__(model)
        self.n_examples = n_examples
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.n_fisher = n_fisher
        self.seed = seed

    def prepare(self, task: Task) -> Artefact:
        from ..tuning import TuningConfig, fine_tune

        config = TuningConfig(method="full", epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                              max_length=self.model.max_length, seed=self.seed)
        train = task.sample(self.n_examples, DATA_SEED)
        start = time.time()
        result = fine_tune(self.model, task, config, train=train, progress=f"{self.name}: {task.name}")
        fisher = empirical_fisher(self.model, task, result.model, train.iloc[: self.n_fisher])
        tensors = {"fisher_layers": fisher["layers"].astype(np.float32),
                   "fisher_pooled": fisher["pooled"].astype(np.float32),
                   "step_losses": np.asarray(result.step_losses, dtype=np.float32)}
        return self.artefact(task, tensors, tuning=config.to_dict(), n_train=len(train),
                             n_fisher=min(self.n_fisher, len(train)), history=result.history,
                             seconds=round(time.time() - start, 1))


class TaskEmb(FineTunedFamily):
    """TaskEmb (Vu et al. 2020): cosine of empirical-Fisher task embeddings (see the module docstring)."""

    name = "taskemb"
    summary = "empirical Fisher of a fine-tuned model w.r.t. layer outputs, cosine (Vu et al. 2020)"
    score_only = ("component",)

    def __init__(self, model: BaseModel | None = None, n_examples: int = 500, epochs: int = 2, lr: float = 1e-4,
                 batch_size: int = 16, n_fisher: int = 256, seed: int = 0, component: str = "layers"):
        super().__init__(model, n_examples, epochs, lr, batch_size, n_fisher, seed)
        if component not in COMPONENTS:
            raise ValueError(f"component must be one of {', '.join(COMPONENTS)}, not '{component}'")
        self.component = component

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        key = f"fisher_{self.component}"
        return cosine_rows(target.tensors[key], np.stack([s.tensors[key] for s in sources]))
