"""hf-dataset-selector's ESMs as a taskrank pool (``taskrank pool import-esms``).

hfselect (Schulte et al., arXiv 2410.15148) shares Embedding Space Maps as folders (on the Hugging
Face Hub: model repositories tagged ``embedding_space_map``) holding ``config.json`` (an ESMConfig)
and ``model.safetensors``. Its ESMs only mean something on the embeddings they were trained on,
which hfselect computes its own way (``model_utils.get_pooled_output``, ``dataset.py``):

- pooling: BERT models give their **pooler output**, unless the model's name contains
  "sentence-transformers" (then mean pooling); RoBERTa and DistilBERT their first token (CLS);
- sentence pairs (several text columns) are **joined into one text** with ``" [SEP] "``.

So an imported pool records the base model and these two options (``pooling``, ``pairs`` in
``pool.json``), and ``taskrank rank --pool POOL --method esm-logme --model BASE`` embeds the target
the same way. ESMs made with different base models cannot share a pool.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import TaskrankError
from .models import BaseModel, ModelError, resolve

HFSELECT_TAG = "embedding_space_map"
ESM_FILES = ("config.json", "model.safetensors")
# hfselect's CLS-pooled model types (model_utils.get_pooled_output); BERT uses its pooler
CLS_TYPES = ("roberta", "xlm-roberta", "distilbert")


class EsmImportError(TaskrankError):
    """ESM folders that cannot become a pool (none found, mixed base models, wrong sizes)."""


def is_esm_folder(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ESM_FILES)


def esm_folders(directory: str | Path) -> list[Path]:
    """The hfselect ESM folders in ``directory`` (its subfolders, or the folder itself)."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise EsmImportError(f"{directory}: no such folder")
    if is_esm_folder(directory):
        return [directory]
    found = sorted(p for p in directory.iterdir() if p.is_dir() and is_esm_folder(p))
    if not found:
        raise EsmImportError(f"{directory}: no ESM folders in it (each needs {' and '.join(ESM_FILES)})")
    return found


def hfselect_options(base_model_name: str, model_type: str | None) -> dict:
    """The pooling and pair joining hfselect used for ESMs of this base model."""
    if model_type in CLS_TYPES:
        pooling = "cls"
    elif "sentence-transformers" in base_model_name or model_type not in (None, "bert"):
        pooling = "mean"
    else:
        pooling = "pooler"
    return {"pooling": pooling, "pairs": "sep-joined"}


def _model_type(path: str) -> str | None:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path).model_type
    except (OSError, ValueError):
        return None


def hub_esm_folders(model: str | None = None) -> list[Path]:
    """ESM folders found as hfselect finds them: Hub repositories tagged ``embedding_space_map``
    (and ``base_model:MODEL``), downloaded into the Hugging Face cache. Without a network, the ESM
    repositories already in that cache (``HF_HUB_CACHE``) whose config names ``model``."""
    from . import hub

    offline = hub.offline_if_unreachable()
    if offline is None:
        from huggingface_hub import HfApi, model_info, snapshot_download

        filters = [HFSELECT_TAG] + ([f"base_model:{model_info(model).id}"] if model else [])
        repos = [info.id for info in HfApi().list_models(filter=filters)]
        if not repos:
            raise EsmImportError(f"the hub has no ESMs tagged {', '.join(filters)}")
        return [Path(snapshot_download(repo, allow_patterns=list(ESM_FILES))) for repo in repos]
    found = []
    for folder in cached_esm_folders():
        name = json.loads((folder / "config.json").read_text()).get("base_model_name", "")
        if model is None or name == model or name.split("/")[-1] == model.split("/")[-1]:
            found.append(folder)
    if not found:
        raise EsmImportError(f"no ESMs{f' for base model {model}' if model else ''} in the Hugging Face cache "
                             f"({offline}; the hub is searched only when it answers)")
    return found


def cached_esm_folders() -> list[Path]:
    """Each cached model repository's newest snapshot that holds an ESM (config with esm_architecture)."""
    from huggingface_hub import constants

    out = []
    for repo in sorted(Path(constants.HF_HUB_CACHE).glob("models--*")):
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        for snapshot in reversed(snapshots):
            if is_esm_folder(snapshot):
                try:
                    config = json.loads((snapshot / "config.json").read_text())
                except ValueError:
                    break
                if isinstance(config, dict) and "esm_architecture" in config:
                    out.append(snapshot)
                break
    return out


def import_esms(folders: list[Path], out: str, model: str | None = None):
    """Write a pool at ``out`` from hfselect ESM folders (all of one base model, or of ``model``);
    everything is read and checked before anything is written. Returns the :class:`Pool`."""
    from .estimators.esm import EsmLogme, load_hfselect_esm
    from .pool import POOL_FILE, Pool, PoolError
    from .store import atomic_write, check_model

    loaded = [(folder, load_hfselect_esm(folder)) for folder in folders]
    bases = sorted({a.config.get("base_model_name") or "" for _, a in loaded})
    if model is not None:
        keep = [(f, a) for f, a in loaded if a.config.get("base_model_name") in (model, resolve(model)[0])]
        if not keep:
            raise EsmImportError(f"no ESM made with base model '{model}' (they use: {', '.join(bases)})")
        loaded, bases = keep, [model]
    if len(bases) != 1 or not bases[0]:
        raise EsmImportError(f"the ESMs were made with {len(bases)} base models ({', '.join(bases) or 'none named'}); "
                             "a pool has one: import them with --model NAME")
    name = bases[0]
    try:
        probe = BaseModel(name, pooling="mean")  # resolves the name; the config says the model type
    except ModelError as e:
        raise EsmImportError(f"base model '{name}' of the ESMs is needed to read its type and size: {e}") from None
    base = BaseModel(name, **hfselect_options(name, _model_type(probe.path)))
    from transformers import AutoConfig

    hidden = AutoConfig.from_pretrained(base.path).hidden_size
    estimator = EsmLogme(model=base)
    pool = Pool(out)
    if pool.tasks and pool.meta.get("base_model") not in (None, base.model_id):
        raise PoolError(f"{out}: a pool of base model {pool.meta['base_model']}; import ESMs of {name} elsewhere")
    tasks, names = [], set()
    for folder, artefact in loaded:
        weight = artefact.tensors["model.weight"]
        if weight.shape != (hidden, hidden):
            raise EsmImportError(f"{folder}: the ESM maps {weight.shape[1]} to {weight.shape[0]} dimensions; "
                                 f"base model {name} has {hidden}")
        task = artefact.task
        if task in names:
            task = f"{task}@{folder.name}"
        names.add(task)
        artefact.config.update({"task": task, "base_model": base.model_id, "task_type": "classification",
                                "artefact_id": estimator.artefact_id, **base.identity()})
        check_model(artefact, base.model_id, str(folder))
        text_column = artefact.config.get("text_column")
        tasks.append((artefact, {"name": task, "fingerprint": artefact.config["fingerprint"], "type": "classification",
                                 "size": int(artefact.config.get("num_examples") or 0), "labels": [],
                                 "group": None, "pair": isinstance(text_column, (list, tuple))
                                 or "," in str(text_column or "")}))
    for artefact, meta in tasks:
        pool.store.save(estimator.artefact_id, base.model_id, meta["fingerprint"], artefact)
    # pool.json last: its presence marks the pool, so an interrupted import leaves no pool behind
    kept = [t for t in pool.tasks if t["name"] not in names]
    pool.meta.update({"tasks": sorted(kept + [m for _, m in tasks], key=lambda t: t["name"]),
                      "base_model": base.model_id, **base.identity(), "imported_from": "hfselect"})
    pool.fs.makedirs(pool._path, exist_ok=True)
    atomic_write(pool.fs, f"{pool._path}/{POOL_FILE}", json.dumps(pool.meta, indent=1).encode())
    return pool


__all__ = ["EsmImportError", "cached_esm_folders", "esm_folders", "hfselect_options", "hub_esm_folders", "import_esms"]
