"""Task-embedding estimators on real data: sentiment sources rank above trec/rte/wnli for sst2, and
every estimator of this family works through `taskrank pool build` + `taskrank rank`.

The real-data check uses small samples. TextEmb/SEMB run by default; the tuned estimators (which
train on every task) are marked slow. Measured ranks at the default sizes are in docs/estimators.md.
"""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from taskrank.cli import app
from taskrank.estimators import get_estimator
from taskrank.estimators.base import Composite
from taskrank.ordering import best_first as order
from taskrank.resolve import combined
from taskrank.tasks import load_task

TARGET = "sst2"
SOURCES = ["cr", "mpqa", "mr", "trec", "rte", "wnli"]
SENTIMENT = {"cr", "mpqa", "mr"}

FAST = {"textemb": {"n_examples": 100}, "semb": {"n_examples": 100}}
# small samples (200 examples, 2 epochs; 20 prompt tokens) so the whole pool tunes in minutes
TUNED = {
    "tupate-lora": {"n_examples": 200},
    "tupate-bitfit": {"n_examples": 200},
    "tupate-prefix": {"n_examples": 200},
    "tupate-ensemble": {},
    "prompt-feature": {"n_examples": 200, "prompt_length": 20},
    "prompt-max": {"n_examples": 200, "prompt_length": 20},
    # the default (Vu et al.'s) Fisher squares one summed gradient per batch of 32: with 128 examples
    # (4 batches) or 200 it put rte/wnli first for sst2 (measured); 256 (8 batches) ranks mr, mpqa, cr first
    "taskemb": {"n_examples": 256, "n_fisher": 256},
}


@pytest.fixture(scope="module")
def tasks(shared_tasks):
    return {name: load_task(shared_tasks / name) for name in [TARGET, *SOURCES]}


_artefacts: dict = {}


def _scores(estimator, tasks) -> np.ndarray:
    def leaf(est):
        def artefact(name):
            key = (est.artefact_id, name)
            if key not in _artefacts:
                _artefacts[key] = est.prepare(tasks[name])
            return _artefacts[key]

        return est.score(artefact(TARGET), [artefact(s) for s in SOURCES])

    return combined(estimator, TARGET, SOURCES, leaf)


def _mean_ranks(name, params, tasks):
    estimator = get_estimator(name, **params)
    if isinstance(estimator, Composite):  # the members with the ensemble's small-sample settings
        for member in estimator.members:
            member.n_examples = TUNED[member.name]["n_examples"]
    idx = order(SOURCES, np.asarray(_scores(estimator, tasks)))
    ranking = [SOURCES[i] for i in idx]
    ranks = {s: r + 1 for r, s in enumerate(ranking)}
    sentiment = np.mean([ranks[s] for s in SOURCES if s in SENTIMENT])
    others = np.mean([ranks[s] for s in SOURCES if s not in SENTIMENT])
    return sentiment, others, ranking


def test_textemb_weightings_by_hand():
    """Three texts of different lengths, each encoded alone (no padding): ``weighting="example"``
    (Vu et al.) is the mean over texts of each text's mean token vector; ``"token"`` the mean over
    all tokens; SEMB (mean pooling) equals the former."""
    import torch

    from taskrank.estimators.text import dataset_means
    from taskrank.models import BaseModel
    from taskrank.tasks import Task, TaskSpec

    texts = ["fine", "a rather long sentence about a film that nobody really liked at all", "good acting"]
    base = BaseModel()
    encoder = base.load()[1]
    per_text = []
    with torch.inference_mode():
        for t in texts:
            per_text.append(encoder(**base.tokenize([t])).last_hidden_state[0].double().numpy())
    lengths = [len(h) for h in per_text]
    assert len(set(lengths)) == 3
    example = np.mean([h.mean(0) for h in per_text], axis=0)
    token = np.concatenate(per_text).sum(0) / sum(lengths)
    means = dataset_means(base, texts)
    np.testing.assert_allclose(means["example"], example, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(means["token"], token, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(means["sentence"], example, rtol=1e-4, atol=1e-6)
    assert not np.allclose(example, token, rtol=1e-2)

    task = Task(TaskSpec(name="three", type="classification", labels=("a", "b")),
                {"train": pd.DataFrame({"text": texts, "label": ["a", "b", "a"]})})
    default = get_estimator("textemb", n_examples=3)
    by_token = get_estimator("textemb", n_examples=3, weighting="token")
    assert default.weighting == "example" and default.artefact_id != by_token.artefact_id
    np.testing.assert_allclose(default.prepare(task).tensors["embedding"], example, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(by_token.prepare(task).tensors["embedding"], token, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="weighting"):
        get_estimator("textemb", weighting="sentence")


@pytest.mark.parametrize("name", sorted(FAST))
def test_sentiment_sources_rank_above_others(name, tasks):
    sentiment, others, ranking = _mean_ranks(name, FAST[name], tasks)
    assert sentiment < others, f"{name}: {ranking}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TUNED))
def test_tuned_sentiment_sources_rank_above_others(name, tasks):
    sentiment, others, ranking = _mean_ranks(name, TUNED[name], tasks)
    assert sentiment < others, f"{name}: {ranking}"


# ----------------------------------------------------------------------------------------------
# command line: pool build + rank for every estimator of this family (tiny tasks)

METHODS = ["tupate-lora", "tupate-bitfit", "tupate-prefix", "prompt-feature", "prompt-unigram", "prompt-flatten",
           "prompt-bigram", "prompt-max", "taskemb", "curvegrad", "vocab"]


def _write_task(folder, rows):
    folder.mkdir(parents=True)
    df = pd.DataFrame(rows)
    df.to_json(folder / "train.jsonl", orient="records", lines=True)
    df.to_json(folder / "validation.jsonl", orient="records", lines=True)


def test_pool_build_and_rank_with_every_tuned_method(tmp_path, isolated_cache):
    words = {"pos": ["good", "fine", "great"], "neg": ["bad", "poor", "awful"]}
    topics = {"food": ["pasta", "bread", "soup"], "sport": ["tennis", "golf", "chess"]}
    _write_task(tmp_path / "tasks" / "reviews", [{"text": f"a {w} film", "label": k} for k in words for w in words[k]] * 2)
    _write_task(tmp_path / "tasks" / "topics", [{"text": f"i like {w}", "label": k} for k in topics for w in topics[k]] * 2)
    _write_task(tmp_path / "target", [{"text": f"the {w} book", "label": k} for k in words for w in words[k]] * 2)
    runner = CliRunner()
    args = ["pool", "build", str(tmp_path / "tasks"), "--out", str(tmp_path / "pool")]
    for method in METHODS:
        args += ["--method", method]
    built = runner.invoke(app, args, catch_exceptions=False)
    assert built.exit_code == 0, built.stderr
    for method in METHODS + ["tupate-ensemble"]:
        result = runner.invoke(app, ["rank", "--target", str(tmp_path / "target"), "--pool", str(tmp_path / "pool"),
                                     "--method", method, "--format", "json"], catch_exceptions=False)
        assert result.exit_code == 0, (method, result.stderr)
        rows = json.loads(result.stdout)
        assert sorted(r["source"] for r in rows) == ["reviews", "topics"], method
        assert all(np.isfinite(r["score"]) for r in rows), method
