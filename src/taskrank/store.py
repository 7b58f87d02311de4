"""Artefact store: safetensors + JSON config per (estimator, base model, task fingerprint).

A local directory by default; any fsspec URL (``memory://``, ``s3://``, ...) works the same way, so
a team can share prepared artefacts. Never pickle: tensors go to safetensors, the rest to JSON.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from . import environment
from .errors import TaskrankError

TENSORS = "artefact.safetensors"
CONFIG = "config.json"


class ArtefactError(TaskrankError):
    """An artefact that is missing, corrupt, or made for another base model or estimator."""


@dataclass
class Artefact:
    """What an estimator keeps per task: named arrays plus a JSON-able config.

    ``config`` always carries ``estimator``, ``base_model``, ``task`` and ``fingerprint``.
    """

    tensors: dict[str, np.ndarray]
    config: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.config.get("task", "")

    def save_pretrained(self, directory: str, fs=None) -> None:
        """Write tensors first and the config last, each via a temporary name, so a reader never
        sees a half-written artefact: the config's presence marks it complete."""
        fs, root = url_to_fs(directory) if fs is None else (fs, directory)
        fs.makedirs(root, exist_ok=True)
        tensors = {k: np.ascontiguousarray(v) for k, v in self.tensors.items()}
        atomic_write(fs, f"{root}/{TENSORS}", st_save(tensors))
        atomic_write(fs, f"{root}/{CONFIG}", json.dumps(self.config, indent=1, sort_keys=True).encode())

    @classmethod
    def from_pretrained(cls, directory: str, fs=None) -> "Artefact":
        fs, root = url_to_fs(directory) if fs is None else (fs, directory)
        if not fs.exists(f"{root}/{CONFIG}"):
            raise ArtefactError(f"{directory}: no artefact here ({CONFIG} missing)")
        try:
            config = json.loads(fs.cat_file(f"{root}/{CONFIG}"))
            tensors = st_load(fs.cat_file(f"{root}/{TENSORS}"))
        except (OSError, ValueError, SafetensorError) as e:  # a truncated or corrupt file
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtefactError(f"{directory}: unreadable artefact ({why}); prepare it again "
                                "('taskrank pool build' for a pool)") from None
        if not isinstance(config, dict):
            raise ArtefactError(f"{directory}: unreadable artefact ({CONFIG} is not a JSON object)")
        return cls(tensors, config)


def url_to_fs(url: str):
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path.rstrip("/")


def atomic_write(fs, path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    if isinstance(fs, LocalFileSystem):
        os.replace(tmp, path)  # atomic on POSIX
    else:
        fs.mv(tmp, path)


def slug(text: str) -> str:
    """A path-safe name for a model id or estimator id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", text).strip("-")


class Store:
    """Artefacts under ``<root>/<estimator id>/<model slug>/<fingerprint>/``.

    ``rebuild``: a cache, whose artefacts can be made again: an unreadable one is deleted and
    reported missing (so it is prepared anew), instead of an error on every use."""

    def __init__(self, url: str | os.PathLike, rebuild: bool = False):
        self.url = str(url)
        self.fs, self.root = url_to_fs(self.url)
        self.rebuild = rebuild

    def _dir(self, estimator_id: str, model_id: str, fingerprint: str) -> str:
        return f"{self.root}/{slug(estimator_id)}/{slug(model_id)}/{fingerprint}"

    def has(self, estimator_id: str, model_id: str, fingerprint: str) -> bool:
        return self.fs.exists(f"{self._dir(estimator_id, model_id, fingerprint)}/{CONFIG}")

    def load(self, estimator_id: str, model_id: str, fingerprint: str) -> Artefact | None:
        directory = self._dir(estimator_id, model_id, fingerprint)
        if not self.fs.exists(f"{directory}/{CONFIG}"):
            return None
        try:
            artefact = Artefact.from_pretrained(directory, fs=self.fs)
            check_model(artefact, model_id, directory)
        except ArtefactError:
            if not self.rebuild:
                raise
            self.fs.rm(directory, recursive=True)
            return None
        return artefact

    def save(self, estimator_id: str, model_id: str, fingerprint: str, artefact: Artefact) -> None:
        check_model(artefact, model_id, "new artefact")
        artefact.save_pretrained(self._dir(estimator_id, model_id, fingerprint), fs=self.fs)

    def models(self, estimator_id: str) -> list[str]:
        """Base model ids (as the user names them, not folder slugs) that have artefacts for an
        estimator, read from one artefact's config each (to explain a mismatch)."""
        base = f"{self.root}/{slug(estimator_id)}"
        if not self.fs.exists(base):
            return []
        out = set()
        for folder in self.fs.ls(base, detail=False):
            configs = sorted(self.fs.glob(f"{folder.rstrip('/')}/*/{CONFIG}"))
            try:
                out.add(json.loads(self.fs.cat_file(configs[0]))["base_model"])
            except (IndexError, ValueError, KeyError, TypeError):  # empty or unreadable: the folder's name
                out.add(Path(folder.rstrip("/")).name)
        return sorted(out)


def check_model(artefact: Artefact, model_id: str, where: str) -> None:
    made_with = artefact.config.get("base_model")
    if made_with != model_id:
        raise ArtefactError(f"{where}: artefact was made with base model '{made_with}', not '{model_id}'; "
                            f"prepare it again with this model or use --model {made_with}")


def default_cache() -> Store:
    """The per-user cache for target-side artefacts (TASKRANK_CACHE overrides)."""
    return Store(environment.artefact_cache(), rebuild=True)
