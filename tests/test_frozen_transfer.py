"""Frozen Transfer (ESM paper): a head on each frozen fine-tuned source model's target features."""

import numpy as np
import pytest

from taskrank.estimators import get_estimator
from taskrank.estimators.esm import tuned_encoder
from taskrank.estimators.frozen import FrozenTransfer, head_score, logistic_head, target_rows
from taskrank.estimators.source_models import LogmeEstimator
from taskrank.tasks import Task, load_task_folder

RECIPE = dict(source_examples=24, source_epochs=1, max_length=32, target_examples=40, eval_examples=30)


def test_logistic_head_is_scikit_learns_logistic_regression():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.7, size=120) > 0).astype(int) + (x[:, 2] > 1)
    w, b = logistic_head(x, y, 3, c=0.5)
    ours = np.exp(x @ w + b)
    ours /= ours.sum(1, keepdims=True)
    theirs = sklearn.LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_multiple_choice_is_answered_by_the_best_scored_choice():
    # 40 examples of 3 choices; feature 0 is high for the right choice (noisy), so most are answered
    rng = np.random.default_rng(1)
    labels = np.zeros(120, dtype=np.int64)
    labels[np.arange(40) * 3 + rng.integers(0, 3, 40)] = 1
    features = np.c_[labels + rng.normal(scale=0.3, size=120), rng.normal(size=120)]
    groups = np.repeat(np.arange(40), 3)
    held = groups >= 30
    acc = head_score(features, labels, held, groups, "multiple_choice", 2)
    right = features[:, 0][held].reshape(10, 3).argmax(1) == labels[held].reshape(10, 3).argmax(1)
    assert acc == pytest.approx(right.mean()) and acc >= 0.8


@pytest.fixture(scope="module")
def tiny(shared_tasks, tmp_path_factory):
    """Two real sources cut to 24 rows; sst2 as the target with 40 training and 30 validation rows."""
    root = tmp_path_factory.mktemp("tiny-frozen")
    for name, splits in (("cr", {"train": 24}), ("trec", {"train": 24}), ("sst2", {"train": 40, "validation": 30})):
        (root / name).mkdir()
        for split, n in splits.items():
            lines = (shared_tasks / name / f"{split}.jsonl").read_text().splitlines()[:n]
            (root / name / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return {t.name: t for t in load_task_folder(root)}


def test_scores_are_held_out_accuracy_of_a_head_on_the_frozen_source_model(tiny, tmp_path):
    sklearn = pytest.importorskip("sklearn.linear_model")
    work = str(tmp_path / "finetuned")
    frozen = get_estimator("frozen-transfer", finetuned_dir=work, **RECIPE)
    assert isinstance(frozen, FrozenTransfer)
    # the same fine-tuned models and source artefacts as LogME/LEEP/NCE: a pool built for one serves all
    logme = LogmeEstimator(finetuned_dir=work, source_examples=24, source_epochs=1, max_length=32)
    assert frozen.artefact_id == logme.artefact_id
    sources = [frozen.prepare(tiny["cr"]), frozen.prepare(tiny["trec"])]
    target = frozen.prepare_target(tiny["sst2"])
    assert target.tensors["held_out"].sum() == 30 and len(target.tensors["labels"]) == 70
    scores = frozen.score(target, sources)

    # directly: the source model embeds the target's rows, scikit-learn fits the head on the 40
    # training rows (standardised), accuracy on the 30 validation rows
    task = tiny["sst2"]
    train, held = target_rows(task, 40, 30, 0)
    for score, source in zip(scores, sources):
        encoder = tuned_encoder(frozen.model, frozen._model_dir(source))
        x_train = frozen.model.embed(task.texts(frame=train), encoder=encoder)
        x_held = frozen.model.embed(task.texts(frame=held), encoder=encoder)
        mean, std = x_train.mean(0), x_train.std(0)
        head = sklearn.LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit((x_train - mean) / std,
                                                                                task.label_ids(frame=train))
        expected = np.mean(head.predict((x_held - mean) / std) == task.label_ids(frame=held))
        assert score == pytest.approx(expected, abs=1 / 30 + 1e-9)  # at most one near-tied row apart
    assert 0.0 <= scores.min() and scores.max() <= 1.0


def test_a_target_with_nothing_to_hold_out_is_refused(tiny):
    from taskrank.errors import TaskrankError

    cr = tiny["cr"]
    small = Task(cr.spec, {**cr.splits, "train": cr.split("train").iloc[:4]}, cr.origin)
    with pytest.raises(TaskrankError, match="too few rows to hold some out"):
        FrozenTransfer(**RECIPE).prepare_target(small)
