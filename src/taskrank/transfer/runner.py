"""Transfer experiments: the target-only baseline and every source -> target run of a grid.

A source -> target run trains the base encoder on the source (once per source and seed, saved and
reused for every target), then continues on the target with a fresh head and scores the target's
validation sample with the target's metric. With prefix or prompt tuning the encoder stays the base
one and what transfers is the prompt: the target's prefix or soft prompt starts from the source's
trained one (2407.16245's prompt transfer) instead of from the vocabulary. Runs are identified by a hash of everything that
determines them, so a grid can be re-run, extended or resumed without repeating work.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..finetuned import DATA_SEED, SourceRecipe, TaskRef, config_hash, load_ref, model_dir, train
from ..models import BaseModel, resolve, set_threads
from ..task_metrics import task_metric
from ..tasks import Task, TaskError
from ..tuning import (
    PROMPT_METHODS, TuningConfig, check_trainable, evaluate, fine_tune, load_encoder_state, load_prompt_state,
)


@dataclass(frozen=True)
class TransferSetting:
    """CPU-sized defaults: sources capped at 2,000 examples (2 epochs), targets at 1,000 (1 epoch),
    128 tokens, targets scored on up to 500 validation examples. All overridable."""

    model: str = "default"
    method: str = "full"
    source_examples: int = 2000
    source_epochs: int = 2
    source_lr: float = 1e-4
    target_examples: int = 1000
    target_epochs: int = 1
    target_lr: float = 2e-4
    eval_examples: int = 500
    batch_size: int = 32
    max_length: int = 128
    bf16: bool = False

    @property
    def name(self) -> str:
        """The `setting` column of results, e.g. 'all-MiniLM-L6-v2/full'."""
        return f"{resolve(self.model)[0].rsplit('/', 1)[-1]}/{self.method}"

    def source_recipe(self) -> SourceRecipe:
        """What determines an intermediate source model (not the target-side settings)."""
        return SourceRecipe(model=self.model, method=self.method, source_examples=self.source_examples,
                            source_epochs=self.source_epochs, source_lr=self.source_lr, batch_size=self.batch_size,
                            max_length=self.max_length, bf16=self.bf16)

    def target_tuning(self, seed: int) -> TuningConfig:
        return TuningConfig(method=self.method, epochs=self.target_epochs, lr=self.target_lr,
                            batch_size=self.batch_size, max_length=self.max_length, seed=seed, bf16=self.bf16)


@dataclass(frozen=True)
class Run:
    target: TaskRef
    source: TaskRef | None
    seed: int
    setting: TransferSetting

    @property
    def key(self) -> str:
        key = {"setting": asdict(self.setting), "target": self.target.fingerprint,
               "source": self.source.fingerprint if self.source else "", "seed": self.seed}
        if self.source is not None and self.setting.method in PROMPT_METHODS:
            key["init"] = "source-prompt"  # earlier prompt 'transfers' started from the vocabulary: not these runs
        return config_hash(key)


def plan(tasks: list[Task], seeds: list[int], setting: TransferSetting,
         sources: list[str] | None = None, targets: list[str] | None = None) -> list[Run]:
    """Every baseline and ordered (source, target) pair, seed-major so early results cover all pairs."""
    for task in tasks:
        check_trainable(task)  # a generation task cannot be a source or a target: say so before any run
    by_name = {t.name: TaskRef.of(t) for t in tasks}
    for name in (sources or []) + (targets or []):
        if name not in by_name:
            raise TaskError(f"task '{name}' is not among the loaded tasks ({', '.join(sorted(by_name))})")
    source_refs = [by_name[n] for n in (sources or sorted(by_name))]
    target_refs = [by_name[n] for n in (targets or sorted(by_name))]
    runs = []
    for seed in seeds:
        for target in target_refs:
            runs.append(Run(target, None, seed, setting))
            runs += [Run(target, s, seed, setting) for s in source_refs if s.name != target.name]
    return runs


def target_frames(target: Task, setting: TransferSetting):
    """(training sample, evaluation sample) of a target: the validation (else test) split scores it;
    a task with a training split only (TaskWeb's samples) is scored on held-out training examples,
    a fifth of them at most, never trained on."""
    for split in ("validation", "test"):
        if split in target.splits:
            return (target.sample(setting.target_examples, DATA_SEED),
                    target.sample(setting.eval_examples, DATA_SEED, split=split))
    shuffled = target.sample(None, DATA_SEED)
    held = min(setting.eval_examples, len(shuffled) // 5)
    rest = shuffled.iloc[held:]
    return rest.iloc[:setting.target_examples].reset_index(drop=True), shuffled.iloc[:held].reset_index(drop=True)


def source_start(workdir: str | Path, run: Run, threads: int | None = None, device: str = "cpu") -> dict:
    """What the target's training starts from (``fine_tune`` keywords): nothing for a baseline; the
    source model's encoder (full, LoRA merged, BitFit); for prefix/prompt tuning also its prompt."""
    if run.source is None:
        return {}
    directory = train(workdir, run.setting.source_recipe(), run.source, run.seed, threads, device)
    start = {"encoder_state": load_encoder_state(directory)}
    if run.setting.method in PROMPT_METHODS:
        start["prompt_state"] = load_prompt_state(directory)
    return start


def execute_run(workdir: str | Path, run: Run, threads: int | None = None, device: str = "cpu") -> dict:
    """One baseline or transfer run on ``device`` (not part of the run's key); returns the journal row."""
    set_threads(threads)
    start = time.time()
    target = load_ref(run.target)
    setting = run.setting
    start_from = source_start(workdir, run, threads, device)
    base = BaseModel(setting.model, max_length=setting.max_length, device=device)
    config = setting.target_tuning(run.seed)
    train_frame, eval_frame = target_frames(target, setting)
    result = fine_tune(base, target, config, train=train_frame, **start_from)
    value = evaluate(base, target, result.model, eval_frame, config)
    return {
        "key": run.key, "target": run.target.name, "source": run.source.name if run.source else "",
        "seed": run.seed, "setting": setting.name, "metric": task_metric(target), "value": value,
        "seconds": round(time.time() - start, 2),
        "config": {"setting": asdict(setting), "target_fingerprint": run.target.fingerprint,
                   "source_fingerprint": run.source.fingerprint if run.source else "", "seed": run.seed},
    }
