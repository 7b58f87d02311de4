"""One training loop for every way of tuning the base encoder on a task.

Full fine-tuning, BitFit and the peft methods share this loop: a pooled encoder with a fresh
linear head (classification or regression; for multiple choice a head of width one scores each
(text, choice) pair and the example's scores go through a softmax over its own choices), AdamW
with linear warm-up/decay, length-grouped batches (shuffled, then sorted by length inside groups
of 50 batches so padding stays small),
optional bf16 autocast on CPU. Seeded: the same seed, data and threads give the same weights.

Methods (``TuningConfig.method``):

- ``full``: every weight trains.
- ``bitfit``: only bias terms (and the head) train.
- ``lora``: peft LoRA on the attention query/value projections (r = 8, alpha = 8 by default).
- ``prefix``: P-Tuning v2 deep prefix through peft's PrefixTuning (no reparametrisation): a
  trainable (prefix_length x layers*2*hidden) matrix gives every layer ``prefix_length`` extra
  keys and values. Checked against a hand-written attention with the same prefix under
  transformers 5: identical outputs, with the input's position ids shifted by the prefix length
  (peft passes the prefix as a key/value cache; the original P-Tuning v2 on BERT did the same).
- ``prompt``: prompt tuning through peft's PromptTuning: ``prompt_length`` soft tokens prepended
  to the input embeddings; the pooled output includes the prompt positions. ``prompt_init``:
  ``"vocab"`` (embeddings of random vocabulary tokens, seeded), ``"labels"`` (the embeddings of
  the task's class names' tokens, repeated to the prompt's length; vocab for tasks without class
  names) or ``"random"`` (normal, at the scale of the vocabulary embeddings).

``head_epochs`` (any method): epochs that train only the head (the tuned parameters frozen, so a
step costs a forward pass) before the ``epochs`` that train both; ``head_lr`` gives the head its own
learning rate. The idea: a trained head gives the first prompt gradients a direction, a random head
does not. Measured for prompt tuning (benchmarks/prompt_learning.py): lower training loss, mixed
validation gains, 2-3x the cost; the prompt estimators do not use it.

peft's prompt-learning models ignore token type ids (all segments read as type 0); the
sentence-transformers default encoder was trained with type 0 only, so pairs lose little.
``keep_checkpoints`` gives an ``on_epoch_end`` callback that keeps the "early" (after 2 epochs,
TuPaTE's cheap variant), best-on-validation and last trainable states.

Prompt transfer (2407.16245): a prefix or soft prompt is not part of the encoder, so
``save_encoder`` also writes it (``prompt.safetensors``) and ``fine_tune(prompt_state=...)``
starts the target's prompt from it instead of from the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .devices import autocast, grad_scaler
from .errors import TaskrankError
from .models import BaseModel, forward_inputs, pool_outputs, set_threads
from .progress import track
from .task_metrics import score_outputs, task_metric
from .tasks import Task, TaskError

# Learning rates per method: full fine-tuning as usual for small BERTs; the PEFT ones are from
# TuPaTE's grids (BitFit 4e-4, LoRA 5e-4, prefix 1e-2) and prompt tuning's usual large rate.
DEFAULT_LR = {"full": 5e-5, "bitfit": 4e-4, "lora": 5e-4, "prefix": 1e-2, "prompt": 3e-2}
METHODS = tuple(DEFAULT_LR)
PEFT_METHODS = ("lora", "prefix", "prompt")
PROMPT_METHODS = ("prefix", "prompt")  # their trained part is a prompt, kept beside the encoder
PROMPT_FILE = "prompt.safetensors"
PROMPT_INITS = ("vocab", "labels", "random")


class TuningError(TaskrankError):
    """A tuning method that cannot apply to this base model (one line, before any training)."""


class PromptTransferError(TaskrankError):
    """A source's prompt (or prefix) that cannot start the target's: missing, or of another shape."""


@dataclass
class TuningConfig:
    """Everything that determines a tuning run (hashed into run keys; keep it JSON-able)."""

    method: str = "full"
    epochs: int = 2
    lr: float | None = None
    batch_size: int = 32
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    dropout: float = 0.1
    seed: int = 0
    bf16: bool = False
    lora_r: int = 8
    lora_alpha: int = 8
    prefix_length: int = 20
    prompt_length: int = 100
    lora_targets: tuple[str, ...] = ("query", "value")
    prompt_init: str = "vocab"
    head_epochs: int = 0
    head_lr: float | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"tuning method must be one of {', '.join(METHODS)}, not '{self.method}'")
        if self.prompt_init not in PROMPT_INITS:
            raise ValueError(f"prompt_init must be one of {', '.join(PROMPT_INITS)}, not '{self.prompt_init}'")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def head_learning_rate(self) -> float:
        return self.head_lr if self.head_lr is not None else self.learning_rate

    def to_dict(self) -> dict:
        """The config as JSON; the prompt-training options only where set (earlier run keys unchanged)."""
        out = asdict(self)
        for key, default in (("prompt_init", "vocab"), ("head_epochs", 0), ("head_lr", None)):
            if out[key] == default:
                del out[key]
        return out


def _torch():
    import torch

    return torch


def build_task_model(encoder, num_labels: int, pooling: str = "mean", dropout: float = 0.1, family: str = "encoder"):
    """Encoder + pooling + dropout + linear head: the model every tuning method trains. ``family``
    (BaseModel.family) decides which inputs the encoder takes (see ``models.forward_inputs``)."""
    torch = _torch()

    class TaskModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.dropout = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels)
            self.pooling = pooling
            self.family = family
            self.use_token_types = family == "encoder"  # peft's prompt-learning models take none

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None and self.use_token_types:
                kwargs["token_type_ids"] = token_type_ids
            outputs = self.encoder(**forward_inputs(self.family, kwargs))
            hidden = outputs.last_hidden_state
            if hidden.shape[1] != attention_mask.shape[1]:  # prompt tokens were prepended by peft
                extra = hidden.shape[1] - attention_mask.shape[1]
                attention_mask = torch.cat([attention_mask.new_ones(len(attention_mask), extra), attention_mask], 1)
            return self.head(self.dropout(pool_outputs(outputs, attention_mask, self.pooling)))

    return TaskModel()


@dataclass
class TuningResult:
    model: object  # the TaskModel
    history: list[dict] = field(default_factory=list)  # per epoch: loss, eval metric
    step_losses: list[float] = field(default_factory=list)
    checkpoints: dict[str, dict] = field(default_factory=dict)  # name -> trainable state (numpy)
    checkpoint_info: dict[str, dict] = field(default_factory=dict)  # name -> {"epoch", "value"}
    head_steps: int = 0  # the first head_steps of step_losses trained the head alone


def grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group: int = 50) -> list[np.ndarray]:
    """Shuffle, sort by length inside groups of ``group`` batches, then shuffle the batches."""
    idx = rng.permutation(len(lengths))
    batches = []
    span = batch_size * group
    for start in range(0, len(idx), span):
        chunk = idx[start:start + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


def trainable_state(task_model) -> dict[str, np.ndarray]:
    """The parameters that were trained (requires_grad), as float32 numpy arrays."""
    return {n: p.detach().float().cpu().numpy().copy() for n, p in task_model.named_parameters() if p.requires_grad}


def prepare_parameters(task_model, config: TuningConfig) -> None:
    """Freeze what the method does not train. Full: everything trains; BitFit: biases + head;
    the peft methods: their adapter (LoRA matrices, prefix, soft prompt) + head."""
    if config.method == "full":
        return
    if config.method == "bitfit":
        if not any(name.endswith(".bias") for name, _ in task_model.encoder.named_parameters()):
            raise TuningError(f"bitfit: the base model ({task_model.encoder.config.model_type}) has no bias terms "
                              "to tune (T5 and Llama-style models have none); use lora, prefix or prompt")
        for name, p in task_model.named_parameters():
            p.requires_grad = name.startswith("head.") or name.endswith(".bias")
        return
    if config.method in PEFT_METHODS:
        markers = {"lora": ("lora_A.", "lora_B."), "prefix": ("prompt_encoder.",), "prompt": ("prompt_encoder.",)}
        for name, p in task_model.named_parameters():
            p.requires_grad = name.startswith("head.") or any(m in name for m in markers[config.method])
        return
    raise NotImplementedError(f"tuning method '{config.method}' is not available in this build")


class keep_checkpoints:  # noqa: N801  (used like a function: on_epoch_end=keep_checkpoints())
    """An ``on_epoch_end`` callback that keeps trainable states in ``result.checkpoints``:

    - ``early``: after ``early_epoch`` epochs (TuPaTE's cheap variant; the last epoch if training is shorter),
    - ``best``: the epoch with the highest ``metric`` in the history (needs ``eval_frame``; ties keep the
      earlier epoch; without a metric, the last epoch),
    - ``last``,
    - ``init``: the state before the first step, when ``on_start=keeper.on_start`` is passed too.

    ``result.checkpoint_info`` records each one's epoch and metric value.
    """

    def __init__(self, early_epoch: int = 2, metric: str | None = None):
        self.early_epoch = early_epoch
        self.metric = metric

    def on_start(self, result: "TuningResult") -> None:
        result.checkpoints["init"] = trainable_state(result.model)
        result.checkpoint_info["init"] = {"epoch": 0, "value": None}

    def __call__(self, epoch: int, result: "TuningResult") -> None:
        state = trainable_state(result.model)
        value = result.history[-1].get(self.metric) if self.metric else None
        if epoch <= self.early_epoch:
            result.checkpoints["early"] = state
            result.checkpoint_info["early"] = {"epoch": epoch, "value": value}
        best = result.checkpoint_info.get("best")
        if value is None or best is None or best["value"] is None or value > best["value"]:
            result.checkpoints["best"] = state
            result.checkpoint_info["best"] = {"epoch": epoch, "value": value}
        result.checkpoints["last"] = state
        result.checkpoint_info["last"] = {"epoch": epoch, "value": value}


def fine_tune(
    base: BaseModel,
    task: Task,
    config: TuningConfig,
    train: pd.DataFrame | None = None,
    eval_frame: pd.DataFrame | None = None,
    encoder_state: dict | None = None,
    on_epoch_end: Callable[[int, TuningResult], None] | None = None,
    progress: str | None = None,
    on_start: Callable[[TuningResult], None] | None = None,
    prompt_state: dict | None = None,
) -> TuningResult:
    """Tune the base encoder (optionally starting from ``encoder_state``) with a fresh head on ``train``.

    ``prompt_state`` (prefix and prompt tuning): a source's trained prompt (:func:`load_prompt_state`),
    which replaces the vocabulary initialisation of this run's prompt (2407.16245's prompt transfer).

    ``eval_frame``, when given, is scored after every epoch with the task's metric. ``on_start`` sees
    the result (with the untrained model) before the first step; ``on_epoch_end`` after each epoch.
    """
    torch = _torch()
    set_threads()
    check_trainable(task)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train = task.split("train") if train is None else train
    encoder = base.fresh_encoder()
    if encoder_state is not None:
        encoder.load_state_dict(encoder_state)
    task_model = build_task_model(encoder, task.num_labels, base.pooling, config.dropout, base.family)
    task_model = wrap_for_method(task_model, config)
    tokenizer = base.load()[0]
    if prompt_state is not None:
        set_prompt_state(task_model, prompt_state, config)
    elif config.method == "prompt" and config.prompt_init != "vocab":
        init_prompt(task_model, config.prompt_init, tokenizer, task)
    prepare_parameters(task_model, config)

    inputs = Encoded(tokenizer, task, train, config.max_length, base.join_pairs)
    labels = task.label_ids(frame=train)
    device = base.torch_device
    task_model.to(device)
    y = torch.tensor(labels, dtype=torch.float32 if task.is_regression else torch.long, device=device)
    scaler = grad_scaler(device)  # fp16 on a GPU without bf16; None otherwise

    steps_per_epoch = -(-len(train) // config.batch_size)
    loss_fn = torch.nn.MSELoss() if task.is_regression else torch.nn.CrossEntropyLoss()

    result = TuningResult(task_model)
    if on_start is not None:
        on_start(result)
    metric = task_metric(task)
    steps = range(steps_per_epoch * (config.head_epochs + config.epochs))
    bar = iter(track(steps, description=progress, total=len(steps)))
    tuned = {n for n, p in task_model.named_parameters() if p.requires_grad}
    for phase, n_epochs in (("head", config.head_epochs), ("joint", config.epochs)):
        if n_epochs == 0:
            continue
        for n, p in task_model.named_parameters():  # the head phase freezes the tuned parameters
            p.requires_grad = n in tuned and (phase == "joint" or n.startswith("head."))
        optimiser, schedule = _optimiser(task_model, config, steps_per_epoch * n_epochs)
        params = [p for p in task_model.parameters() if p.requires_grad]
        for epoch in range(1, n_epochs + 1):
            task_model.train()
            epoch_losses = []
            for batch_idx in grouped_batches(inputs.lengths, config.batch_size, rng):
                batch, sizes = inputs.batch(batch_idx)
                if device.type != "cpu":
                    batch = {k: v.to(device) for k, v in batch.items()}
                with autocast(device, config.bf16):
                    out = task_model(**batch)
                out = per_example(out.float(), sizes)
                loss = loss_fn(out.squeeze(-1), y[batch_idx]) if task.is_regression else loss_fn(out, y[batch_idx])
                if scaler is None:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    optimiser.step()
                else:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimiser)
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    scaler.step(optimiser)
                    scaler.update()
                schedule.step()
                optimiser.zero_grad(set_to_none=True)
                epoch_losses.append(float(loss.detach()))
                next(bar, None)
            result.step_losses += epoch_losses
            if phase == "head":
                result.head_steps += len(epoch_losses)
                continue
            record = {"epoch": epoch, "loss": float(np.mean(epoch_losses))}
            if eval_frame is not None:
                record[metric] = evaluate(base, task, task_model, eval_frame, config)
            result.history.append(record)
            if on_epoch_end is not None:
                on_epoch_end(epoch, result)
    for _ in bar:  # close the progress bar
        pass
    task_model.eval()
    return result


def _optimiser(task_model, config: TuningConfig, total: int):
    """AdamW over the parameters that train now (weight decay on matrices only; the head at
    ``head_learning_rate``), with linear warm-up and decay over ``total`` steps."""
    torch = _torch()
    groups = []
    for is_head, lr in ((False, config.learning_rate), (True, config.head_learning_rate)):
        named = [(n, p) for n, p in task_model.named_parameters() if p.requires_grad and n.startswith("head.") == is_head]
        groups += [{"params": [p for _, p in named if p.ndim > 1], "weight_decay": config.weight_decay, "lr": lr},
                   {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0, "lr": lr}]
    optimiser = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.learning_rate)
    warmup = int(config.warmup_ratio * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    return optimiser, schedule


def lora_targets(encoder, wanted) -> list[str]:
    """LoRA's target modules: ``wanted`` (default BERT's query/value) where the encoder has modules of
    those names, else peft's per-architecture default (T5 q/v, GPT-2 c_attn, Llama q_proj/v_proj, ...)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in encoder.named_modules()}
    if any(t in names for t in wanted):
        return list(wanted)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    kind = getattr(encoder.config, "model_type", "")
    mapped = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(kind)
    if not mapped:
        raise TuningError(f"lora: base model type '{kind}' has no modules named {', '.join(wanted)} and peft knows "
                          "no default targets for it; set lora_targets")
    return list(mapped)


def peft_config(config: TuningConfig, encoder=None):
    """The peft config of a LoRA, prefix or prompt-tuning run (``encoder``: to pick LoRA's targets)."""
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, PromptTuningInit, TaskType

    if config.method == "lora":
        targets = lora_targets(encoder, config.lora_targets) if encoder is not None else list(config.lora_targets)
        return LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=config.lora_r, lora_alpha=config.lora_alpha,
                          target_modules=targets, lora_dropout=config.dropout, bias="none")
    if config.method == "prefix":
        return PrefixTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=config.prefix_length,
                                  prefix_projection=False)
    if config.method == "prompt":
        return PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=config.prompt_length,
                                  prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB)
    raise ValueError(f"'{config.method}' is not a peft method")


def wrap_for_method(task_model, config: TuningConfig):
    """Wrap the encoder with peft for LoRA / prefix / prompt tuning; full and BitFit need no wrapping.
    Adapter initialisation draws from torch's global generator, seeded by ``fine_tune``."""
    if config.method not in PEFT_METHODS:
        return task_model
    import warnings

    from peft import get_peft_model

    if config.method == "prefix" and getattr(task_model, "family", "encoder") == "encoder-decoder":
        raise TuningError("prefix: T5's encoder takes no key/value prefix (peft passes the prefix as a cache, which "
                          "T5's encoder stack ignores); use prompt tuning, 2407.16245's method on T5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task_model.encoder = get_peft_model(task_model.encoder, peft_config(config, task_model.encoder))
    task_model.use_token_types = task_model.use_token_types and config.method == "lora"
    return task_model


def _prompt_encoder(task_model):
    encoder = task_model.encoder
    config = getattr(encoder, "active_peft_config", None)
    if config is None or not config.is_prompt_learning:
        return None
    return encoder.prompt_encoder[encoder.active_adapter]


def prompt_state(task_model) -> dict:
    """The trained prompt of a prefix- or prompt-tuned model (peft's prompt encoder's weights, e.g.
    ``embedding.weight``: prompt tokens x hidden, or prefix tokens x layers*2*hidden); empty for
    the other methods."""
    module = _prompt_encoder(task_model)
    return {} if module is None else {k: v.detach().clone() for k, v in module.state_dict().items()}


def set_prompt_state(task_model, state: dict, config: TuningConfig) -> None:
    """Start this run's prompt from ``state``; a prompt of another method or shape cannot transfer."""
    module = _prompt_encoder(task_model)
    if module is None:
        raise PromptTransferError(f"a source prompt can start only a prefix or prompt run, not a '{config.method}' run")
    own = module.state_dict()
    if set(own) != set(state):
        raise PromptTransferError(f"the source prompt has {', '.join(sorted(state))}, a '{config.method}' run needs "
                                  f"{', '.join(sorted(own))}: source and target must use the same tuning method")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise PromptTransferError(f"the source {config.method} {key} is {' x '.join(map(str, value.shape))}, the "
                                      f"target's is {' x '.join(map(str, own[key].shape))}: a prompt transfers only "
                                      "between runs with the same length and base model")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def init_prompt(task_model, how: str, tokenizer, task: Task) -> None:
    """Replace peft's vocabulary-sampled prompt: ``"labels"``, the embeddings of the tokens of the
    task's class names (in label order, repeated to the prompt's length; kept as sampled when the
    task has no class names), or ``"random"``, normal at the word embeddings' scale (seeded by the
    run's seed through torch's global generator)."""
    torch = _torch()
    module = _prompt_encoder(task_model)
    weight = module.embedding.weight
    words = task_model.encoder.get_base_model().get_input_embeddings().weight
    with torch.no_grad():
        if how == "random":
            weight.copy_(torch.randn(weight.shape, dtype=weight.dtype) * words.std())
            return
        ids = [i for name in task.spec.labels for i in tokenizer(name, add_special_tokens=False)["input_ids"]]
        if how != "labels" or not ids:
            return
        ids = (ids * -(-len(weight) // len(ids)))[:len(weight)]
        weight.copy_(words[torch.tensor(ids)].to(weight.dtype))


def load_prompt_state(directory: str | Path) -> dict:
    """The trained prompt saved beside a prefix- or prompt-tuned model (``prompt.safetensors``)."""
    from safetensors.torch import load_file

    path = Path(directory) / PROMPT_FILE
    if not path.is_file():
        raise PromptTransferError(f"{directory}: no {PROMPT_FILE}: this model was saved without its prompt "
                                  "(trained before prompt transfer existed); train the source again")
    return load_file(str(path))


def check_trainable(task: Task) -> None:
    """Generation tasks have no head to train here: say so before any work."""
    if task.is_generation:
        raise TaskError(f"{task.origin or task.name}: '{task.name}' is a generation task; tuning needs a "
                        "classification, regression or multiple-choice task")


class Encoded:
    """A frame tokenised for a task model: one sequence per example, or one per (text, choice) pair of
    a multiple-choice example; ``lengths`` are per example (its longest sequence)."""

    def __init__(self, tokenizer, task: Task, frame: pd.DataFrame, max_length: int, join=None):
        self.tokenizer = tokenizer
        if task.is_multiple_choice:
            inputs, self.offsets = task.choice_pairs(frame)
        else:
            inputs = task.texts(frame=frame)
            self.offsets = np.arange(len(inputs) + 1)
        self.enc = _tokenize(tokenizer, join(inputs) if join is not None else inputs, max_length)
        per_sequence = np.array([len(ids) for ids in self.enc["input_ids"]])
        self.lengths = np.maximum.reduceat(per_sequence, self.offsets[:-1]) if len(per_sequence) else per_sequence
        self.multiple_choice = task.is_multiple_choice

    def batch(self, examples) -> tuple[dict, np.ndarray | None]:
        """(padded tensors of the examples' sequences, choices per example or None)."""
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in examples])
        sizes = np.diff(self.offsets)[np.asarray(examples)] if self.multiple_choice else None
        return _collate(self.tokenizer, self.enc, rows), sizes


def per_example(out, sizes: np.ndarray | None):
    """Model outputs per example: unchanged, or a multiple-choice batch's pair scores (n_pairs, 1)
    laid out as (examples, most choices), missing choices at -inf so the softmax ignores them."""
    if sizes is None:
        return out
    torch = _torch()
    scores = out.reshape(-1)
    grid = scores.new_full((len(sizes), int(sizes.max())), float("-inf"))
    rows = torch.as_tensor(np.repeat(np.arange(len(sizes)), sizes), device=scores.device)
    cols = torch.as_tensor(np.concatenate([np.arange(k) for k in sizes]), device=scores.device)
    return grid.index_put((rows, cols), scores)


def _tokenize(tokenizer, texts: list, max_length: int) -> dict:
    if texts and isinstance(texts[0], tuple):
        a, b = zip(*texts)
        return tokenizer(list(a), list(b), truncation=True, max_length=max_length)
    return tokenizer(list(texts), truncation=True, max_length=max_length)


def _collate(tokenizer, enc: dict, idx) -> dict:
    features = [{k: enc[k][i] for k in enc.keys()} for i in idx]
    return dict(tokenizer.pad(features, return_tensors="pt"))


def predict(base: BaseModel, task: Task, task_model, frame: pd.DataFrame, config: TuningConfig) -> np.ndarray:
    """Raw outputs (logits, regression predictions, or per-choice scores padded with -inf) for a
    frame, in its order."""
    torch = _torch()
    task_model.eval()
    device = next(task_model.parameters()).device
    inputs = Encoded(base.load()[0], task, frame, config.max_length, base.join_pairs)
    width = int(np.diff(inputs.offsets).max()) if task.is_multiple_choice else task.num_labels
    outputs = np.full((len(frame), width), -np.inf, dtype=np.float32)
    order = np.argsort(-inputs.lengths, kind="stable")
    for start in range(0, len(order), 64):
        idx = order[start:start + 64]
        batch, sizes = inputs.batch(idx)
        if device.type != "cpu":
            batch = {k: v.to(device) for k, v in batch.items()}
        with torch.inference_mode(), autocast(device, config.bf16):
            out = per_example(task_model(**batch).float(), sizes).cpu().numpy()
        outputs[idx, :out.shape[1]] = out
    return outputs


def evaluate(base: BaseModel, task: Task, task_model, frame: pd.DataFrame, config: TuningConfig) -> float:
    outputs = predict(base, task, task_model, frame, config)
    return score_outputs(outputs, task.label_ids(frame=frame), task_metric(task))


def encoder_state(task_model) -> dict:
    """The encoder's weights (for continuing on another task with a fresh head), keyed like a plain
    encoder's. LoRA is merged into the weights; a prefix or soft prompt is not part of the encoder,
    so for those methods this is the (unchanged) base encoder."""
    encoder = task_model.encoder
    if hasattr(encoder, "peft_config"):
        import copy

        if getattr(encoder, "active_peft_config", None) is not None and not encoder.active_peft_config.is_prompt_learning:
            encoder = copy.deepcopy(encoder).merge_and_unload()
        else:
            encoder = encoder.get_base_model()
    return {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}


def save_encoder(task_model, directory: str | Path, config: dict) -> None:
    """Save encoder weights (model.safetensors), the head (head.safetensors), a prefix or soft prompt
    (prompt.safetensors) and a JSON config, via a temporary folder renamed into place so a reader never sees half a model."""
    import json
    import os
    import shutil
    import uuid

    from safetensors.torch import save_file

    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in encoder_state(task_model).items()}, str(tmp / "model.safetensors"))
    save_file({k: v.detach().contiguous() for k, v in task_model.head.state_dict().items()}, str(tmp / "head.safetensors"))
    prompt = prompt_state(task_model)
    if prompt:  # prefix / prompt tuning: what was trained is the prompt, not the encoder
        save_file({k: v.contiguous() for k, v in prompt.items()}, str(tmp / PROMPT_FILE))
    (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    if directory.exists():  # another worker finished the same model first: keep theirs
        shutil.rmtree(tmp)
        return
    os.rename(tmp, directory)


def load_encoder_state(directory: str | Path, part: str = "model") -> dict:
    """The encoder's (part='model') or the head's (part='head') saved weights."""
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / f"{part}.safetensors"))
