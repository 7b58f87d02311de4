"""TaskEmb (empirical Fisher), CurveGrad and vocabulary overlap: hand-computed values, tiny models."""

import numpy as np
import pandas as pd
import pytest
import torch

from taskrank.estimators import get_estimator
from taskrank.estimators.baselines import curve_gradients, reciprocal_rank_fusion, vocab_similarity
from taskrank.estimators.fisher import empirical_fisher
from taskrank.models import BaseModel, pool
from taskrank.store import Artefact
from taskrank.tasks import Task, TaskSpec
from taskrank.tuning import build_task_model


@pytest.fixture(scope="module")
def task():
    texts = ["a good film", "an awful , awful film that nobody liked", "great", "bad acting and a poor plot"]
    df = pd.DataFrame({"text": texts * 2, "label": ["pos", "neg", "pos", "neg"] * 2})
    return Task(TaskSpec(name="toy", type="classification", labels=("neg", "pos")), {"train": df})


def test_curve_gradient_of_a_straight_line():
    x = (np.arange(100) + 0.5) / 100
    grads = curve_gradients(2.0 - x)
    # divided by the mean loss of the first 10% of training (1.95): slope -1/1.95 everywhere
    np.testing.assert_allclose(grads, np.full(5, -1 / 1.95), rtol=1e-9)
    assert curve_gradients([1.0, 0.5, 0.25]).shape == (5,)  # short curves still give five slopes


def test_reciprocal_rank_fusion_by_hand():
    values = np.array([[-3.0, -1.0], [-1.0, -2.0], [0.0, 0.0]])
    np.testing.assert_allclose(reciprocal_rank_fusion(values), [1 / 61 + 1 / 62, 1 / 62 + 1 / 61, 2 / 63])


def _art(name, **tensors):
    return Artefact({k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, {"task": name})


def test_curvegrad_prefers_sources_still_learning_whatever_the_target():
    x = (np.arange(40) + 0.5) / 40
    steep, flat = _art("steep", step_losses=1 - 0.8 * x), _art("flat", step_losses=np.full(40, 0.7))
    estimator = get_estimator("curvegrad")
    for target in (steep, flat):
        scores = estimator.score(target, [flat, steep])
        assert scores[1] > scores[0]


def test_vocab_similarity_by_hand():
    a, ca = np.array([1, 2, 3]), np.array([2, 1, 1])
    b, cb = np.array([2, 3, 4, 5]), np.array([1, 1, 1, 1])
    assert vocab_similarity(a, ca, b, cb) == pytest.approx(2 / 5)
    # relative frequencies (.5,.25,.25,0,0) and (0,.25,.25,.25,.25): sum of minima .5, of maxima 1.5
    assert vocab_similarity(a, ca, b, cb, "weighted") == pytest.approx(1 / 3)


def test_vocab_artefact_keeps_token_ids_only(task):
    estimator = get_estimator("vocab", n_examples=4)
    artefact = estimator.prepare(task)
    tokens = artefact.tensors["tokens"]
    tokenizer = estimator.model.load()[0]
    assert np.all(np.diff(tokens) > 0) and tokenizer.cls_token_id not in tokens and tokenizer.sep_token_id not in tokens
    assert artefact.tensors["counts"][list(tokens).index(tokenizer.convert_tokens_to_ids("awful"))] == 2
    assert estimator.score(artefact, [artefact])[0] == pytest.approx(1.0)


def test_taskemb_scores_the_chosen_component():
    target = _art("t", fisher_layers=[[1.0, 0.0], [0.0, 0.0]], fisher_pooled=[0.0, 1.0])
    source = _art("s", fisher_layers=[[1.0, 0.0], [0.0, 5.0]], fisher_pooled=[0.0, 2.0])
    assert get_estimator("taskemb").score(target, [source])[0] == pytest.approx(1 / np.sqrt(26))
    assert get_estimator("taskemb", component="pooled").score(target, [source])[0] == pytest.approx(1.0)
    assert get_estimator("taskemb").artefact_id == get_estimator("curvegrad").artefact_id
    assert get_estimator("taskemb", component="pooled").artefact_id == get_estimator("taskemb").artefact_id
    assert get_estimator("taskemb", n_examples=10).artefact_id != get_estimator("curvegrad").artefact_id


def test_empirical_fisher_matches_per_example_gradients(task):
    """Batched (summed loss) Fisher == per-example gradients, squared, summed over real tokens,
    divided by the token count and by the example count."""
    base = BaseModel(max_length=32)
    torch.manual_seed(0)
    model = build_task_model(base.fresh_encoder(), 2, base.pooling).eval()
    frame = task.split("train").iloc[:4]
    fisher = empirical_fisher(base, task, model, frame, batch_size=4)
    layers, pooled, tokens = torch.zeros(6, 384, dtype=torch.float64), torch.zeros(384, dtype=torch.float64), 0
    for text, label in zip(frame["text"], task.label_ids(frame=frame)):
        batch = base.tokenize([text])
        out = model.encoder(**batch, output_hidden_states=True)
        p = pool(out.last_hidden_state, batch["attention_mask"], base.pooling)
        loss = torch.nn.functional.cross_entropy(model.head(p), torch.tensor([label]))
        grads = torch.autograd.grad(loss, list(out.hidden_states[1:]) + [p])
        layers += torch.stack([(g[0].double() ** 2).sum(0) for g in grads[:-1]])
        pooled += grads[-1][0].double() ** 2
        tokens += batch["input_ids"].shape[1]
    np.testing.assert_allclose(fisher["layers"], (layers / tokens / 4).numpy(), rtol=2e-3, atol=1e-12)
    np.testing.assert_allclose(fisher["pooled"], (pooled / 4).numpy(), rtol=2e-3, atol=1e-12)
    assert all(p.requires_grad for p in model.parameters())  # left as it was


def test_taskemb_and_curvegrad_share_one_finetuning(task):
    taskemb = get_estimator("taskemb", n_examples=8, epochs=1, batch_size=4, n_fisher=4)
    artefact = taskemb.prepare(task)
    assert artefact.tensors["fisher_layers"].shape == (6, 384)
    assert artefact.tensors["fisher_pooled"].shape == (384,)
    assert artefact.tensors["step_losses"].shape == (2,)
    curvegrad = get_estimator("curvegrad", n_examples=8, epochs=1, batch_size=4, n_fisher=4)
    assert curvegrad.artefact_id == taskemb.artefact_id
    assert curvegrad.score(artefact, [artefact, artefact]).shape == (2,)
