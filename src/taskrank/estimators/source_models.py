"""Estimators that run every fine-tuned source model on the target: LogME, LEEP, NCE.

They are the expensive references ESM-LogME is compared against: each source's fine-tuned model
(shared with the transfer benchmark, trained once) embeds or classifies the target sample. The
source artefact names that model by (task fingerprint, seed, recipe) rather than by a path, so a
pool (the default one included) finds it in the user's fine-tuned-model cache, where the transfer
benchmark leaves it too; a missing model is trained from the source's data when that is reachable
(a folder named after the task in ``TASKRANK_DATA``: artefacts record no path, see :func:`source_data`).
The models themselves (90 MB each) never ship. The target artefact holds the sample's token ids
and labels (numbers, no text), so scoring needs no access to the target's files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..store import Artefact, ArtefactError
from ..tasks import Task
from ..environment import finetuned_cache
from ..finetuned import TaskRef, model_dir, train
from ..tuning import load_encoder_state
from .base import Estimator
from .esm import EsmLogme, tuned_encoder
from .logme import leep, logme, nce
from .registry import register


DATA_ENV = "TASKRANK_DATA"


def source_data(source: Artefact) -> str | None:
    """Where a source's data is, to train its model again: a ``source_path`` the artefact records
    (pools built before paths were dropped), else a folder named after the task in one of the
    folders of task folders listed in ``TASKRANK_DATA`` (separated by ``os.pathsep``)."""
    recorded = source.config.get("source_path")
    if recorded and Path(recorded).exists():
        return recorded
    for root in filter(None, os.environ.get(DATA_ENV, "").split(os.pathsep)):
        folder = Path(root).expanduser() / source.task
        if source.task and folder.is_dir():
            return str(folder)
    return None


class _SourceModelEstimator(EsmLogme):
    """Shares the fine-tuning recipe (and so the cached source models) with ESM-LogME."""

    family = "source-models"
    in_default_pool = False
    score_only = ("target_examples", "finetuned_dir", "storage_dtype", "esm_epochs", "esm_lr", "esm_batch_size")

    def prepare(self, task: Task) -> Artefact:
        ref = TaskRef.of(task)
        train(self._workdir(), self.recipe(), ref, self.seed, device=self.model.device)
        # no path: a shippable artefact must not carry this machine's folders (see source_data)
        artefact = self.artefact(task, {}, num_labels=task.num_labels)
        artefact.config["params"]["finetuned_dir"] = None  # where this machine keeps its models
        return artefact

    def _workdir(self) -> str:
        return self.finetuned_dir or finetuned_cache()

    def model_folder(self, task_name: str, fingerprint: str) -> Path:
        """Where a source's fine-tuned model lives in the cache (whether or not it is there yet)."""
        return model_dir(self._workdir(), self.recipe(), TaskRef(task_name, "", fingerprint), self.seed)

    def _model_dir(self, source: Artefact) -> str:
        """The source's fine-tuned model in the cache; trained now if missing and its data is here."""
        ref = TaskRef(source.task, source_data(source) or "", source.config["fingerprint"])
        cached = (self.model_folder(ref.name, ref.fingerprint) / "model.safetensors").exists()
        if cached or ref.path:
            return train(self._workdir(), self.recipe(), ref, self.seed, device=self.model.device)  # finds a cached model as it is
        raise ArtefactError(f"{self.name}: fine-tuned model of source '{source.task}' not in {self._workdir()} and its "
                            f"data is not here (a folder '{source.task}' in {DATA_ENV}); set {DATA_ENV} to the folder "
                            f"of task folders, or build it with 'taskrank pool build TASKS_FOLDER --method {self.name} "
                            "--out POOL' (or run the transfer benchmark)")

    def prepare_target(self, task: Task) -> Artefact:
        self.check_task(task)
        frame = task.sample(self.target_examples, self.seed)
        batch = self.model.tokenize(task.encoder_inputs(frame), max_length=self.max_length)
        tensors = {k: v.numpy() for k, v in batch.items()}
        return self.artefact(task, {**tensors, "labels": task.encoder_labels(frame)}, role="target")

    def _outputs(self, target: Artefact, source: Artefact):
        """(pooled features, head logits) of the source's fine-tuned model on the target sample."""
        import torch

        directory = self._model_dir(source)
        encoder = tuned_encoder(self.model, directory)
        head = torch.nn.Linear(encoder.config.hidden_size, int(source.config["num_labels"]))
        head.load_state_dict(load_encoder_state(directory, part="head"))
        encoder.to(self.model.torch_device)
        head.to(self.model.torch_device)
        inputs = {k: torch.as_tensor(v) for k, v in target.tensors.items()
                  if k in ("input_ids", "attention_mask", "token_type_ids")}  # the tokenised sample
        features = []
        with torch.inference_mode():
            for start in range(0, len(inputs["input_ids"]), 64):
                batch = self.model.inputs({k: v[start:start + 64] for k, v in inputs.items()})
                features.append(self.model.pooled(encoder(**batch), batch["attention_mask"]))
            features = torch.cat(features)
            logits = head(features)
        return features.double().cpu().numpy(), logits.double().cpu().numpy()

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        return np.array([self._score_one(target, s) for s in sources])


@register
class LogmeEstimator(_SourceModelEstimator):
    name = "logme"
    summary = "LogME of the target on each fine-tuned source model's features (expensive reference)"

    def _score_one(self, target: Artefact, source: Artefact) -> float:
        features, _ = self._outputs(target, source)
        return logme(features, target.tensors["labels"], regression=target.config.get("task_type") == "regression")


def _classifies(target: Artefact, source: Artefact) -> bool:
    """LEEP and NCE need a source classifier's class distribution on a target with class labels: a
    regression target or source, or a multiple-choice source (one score per pair), has none."""
    return (target.config.get("task_type") != "regression"
            and source.config.get("task_type") in ("classification", None))


@register
class LeepEstimator(_SourceModelEstimator):
    name = "leep"
    summary = "LEEP from each fine-tuned source classifier's predictions on the target (classification)"

    def _score_one(self, target: Artefact, source: Artefact) -> float:
        if not _classifies(target, source):
            return float("nan")  # LEEP is defined for classifiers on classification targets only
        _, logits = self._outputs(target, source)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        return leep(probs / probs.sum(1, keepdims=True), target.tensors["labels"])


@register
class NceEstimator(_SourceModelEstimator):
    name = "nce"
    summary = "NCE from each fine-tuned source classifier's predicted labels on the target (classification)"

    def _score_one(self, target: Artefact, source: Artefact) -> float:
        if not _classifies(target, source):
            return float("nan")
        _, logits = self._outputs(target, source)
        return nce(logits.argmax(1), target.tensors["labels"])


__all__ = ["LogmeEstimator", "LeepEstimator", "NceEstimator"]
