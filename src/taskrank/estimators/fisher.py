"""TaskEmb (Vu et al. 2020): the empirical Fisher information of a model fine-tuned on the task.

The base encoder is fully fine-tuned (with a fresh head) on a seeded, stratified sample of the
task; then, in eval mode, the loss of ``n_fisher`` training examples under their *gold* labels
(empirical Fisher) is backpropagated, ``fisher_batch_size`` examples at a time (32, as Vu et al.;
in the sample's seeded random order), and the gradients with respect to chosen activations give
the task embedding. Components (``component``, a score-time choice; all are kept in one artefact):

- ``"layers"`` (default): the output of every transformer layer (the hidden states after each
  layer's final LayerNorm, Vu et al.'s ``layer_output``), per-layer diagonals concatenated
  (layers x hidden);
- ``"attention"``: every layer's self-attention output before its projection (Vu et al.'s
  ``multihead_output``; recorded for BERT-style encoders, whose layers have ``attention.self``);
- ``"pooled"``: the head input, the pooled sentence vector (Vu et al.'s ``cls_output``, which is
  BERT's pooler output there; taskrank pools as the base model does, mean by default).

How the squares are taken (``fisher``, a score-time choice; both are kept in the artefact):

- ``"batch"`` (default), as Vu et al.'s released ``run_taskemb_CR.py:compute_Fisher``: the loss is
  the *mean* over the batch (``BertForSequenceClassification``'s loss); its gradient with respect to
  an output is masked and **summed over the batch's tokens and examples before squaring**, the
  square is divided by the batch's token count (the pooled vector's too), the squares are summed
  over batches and divided by the number of examples. So "per example" in their code means per
  batch of 32: the embedding is the squared gradient of each batch's mean loss, not a sum of
  per-example squares.
- ``"token"`` (taskrank's earlier default): each example's own gradient (summed loss), squared per
  token, summed over real tokens, divided by the token count and then the example count; for the
  pooled vector squared per example and divided by the example count. This is the diagonal
  empirical Fisher of the token activations, independent of how examples are batched.

``fusion="none"`` (default) compares the chosen component's vector by cosine. ``fusion="rrf"`` is
the ESM paper's baseline (hf-dataset-selector ``prediction_phase/main_taskemb.py``): one ranking of
the sources per Fisher component (every layer's output, every layer's attention output, the pooled
vector: cosine distance, ascending, ties averaged) fused by reciprocal rank fusion with k = 60. ESM
also fuses a ranking per *parameter* gradient of the encoder, which taskrank does not keep.

The same fine-tuning run records the training-loss curve that CurveGrad
(``estimators.baselines.CurveGrad``) scores, so the two share the ``finetune`` family.
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np

from ..errors import ParameterError
from ..models import BaseModel, pool_outputs
from ..recipe import DATA_SEED, Recipe
from ..store import Artefact
from ..tasks import Task, TaskError
from .base import TRAINABLE_TYPES, Estimator, cosine_rows
from .registry import register

COMPONENTS = ("layers", "attention", "pooled")
FISHER_MODES = ("batch", "token")
FUSIONS = ("none", "rrf")
RRF_K = 60
VU_BATCH_SIZE = 32  # run_taskemb_CR.py --batch_size (README and argparse default)


def batch_loss(task: Task, task_model, pooled, labels, sizes=None):
    """The mean loss of one batch from its pooled vectors under the gold labels, as Vu et al.'s
    ``BertForSequenceClassification`` computes it (``CrossEntropyLoss()`` / ``MSELoss()``, mean over
    the batch). The one place that knows the task type: a new type adds its head's loss here.
    Multiple choice: ``pooled`` holds every (text, choice) pair of the batch's examples (``sizes``
    choices each); the cross-entropy runs over each example's own choices, as in tuning."""
    import torch

    from ..tuning import per_example

    if task.spec.type not in ("classification", "regression", "multiple_choice"):
        raise TaskError(f"taskemb: the Fisher loss is implemented for classification, regression and "
                        f"multiple-choice tasks; task '{task.name}' is {task.spec.type}")
    logits = task_model.head(pooled)
    device = logits.device
    if task.is_multiple_choice:
        return torch.nn.functional.cross_entropy(per_example(logits, sizes),
                                                 torch.tensor(labels, dtype=torch.long, device=device))
    if task.is_regression:
        return torch.nn.functional.mse_loss(logits.squeeze(-1), torch.tensor(labels, dtype=torch.float32, device=device))
    return torch.nn.functional.cross_entropy(logits, torch.tensor(labels, dtype=torch.long, device=device))


def _attention_modules(encoder) -> list:
    """Each layer's self-attention module (its first output is the attention output before the
    projection, Vu et al.'s ``multihead_output``); empty for architectures without ``attention.self``."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None) or []
    mods = [getattr(getattr(layer, "attention", None), "self", None) for layer in layers]
    return mods if mods and all(m is not None for m in mods) else []


def empirical_fisher(base: BaseModel, task: Task, task_model, frame, batch_size: int = VU_BATCH_SIZE
                     ) -> dict[str, np.ndarray]:
    """Diagonal empirical Fisher of ``task_model`` on ``frame`` (in its order, ``batch_size`` rows per
    batch) w.r.t. each layer's output (``layers``: layers x hidden), each layer's attention output
    (``attention``, when the encoder has ``attention.self``) and the pooled head input (``pooled``),
    in both constructions: ``batch_*`` (Vu et al.: batch-mean loss, gradient summed over the batch's
    tokens before squaring, divided by the batch's token count, summed over batches, divided by the
    example count) and plain names (per-token squares of each example's own gradient, divided by
    the token count, then by the example count; per-example squares for ``pooled``)."""
    import torch

    if task.is_multiple_choice:  # a batch of examples is every (text, choice) pair of them
        texts, offsets = task.choice_pairs(frame)
    else:
        texts, offsets = task.texts(frame=frame), np.arange(len(frame) + 1)
    labels = task.label_ids(frame=frame)
    encoder = task_model.encoder
    task_model.eval()
    flags = {n: p.requires_grad for n, p in task_model.named_parameters()}
    for p in task_model.parameters():
        p.requires_grad_(False)
    # gradients flow from the embeddings' output on, without parameter gradients
    # (BERT-like: the embeddings block; T5, GPT-2: the token embeddings)
    embeddings = encoder.embeddings if hasattr(encoder, "embeddings") else encoder.get_input_embeddings()
    hooks = [embeddings.register_forward_hook(lambda module, args, output: output.requires_grad_())]
    attention_outputs: list = []

    def keep_attention(module, args, output):
        out = output[0] if isinstance(output, tuple) else output
        out.retain_grad()
        attention_outputs.append(out)

    attention = _attention_modules(encoder)
    hooks += [m.register_forward_hook(keep_attention) for m in attention]
    n_layers, hidden = encoder.config.num_hidden_layers, encoder.config.hidden_size
    keys = ["layers", "pooled"] + (["attention"] if attention else [])
    shapes = {"layers": (n_layers, hidden), "attention": (len(attention), hidden), "pooled": (hidden,)}
    token = {k: torch.zeros(shapes[k], dtype=torch.float64) for k in keys}
    summed = {k: torch.zeros(shapes[k], dtype=torch.float64) for k in keys}
    n_tokens = 0
    try:
        for start in range(0, len(frame), batch_size):
            idx = np.arange(start, min(start + batch_size, len(frame)))
            rows = np.arange(offsets[idx[0]], offsets[idx[-1] + 1])
            sizes = np.diff(offsets)[idx] if task.is_multiple_choice else None
            batch = base.inputs(base.tokenize([texts[i] for i in rows]))
            mask = batch["attention_mask"]
            attention_outputs.clear()
            out = encoder(**batch, output_hidden_states=True)
            states = out.hidden_states[1:]
            for h in states:
                h.retain_grad()
            pooled = pool_outputs(out, mask, base.pooling)
            pooled.retain_grad()
            batch_loss(task, task_model, pooled, labels[idx], sizes).backward()
            m = mask.unsqueeze(-1).to(torch.float64)
            b, t_batch = len(idx), float(mask.sum())
            per_layer = {"layers": states, "attention": attention_outputs if attention else []}
            for k, outputs in per_layer.items():
                for i, h in enumerate(outputs):
                    g = h.grad.double()
                    summed[k][i] += ((g * m).sum((0, 1)) ** 2 / t_batch).cpu()
                    token[k][i] += ((b * g) ** 2 * m).sum((0, 1)).cpu()  # b x grad of the mean = own gradient
            g = pooled.grad.double()
            summed["pooled"] += (g.sum(0) ** 2 / t_batch).cpu()
            token["pooled"] += ((b * g) ** 2).sum(0).cpu()
            n_tokens += int(t_batch)
    finally:
        for hook in hooks:
            hook.remove()
        for n, p in task_model.named_parameters():
            p.requires_grad_(flags[n])
    n = max(len(frame), 1)
    result = {}
    for k in keys:
        result[k] = (token[k] / (1 if k == "pooled" else max(n_tokens, 1)) / n).numpy()
        result[f"batch_{k}"] = (summed[k] / n).numpy()
    return result


def rrf_scores(target: dict[str, np.ndarray], sources: list[dict[str, np.ndarray]], k: int = RRF_K) -> np.ndarray:
    """ESM's TaskEmb fusion: for each component (name -> vector, the same names in every task) the
    sources ranked by cosine distance to the target (ascending, 1 = nearest, ties averaged:
    ``scipy.stats.rankdata``), then the sum over components of 1 / (k + rank). Higher is better."""
    from scipy.stats import rankdata

    fused = np.zeros(len(sources))
    for name, t in target.items():
        distances = 1.0 - cosine_rows(t, np.stack([s[name] for s in sources]))
        fused += 1.0 / (k + rankdata(distances))
    return fused


def fisher_components(artefact: Artefact, fisher: str) -> dict[str, np.ndarray]:
    """Every Fisher component of one artefact as name -> vector: each layer's output, each layer's
    attention output (when kept), the pooled vector."""
    prefix = "fisher_batch_" if fisher == "batch" else "fisher_"
    out = {}
    for kind in ("layers", "attention"):
        for i, row in enumerate(artefact.tensors.get(prefix + kind, ())):
            out[f"{kind}.{i}"] = row
    out["pooled"] = artefact.tensors[prefix + "pooled"]
    return out


class FineTunedFamily(Estimator):
    """Full fine-tuning on a sample of the task, shared by TaskEmb and CurveGrad (family ``finetune``):
    the artefact keeps the Fisher diagonals and the per-step training losses."""

    family = "finetune"
    in_default_pool = True
    task_types = TRAINABLE_TYPES
    score_only: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: BaseModel | None = None, n_examples: int = 500, epochs: int = 2, lr: float = 1e-4,
                 batch_size: int = 16, n_fisher: int = 256, seed: int = 0, fisher_batch_size: int = VU_BATCH_SIZE):
        super().__init__(model)
        self.n_examples = n_examples
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.n_fisher = n_fisher
        self.seed = seed
        self.fisher_batch_size = fisher_batch_size

    def prepare(self, task: Task) -> Artefact:
        from ..tuning import fine_tune

        recipe = Recipe(examples=self.n_examples, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                        max_length=self.model.max_length)
        config = recipe.tuning("full", self.seed)
        train = task.sample(recipe.examples, DATA_SEED)
        start = time.time()
        result = fine_tune(self.model, task, config, train=train, progress=f"{self.name}: {task.name}")
        fisher = empirical_fisher(self.model, task, result.model, train.iloc[: self.n_fisher], self.fisher_batch_size)
        tensors = {f"fisher_{k}": v.astype(np.float32) for k, v in fisher.items()}
        tensors["step_losses"] = np.asarray(result.step_losses, dtype=np.float32)
        return self.artefact(task, tensors, tuning=config.to_dict(), n_train=len(train),
                             n_fisher=min(self.n_fisher, len(train)), history=result.history,
                             seconds=round(time.time() - start, 1))


@register
class TaskEmb(FineTunedFamily):
    """TaskEmb (Vu et al. 2020): cosine of empirical-Fisher task embeddings (see the module docstring).
    ``fisher="batch"`` (default) squares batch-summed gradients as Vu et al.'s code does, ``"token"``
    per-token gradients; ``fusion="rrf"`` is the ESM paper's reciprocal rank fusion over components."""

    name = "taskemb"
    summary = "empirical Fisher of a fine-tuned model w.r.t. layer outputs, cosine (Vu et al. 2020)"
    score_only = ("component", "fisher", "fusion")

    def __init__(self, model: BaseModel | None = None, n_examples: int = 500, epochs: int = 2, lr: float = 1e-4,
                 batch_size: int = 16, n_fisher: int = 256, seed: int = 0, component: str = "layers",
                 fisher: str = "batch", fusion: str = "none", fisher_batch_size: int = VU_BATCH_SIZE):
        super().__init__(model, n_examples, epochs, lr, batch_size, n_fisher, seed, fisher_batch_size)
        for what, value, allowed in (("component", component, COMPONENTS), ("fisher", fisher, FISHER_MODES),
                                     ("fusion", fusion, FUSIONS)):
            if value not in allowed:
                raise ParameterError(f"{self.name}: {what} must be one of {', '.join(allowed)}, not '{value}'")
        self.component = component
        self.fisher = fisher
        self.fusion = fusion

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        if self.fusion == "rrf":
            return rrf_scores(fisher_components(target, self.fisher),
                              [fisher_components(s, self.fisher) for s in sources])
        key = f"fisher_{'batch_' if self.fisher == 'batch' else ''}{self.component}"
        for artefact in (target, *sources):
            if key not in artefact.tensors:
                raise ValueError(f"taskemb: the artefact of task '{artefact.config.get('task')}' has no '{key}' "
                                 f"(component='{self.component}' needs an encoder with attention.self modules)")
        return cosine_rows(target.tensors[key], np.stack([s.tensors[key] for s in sources]))
