"""LogME / LEEP / NCE through fine-tuned source models: artefacts name the model, not a path."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from taskrank.estimators.source_models import LeepEstimator, LogmeEstimator, NceEstimator
from taskrank.store import ArtefactError
from taskrank.tasks import load_task_folder

RECIPE = dict(source_examples=24, source_epochs=1, max_length=32, target_examples=40)


@pytest.fixture(scope="module")
def tiny(shared_tasks, tmp_path_factory):
    """Two real sources (cr: sentiment, trec: question type) cut to 24 rows, and sst2 as target."""
    root = tmp_path_factory.mktemp("tiny-sources")
    for name, n in (("cr", 24), ("trec", 24), ("sst2", 40)):
        (root / name).mkdir()
        lines = (shared_tasks / name / "train.jsonl").read_text().splitlines()[:n]
        (root / name / "train.jsonl").write_text("\n".join(lines) + "\n")
    return load_task_folder(root)


def test_scores_from_cached_models_then_retrained_then_clear_error(tiny, tmp_path, monkeypatch):
    tasks = {t.name: t for t in tiny}
    work = tmp_path / "finetuned"
    logme = LogmeEstimator(finetuned_dir=str(work), **RECIPE)
    sources = [logme.prepare(tasks["cr"]), logme.prepare(tasks["trec"])]
    assert all("model_dir" not in s.config for s in sources)  # no absolute model path in a shippable artefact
    assert all("source_path" not in s.config and s.config["params"]["finetuned_dir"] is None for s in sources)
    target = logme.prepare_target(tasks["sst2"])
    first = logme.score(target, sources)
    assert np.isfinite(first).all()

    # the same models serve LEEP and NCE: nothing is trained again
    models = sorted(p.name for p in (work / "sources").iterdir())
    for cls in (LeepEstimator, NceEstimator):
        scores = cls(finetuned_dir=str(work), **RECIPE).score(target, sources)
        assert np.isfinite(scores).all()
    assert sorted(p.name for p in (work / "sources").iterdir()) == models

    # a lost model is retrained, deterministically, from the source's data, found by name in TASKRANK_DATA
    monkeypatch.setenv("TASKRANK_DATA", str(Path(tasks["cr"].origin).parent))
    shutil.rmtree(work / "sources" / models[0])
    np.testing.assert_allclose(logme.score(target, sources), first, rtol=1e-6)

    # with neither the model nor the data, a one-line error says how to get it
    shutil.rmtree(work / "sources" / models[0])
    monkeypatch.setenv("TASKRANK_DATA", str(tmp_path / "gone"))
    with pytest.raises(ArtefactError, match="TASKRANK_DATA.*pool build"):
        logme.score(target, sources)
