"""From an estimator to artefacts and scores: the one place that walks composites down to their
members and finds (or prepares) a source's or a target's artefact, so ranking, seed variance, pool
building, evaluation and the benchmarks never disagree on where an artefact lives.

Where artefacts live
  * a source's: ``(artefact_id, base model, fingerprint)`` in a pool's store (or any store);
  * a target's: ``(target_artefact_id, base model, fingerprint)`` in the user's cache, except for a
    method that prepares targets as it prepares sources (``target_is_source``), where a source
    artefact of the same task serves. Methods that prepare targets differently (roe, esm-logme,
    logme, leep, nce) must never have a target artefact filed under the source id, or a later
    ranking with that task as a source would read the wrong artefact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from .estimators.base import Composite, Estimator
from .store import Artefact, Store
from .tasks import Task


def leaves(estimators: Iterable[Estimator]) -> list[Estimator]:
    """The estimators that have artefacts: composites replaced by their members, recursively; one
    per artefact kind (artefact id and base model), first seen first."""
    out: dict[tuple[str, str], Estimator] = {}

    def walk(estimator: Estimator) -> None:
        if isinstance(estimator, Composite):
            for member in estimator.members:
                walk(member)
        else:
            out.setdefault((estimator.artefact_id, estimator.model.model_id), estimator)

    for estimator in estimators:
        walk(estimator)
    return list(out.values())


def combined(estimator: Estimator, target: str, sources: Sequence[str],
             leaf_scores: Callable[[Estimator], np.ndarray]) -> np.ndarray:
    """Scores of ``sources`` for ``target``: a plain estimator's from ``leaf_scores``; a composite
    combines its members' scores (recursively)."""
    if isinstance(estimator, Composite):
        member = [combined(m, target, sources, leaf_scores) for m in estimator.members]
        return np.asarray(estimator.combine(target, list(sources), member), dtype=np.float64)
    return np.asarray(leaf_scores(estimator), dtype=np.float64)


def source_key(estimator: Estimator, fingerprint: str) -> tuple[str, str, str]:
    return estimator.artefact_id, estimator.model.model_id, fingerprint


def find_source(estimator: Estimator, store: Store, fingerprint: str) -> Artefact | None:
    """A source artefact already in ``store``, or None."""
    return store.load(*source_key(estimator, fingerprint))


def source_artefact(estimator: Estimator, task: Task, store: Store | None = None) -> Artefact:
    """A source's artefact: from ``store``, else prepared now (and kept there)."""
    return _stored_or_made(store, source_key(estimator, task.fingerprint), lambda: estimator.prepare(task))


def _stored_or_made(store: Store | None, key: tuple, make: Callable[[], Artefact]) -> Artefact:
    """The artefact under ``key`` in ``store``, else ``make()`` (kept there when there is a store)."""
    found = store.load(*key) if store is not None else None
    if found is None:
        found = make()
        if store is not None:
            store.save(*key, found)
    return found


def target_artefact(estimator: Estimator, target: Task, cache: Store | None = None,
                    sources: Store | None = None) -> Artefact:
    """The target side's artefact: the source artefact of the same task in ``sources`` (a pool's
    store) when the method prepares targets as sources (so evaluating on a pool's tasks tunes
    nothing again), else from ``cache`` under the target id, else prepared now (and cached)."""
    estimator.check_task(target)
    if sources is not None and estimator.target_is_source:
        found = find_source(estimator, sources, target.fingerprint)
        if found is not None:
            return found
    key = (estimator.target_artefact_id, estimator.model.model_id, target.fingerprint)
    return _stored_or_made(cache, key, lambda: estimator.prepare_target(target))


def score_sources(estimator: Estimator, target: Task, sources: Sequence[dict],
                  artefacts: Callable[[Estimator, list[dict]], list[Artefact]],
                  cache: Store | None = None, store: Store | None = None) -> np.ndarray:
    """One score per source (pool metadata: name, fingerprint, type); ``artefacts(estimator,
    metas)`` gives the sources' artefacts (a pool's, or prepared into a store); a source of a type
    the method is not defined for gets NaN (ranked last); composites combine their members."""
    names = [s["name"] for s in sources]

    def leaf(est: Estimator) -> np.ndarray:
        usable = [i for i, s in enumerate(sources) if est.supports(s.get("type", "classification"))]
        scores = np.full(len(sources), np.nan)
        if usable:
            scores[usable] = est.score(target_artefact(est, target, cache, store),
                                       artefacts(est, [sources[i] for i in usable]))
        return scores

    return combined(estimator, target.name, names, leaf)


def prepared(store: Store | None, tasks: Sequence[Task]) -> Callable[[Estimator, list[dict]], list[Artefact]]:
    """``artefacts`` for :func:`score_sources` over tasks at hand: each found in ``store`` or prepared."""
    by_fingerprint = {t.fingerprint: t for t in tasks}
    return lambda est, metas: [source_artefact(est, by_fingerprint[m["fingerprint"]], store) for m in metas]
