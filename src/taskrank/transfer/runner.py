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
from dataclasses import dataclass, fields

from ..finetuned import SourceRecipe, TaskRef, config_hash, load_ref, model_dir, train
from ..models import BaseModel, resolve, set_threads
from ..recipe import DATA_SEED, EVAL_EXAMPLES, SOURCE, TARGET, Recipe
from ..task_metrics import task_metric
from ..tasks import Task, TaskError
from ..tuning import (
    PROMPT_METHODS, TuningConfig, check_trainable, evaluate, fine_tune, load_encoder_state, load_prompt_state,
)

# the fields the two recipes of a setting have always shared (one value in run keys and journal rows)
_SHARED = ("batch_size", "max_length", "bf16")
# which target rows score a run: "validation" (the validation split, else test, else held-out
# training rows: the first grids) or "validation+test" (both held-out splits pooled, so a small
# validation split does not make one example worth 2 %: the transfer17 pilot)
EVAL_SPLITS = ("validation", "validation+test")


@dataclass(frozen=True)
class TransferSetting:
    """A base model and tuning method, the source model's recipe and the target's (CPU-sized
    defaults :data:`taskrank.recipe.SOURCE`, :data:`~taskrank.recipe.TARGET`: sources capped at 2,000
    examples for 2 epochs, targets at 1,000 for 1, 128 tokens), and the validation examples a
    target is scored on (500) and from which splits (:data:`EVAL_SPLITS`)."""

    model: str = "default"
    method: str = "full"
    source: Recipe = SOURCE
    target: Recipe = TARGET
    eval_examples: int = EVAL_EXAMPLES
    eval_splits: str = "validation"

    def __post_init__(self):
        if self.eval_splits not in EVAL_SPLITS:
            raise TaskError(f"eval splits '{self.eval_splits}' (--eval-splits): choose from {', '.join(EVAL_SPLITS)}")

    @classmethod
    def flat(cls, **values) -> "TransferSetting":
        """The setting from the flat fields :meth:`to_dict` writes (``source_examples=24,
        max_length=32``): ``batch_size``, ``max_length`` and ``bf16`` apply to both sides unless a
        ``target_*`` field says otherwise."""
        out = {k: values.pop(k) for k in ("model", "method", "eval_examples", "eval_splits") if k in values}
        sides = {side: {} for side in ("source", "target")}
        for name in _SHARED:
            if name in values:
                sides["source"][name] = sides["target"][name] = values.pop(name)
        for side, recipe in sides.items():
            for name in ("examples", "epochs", "lr", *_SHARED):
                if f"{side}_{name}" in values:
                    recipe[name] = values.pop(f"{side}_{name}")
        if values:
            known = ["model", "method", "eval_examples", "eval_splits", *_SHARED,
                     *(f"{side}_{f.name}" for side in sides for f in fields(Recipe))]
            raise TypeError(f"unknown transfer setting field(s) {', '.join(sorted(values))} (known: {', '.join(known)})")
        return cls(**out, source=SOURCE.but(**sides["source"]), target=TARGET.but(**sides["target"]))

    def to_dict(self) -> dict:
        """The setting as run keys and journal rows record it: the flat fields of the first grids
        (``source_examples``, ..., one ``batch_size``/``max_length``/``bf16``), so every key of the
        committed runs stays the same; a target recipe that differs in a shared field adds
        ``target_<field>``, and scoring on other than the validation split adds ``eval_splits``."""
        s, t = self.source, self.target
        out = {"model": self.model, "method": self.method,
               "source_examples": s.examples, "source_epochs": s.epochs, "source_lr": s.lr,
               "target_examples": t.examples, "target_epochs": t.epochs, "target_lr": t.lr,
               "eval_examples": self.eval_examples, **{name: getattr(s, name) for name in _SHARED}}
        out.update({f"target_{name}": getattr(t, name) for name in _SHARED if getattr(t, name) != getattr(s, name)})
        if self.eval_splits != "validation":
            out["eval_splits"] = self.eval_splits
        return out

    @property
    def name(self) -> str:
        """The `setting` column of results, e.g. 'all-MiniLM-L6-v2/full'."""
        return f"{resolve(self.model)[0].rsplit('/', 1)[-1]}/{self.method}"

    def source_recipe(self) -> SourceRecipe:
        """What determines an intermediate source model (not the target-side settings)."""
        return SourceRecipe(model=self.model, method=self.method, training=self.source)

    def target_tuning(self, seed: int) -> TuningConfig:
        return self.target.tuning(self.method, seed)


@dataclass(frozen=True)
class Run:
    target: TaskRef
    source: TaskRef | None
    seed: int
    setting: TransferSetting

    @property
    def key(self) -> str:
        key = {"setting": self.setting.to_dict(), "target": self.target.fingerprint,
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
    with ``eval_splits="validation+test"`` the two held-out splits pooled (shuffled with the data
    seed, the first ``eval_examples``). A task with a training split only (TaskWeb's samples) is
    scored on held-out training examples, a fifth of them at most, never trained on."""
    held_out = [s for s in ("validation", "test") if s in target.splits]
    if held_out and setting.eval_splits == "validation+test":
        import pandas as pd

        pooled = pd.concat([target.split(s) for s in held_out]).sample(frac=1.0, random_state=DATA_SEED)
        return (target.sample(setting.target.examples, DATA_SEED),
                pooled.iloc[:setting.eval_examples].reset_index(drop=True))
    if held_out:
        return (target.sample(setting.target.examples, DATA_SEED),
                target.sample(setting.eval_examples, DATA_SEED, split=held_out[0]))
    shuffled = target.sample(None, DATA_SEED)
    held = min(setting.eval_examples, len(shuffled) // 5)
    rest = shuffled.iloc[held:]
    return rest.iloc[:setting.target.examples].reset_index(drop=True), shuffled.iloc[:held].reset_index(drop=True)


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
    base = BaseModel(setting.model, max_length=setting.target.max_length, device=device)
    config = setting.target_tuning(run.seed)
    train_frame, eval_frame = target_frames(target, setting)
    result = fine_tune(base, target, config, train=train_frame, **start_from)
    value = evaluate(base, target, result.model, eval_frame, config)
    return {
        "key": run.key, "target": run.target.name, "source": run.source.name if run.source else "",
        "seed": run.seed, "setting": setting.name, "metric": task_metric(target), "value": value,
        "seconds": round(time.time() - start, 2),
        "config": {"setting": setting.to_dict(), "target_fingerprint": run.target.fingerprint,
                   "source_fingerprint": run.source.fingerprint if run.source else "", "seed": run.seed},
    }
