"""How a task's own performance is measured (not ranking metrics: see metrics.py).

Multiple choice uses accuracy; classification uses accuracy, or macro-F1 when the training classes are imbalanced (largest class
at least twice the smallest); regression uses the mean of Pearson and Spearman correlations.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr

from .tasks import Task, TaskError

IMBALANCE_RATIO = 2.0


def task_metric(task: Task) -> str:
    if task.is_regression:
        return "pearson_spearman"
    if task.is_multiple_choice:
        return "accuracy"  # the right choice among the example's own choices
    if task.is_generation:
        raise TaskError(f"{task.origin or task.name}: a generation task has no classification or regression metric")
    counts = task.split("train")["label"].value_counts()
    return "macro_f1" if counts.max() >= IMBALANCE_RATIO * counts.min() else "accuracy"


def macro_f1(pred: np.ndarray, gold: np.ndarray, n_classes: int) -> float:
    f1s = []
    for c in range(n_classes):
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        if tp + fp + fn == 0:
            continue  # class absent from both: undefined, left out of the mean
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def score_outputs(outputs: np.ndarray, gold: np.ndarray, metric: str) -> float:
    """Metric value from raw model outputs (logits (N, C), or predictions (N,) for regression)."""
    if metric == "pearson_spearman":
        pred = outputs.reshape(-1)
        if np.std(pred) == 0:
            return 0.0
        return float((pearsonr(pred, gold)[0] + spearmanr(pred, gold)[0]) / 2)
    pred = outputs.argmax(-1)
    if metric == "accuracy":
        return float(np.mean(pred == gold))
    if metric == "macro_f1":
        return macro_f1(pred, gold, outputs.shape[-1])
    raise ValueError(f"unknown task metric '{metric}'")
