"""Judge source rankings against a transfer matrix: every metric, per target and averaged, with
confidence intervals.

Three steps, one module each: :mod:`.gold` (the transfer matrix judged against), :mod:`.predictions`
(the methods' scores, from a pool or CSV files) and :mod:`.scoring` (metrics, intervals, the
expected random row, and reading a saved evaluation back).
"""

from .gold import NUMERIC_PAIR, EvaluationError, Gold, load_gold
from .predictions import pool_predictions, read_predictions
from .scoring import RANDOM, Evaluation, evaluate_predictions, is_scaled, metric_order, read_evaluation

__all__ = [
    "NUMERIC_PAIR",
    "RANDOM",
    "EvaluationError",
    "Gold",
    "Evaluation",
    "load_gold",
    "read_predictions",
    "pool_predictions",
    "evaluate_predictions",
    "read_evaluation",
    "metric_order",
    "is_scaled",
]
