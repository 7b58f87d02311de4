"""Issue #15 (structure): one artefact resolver (composites walked once; a source's artefact under
the source id, a target's under the target id) shared by ranking, seeds, pool, evaluation."""

import numpy as np
import pandas as pd
import pytest

from taskrank.estimators import get_estimator
from taskrank.pool import Pool
from taskrank.ranking import rank
from taskrank.resolve import combined, leaves, source_artefact, target_artefact
from taskrank.seeds import seed_variance
from taskrank.store import Store
from taskrank.tasks import Task, TaskSpec


def _task(name: str, words: list[str]) -> Task:
    df = pd.DataFrame({"text": [f"{w} sentence {i}" for i in range(6) for w in words],
                       "label": ["a", "b"] * (3 * len(words))})
    return Task(TaskSpec(name=name, type="classification", labels=("a", "b")), {"train": df})


@pytest.fixture(scope="module")
def tasks():
    return [_task(n, words) for n, words in (("A", ["apple", "pear"]), ("B", ["car", "bus"]), ("C", ["pear", "bus"]))]


def test_seed_variance_files_a_target_artefact_under_the_target_id(tmp_path, tasks):
    """RoE prepares a target differently (n_target examples, role 'target'): a seed-variance run
    that stored it under the source id made the next run, with that task as a source, read a
    target artefact as a source (RoE refuses it; other methods would score it silently)."""
    a, b, c = tasks
    store = Store(tmp_path / "store")
    params = dict(n_source=5, n_target=3)
    seed_variance("roe", a, [b, c], seeds=(0,), store=store, **params)
    est = get_estimator("roe", **params)
    model = est.model.model_id
    assert not store.has(est.artefact_id, model, a.fingerprint)          # the target is not a source
    assert store.has(est.target_artefact_id, model, a.fingerprint)
    assert store.load(est.artefact_id, model, b.fingerprint).config["role"] == "source"
    second = seed_variance("roe", b, [a, c], seeds=(0,), store=store, **params)
    expected = est.score(est.prepare_target(b), [est.prepare(a), est.prepare(c)])
    np.testing.assert_allclose(second.scores.loc[0, ["A", "C"]].to_numpy(), expected, rtol=1e-6)


def test_seeds_and_ranking_read_the_same_artefacts(tmp_path, tasks, monkeypatch):
    a, b, c = tasks
    pool = Pool(tmp_path / "pool")
    est = get_estimator("textemb")
    pool.build([b, c], [est])
    ranked = rank(a, pool, est, cache=Store(tmp_path / "cache")).table.set_index("source")["score"]
    prepared = []
    real = type(est).prepare
    monkeypatch.setattr(type(est), "prepare", lambda self, task: prepared.append(task.name) or real(self, task))
    sv = seed_variance("textemb", a, [b, c], seeds=(0,), store=pool.store)
    np.testing.assert_allclose(sv.scores.loc[0, ["B", "C"]].to_numpy(), ranked[["B", "C"]].to_numpy(), rtol=1e-6)
    assert prepared == ["A"]                                             # the sources came from the pool


def test_leaves_walk_nested_composites_once_per_artefact():
    est = get_estimator("taskshop:ensemble:textemb+semb")
    names = [e.name for e in leaves([est, get_estimator("semb"), get_estimator("tupate-ensemble")])]
    assert names == ["textemb", "semb", "tupate-lora", "tupate-bitfit", "tupate-prefix"]


def test_combined_applies_each_composites_combine():
    est = get_estimator("ensemble:random+size")
    per_leaf = {"random": np.array([1.0, 2.0, 3.0]), "size": np.array([3.0, 2.0, 1.0])}
    got = combined(est, "t", ["x", "y", "z"], lambda e: per_leaf[e.name])
    np.testing.assert_allclose(got, est.combine("t", ["x", "y", "z"], list(per_leaf.values())))


def test_target_artefact_prefers_the_pools_own_when_prepared_alike(tmp_path, tasks):
    a = tasks[0]
    est = get_estimator("textemb")
    pool_store, cache = Store(tmp_path / "pool"), Store(tmp_path / "cache")
    made = source_artefact(est, a, pool_store)
    assert target_artefact(est, a, cache, pool_store) is not None
    assert not any(cache.fs.find(cache.root))                            # served from the pool, nothing cached
    roe = get_estimator("roe", n_source=4, n_target=2)
    source_artefact(roe, a, pool_store)
    t = target_artefact(roe, a, cache, pool_store)
    assert t.config["role"] == "target" and cache.has(roe.target_artefact_id, roe.model.model_id, a.fingerprint)
    np.testing.assert_allclose(target_artefact(est, a, None, pool_store).tensors["embedding"], made.tensors["embedding"])


def test_missing_artefact_names_the_base_models_the_pool_has(tmp_path, tasks):
    """The message names the model ids a user can pass to --model, not the store's folder names."""
    from taskrank.store import Artefact, ArtefactError

    a = tasks[0]
    pool = Pool(tmp_path / "pool")
    est = get_estimator("size")
    pool.store.save(est.artefact_id, "org/model-a", a.fingerprint, Artefact({"size": np.ones(1)}, {"base_model": "org/model-a"}))
    with pytest.raises(ArtefactError) as e:
        pool.artefacts(est, [a.metadata()])
    assert "'size'" in str(e.value) and "base model(s) org/model-a only" in str(e.value)
    assert "org--model-a" not in str(e.value)
