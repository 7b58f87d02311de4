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
import os
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from .models import BaseModel, set_threads
from .progress import note
from .tasks import Task, TaskError, load_task
from .tuning import PROMPT_METHODS, TuningConfig, fine_tune, save_encoder

DATA_SEED = 0  # training/eval samples are fixed across seeds; seeds vary initialisation and order


def default_dir() -> str:
    """TASKRANK_FINETUNED, else ~/.cache/taskrank/finetuned (the transfer benchmark's default too)."""
    return os.environ.get("TASKRANK_FINETUNED") or str(Path.home() / ".cache" / "taskrank" / "finetuned")


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class SourceRecipe:
    """How a source model is fine-tuned (CPU-sized defaults: up to 2,000 examples, 2 epochs)."""

    model: str = "default"
    method: str = "full"
    source_examples: int = 2000
    source_epochs: int = 2
    source_lr: float = 1e-4
    batch_size: int = 32
    max_length: int = 128
    bf16: bool = False
    pooling: str = "auto"  # the head's input (BaseModel.pooling); "auto": the model family's default
    pairs: str = "tokenizer"

    def base(self, device: str = "cpu") -> BaseModel:
        return BaseModel(self.model, pooling=self.pooling, max_length=self.max_length, pairs=self.pairs, device=device)

    def digest(self) -> str:
        recipe = asdict(self)
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
        return TuningConfig(method=self.method, epochs=self.source_epochs, lr=self.source_lr,
                            batch_size=self.batch_size, max_length=self.max_length, seed=seed, bf16=self.bf16)


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
    note(f"fine-tuning the source model of '{source.name}' (seed {seed}, up to {recipe.source_examples} examples, "
         f"{recipe.source_epochs} epochs) into {directory.parent}")
    start = time.time()
    result = fine_tune(base, task, recipe.tuning(seed), train=task.sample(recipe.source_examples, DATA_SEED))
    save_encoder(result.model, directory, {
        "source": source.name, "fingerprint": source.fingerprint, "seed": seed, "recipe": asdict(recipe),
        "base_model": base.model_id, "num_labels": task.num_labels, "task_type": task.spec.type,
        "labels": list(task.spec.labels), "train_loss": result.history[-1]["loss"],
        "seconds": round(time.time() - start, 1)})
    return str(directory)
