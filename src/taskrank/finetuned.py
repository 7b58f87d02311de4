"""Fine-tuned source models: trained once per (task, seed, recipe), cached on disk, and shared by
the transfer runner (its intermediate models) and the estimators that need a source's fine-tuned
model (ESM-LogME, LogME, LEEP, NCE), so no model is ever trained twice.

A model folder holds ``model.safetensors`` (encoder), ``head.safetensors``, for prefix and prompt
tuning ``prompt.safetensors`` (the trained prompt, which a transfer starts the target's from), and
``config.json``;
it appears by an atomic rename, so a crash never leaves half a model behind.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .models import BaseModel, set_threads
from .progress import note
from .recipe import DATA_SEED, SOURCE, Recipe
from .tasks import Task, TaskError, load_task
from .tuning import PROMPT_METHODS, TuningConfig, fine_tune, save_encoder


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class SourceRecipe:
    """How a source model is made: a base model (with its pooling and pair joining), a tuning method
    and a fine-tune :class:`~taskrank.recipe.Recipe` (CPU-sized default: up to 2,000 examples, 2 epochs)."""

    model: str = "default"
    method: str = "full"
    training: Recipe = SOURCE
    pooling: str = "auto"  # the head's input (BaseModel.pooling); "auto": the model family's default
    pairs: str = "tokenizer"

    def base(self, device: str = "cpu") -> BaseModel:
        return BaseModel(self.model, pooling=self.pooling, max_length=self.training.max_length, pairs=self.pairs,
                         device=device)

    def to_dict(self) -> dict:
        """The recipe as model folders have always recorded it (flat ``source_*`` fields): their names
        hash it, so it must not change."""
        t = self.training
        return {"model": self.model, "method": self.method, "source_examples": t.examples,
                "source_epochs": t.epochs, "source_lr": t.lr, "batch_size": t.batch_size,
                "max_length": t.max_length, "bf16": t.bf16, "pooling": self.pooling, "pairs": self.pairs}

    def digest(self) -> str:
        recipe = self.to_dict()
        # pooling and pairs count only where they differ from the defaults, so the folders of
        # earlier recipes (mean pooling, tokenizer pairs) are found again
        pooling, pairs = recipe.pop("pooling"), recipe.pop("pairs")
        resolved = BaseModel(self.model, pooling=pooling).pooling  # "auto": the family's default
        if resolved != "mean":
            recipe["pooling"] = resolved
        if pairs != "tokenizer":
            recipe["pairs"] = pairs
        if self.method in PROMPT_METHODS:  # these folders keep the trained prompt too (prompt transfer);
            recipe["keeps"] = "prompt"     # folders saved before, without it, are not found again
        return config_hash(recipe)

    def tuning(self, seed: int) -> TuningConfig:
        return self.training.tuning(self.method, seed)


@dataclass(frozen=True)
class TaskRef:
    """A task by path (workers reload it) and fingerprint (to notice if the data changed)."""

    name: str
    path: str
    fingerprint: str

    @classmethod
    def of(cls, task: Task) -> "TaskRef":
        return cls(task.name, task.origin, task.fingerprint)


@lru_cache(maxsize=64)
def load_ref(ref: TaskRef) -> Task:
    task = load_task(ref.path, name=ref.name)
    if task.fingerprint != ref.fingerprint:
        raise TaskError(f"{ref.path}: data changed since it was referenced (fingerprint {task.fingerprint} "
                        f"!= {ref.fingerprint})")
    return task


def model_dir(workdir: str | Path, recipe: SourceRecipe, source: TaskRef, seed: int) -> Path:
    return Path(workdir) / "sources" / f"{source.name}-{source.fingerprint}-s{seed}-{recipe.digest()[:10]}"


def train(workdir: str | Path, recipe: SourceRecipe, source: TaskRef, seed: int, threads: int | None = None,
          device: str = "cpu") -> str:
    """Train (or find) the fine-tuned model of (source, seed) on ``device``; returns its folder."""
    directory = model_dir(workdir, recipe, source, seed)
    if (directory / "model.safetensors").exists():
        return str(directory)
    set_threads(threads)
    task = load_ref(source)
    base = recipe.base(device)
    note(f"fine-tuning the source model of '{source.name}' (seed {seed}, up to {recipe.training.examples} examples, "
         f"{recipe.training.epochs} epochs) into {directory.parent}")
    start = time.time()
    result = fine_tune(base, task, recipe.tuning(seed), train=task.sample(recipe.training.examples, DATA_SEED))
    save_encoder(result.model, directory, {
        "source": source.name, "fingerprint": source.fingerprint, "seed": seed, "recipe": recipe.to_dict(),
        "base_model": base.model_id, "num_labels": task.num_labels, "task_type": task.spec.type,
        "labels": list(task.spec.labels), "train_loss": result.history[-1]["loss"],
        "seconds": round(time.time() - start, 1)})
    return str(directory)
