"""Frozen Transfer (the ESM paper's reference baseline, Schulte et al. arXiv 2410.15148).

For each source, its fine-tuned model is kept frozen and embeds the target's examples; a linear
head is trained on the target's training rows and its accuracy on held-out target rows is the
score. It asks directly "how good are this source's features for the target?", at the price of
running every source model on the target: it is a reference, like LogME, not a cheap estimator.

The source models are those of LogME/LEEP/NCE and ESM-LogME (:mod:`.source_models`, one cache,
trained once). Held-out rows: the target's validation split (else test) when it has one, else a
fifth of the training rows, never trained on (as the transfer runner scores a target).

The head: multinomial logistic regression (L2, ``c`` as scikit-learn's ``C``; features
standardised on the training rows; L-BFGS in float64, deterministic). A multiple-choice target is
read as its (text, choice) pairs, the head scores each pair as right or wrong, and an example is
answered by its best-scored choice. A regression target gets a ridge head and the score is the
mean of Pearson and Spearman correlations on the held-out rows (accuracy has no meaning there).
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..models import BaseModel
from ..store import Artefact
from ..tasks import Task
from .base import TRAINABLE_TYPES
from .registry import register
from .source_models import _SourceModelEstimator


def target_rows(task: Task, n_train: int, n_eval: int, seed: int):
    """(training rows, held-out rows) of a target: its validation (else test) split scores it; a
    task with a training split only holds out a fifth of it, at most ``n_eval`` rows."""
    for split in ("validation", "test"):
        if split in task.splits:
            return task.sample(n_train, seed), task.sample(n_eval, seed, split=split)
    shuffled = task.sample(None, seed)
    held = min(n_eval, len(shuffled) // 5)
    return shuffled.iloc[held:held + n_train].reset_index(drop=True), shuffled.iloc[:held].reset_index(drop=True)


def logistic_head(x: np.ndarray, y: np.ndarray, n_classes: int, c: float = 1.0, max_iter: int = 200):
    """Weights (d, k) and bias (k,) of L2-regularised multinomial logistic regression, minimising
    sum of cross-entropies + ||W||² / (2c) as scikit-learn's ``LogisticRegression(C=c)`` does."""
    import torch

    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.long)
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def loss():
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(xt @ w + b, yt, reduction="sum") + (w * w).sum() / (2 * c)
        value.backward()
        return value

    optimiser.step(loss)
    return w.detach().numpy(), b.detach().numpy()


def ridge_head(x: np.ndarray, y: np.ndarray, alpha: float = 1.0):
    """Weights (d,) and bias of ridge regression (closed form, float64; the bias not penalised)."""
    mean_x, mean_y = x.mean(0), y.mean()
    xc = x - mean_x
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return w, mean_y - mean_x @ w


def head_score(features: np.ndarray, labels: np.ndarray, held_out: np.ndarray, groups: np.ndarray,
               task_type: str, n_classes: int, c: float = 1.0) -> float:
    """Train a head on the training rows' features and score it on the held-out rows."""
    from ..task_metrics import score_outputs

    train, test = ~held_out, held_out
    mean, std = features[train].mean(0), features[train].std(0)
    x = (features - mean) / np.where(std > 0, std, 1.0)
    if task_type == "regression":
        w, b = ridge_head(x[train], labels[train].astype(np.float64), alpha=1.0 / c)
        return score_outputs(x[test] @ w + b, labels[test].astype(np.float64), "pearson_spearman")
    w, b = logistic_head(x[train], labels[train].astype(np.int64), n_classes, c)
    logits = x[test] @ w + b
    if task_type != "multiple_choice":
        return float(np.mean(logits.argmax(1) == labels[test]))
    right = logits[:, 1] - logits[:, 0]  # how strongly the head calls a (text, choice) pair right
    g, y = groups[test], labels[test]
    correct = [y[g == k][np.argmax(right[g == k])] == 1 for k in np.unique(g)]
    return float(np.mean(correct))


@register
class FrozenTransfer(_SourceModelEstimator):
    """Frozen Transfer: a head on each frozen fine-tuned source model's target features; its held-out
    accuracy is the score (ESM paper)."""

    name = "frozen-transfer"
    summary = "accuracy of a head trained on each frozen fine-tuned source model's target features (ESM paper)"
    task_types = TRAINABLE_TYPES
    score_only = _SourceModelEstimator.score_only + ("eval_examples", "c")

    def __init__(self, model: BaseModel | None = None, source_examples: int = 2000, source_epochs: int = 2,
                 source_lr: float = 1e-4, max_length: int = 128, bf16: bool = True, seed: int = 0,
                 target_examples: int = 1000, eval_examples: int = 500, c: float = 1.0,
                 finetuned_dir: str | None = None):
        super().__init__(model, source_examples=source_examples, source_epochs=source_epochs, source_lr=source_lr,
                         max_length=max_length, bf16=bf16, seed=seed, target_examples=target_examples,
                         finetuned_dir=finetuned_dir)
        if target_examples < 2 or eval_examples < 1 or not c > 0:
            raise ParameterError(f"{self.name}: need target_examples >= 2, eval_examples >= 1 and c > 0, got "
                                 f"{target_examples}, {eval_examples}, {c}")
        self.eval_examples, self.c = eval_examples, c

    def prepare_target(self, task: Task) -> Artefact:
        """Token ids of the target's training rows then its held-out rows (numbers, no text), their
        labels, which rows are held out and, for multiple choice, which example each pair is of."""
        self.check_task(task)
        train, held = target_rows(task, self.target_examples, self.eval_examples, self.seed)
        if not len(held) or len(train) < 2:
            raise ParameterError(f"{self.name}: target '{task.name}' has too few rows to hold some out "
                                 f"({len(train)} training, {len(held)} held out)")
        inputs, labels, held_out, groups = [], [], [], []
        for frame, flag in ((train, 0), (held, 1)):
            rows = task.encoder_inputs(frame)
            first = len(train) * flag  # example ids: training rows first, then held-out rows
            per_example = np.diff(task.choice_pairs(frame)[1]) if task.is_multiple_choice else np.ones(len(rows), int)
            inputs += rows
            labels.append(task.encoder_labels(frame))
            held_out += [flag] * len(rows)
            groups.append(np.repeat(first + np.arange(len(per_example)), per_example))
        batch = self.model.tokenize(inputs, max_length=self.max_length)
        tensors = {k: v.numpy() for k, v in batch.items()}
        return self.artefact(task, {**tensors, "labels": np.concatenate(labels),
                                    "held_out": np.asarray(held_out, dtype=np.int8),
                                    "group": np.concatenate(groups).astype(np.int64)},
                             role="target", num_labels=task.num_labels)

    def _score_one(self, target: Artefact, source: Artefact) -> float:
        features, _ = self._outputs(target, source)
        task_type = target.config.get("task_type")
        n_classes = 2 if task_type == "multiple_choice" else int(target.config.get("num_labels") or 1)
        return head_score(features, target.tensors["labels"], target.tensors["held_out"].astype(bool),
                          target.tensors["group"], task_type, n_classes, self.c)


__all__ = ["FrozenTransfer", "head_score", "logistic_head", "target_rows"]
