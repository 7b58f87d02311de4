"""TaskEmb (empirical Fisher), CurveGrad and vocabulary overlap: hand-computed values, tiny models."""

import numpy as np
import pandas as pd
import pytest
import torch

from taskrank.estimators import get_estimator
from taskrank.estimators.baselines import (
    curve_gradients, is_stop_or_punctuation, reciprocal_rank_fusion, top_tokens, vocab_similarity,
)
from taskrank.estimators.fisher import empirical_fisher, rrf_scores
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


def test_vocab_top_measure_by_hand():
    # 2407.16245: top-n most frequent tokens after dropping stop words/punctuation, |A ∩ B| / n
    a, ca = np.array([1, 2, 3, 4, 5]), np.array([5, 4, 3, 2, 1])
    b, cb = np.array([2, 3, 6, 7]), np.array([1, 9, 8, 7])
    np.testing.assert_array_equal(top_tokens(a, ca, 3, drop=np.array([1])), [2, 3, 4])
    np.testing.assert_array_equal(top_tokens(b, cb, 3), [3, 6, 7])
    assert vocab_similarity(a, ca, b, cb, "top", top_n=3, drop=np.array([1])) == pytest.approx(1 / 3)
    # without the drop, token 1 takes a place: top-3 {1, 2, 3} vs {3, 6, 7}
    assert vocab_similarity(a, ca, b, cb, "top", top_n=3) == pytest.approx(1 / 3)
    assert vocab_similarity(a, ca, a, ca, "top", top_n=10) == pytest.approx(5 / 10)  # fewer tokens than n
    np.testing.assert_array_equal(top_tokens(np.array([12, 10, 11]), np.array([2, 2, 2]), 2), [10, 11])  # ties: id
    assert [is_stop_or_punctuation(t) for t in ["the", "The", ",", "...", "##s", "film", "don't"]] == \
        [True, True, True, True, False, False, True]


def test_vocab_top_estimator_drops_stop_words_and_punctuation(task):
    estimator = get_estimator("vocab", n_examples=8, measure="top", top_n=1000)
    tokenizer = estimator.model.load()[0]
    dropped = set(estimator.dropped_ids().tolist())
    ids = tokenizer.convert_tokens_to_ids
    assert {ids("the"), ids("a"), ids(","), ids("and")} <= dropped and ids("film") not in dropped
    artefact = estimator.prepare(task)
    assert estimator.artefact_id == get_estimator("vocab", n_examples=8).artefact_id  # a score-time choice
    kept = [t for t in artefact.tensors["tokens"] if t not in dropped]
    # 15 distinct tokens; a, an, that, and (stop words) and "," (punctuation) dropped: good, film, awful,
    # nobody, liked, great, bad, acting, poor, plot remain
    assert sorted(tokenizer.convert_ids_to_tokens(kept)) == sorted(
        ["good", "film", "awful", "nobody", "liked", "great", "bad", "acting", "poor", "plot"])
    assert estimator.score(artefact, [artefact])[0] == pytest.approx(10 / 1000)


def test_vocab_artefact_keeps_token_ids_only(task):
    estimator = get_estimator("vocab", n_examples=4)
    artefact = estimator.prepare(task)
    tokens = artefact.tensors["tokens"]
    tokenizer = estimator.model.load()[0]
    assert np.all(np.diff(tokens) > 0) and tokenizer.cls_token_id not in tokens and tokenizer.sep_token_id not in tokens
    assert artefact.tensors["counts"][list(tokens).index(tokenizer.convert_tokens_to_ids("awful"))] == 2
    assert estimator.score(artefact, [artefact])[0] == pytest.approx(1.0)


def test_taskemb_scores_the_chosen_component():
    target = _art("t", fisher_batch_layers=[[1.0, 0.0], [0.0, 0.0]], fisher_batch_pooled=[0.0, 1.0],
                  fisher_layers=[[0.0, 1.0], [0.0, 0.0]], fisher_pooled=[1.0, 1.0])
    source = _art("s", fisher_batch_layers=[[1.0, 0.0], [0.0, 5.0]], fisher_batch_pooled=[0.0, 2.0],
                  fisher_layers=[[0.0, 1.0], [0.0, 0.0]], fisher_pooled=[0.0, 2.0])
    assert get_estimator("taskemb").score(target, [source])[0] == pytest.approx(1 / np.sqrt(26))
    assert get_estimator("taskemb", component="pooled").score(target, [source])[0] == pytest.approx(1.0)
    assert get_estimator("taskemb", fisher="token").score(target, [source])[0] == pytest.approx(1.0)
    assert get_estimator("taskemb", fisher="token", component="pooled").score(target, [source])[0] == \
        pytest.approx(1 / np.sqrt(2))
    with pytest.raises(ValueError, match="fisher_batch_attention"):
        get_estimator("taskemb", component="attention").score(target, [source])
    assert get_estimator("taskemb").artefact_id == get_estimator("curvegrad").artefact_id
    for option in ({"component": "pooled"}, {"fisher": "token"}, {"fusion": "rrf"}):
        assert get_estimator("taskemb", **option).artefact_id == get_estimator("taskemb").artefact_id
    assert get_estimator("taskemb", n_examples=10).artefact_id != get_estimator("curvegrad").artefact_id
    assert get_estimator("taskemb", fisher_batch_size=8).artefact_id != get_estimator("taskemb").artefact_id
    with pytest.raises(ValueError, match="fisher"):
        get_estimator("taskemb", fisher="example")


def test_taskemb_rrf_by_hand():
    """ESM's fusion: a ranking of the sources per Fisher component by cosine distance (ties averaged),
    summed 1 / (60 + rank)."""
    target = _art("t", fisher_batch_layers=[[1, 0], [0, 1]], fisher_batch_pooled=[1, 1])
    sources = [_art("s1", fisher_batch_layers=[[1, 0], [1, 0]], fisher_batch_pooled=[1, 0]),
               _art("s2", fisher_batch_layers=[[0, 1], [0, 1]], fisher_batch_pooled=[1, 1]),
               _art("s3", fisher_batch_layers=[[1, 1], [1, 1]], fisher_batch_pooled=[0, 1])]
    # cosines: layer 0 (1, 0, .71) -> ranks 1, 3, 2; layer 1 (0, 1, .71) -> 3, 1, 2; pooled (.71, 1, .71) -> 2.5, 1, 2.5
    expected = [1 / 61 + 1 / 63 + 1 / 62.5, 1 / 63 + 1 / 61 + 1 / 61, 1 / 62 + 1 / 62 + 1 / 62.5]
    np.testing.assert_allclose(get_estimator("taskemb", fusion="rrf").score(target, sources), expected)
    comps = lambda a: {"pooled": a.tensors["fisher_batch_pooled"]}  # noqa: E731
    np.testing.assert_allclose(rrf_scores(comps(target), [comps(s) for s in sources], k=0), [1 / 2.5, 1, 1 / 2.5])


def _per_example_gradients(base, model, frame, task):
    """Each example alone (no padding): the gradient of its loss w.r.t. each layer's output, each
    layer's attention output and the pooled vector, and its token count."""
    attention = []
    hooks = [layer.attention.self.register_forward_hook(lambda m, a, out: attention.append(out[0]))
             for layer in model.encoder.encoder.layer]
    rows = []
    try:
        for text, label in zip(frame["text"], task.label_ids(frame=frame)):
            attention.clear()
            batch = base.tokenize([text])
            out = model.encoder(**batch, output_hidden_states=True)
            p = pool(out.last_hidden_state, batch["attention_mask"], base.pooling)
            loss = torch.nn.functional.cross_entropy(model.head(p), torch.tensor([label]))
            states = list(out.hidden_states[1:])
            grads = torch.autograd.grad(loss, states + list(attention) + [p])
            n = len(states)
            rows.append({"layers": [g[0].double() for g in grads[:n]],
                         "attention": [g[0].double() for g in grads[n:2 * n]],
                         "pooled": grads[-1][0].double(), "tokens": batch["input_ids"].shape[1]})
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def test_empirical_fisher_matches_per_example_gradients(task):
    """Both constructions against per-example gradients computed one example at a time.

    token: per-example gradients squared, summed over real tokens, / token count / example count.
    batch (Vu et al.): per batch of 2 the gradient of the batch-mean loss, i.e. (1/2) x the sum of
    the two examples' gradients, summed over tokens, squared, / the batch's tokens; summed over the
    two batches, / 4 examples."""
    base = BaseModel(max_length=32)
    torch.manual_seed(0)
    model = build_task_model(base.fresh_encoder(), 2, base.pooling).eval()
    frame = task.split("train").iloc[:4]
    fisher = empirical_fisher(base, task, model, frame, batch_size=2)
    rows = _per_example_gradients(base, model, frame, task)
    tokens = sum(r["tokens"] for r in rows)
    for kind in ("layers", "attention"):
        token = torch.stack([sum((r[kind][i] ** 2).sum(0) for r in rows) for i in range(6)])
        np.testing.assert_allclose(fisher[kind], (token / tokens / 4).numpy(), rtol=2e-3, atol=1e-12)
        summed = torch.zeros(6, 384, dtype=torch.float64)
        for pair in (rows[:2], rows[2:]):
            t_batch = sum(r["tokens"] for r in pair)
            summed += torch.stack([(sum(r[kind][i].sum(0) for r in pair) / 2) ** 2 / t_batch for i in range(6)])
        np.testing.assert_allclose(fisher[f"batch_{kind}"], (summed / 4).numpy(), rtol=2e-3, atol=1e-14)
    np.testing.assert_allclose(fisher["pooled"], (sum(r["pooled"] ** 2 for r in rows) / 4).numpy(), rtol=2e-3,
                               atol=1e-12)
    batch_pooled = sum((sum(r["pooled"] for r in pair) / 2) ** 2 / sum(r["tokens"] for r in pair)
                       for pair in (rows[:2], rows[2:]))
    np.testing.assert_allclose(fisher["batch_pooled"], (batch_pooled / 4).numpy(), rtol=2e-3, atol=1e-14)
    # the token construction does not depend on batching; the batch construction does
    one_batch = empirical_fisher(base, task, model, frame, batch_size=4)
    np.testing.assert_allclose(one_batch["layers"], fisher["layers"], rtol=1e-4)
    assert not np.allclose(one_batch["batch_layers"], fisher["batch_layers"], rtol=1e-2)
    assert all(p.requires_grad for p in model.parameters())  # left as it was


def test_taskemb_and_curvegrad_share_one_finetuning(task):
    taskemb = get_estimator("taskemb", n_examples=8, epochs=1, batch_size=4, n_fisher=4)
    artefact = taskemb.prepare(task)
    for kind in ("layers", "attention", "batch_layers", "batch_attention"):
        assert artefact.tensors[f"fisher_{kind}"].shape == (6, 384)
    assert artefact.tensors["fisher_pooled"].shape == artefact.tensors["fisher_batch_pooled"].shape == (384,)
    assert artefact.tensors["step_losses"].shape == (2,)
    curvegrad = get_estimator("curvegrad", n_examples=8, epochs=1, batch_size=4, n_fisher=4)
    assert curvegrad.artefact_id == taskemb.artefact_id
    assert curvegrad.score(artefact, [artefact, artefact]).shape == (2,)
