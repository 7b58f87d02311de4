"""ESM-LogME (Schulte et al., arXiv 2410.15148): one linear Embedding Space Map per source.

An ESM maps base-model embeddings of a source's texts to the embeddings the source's fine-tuned
model gives the same texts (MSE, AdamW). At ranking time the target is embedded once with the
base model; LogME of the ESM-transformed target embeddings scores each source, computed for all
sources at once from the target's Gram statistics (``score_linear_maps``), so no source model is
ever loaded. ESMs are stored as safetensors + an hfselect-style ESMConfig; hfselect's own ESM
folders load as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..models import BaseModel
from ..store import Artefact, ArtefactError
from ..tasks import Task
from ..environment import finetuned_cache
from ..finetuned import SourceRecipe, TaskRef, train
from ..recipe import DATA_SEED, SOURCE
from ..tuning import load_encoder_state
from .base import TRAINABLE_TYPES, Estimator
from .logme import score_linear_maps
from .registry import register

ESM_VERSION = "0.2.0"


def train_esm(base: np.ndarray, tuned: np.ndarray, epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
              weight_decay: float = 0.01, max_grad_norm: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit nn.Linear(d, d) from base to fine-tuned embeddings with MSE: the paper's recipe
    (AdamW, linear decay without warm-up, gradient clipping). Returns (weight, bias) in float32."""
    import torch

    torch.manual_seed(seed)
    x = torch.as_tensor(base, dtype=torch.float32)
    y = torch.as_tensor(tuned, dtype=torch.float32)
    layer = torch.nn.Linear(x.shape[1], y.shape[1])
    optimiser = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: max(0.0, 1 - s / steps))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = torch.nn.functional.mse_loss(layer(x[idx]), y[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(layer.parameters(), max_grad_norm)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad(set_to_none=True)
    return layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()


def tuned_encoder(base: BaseModel, directory: str):
    encoder = base.fresh_encoder()
    encoder.load_state_dict(load_encoder_state(directory))
    encoder.eval()
    return encoder


@register
class EsmLogme(Estimator):
    """ESM-LogME. Sources: fine-tuned on up to 2,000 examples for 2 epochs (the transfer benchmark's
    recipe, so its models are reused), ESM fitted on the same texts with the paper's settings.
    Targets: up to 1,000 examples embedded once with the base model. ESMs are stored in float32:
    float16 halves the disk but reorders near-tied sources (1 of 17 targets in
    benchmarks/results/esm_precision.json)."""

    name = "esm-logme"
    summary = "LogME on Embedding-Space-Map-transformed target embeddings (ESM-LogME)"
    score_only = ("target_examples", "finetuned_dir")
    task_types = TRAINABLE_TYPES

    # the source recipe is taskrank.recipe.SOURCE with bf16 on, as the first transfer17 grid ran it (the
    # shipped pool's ESMs were fitted on those models); these are the parameters artefact ids hash
    def __init__(self, model: BaseModel | None = None, source_examples: int = SOURCE.examples,
                 source_epochs: int = SOURCE.epochs, source_lr: float = SOURCE.lr,
                 max_length: int = SOURCE.max_length, bf16: bool = True, esm_epochs: int = 10,
                 esm_lr: float = 1e-3, esm_batch_size: int = 32, seed: int = 0, target_examples: int = 1000,
                 finetuned_dir: str | None = None, storage_dtype: str = "float32"):
        super().__init__(model)
        self.source_examples, self.source_epochs, self.source_lr = source_examples, source_epochs, source_lr
        self.max_length, self.bf16, self.seed = max_length, bf16, seed
        self.esm_epochs, self.esm_lr, self.esm_batch_size = esm_epochs, esm_lr, esm_batch_size
        self.target_examples, self.finetuned_dir, self.storage_dtype = target_examples, finetuned_dir, storage_dtype

    def recipe(self) -> SourceRecipe:
        training = SOURCE.but(examples=self.source_examples, epochs=self.source_epochs, lr=self.source_lr,
                              max_length=self.max_length, bf16=self.bf16)
        return SourceRecipe(model=self.model.name, pooling=self.model.pooling, pairs=self.model.pairs,
                            training=training)

    def prepare(self, task: Task) -> Artefact:
        directory = train(self.finetuned_dir or finetuned_cache(), self.recipe(), TaskRef.of(task),
                          self.seed, device=self.model.device)
        sample = task.sample(self.source_examples, DATA_SEED)
        texts = task.encoder_inputs(sample)  # a multiple-choice source: its (text, choice) pairs
        base_emb = self.model.embed(texts, progress=f"esm {task.name}: base embeddings")
        tuned_emb = self.model.embed(texts, encoder=tuned_encoder(self.model, directory),
                                     progress=f"esm {task.name}: fine-tuned embeddings")
        weight, bias = train_esm(base_emb, tuned_emb, self.esm_epochs, self.esm_batch_size, self.esm_lr,
                                 seed=self.seed)
        dtype = np.dtype(self.storage_dtype)
        return self.artefact(task, {"model.weight": weight.astype(dtype), "model.bias": bias.astype(dtype)},
                             **self._esm_config(task, len(sample), weight.shape[0]))

    def _esm_config(self, task: Task, n: int, dim: int) -> dict:
        """hfselect's ESMConfig fields, so the files read like an hfselect ESM."""
        return {"base_model_name": self.model.model_id, "task_id": task.name, "task_subset": None,
                "text_column": task.spec.text, "label_column": task.spec.label, "task_split": "train",
                "num_examples": n, "seed": self.seed, "language": None, "esm_architecture": "linear",
                "esm_embedding_dim": dim, "lm_num_epochs": self.source_epochs, "lm_learning_rate": self.source_lr,
                "lm_batch_size": SOURCE.batch_size, "esm_num_epochs": self.esm_epochs, "esm_learning_rate": self.esm_lr,
                "esm_batch_size": self.esm_batch_size, "esm_weight_decay": 0.01, "version": ESM_VERSION}

    def prepare_target(self, task: Task) -> Artefact:
        """Base-model embeddings of the target sample and their labels; a multiple-choice target is
        read as its (text, choice) pairs labelled right (1) or wrong (0), so LogME asks how well the
        mapped features separate right from wrong answers."""
        self.check_task(task)
        frame = task.sample(self.target_examples, self.seed)
        features = self.model.embed(task.encoder_inputs(frame), progress=f"embedding target {task.name}")
        labels = task.encoder_labels(frame)
        return self.artefact(task, {"features": features, "labels": labels}, role="target")

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        weights = np.stack([s.tensors["model.weight"].astype(np.float64) for s in sources])
        biases = np.stack([s.tensors["model.bias"].astype(np.float64) for s in sources])
        regression = target.config.get("task_type") == "regression"
        return score_linear_maps(target.tensors["features"].astype(np.float64), target.tensors["labels"],
                                 weights, biases, regression=regression)


def load_hfselect_esm(directory: str | Path) -> Artefact:
    """An ESM folder written by hfselect (model.safetensors + config.json) as a taskrank artefact.

    hfselect 0.1.0 configs name the tensors ``sequential.0.weight``/``sequential.0.bias``; later
    versions ``model.weight``/``model.bias``.
    """
    from safetensors.numpy import load_file

    directory = Path(directory)
    try:
        config = json.loads((directory / "config.json").read_text())
        tensors = load_file(str(directory / "model.safetensors"))
    except (OSError, ValueError) as e:
        raise ArtefactError(f"{directory}: not an hfselect ESM ({e})") from None
    prefix = "sequential.0" if str(config.get("version", "")).startswith("0.1.") else "model"
    try:
        weight, bias = tensors[f"{prefix}.weight"], tensors[f"{prefix}.bias"]
    except KeyError:
        raise ArtefactError(f"{directory}/model.safetensors: no {prefix}.weight/{prefix}.bias "
                            f"(has {', '.join(sorted(tensors))})") from None
    task = config.get("task_id", directory.name)
    subset = config.get("task_subset")
    return Artefact({"model.weight": weight, "model.bias": bias}, {
        **config, "estimator": EsmLogme.name, "base_model": config.get("base_model_name"),
        "task": f"{task}:{subset}" if subset else task, "fingerprint": f"hfselect-{task}-{subset}-{config.get('seed')}",
        "imported_from": "hfselect"})
