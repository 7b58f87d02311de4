"""Task embeddings from tuned parameters: TuPaTE (Zhou et al. 2022) and soft prompts (2407.16245).

Both tune a small set of parameters of the frozen base encoder on a seeded, stratified sample of the
task (``taskrank.tuning``: one loop for LoRA, BitFit, P-Tuning v2 prefix and prompt tuning) and keep
those parameters as the task's embedding.

TuPaTE (``tupate-lora``, ``tupate-bitfit``, ``tupate-prefix``, ``tupate-ensemble``)
    The tuned parameters are concatenated within each layer and averaged across layers:
    LoRA: the layer's A and B matrices (query, then value) flattened and concatenated;
    BitFit: the layer's bias vectors concatenated (biases outside the transformer layers, i.e.
    embeddings LayerNorm, pooler and head, are left out); prefix (``prefix_embedding``): by default
    the paper's, which keeps the prefix positions: the (length x hidden) key and value prefixes of
    every layer averaged, length x hidden dimensions (BERT-base: 20 x 768 = 15,360, the 15.4K of
    the paper's Table 1); ``"released"`` as the released ``extract_ptuning_v2_task_emb`` (the prefix
    matrix averaged over positions, layers kept: layers x 2 x hidden); ``"position-mean"``
    (taskrank's earlier default) averages positions and then layers (2 x hidden). Compared by cosine.
    ``checkpoint="early"`` (default) tunes 2 epochs; ``"best"`` tunes ``best_epochs`` epochs and
    keeps the epoch with the best validation score (the early state is kept in that artefact too).
    The ensemble averages the three methods' similarities; it trains nothing of its own.

Soft prompts (``prompt-feature``, ``-unigram``, ``-flatten``, ``-bigram``, ``-max``)
    One tuned prompt per task (``prompt_length`` x hidden, default 20 x hidden, initialised from
    random vocabulary embeddings; ``prompt_length=100`` is the earlier default, under which the
    prompt added nothing over the head alone), shared by the five constructions through the ``prompt`` artefact family. Every
    prompt token is L2-normalised first. FEATURE: mean over tokens, cosine. UNIGRAM: mean over
    features (a vector of prompt length), cosine. FLATTEN: the flattened matrix, cosine. BIGRAM:
    non-overlapping adjacent token pairs (0-1, 2-3, ...) concatenated, cosine per pair, mean over
    pairs (as in uds-lsv ``prompt_sim_np.py``; with unit tokens and an even length this equals
    FLATTEN exactly, since both reduce to the mean token-wise cosine). MAX: for each token of one
    prompt the highest cosine with any token of the other, averaged; ``direction="source"`` (the
    default, as in the released code) takes the max for each *source* token over the target's
    tokens, ``"target"`` for each target token over the source's tokens (the paper's prose).

``centre`` (score time, all of them): ``"none"`` (the papers' raw cosine), ``"pool"`` subtracts
the mean embedding (prompt matrix) of the target and the scored sources before comparing,
``"init"`` subtracts each artefact's own untrained state (the same for every task tuned with the
same seed), so only what tuning changed is compared. Tuned TuPaTE embeddings of different tasks
share most of their values (LoRA's random A, the pre-trained biases, the random prefix), which is
what both options remove. Measured on sentiment vs other sources (docs/estimators.md), ``"init"``
ranks best for all three TuPaTE methods and is their default; for soft prompts, which move far
from their initialisation at prompt tuning's learning rate, ``"init"`` changes little and
``"pool"`` is worse, so they keep the paper's ``"none"``.
"""

from __future__ import annotations

import re
import time
from typing import ClassVar

import numpy as np

from ..errors import ParameterError
from ..models import BaseModel
from ..recipe import DATA_SEED
from ..store import Artefact
from ..tasks import Task, TaskError
from .base import TRAINABLE_TYPES, Composite, Estimator, cosine_rows
from .registry import register

CENTRES = ("none", "pool", "init")
CHECKPOINTS = ("early", "best")
EARLY_EPOCHS = 2


# ----------------------------------------------------------------------------------------------
# TuPaTE: per-layer parameter vectors, averaged across layers

# a transformer layer's parameters: BERT-like ``layer.N.``, T5 ``block.N.``, GPT-2 ``h.N.``, Llama
# ``layers.N.`` (the leftmost match: T5's ``block.N.layer.M.`` is block N)
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|block|h)\.(\d+)\.")


def _by_layer(state: dict[str, np.ndarray], keep) -> list[np.ndarray]:
    """Per transformer layer (in layer order), the kept parameters flattened and concatenated in
    the order they appear in ``state`` (the model's registration order)."""
    layers: dict[int, list[np.ndarray]] = {}
    for name, value in state.items():
        m = _LAYER.search(name)
        if m and keep(name):
            layers.setdefault(int(m.group(1)), []).append(np.asarray(value, dtype=np.float64).ravel())
    if not layers:
        raise ValueError("no per-layer parameters found in the tuned state")
    return [np.concatenate(layers[i]) for i in sorted(layers)]


def lora_layer_vectors(state: dict[str, np.ndarray]) -> np.ndarray:
    """(layers, D): each layer's LoRA A and B matrices (query, then value), flattened and concatenated."""
    return np.stack(_by_layer(state, lambda n: ".lora_A." in n or ".lora_B." in n))


def bitfit_layer_vectors(state: dict[str, np.ndarray]) -> np.ndarray:
    """(layers, D): each transformer layer's bias vectors concatenated (no embedding/pooler/head biases)."""
    return np.stack(_by_layer(state, lambda n: n.endswith(".bias") and not n.startswith("head.")))


def prefix_layer_vectors(prefix: np.ndarray, n_layers: int) -> np.ndarray:
    """(layers, 2*hidden): the (prefix_length, layers*2*hidden) P-Tuning v2 prefix averaged over prefix
    positions, split per layer into [key prefix; value prefix] (peft's layout)."""
    prefix = np.asarray(prefix, dtype=np.float64)
    return prefix.mean(0).reshape(n_layers, -1)


PREFIX_EMBEDDINGS = ("paper", "released", "position-mean")


def prefix_task_embedding(prefix: np.ndarray, n_layers: int, construction: str = "paper") -> np.ndarray:
    """TuPaTE's P-Tuning v2 prefix embedding from the (length, layers*2*hidden) prefix matrix (peft's
    layout: per layer a key block, then a value block, each hidden wide).

    - ``"paper"`` (default): positions kept; the 2*layers (length, hidden) key and value slices
      averaged, flattened to length*hidden (BERT-base: 20 x 768 = 15,360, the paper's Table 1);
    - ``"released"``: ``extract_ptuning_v2_task_emb`` of the released code,
      ``prefix_encoder.embedding.weight.mean(0)``: positions averaged, layers kept (layers*2*hidden);
    - ``"position-mean"``: positions averaged, then layers ([key; value], 2*hidden)."""
    prefix = np.asarray(prefix, dtype=np.float64)
    if construction == "paper":
        length = prefix.shape[0]
        return prefix.reshape(length, 2 * n_layers, -1).mean(1).ravel()
    if construction == "released":
        return prefix.mean(0)
    if construction == "position-mean":
        return layer_average(prefix_layer_vectors(prefix, n_layers))
    raise ParameterError(f"prefix_embedding must be one of {', '.join(PREFIX_EMBEDDINGS)}, not '{construction}'")


def layer_average(layer_vectors) -> np.ndarray:
    """TuPaTE's task embedding: the per-layer vectors averaged across layers."""
    return np.mean(np.stack([np.asarray(v, dtype=np.float64) for v in layer_vectors]), axis=0)


def _prefix_matrix(state: dict[str, np.ndarray]) -> np.ndarray:
    names = [n for n in state if "prompt_encoder" in n]
    if len(names) != 1:
        raise ValueError(f"expected one prompt/prefix matrix in the tuned state, found {names}")
    return state[names[0]]


def tupate_embedding(state: dict[str, np.ndarray], method: str, n_layers: int, prefix: str = "paper") -> np.ndarray:
    """The TuPaTE task embedding of a tuned state (``prefix``: the prefix construction, see
    :func:`prefix_task_embedding`)."""
    if method == "lora":
        return layer_average(lora_layer_vectors(state))
    if method == "bitfit":
        return layer_average(bitfit_layer_vectors(state))
    if method == "prefix":
        return prefix_task_embedding(_prefix_matrix(state), n_layers, prefix)
    raise ValueError(f"TuPaTE has no embedding for tuning method '{method}'")


def centred(target: np.ndarray, sources: np.ndarray, centre: str,
            target_init: np.ndarray | None = None, sources_init: np.ndarray | None = None):
    """(target, sources) after the ``centre`` option: unchanged, minus the mean of all of them, or
    minus each one's untrained state."""
    if centre == "none":
        return target, sources
    if centre == "pool":
        mean = np.concatenate([target[None], sources]).mean(0)
        return target - mean, sources - mean
    if centre == "init":
        if target_init is None or sources_init is None:
            raise ValueError("centre='init' needs artefacts that keep their untrained state")
        return target - target_init, sources - sources_init
    raise ParameterError(f"centre must be one of {', '.join(CENTRES)}, not '{centre}'")


# ----------------------------------------------------------------------------------------------
# shared tuning step


class _TunedEstimator(Estimator):
    """Tune ``tuning_method`` on a sample of the task; subclasses turn the state into tensors."""

    tuning_method: ClassVar[str]
    score_only = ("centre",)
    task_types = TRAINABLE_TYPES

    def __init__(self, model: BaseModel | None = None, checkpoint: str = "early", n_examples: int = 500,
                 best_epochs: int = 5, n_eval: int = 200, lr: float | None = None, batch_size: int = 32,
                 seed: int = 0, centre: str = "none"):
        super().__init__(model)
        if checkpoint not in CHECKPOINTS:
            raise ParameterError(f"{self.name}: checkpoint must be one of {', '.join(CHECKPOINTS)}, not '{checkpoint}'")
        if centre not in CENTRES:
            raise ParameterError(f"{self.name}: centre must be one of {', '.join(CENTRES)}, not '{centre}'")
        self.checkpoint = checkpoint
        self.n_examples = n_examples
        self.best_epochs = best_epochs
        self.n_eval = n_eval
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.centre = centre

    def tuning_config(self, **overrides):
        from ..tuning import TuningConfig

        epochs = EARLY_EPOCHS if self.checkpoint == "early" else max(self.best_epochs, EARLY_EPOCHS)
        fields = dict(method=self.tuning_method, epochs=epochs, lr=self.lr, batch_size=self.batch_size,
                      max_length=self.model.max_length, seed=self.seed)
        return TuningConfig(**{**fields, **overrides})

    def _eval_frame(self, task: Task):
        for split in ("validation", "test"):
            if split in task.splits:
                return task.sample(self.n_eval, DATA_SEED, split=split)
        raise TaskError(f"{task.origin or task.name}: checkpoint='best' needs a validation (or test) split")

    def tune(self, task: Task, **overrides) -> tuple[dict, dict, dict]:
        """(tuned state of the chosen checkpoint, untrained state, run info)."""
        from ..task_metrics import task_metric
        from ..tuning import fine_tune, keep_checkpoints

        config = self.tuning_config(**overrides)
        eval_frame = self._eval_frame(task) if self.checkpoint == "best" else None
        keeper = keep_checkpoints(EARLY_EPOCHS, task_metric(task) if eval_frame is not None else None)
        start = time.time()
        result = fine_tune(self.model, task, config, train=task.sample(self.n_examples, DATA_SEED),
                           eval_frame=eval_frame, on_epoch_end=keeper, on_start=keeper.on_start,
                           progress=f"{self.name}: {task.name}")
        info = {"tuning": config.to_dict(), "n_train": min(self.n_examples, task.size),
                "epoch": result.checkpoint_info[self.checkpoint]["epoch"],
                "validation": result.checkpoint_info[self.checkpoint]["value"],
                "history": result.history, "seconds": round(time.time() - start, 1)}
        return result.checkpoints[self.checkpoint], result.checkpoints["init"], info

    @property
    def n_layers(self) -> int:
        return int(self.model.load()[1].config.num_hidden_layers)


class _TuPaTE(_TunedEstimator):
    in_default_pool = True

    def __init__(self, model: BaseModel | None = None, checkpoint: str = "early", n_examples: int = 500,
                 best_epochs: int = 5, n_eval: int = 200, lr: float | None = None, batch_size: int = 32,
                 seed: int = 0, centre: str = "init"):
        super().__init__(model, checkpoint, n_examples, best_epochs, n_eval, lr, batch_size, seed, centre)

    prefix_embedding = "paper"  # only the prefix method has a choice (a constructor parameter there)

    def prepare(self, task: Task) -> Artefact:
        state, init, info = self.tune(task)
        embed = lambda s: tupate_embedding(s, self.tuning_method, self.n_layers, self.prefix_embedding)  # noqa: E731
        tensors = {"embedding": embed(state).astype(np.float32), "init_embedding": embed(init).astype(np.float32)}
        return self.artefact(task, tensors, **info)

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        t = target.tensors["embedding"].astype(np.float64)
        s = np.stack([a.tensors["embedding"] for a in sources]).astype(np.float64)
        t_init = s_init = None
        if self.centre == "init":
            t_init = target.tensors["init_embedding"].astype(np.float64)
            s_init = np.stack([a.tensors["init_embedding"] for a in sources]).astype(np.float64)
        return cosine_rows(*centred(t, s, self.centre, t_init, s_init))


@register
class TuPaTELoRA(_TuPaTE):
    """TuPaTE with LoRA (r = 8, alpha = 8 on query/value, lr 5e-4)."""

    name = "tupate-lora"
    summary = "LoRA matrices per layer, averaged over layers, cosine (TuPaTE)"
    tuning_method = "lora"


@register
class TuPaTEBitFit(_TuPaTE):
    """TuPaTE with BitFit (bias terms, lr 4e-4)."""

    name = "tupate-bitfit"
    summary = "BitFit biases per layer, averaged over layers, cosine (TuPaTE)"
    tuning_method = "bitfit"


@register
class TuPaTEPrefix(_TuPaTE):
    """TuPaTE with a P-Tuning v2 deep prefix (length 20, lr 1e-2). ``prefix_embedding="paper"``
    (default): positions kept, the layers' key and value prefixes averaged (length x hidden, as the
    paper's Table 1 counts it); ``"released"``: positions averaged, layers kept (the released
    ``extract_ptuning_v2_task_emb``); ``"position-mean"``: positions, then layers averaged."""

    name = "tupate-prefix"
    summary = "P-Tuning v2 prefix, positions kept, averaged over layers, cosine (TuPaTE)"
    tuning_method = "prefix"

    def __init__(self, model: BaseModel | None = None, checkpoint: str = "early", n_examples: int = 500,
                 best_epochs: int = 5, n_eval: int = 200, lr: float | None = None, batch_size: int = 32,
                 seed: int = 0, centre: str = "init", prefix_embedding: str = "paper"):
        super().__init__(model, checkpoint, n_examples, best_epochs, n_eval, lr, batch_size, seed, centre)
        if prefix_embedding not in PREFIX_EMBEDDINGS:
            raise ParameterError(f"{self.name}: prefix_embedding must be one of {', '.join(PREFIX_EMBEDDINGS)}, "
                             f"not '{prefix_embedding}'")
        self.prefix_embedding = prefix_embedding


@register
class TuPaTEEnsemble(Composite):
    """TuPaTE's ensemble: the mean of the LoRA, BitFit and prefix cosine similarities. It reuses
    those three estimators' artefacts (build the pool with them); it trains nothing itself."""

    name = "tupate-ensemble"
    summary = "mean of the tupate-lora/-bitfit/-prefix similarities (TuPaTE ensemble)"
    member_classes: ClassVar[tuple[type[_TuPaTE], ...]] = (TuPaTELoRA, TuPaTEBitFit, TuPaTEPrefix)

    def __init__(self, model: BaseModel | None = None, checkpoint: str = "early", seed: int = 0,
                 centre: str = "init", defaults: dict | None = None):
        super().__init__(model)
        self.checkpoint = checkpoint
        self.seed = seed
        self.centre = centre
        defaults = defaults or {}  # a pool's parameters for the members (Pool.method_params)
        self.members = [cls(model=self.model, **{**defaults.get(cls.name, {}), "checkpoint": checkpoint,
                                                 "seed": seed, "centre": centre})
                        for cls in self.member_classes]

    def combine(self, target: str, sources: list[str], member_scores: list[np.ndarray]) -> np.ndarray:
        return ensemble_mean(member_scores)


def ensemble_mean(member_scores: list[np.ndarray]) -> np.ndarray:
    """The average of the members' similarity vectors (TuPaTE's ensemble)."""
    return np.mean(np.stack([np.asarray(s, dtype=np.float64) for s in member_scores]), axis=0)


# ----------------------------------------------------------------------------------------------
# soft prompts (2407.16245)


def normalise_tokens(prompt: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Every prompt token (row) scaled to unit L2 norm."""
    p = np.asarray(prompt, dtype=np.float64)
    return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), eps)


def _cos(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), eps))


def prompt_feature(prompt: np.ndarray) -> np.ndarray:
    """FEATURE: mean of the normalised tokens, a hidden-size vector."""
    return normalise_tokens(prompt).mean(0)


def prompt_unigram(prompt: np.ndarray) -> np.ndarray:
    """UNIGRAM: mean over the feature dimension of the normalised tokens, a prompt-length vector."""
    return normalise_tokens(prompt).mean(1)


def prompt_flatten(prompt: np.ndarray) -> np.ndarray:
    """FLATTEN: the normalised prompt as one vector."""
    return normalise_tokens(prompt).ravel()


def prompt_bigrams(prompt: np.ndarray) -> np.ndarray:
    """BIGRAM units: non-overlapping adjacent token pairs concatenated, (ceil(T/2), 2*hidden); an odd
    last token is paired with zeros."""
    p = normalise_tokens(prompt)
    if len(p) % 2:
        p = np.concatenate([p, np.zeros((1, p.shape[1]))])
    return p.reshape(len(p) // 2, -1)


def bigram_similarity(target: np.ndarray, source: np.ndarray) -> float:
    """Mean over bigram positions of the cosine of the two prompts' bigrams."""
    a, b = prompt_bigrams(target), prompt_bigrams(source)
    if a.shape != b.shape:
        raise ValueError(f"BIGRAM needs prompts of the same shape, not {target.shape} and {source.shape}")
    return float(np.mean([_cos(x, y) for x, y in zip(a, b)]))


def max_similarity(queries: np.ndarray, keys: np.ndarray) -> float:
    """MAX: for each token of ``queries`` the highest cosine with any token of ``keys``, averaged
    over ``queries``' tokens (asymmetric)."""
    return float((normalise_tokens(queries) @ normalise_tokens(keys).T).max(1).mean())


def prompt_similarity(target: np.ndarray, source: np.ndarray, construction: str, direction: str = "source") -> float:
    """Similarity of two tuned prompts (tokens x hidden) under one of the five constructions."""
    if construction == "feature":
        return _cos(prompt_feature(target), prompt_feature(source))
    if construction == "unigram":
        return _cos(prompt_unigram(target), prompt_unigram(source))
    if construction == "flatten":
        return _cos(prompt_flatten(target), prompt_flatten(source))
    if construction == "bigram":
        return bigram_similarity(target, source)
    if construction == "max":
        if direction == "source":
            return max_similarity(source, target)
        if direction == "target":
            return max_similarity(target, source)
        raise ParameterError(f"direction must be 'source' or 'target', not '{direction}'")
    raise ParameterError(f"unknown prompt construction '{construction}'")


class _SoftPrompt(_TunedEstimator):
    """Prompt tuning (20 soft tokens by default, lr 3e-2, 2 epochs); all constructions share one
    artefact. ``prompt_length=100`` is taskrank's first setting (2407.16245's length), which on 500
    examples and 2 epochs left the prompt adding nothing over the head alone
    (benchmarks/prompt_learning.py); its artefacts keep their ids."""

    family = "prompt"
    tuning_method = "prompt"
    construction: ClassVar[str]
    in_default_pool = False  # ~1 CPU minute per task (20 tokens; 100: ~2): add with --method prompt-max
    score_only = ("centre", "direction")

    def __init__(self, model: BaseModel | None = None, checkpoint: str = "early", n_examples: int = 500,
                 best_epochs: int = 5, n_eval: int = 200, lr: float | None = None, batch_size: int = 32,
                 seed: int = 0, prompt_length: int = 20, centre: str = "none", direction: str = "source"):
        super().__init__(model, checkpoint, n_examples, best_epochs, n_eval, lr, batch_size, seed, centre)
        if direction not in ("source", "target"):
            raise ParameterError(f"{self.name}: direction must be 'source' or 'target', not '{direction}'")
        self.prompt_length = prompt_length
        self.direction = direction

    def prepare(self, task: Task) -> Artefact:
        state, init, info = self.tune(task, prompt_length=self.prompt_length)
        tensors = {"prompt": _prefix_matrix(state).astype(np.float32),
                   "init_prompt": _prefix_matrix(init).astype(np.float32)}
        return self.artefact(task, tensors, **info)

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        t = target.tensors["prompt"].astype(np.float64)
        s = np.stack([a.tensors["prompt"] for a in sources]).astype(np.float64)
        t_init = s_init = None
        if self.centre == "init":
            t_init = target.tensors["init_prompt"].astype(np.float64)
            s_init = np.stack([a.tensors["init_prompt"] for a in sources]).astype(np.float64)
        t, s = centred(t, s, self.centre, t_init, s_init)
        return np.array([prompt_similarity(t, p, self.construction, self.direction) for p in s])


@register
class PromptFeature(_SoftPrompt):
    name = "prompt-feature"
    summary = "soft prompt, mean over tokens, cosine (2407.16245 FEATURE)"
    construction = "feature"


@register
class PromptUnigram(_SoftPrompt):
    name = "prompt-unigram"
    summary = "soft prompt, mean over features, cosine (2407.16245 UNIGRAM)"
    construction = "unigram"


@register
class PromptFlatten(_SoftPrompt):
    name = "prompt-flatten"
    summary = "soft prompt flattened, cosine (2407.16245 FLATTEN)"
    construction = "flatten"


@register
class PromptBigram(_SoftPrompt):
    name = "prompt-bigram"
    summary = "soft prompt, adjacent token pairs, mean cosine (2407.16245 BIGRAM)"
    construction = "bigram"


@register
class PromptMax(_SoftPrompt):
    name = "prompt-max"
    summary = "soft prompt, per source token max cosine over target tokens, mean (2407.16245 MAX)"
    construction = "max"
