"""TuPaTE and soft-prompt constructions against values computed by hand on small tensors (no training)."""

import math

import numpy as np
import pytest

from taskrank.estimators import ESTIMATORS, get_estimator
from taskrank.estimators.tuned import (
    bigram_similarity, bitfit_layer_vectors, centred, ensemble_mean, layer_average, lora_layer_vectors,
    max_similarity, normalise_tokens, prefix_layer_vectors, prefix_task_embedding, prompt_feature, prompt_flatten,
    prompt_similarity, prompt_unigram, tupate_embedding,
)
from taskrank.store import Artefact

# target prompt P: tokens (3,4) and (1,0) -> unit (.6,.8), (1,0); source prompt Q: (0,2), (0,1) -> (0,1), (0,1)
P = np.array([[3.0, 4.0], [1.0, 0.0]])
Q = np.array([[0.0, 2.0], [0.0, 1.0]])


def test_tokens_are_normalised_first():
    np.testing.assert_allclose(normalise_tokens(P), [[0.6, 0.8], [1.0, 0.0]])


def test_feature():
    np.testing.assert_allclose(prompt_feature(P), [0.8, 0.4])
    # cos((.8,.4), (0,1)) = .4 / sqrt(.8)
    assert prompt_similarity(P, Q, "feature") == pytest.approx(0.4 / math.sqrt(0.8))


def test_unigram():
    np.testing.assert_allclose(prompt_unigram(P), [0.7, 0.5])
    # cos((.7,.5), (.5,.5)) = .6 / (sqrt(.74) * sqrt(.5))
    assert prompt_similarity(P, Q, "unigram") == pytest.approx(0.6 / (math.sqrt(0.74) * math.sqrt(0.5)))


def test_flatten():
    np.testing.assert_allclose(prompt_flatten(P), [0.6, 0.8, 1.0, 0.0])
    # (.6,.8,1,0) . (0,1,0,1) = .8; both norms sqrt(2)
    assert prompt_similarity(P, Q, "flatten") == pytest.approx(0.4)


def test_bigram_pairs_adjacent_tokens():
    # three tokens: bigrams (t0,t1) and (t2, zeros)
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    b = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # pair 1: (1,0,0,1).(1,0,1,0) = 1, norms sqrt2 -> .5 ; pair 2: (1,0,0,0).(0,1,0,0) = 0
    assert bigram_similarity(a, b) == pytest.approx(0.25)
    # with unit tokens and an even length BIGRAM equals FLATTEN (the mean token-wise cosine)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    assert prompt_similarity(x, y, "bigram") == pytest.approx(prompt_similarity(x, y, "flatten"))


def test_max_is_asymmetric():
    # each source token (0,1) best matches target token (.6,.8): .8 ; each target token's best: .8 and 0
    assert prompt_similarity(P, Q, "max") == pytest.approx(0.8)
    assert prompt_similarity(P, Q, "max", direction="target") == pytest.approx(0.4)
    assert max_similarity(Q, P) == pytest.approx(0.8)


def test_lora_layer_vectors_concatenate_a_and_b_then_average():
    prefix = "encoder.base_model.model.encoder.layer"
    state = {
        f"{prefix}.0.attention.self.query.lora_A.default.weight": np.array([[1.0, 2.0]]),
        f"{prefix}.0.attention.self.query.lora_B.default.weight": np.array([[3.0], [4.0]]),
        f"{prefix}.0.attention.self.value.lora_A.default.weight": np.array([[5.0, 6.0]]),
        f"{prefix}.0.attention.self.value.lora_B.default.weight": np.array([[7.0], [8.0]]),
        f"{prefix}.1.attention.self.query.lora_A.default.weight": np.array([[0.0, 0.0]]),
        f"{prefix}.1.attention.self.query.lora_B.default.weight": np.array([[1.0], [1.0]]),
        f"{prefix}.1.attention.self.value.lora_A.default.weight": np.array([[2.0, 2.0]]),
        f"{prefix}.1.attention.self.value.lora_B.default.weight": np.array([[3.0], [3.0]]),
        "head.weight": np.array([[9.0, 9.0]]),
    }
    layers = lora_layer_vectors(state)
    np.testing.assert_allclose(layers, [[1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 1, 1, 2, 2, 3, 3]])
    np.testing.assert_allclose(tupate_embedding(state, "lora", 2), [0.5, 1, 2, 2.5, 3.5, 4, 5, 5.5])


def test_bitfit_layer_vectors_leave_out_non_layer_biases():
    state = {
        "encoder.embeddings.LayerNorm.bias": np.array([100.0]),
        "encoder.encoder.layer.0.attention.self.query.bias": np.array([1.0, 2.0]),
        "encoder.encoder.layer.0.output.LayerNorm.bias": np.array([3.0]),
        "encoder.encoder.layer.1.attention.self.query.bias": np.array([5.0, 6.0]),
        "encoder.encoder.layer.1.output.LayerNorm.bias": np.array([7.0]),
        "encoder.pooler.dense.bias": np.array([100.0]),
        "head.bias": np.array([100.0]),
    }
    np.testing.assert_allclose(bitfit_layer_vectors(state), [[1, 2, 3], [5, 6, 7]])
    np.testing.assert_allclose(tupate_embedding(state, "bitfit", 2), [3, 4, 5])


def test_prefix_averaged_over_positions_then_layers():
    # 2 positions, 2 layers x [key(1); value(1)]: mean over positions (2,3,4,5) -> layers (2,3), (4,5) -> (3,4)
    prefix = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]])
    np.testing.assert_allclose(prefix_layer_vectors(prefix, 2), [[2, 3], [4, 5]])
    state = {"encoder.prompt_encoder.default.embedding.weight": prefix, "head.bias": np.zeros(2)}
    np.testing.assert_allclose(tupate_embedding(state, "prefix", 2, "position-mean"), [3, 4])
    # the default (paper): positions kept, the 4 key/value slices of width 1 averaged: (1+2+3+4)/4, (3+4+5+6)/4
    np.testing.assert_allclose(tupate_embedding(state, "prefix", 2), [2.5, 4.5])
    np.testing.assert_allclose(layer_average([[1, 2], [3, 4], [5, 9]]), [3, 5])


def test_prefix_constructions_by_hand():
    # 2 positions; 2 layers; hidden 2. peft's row layout: [key layer 0 | value layer 0 | key layer 1 | value layer 1]
    prefix = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
                       [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0]])
    # paper: per position the mean of the four (hidden 2) slices -> position 0 (4, 5), position 1 (0, 1)
    np.testing.assert_allclose(prefix_task_embedding(prefix, 2), [4, 5, 0, 1])
    # released extract_ptuning_v2_task_emb: embedding.weight.mean(0), layers kept
    np.testing.assert_allclose(prefix_task_embedding(prefix, 2, "released"), [0.5, 1, 1.5, 2, 2.5, 3, 3.5, 6])
    # positions averaged, then the two layers' [key; value] vectors (.5,1,1.5,2) and (2.5,3,3.5,6)
    np.testing.assert_allclose(prefix_task_embedding(prefix, 2, "position-mean"), [1.5, 2, 2.5, 4])
    with pytest.raises(ValueError, match="prefix_embedding"):
        prefix_task_embedding(prefix, 2, "mean")


def test_prefix_embedding_is_a_prepare_parameter_of_tupate_prefix_only():
    default = get_estimator("tupate-prefix")
    assert default.prefix_embedding == "paper"
    assert get_estimator("tupate-prefix", prefix_embedding="released").artefact_id != default.artefact_id
    assert "prefix_embedding" not in get_estimator("tupate-lora").get_params()
    assert [m.prefix_embedding for m in get_estimator("tupate-ensemble").members][-1] == "paper"
    with pytest.raises(ValueError, match="prefix_embedding"):
        get_estimator("tupate-prefix", prefix_embedding="layers")


def test_ensemble_is_the_mean_similarity():
    np.testing.assert_allclose(ensemble_mean([np.array([1.0, 0.0]), np.array([0.5, 0.5]), np.array([0.0, 1.0])]),
                               [0.5, 0.5])


def test_centring_options():
    t, s = np.array([1.0, 0.0]), np.array([[0.0, 1.0], [2.0, 2.0]])
    ct, cs = centred(t, s, "pool")  # mean (1, 1)
    np.testing.assert_allclose(ct, [0, -1])
    np.testing.assert_allclose(cs, [[-1, 0], [1, 1]])
    it, is_ = centred(t, s, "init", np.array([1.0, -1.0]), np.array([[0.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(it, [0, 1])
    np.testing.assert_allclose(is_, [[0, 1], [1, 1]])


def _artefact(name, **tensors):
    return Artefact({k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, {"task": name})


def test_tupate_scores_with_and_without_centring():
    target = _artefact("t", embedding=[1.0, 0.0], init_embedding=[0.0, 0.0])
    sources = [_artefact("a", embedding=[0.0, 1.0], init_embedding=[0.0, 0.0]),
               _artefact("b", embedding=[2.0, 3.0], init_embedding=[1.0, 2.0])]
    plain = get_estimator("tupate-bitfit", centre="none").score(target, sources)
    np.testing.assert_allclose(plain, [0.0, 2 / math.sqrt(13)])
    pooled = get_estimator("tupate-bitfit", centre="pool").score(target, sources)
    # mean (1, 4/3): target (0,-4/3), a (-1,-1/3), b (1,5/3)
    np.testing.assert_allclose(pooled, [(4 / 9) / (4 / 3 * math.sqrt(1 + 1 / 9)),
                                        (-20 / 9) / (4 / 3 * math.sqrt(1 + 25 / 9))])
    init = get_estimator("tupate-bitfit").score(target, sources)  # the default: minus the untrained state
    np.testing.assert_allclose(init, [0.0, 1 / math.sqrt(2)])
    assert get_estimator("tupate-ensemble").centre == "init" and get_estimator("prompt-flatten").centre == "none"


def test_prompt_estimators_share_one_artefact_and_score_by_construction():
    names = ["prompt-feature", "prompt-unigram", "prompt-flatten", "prompt-bigram", "prompt-max"]
    ids = {get_estimator(n, direction="target" if n == "prompt-max" else "source").artefact_id for n in names}
    assert len(ids) == 1 and ids.pop().startswith("prompt-")
    assert get_estimator("prompt-max", seed=1).artefact_id != get_estimator("prompt-max").artefact_id
    target, source = _artefact("t", prompt=P, init_prompt=np.zeros_like(P)), _artefact("s", prompt=Q, init_prompt=np.zeros_like(Q))
    expected = {"prompt-feature": 0.4 / math.sqrt(0.8), "prompt-flatten": 0.4, "prompt-max": 0.8}
    for name, value in expected.items():
        assert get_estimator(name).score(target, [source])[0] == pytest.approx(value)
    assert get_estimator("prompt-max", direction="target").score(target, [source])[0] == pytest.approx(0.4)


def test_tuned_estimators_registered_with_checkpoint_parameter():
    for name in ["tupate-lora", "tupate-bitfit", "tupate-prefix", "tupate-ensemble", "prompt-feature",
                 "prompt-unigram", "prompt-flatten", "prompt-bigram", "prompt-max"]:
        assert name in ESTIMATORS
        assert get_estimator(name).checkpoint == "early"
    ensemble = get_estimator("tupate-ensemble", checkpoint="best")
    assert [m.name for m in ensemble.members] == ["tupate-lora", "tupate-bitfit", "tupate-prefix"]
    assert all(m.checkpoint == "best" for m in ensemble.members)
    assert get_estimator("tupate-lora", checkpoint="best").artefact_id != get_estimator("tupate-lora").artefact_id
    assert get_estimator("tupate-lora", centre="pool").artefact_id == get_estimator("tupate-lora").artefact_id
    with pytest.raises(ValueError, match="checkpoint"):
        get_estimator("tupate-lora", checkpoint="late")


# ----------------------------------------------------------------------------------------------
# seed variance


def _tiny_task(name, words):
    import pandas as pd

    from taskrank.tasks import Task, TaskSpec

    df = pd.DataFrame({"text": [f"{w} {i}" for i in range(4) for w in words], "label": ["a", "b"] * (2 * len(words))})
    return Task(TaskSpec(name=name, type="classification", labels=("a", "b")), {"train": df})


def test_seed_variance_reports_spread_and_top_k_changes():
    from taskrank.seeds import seed_variance

    target, *sources = [_tiny_task(n, [n, "x"]) for n in ("t", "s1", "s2", "s3", "s4")]
    result = seed_variance("random", target, sources, seeds=(0, 1, 2), k=2)
    matrix = result.scores.to_numpy()
    for row, seed in enumerate((0, 1, 2)):
        est = get_estimator("random", seed=seed)
        np.testing.assert_allclose(matrix[row], est.score(est.prepare(target), [est.prepare(s) for s in sources]))
    table = result.table.set_index("source")
    np.testing.assert_allclose(table.loc[[s.name for s in sources], "mean"], matrix.mean(0))
    np.testing.assert_allclose(table.loc[[s.name for s in sources], "std"], matrix.std(0, ddof=1))
    tops = [frozenset(np.array([s.name for s in sources])[np.argsort(-row)[:2]]) for row in matrix]
    assert [frozenset(result.top_k[s]) for s in (0, 1, 2)] == tops
    changed = np.mean([tops[a] != tops[b] for a, b in ((0, 1), (0, 2), (1, 2))])
    assert result.summary["top_k_changed"] == pytest.approx(changed)
    shares = [np.mean([s.name in t for t in tops]) for s in sources]
    np.testing.assert_allclose(table.loc[[s.name for s in sources], "top_k_share"], shares)
    with pytest.raises(ValueError, match="no seed parameter"):
        seed_variance("size", target, sources)


def test_seed_variance_of_the_ensemble_reads_stored_artefacts(tmp_path):
    """Composite estimators pass the seed to their members; artefacts come from the store (no tuning)."""
    from taskrank.seeds import seed_variance
    from taskrank.store import Store

    target, *sources = [_tiny_task(n, [n, "y"]) for n in ("t", "s1", "s2")]
    store = Store(tmp_path)
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        for cls_name in ("tupate-lora", "tupate-bitfit", "tupate-prefix"):
            est = get_estimator(cls_name, seed=seed)
            for task in [target, *sources]:
                vec = rng.normal(size=4)
                store.save(est.artefact_id, est.model.model_id, task.fingerprint,
                           est.artefact(task, {"embedding": vec.astype(np.float32), "init_embedding": np.zeros(4, np.float32)}))
    result = seed_variance("tupate-ensemble", target, sources, seeds=(0, 1), k=1, store=store)
    for row, seed in enumerate((0, 1)):
        members = [get_estimator(n, seed=seed) for n in ("tupate-lora", "tupate-bitfit", "tupate-prefix")]
        load = lambda e, t: store.load(e.artefact_id, e.model.model_id, t.fingerprint)  # noqa: E731
        expected = np.mean([m.score(load(m, target), [load(m, s) for s in sources]) for m in members], axis=0)
        np.testing.assert_allclose(result.scores.to_numpy()[row], expected)
