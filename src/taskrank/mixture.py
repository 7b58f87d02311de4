"""Multi-task training sets from the top-k sources of any method (TaskWeb §6), and a small
experiment that checks whether they help.

Mixture file (JSONL, one example per line)::

    {"text": "...", "text_pair": null, "label": "sst2:positive", "source": "sst2", "type": "classification"}

* ``per_source`` examples from each chosen source, a seeded sample (stratified by class, as
  :meth:`taskrank.tasks.Task.sample`), then all rows shuffled with the same seed; the same inputs
  and seed give the same file, byte for byte.
* Label spaces never collide: a classification label is written as ``<source>:<label>``, so
  "positive" of sst2 and of mr are different classes of the mixture (one softmax head over the
  union, which is what a single-head multi-task model trains). A regression source keeps its
  numeric label (``"type": "regression"``); it cannot share a classification head, so
  :func:`run_experiment` leaves such sources out and says so.
* ``text_pair`` is null for single-text tasks.

The experiment (:func:`run_experiment`) trains the base encoder (full fine-tuning,
:func:`taskrank.tuning.fine_tune`) on a mixture — the method's top-k sources, all sources, or k
random sources (seeded) — then continues on the target with a fresh head and scores the target's
validation split; "none" (target only) is the reference. CPU-sized defaults: a few minutes on two
cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .recipe import DATA_SEED, MIXTURE, MIXTURE_EVAL_EXAMPLES, MIXTURE_TARGET, Recipe
from .tasks import Task, TaskError, TaskSpec, load_task

__all__ = ["MIXTURE_COLUMNS", "mixture_frame", "write_mixture", "read_mixture", "mixture_task",
           "top_sources", "load_sources", "ExperimentConfig", "run_experiment"]

MIXTURE_COLUMNS = ["text", "text_pair", "label", "source", "type"]


def mixture_frame(sources: Sequence[Task], per_source: int, seed: int = 0) -> pd.DataFrame:
    """The mixed training set as a DataFrame (columns ``MIXTURE_COLUMNS``), seeded."""
    if per_source < 1:
        raise TaskError(f"per_source must be at least 1, got {per_source}")
    names = [t.name for t in sources]
    if len(set(names)) != len(names):
        raise TaskError(f"a source appears twice in the mixture: {names}")
    parts = []
    for task in sources:
        rows = task.sample(per_source, seed)
        label = rows["label"] if task.is_regression else task.name + ":" + rows["label"].astype(str)
        parts.append(pd.DataFrame({
            "text": rows["text"].astype(str),
            "text_pair": rows["text_pair"].astype(str) if task.spec.is_pair else None,
            "label": label.astype(object),
            "source": task.name,
            "type": task.spec.type,
        }))
    if not parts:
        raise TaskError("no source tasks for the mixture")
    frame = pd.concat(parts, ignore_index=True)
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)[MIXTURE_COLUMNS]


def write_mixture(frame: pd.DataFrame, out: str | Path, manifest: dict | None = None) -> Path:
    """Write the JSONL (UTF-8, one object per line) and, if given, ``<out>.meta.json`` beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row in frame.itertuples(index=False):
            rec = {"text": row.text, "text_pair": None if row.text_pair is None or
                   (isinstance(row.text_pair, float) and np.isnan(row.text_pair)) else row.text_pair,
                   "label": row.label if isinstance(row.label, str) else float(row.label),
                   "source": row.source, "type": row.type}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if manifest is not None:
        out.with_name(out.name + ".meta.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    return out


def read_mixture(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame(rows, columns=MIXTURE_COLUMNS)


def mixture_task(frame: pd.DataFrame, name: str = "mixture") -> Task:
    """A classification Task over a mixture's classification rows (one head over all prefixed labels).

    Sentence pairs stay pairs; when the mixture also has single-text rows, those get an empty
    second segment so one batch can hold both.
    """
    d = frame[frame["type"] == "classification"]
    if d.empty:
        raise TaskError("the mixture has no classification rows to train on")
    pair = d["text_pair"].notna().any()
    train = pd.DataFrame({"text": d["text"].astype(str)})
    if pair:
        train["text_pair"] = d["text_pair"].where(d["text_pair"].notna(), "").astype(str)
    train["label"] = d["label"].astype(str)
    spec = TaskSpec(name=name, type="classification", text="text", text_pair="text_pair" if pair else None,
                    label="label", labels=tuple(sorted(train["label"].unique())))
    return Task(spec, {"train": train.reset_index(drop=True)}, origin=f"mixture of {', '.join(d['source'].unique())}")


def top_sources(target: Task, method: str, pool="default", k: int = 5, model=None, cache=None) -> pd.DataFrame:
    """The method's ranking of the pool for the target (rank, source, score, ...), best k first."""
    from .estimators import get_estimator
    from .models import BaseModel
    from .pool import Pool
    from .ranking import rank

    p = pool if hasattr(pool, "tasks") else Pool.open(pool)
    est = get_estimator(method, model=model or BaseModel())
    return rank(target, p, est, cache=cache).table.head(k)


def load_sources(names: Sequence[str], folder: str | Path) -> list[Task]:
    """Tasks by name from a folder of task folders (a clear error for a missing one)."""
    folder = Path(folder)
    out = []
    for n in names:
        path = folder / n
        if not path.exists():
            raise TaskError(f"source '{n}' has no task folder {path}; the pool's tasks must be in --tasks")
        out.append(load_task(path))
    return out


def load_target(target: str, folder: str | Path | None, **spec) -> Task:
    """A target given as a path, or as a task name inside ``folder``; ``spec``: :func:`load_task`'s
    column and type arguments (text, text_pair, label, choices, task_type)."""
    p = Path(target).expanduser()
    if p.exists():
        return load_task(p, **spec)
    if folder is not None and (Path(folder) / target).exists():
        return load_task(Path(folder) / target, **spec)
    raise TaskError(f"target '{target}': neither a path nor a task in {folder}")


# ----------------------------------------------------------------------------- experiment


CONDITIONS = ("none", "topk", "random", "all")


@dataclass(frozen=True)
class ExperimentConfig:
    """CPU-sized (:data:`taskrank.recipe.MIXTURE`, :data:`~taskrank.recipe.MIXTURE_TARGET`): the
    mixture recipe's ``examples`` per source (1 epoch, 64 tokens), then the target recipe (up to 200
    examples, 2 epochs), scored on ``eval_examples`` validation examples."""

    top: int = 3
    mixture: Recipe = MIXTURE
    target: Recipe = MIXTURE_TARGET
    eval_examples: int = MIXTURE_EVAL_EXAMPLES
    seeds: tuple[int, ...] = (0,)
    conditions: tuple[str, ...] = CONDITIONS


def _conditions(ranking: list[str], pool_names: list[str], k: int, seed: int, wanted) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    out = {}
    for c in wanted:
        if c == "none":
            out[c] = []
        elif c == "topk":
            out[c] = ranking[:k]
        elif c == "random":
            out[c] = sorted(rng.choice(sorted(pool_names), size=min(k, len(pool_names)), replace=False).tolist())
        elif c == "all":
            out[c] = sorted(pool_names)
        else:
            raise TaskError(f"unknown condition '{c}' (choose from {', '.join(CONDITIONS)})")
    return out


def run_experiment(target: Task, sources: Sequence[Task], ranking: Sequence[str], config: ExperimentConfig,
                   model=None, method: str = "", on_result=None) -> pd.DataFrame:
    """Train on each condition's mixture, continue on the target, score it; one row per (condition, seed).

    ``sources``: every candidate source task (the pool minus the target, with data); ``ranking``:
    their names best first by ``method``. Regression sources are left out of every mixture.
    """
    from .models import BaseModel
    from .task_metrics import task_metric
    from .tuning import encoder_state, evaluate, fine_tune

    base = model or BaseModel(max_length=config.target.max_length)
    by_name = {t.name: t for t in sources if t.name != target.name}
    skipped = sorted(n for n, t in by_name.items() if t.is_regression)
    usable = [n for n in by_name if n not in skipped]
    ranked = [n for n in ranking if n in usable]
    eval_split = "validation" if "validation" in target.splits else "test"
    eval_frame = target.sample(config.eval_examples, DATA_SEED, split=eval_split)
    target_train = target.sample(config.target.examples, DATA_SEED)
    metric = task_metric(target)
    rows = []
    for seed in config.seeds:
        plan = _conditions(ranked, usable, config.top, seed, config.conditions)
        for condition, names in plan.items():
            start = time.time()
            state, n_mix = None, 0
            if names:
                frame = mixture_frame([by_name[n] for n in names], config.mixture.examples, seed)
                mix = mixture_task(frame)
                n_mix = len(mix.split("train"))
                cfg = config.mixture.tuning("full", seed)
                state = encoder_state(fine_tune(base, mix, cfg, progress=f"mixture {condition} s{seed}").model)
            cfg = config.target.tuning("full", seed)
            result = fine_tune(base, target, cfg, train=target_train, encoder_state=state,
                               progress=f"target {condition} s{seed}")
            value = evaluate(base, target, result.model, eval_frame, cfg)
            row = {"target": target.name, "condition": condition, "method": method if condition == "topk" else "",
                   "seed": seed, "k": len(names), "sources": " ".join(names), "mixture_examples": n_mix,
                   "metric": metric, "value": value, "seconds": round(time.time() - start, 1)}
            rows.append(row)
            if on_result is not None:
                on_result(row)
    out = pd.DataFrame(rows)
    out.attrs["skipped_regression_sources"] = skipped
    out.attrs["config"] = asdict(config)
    return out
