"""The contract every registered estimator keeps (as scikit-learn's common checks and peft's common
tester do), run over the registry so a new method is checked without a line here:

* registration: every concrete Estimator class is registered by ``import taskrank.estimators``;
* ``get_params`` round-trips through ``get_estimator(name, **params)`` (and a composite's name);
* artefact ids are stable: a snapshot (``tests/data/artefact_ids.json``) of every method's ids,
  and every artefact folder of the shipped pools is what today's code computes for that pool, so a
  refactor cannot orphan the shipped pools (or users' stores) unnoticed;
* ``prepare`` / ``prepare_target`` / ``score`` shapes on tiny synthetic tasks with a tiny random
  model built here (nothing is downloaded), and determinism (same inputs, same scores).

Regenerate the snapshot, after a deliberate change of ids, with
``python tests/test_estimator_contract.py --update``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskrank.estimators import COMPOSITES, ESTIMATORS, get_estimator, method_names
from taskrank.estimators.base import Composite
from taskrank.pool import SHIPPED_POOLS, Pool
from taskrank.resolve import leaves, prepared, score_sources
from taskrank.store import Artefact

SNAPSHOT = Path(__file__).parent / "data" / "artefact_ids.json"

_TUNED = dict(n_examples=12, batch_size=4, n_eval=4)
_SOURCE_MODELS = dict(source_examples=16, source_epochs=1, target_examples=12, max_length=32, bf16=False)
# small settings per method so each prepares in about a second on the tiny model; a method not
# listed runs with its defaults (still on the tiny model and tiny tasks)
TINY = {
    **{n: _TUNED for n in ("tupate-lora", "tupate-bitfit", "tupate-prefix")},
    **{n: {**_TUNED, "prompt_length": 4}
       for n in ("prompt-feature", "prompt-unigram", "prompt-flatten", "prompt-bigram", "prompt-max")},
    **{n: dict(n_examples=12, batch_size=4, n_fisher=8, fisher_batch_size=4) for n in ("taskemb", "curvegrad")},
    **{n: _SOURCE_MODELS for n in ("logme", "leep", "nce", "frozen-transfer")},
    "esm-logme": {**_SOURCE_MODELS, "esm_epochs": 1},
    "roe": dict(n_source=6, n_target=4),
    **{n: dict(n_examples=12) for n in ("textemb", "semb", "vocab")},
}
# methods whose prepare/score is not run here, and why
SLOW = {
    "llm-similarity": "loads a 135M-parameter LLM (about a minute on CPU); tests/test_llm_similarity.py covers it",
}


def current_ids() -> dict[str, dict[str, list[str]]]:
    """Per method name (composites by their example argument): the artefact ids of the estimators
    that hold artefacts (a composite's members), as sources and as targets."""
    out = {}
    for name in method_names():
        found = leaves([get_estimator(name)])
        out[name] = {"artefact_ids": [e.artefact_id for e in found],
                     "target_artefact_ids": [e.target_artefact_id for e in found]}
    return out


# ----------------------------------------------------------------------------- registration and parameters


def test_every_estimator_class_registers_itself_on_import():
    """In a fresh interpreter: ``import taskrank.estimators`` registers every concrete class that
    any module of the package defines (so no module is left unimported, no class undecorated)."""
    code = """
import importlib, inspect, json, pkgutil
import taskrank.estimators as pkg
from taskrank.estimators.base import Estimator
registered = dict(pkg.ESTIMATORS)
found = {}
for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
    module = importlib.import_module(info.name)
    for obj in vars(module).values():
        if (inspect.isclass(obj) and issubclass(obj, Estimator) and obj.__module__ == module.__name__
                and not inspect.isabstract(obj) and "name" in vars(obj) and not obj.__name__.startswith("_")):
            found[obj.name] = obj.__qualname__
print(json.dumps({"missing": sorted(n for n in found if n not in registered),
                  "wrong": sorted(n for n in found if n in registered and registered[n].__qualname__ != found[n]),
                  "n": len(found)}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["missing"] == [] and result["wrong"] == []
    assert result["n"] == len([c for c in ESTIMATORS.values() if "name" in vars(c)]) >= 20


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_get_params_round_trips(name):
    for params in ({}, TINY.get(name, {})):
        est = get_estimator(name, **params)
        again = get_estimator(name, **est.get_params())
        assert again.get_params() == est.get_params()
        assert (again.name, type(again)) == (est.name, type(est))
        if not isinstance(est, Composite):
            assert (again.artefact_id, again.target_artefact_id) == (est.artefact_id, est.target_artefact_id)
        json.dumps(est.get_params())  # parameters are JSON (they are hashed into ids and kept in configs)


@pytest.mark.parametrize("name", ["taskshop:size,lam=0.5,normalise=zscore", "ensemble:textemb+size",
                                  "meanrank:vocab+size", "taskshop:ensemble:size+random,lam=0.2"])
def test_composite_names_round_trip(name):
    est = get_estimator(name)
    again = get_estimator(est.name)
    assert again.get_params() == est.get_params() and again.name == est.name
    assert [m.artefact_id for m in leaves([again])] == [m.artefact_id for m in leaves([est])]


def test_every_composite_prefix_has_an_example_that_builds():
    for prefix, factory in COMPOSITES.items():
        est = get_estimator(f"{prefix}:{factory.example}")
        assert isinstance(est, Composite) and est.name.startswith(f"{prefix}:") and factory.summary


# ----------------------------------------------------------------------------- artefact ids


def test_artefact_ids_match_the_snapshot():
    snapshot = json.loads(SNAPSHOT.read_text())
    now = current_ids()
    new = sorted(set(now) - set(snapshot))
    gone = sorted(set(snapshot) - set(now))
    changed = sorted(n for n in set(now) & set(snapshot) if now[n] != snapshot[n])
    assert not changed, (f"artefact ids changed for {changed}: artefacts already made (the shipped pools, users' "
                         "stores) would be orphaned. If deliberate, rebuild the pools and run "
                         "'python tests/test_estimator_contract.py --update'")
    assert not new and not gone, (f"methods added {new} / removed {gone}: "
                                  "run 'python tests/test_estimator_contract.py --update' and commit the snapshot")


@pytest.mark.parametrize("pool_name", sorted(p.name for p in SHIPPED_POOLS.iterdir() if (p / "pool.json").is_file()))
def test_every_shipped_artefact_folder_is_what_the_code_computes(pool_name):
    pool = Pool.open(pool_name)
    folders = sorted(p.name for p in (SHIPPED_POOLS / pool_name / "artefacts").iterdir() if p.is_dir())
    assert folders
    computed = set()
    for name in method_names():
        computed |= {e.artefact_id for e in leaves([pool.estimator(name), get_estimator(name)])}
    assert [f for f in folders if f not in computed] == []
    # and each folder's artefacts say they were made under that id
    for folder in folders:
        config = next((SHIPPED_POOLS / pool_name / "artefacts" / folder).glob("*/*/config.json"))
        made = json.loads(config.read_text())
        assert made.get("artefact_id", folder) == folder, config


# ----------------------------------------------------------------------------- prepare / score


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from taskrank.models import BaseModel, default_model_path

    root = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), max_position_embeddings=64, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64)).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return BaseModel(str(root), max_length=32)


@pytest.fixture(scope="module")
def tiny_tasks(tmp_path_factory):
    """A target and two sources, as task folders (the source-model methods read their data back)."""
    from taskrank.tasks import load_task

    root = tmp_path_factory.mktemp("tasks")
    out = []
    for name, words in (("target", ["apple", "pear"]), ("cars", ["car", "bus"]), ("fruit", ["pear", "plum"])):
        df = pd.DataFrame({"text": [f"{w} is {v} {i}" for i in range(8) for w in words for v in ("good", "bad")],
                           "label": ["pos", "neg"] * (8 * len(words))})
        (root / name).mkdir()
        df.to_csv(root / name / "train.csv", index=False)
        df.iloc[:8].to_csv(root / name / "validation.csv", index=False)
        out.append(load_task(root / name))
    return out


def _settings(tmp_path_factory) -> dict:
    finetuned = str(tmp_path_factory.getbasetemp() / "finetuned")
    return {n: ({**p, "finetuned_dir": finetuned} if "source_examples" in p else p) for n, p in TINY.items()}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_prepare_and_score_shapes_and_determinism(name, tiny_model, tiny_tasks, tmp_path_factory):
    if name in SLOW:
        pytest.skip(SLOW[name])
    target, *sources = tiny_tasks
    settings = _settings(tmp_path_factory)
    make = lambda: get_estimator(name, model=tiny_model, defaults=settings)  # noqa: E731
    est = make()
    metas = [s.metadata() for s in sources]
    for leaf in leaves([est]):
        made = [leaf.prepare(s) for s in sources] + [leaf.prepare_target(target)]
        for artefact, task in zip(made, [*sources, target]):
            assert isinstance(artefact, Artefact)
            # tensors may be empty (random, or source models that live in the fine-tuned cache)
            assert isinstance(artefact.tensors, dict) and all(isinstance(v, np.ndarray) for v in artefact.tensors.values())
            assert artefact.config["fingerprint"] == task.fingerprint
            assert artefact.config["base_model"] == tiny_model.model_id
            json.dumps(artefact.config)  # a config is JSON (never pickle)
        scores = np.asarray(leaf.score(made[-1], made[:-1]))
        assert scores.shape == (len(sources),) and np.isfinite(scores).all() and scores.dtype.kind == "f"
    first = score_sources(est, target, metas, prepared(None, sources))
    again = score_sources(make(), target, metas, prepared(None, sources))
    assert first.shape == (len(sources),) and np.isfinite(first).all()
    np.testing.assert_allclose(again, first, rtol=1e-6, atol=1e-9)


if __name__ == "__main__":  # python tests/test_estimator_contract.py --update
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_estimator_contract.py --update")
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(json.dumps(current_ids(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
