"""Prompt-training options (benchmarks/prompt_learning.py measures them): initialisation from the class
names or at random, a head-only phase that leaves the prompt untouched, the head's own learning rate;
the soft-prompt estimators' 20-token default (the earlier 100 keeps its artefact ids)."""

import numpy as np
import pandas as pd
import pytest

from taskrank.estimators import get_estimator
from taskrank.models import BaseModel
from taskrank.tasks import Task, TaskSpec
from taskrank.tuning import TuningConfig, fine_tune, keep_checkpoints

PROMPT = "encoder.prompt_encoder.default.embedding.weight"
WORDS = ["good", "great", "fine", "bad", "awful", "poor"]


@pytest.fixture(scope="module")
def task():
    rows = [{"text": f"a {w} film number {i}", "label": "positive" if w in WORDS[:3] else "negative"}
            for i in range(3) for w in WORDS]
    df = pd.DataFrame(rows)
    return Task(TaskSpec(name="toy", type="classification", labels=("negative", "positive")),
                {"train": df, "validation": df})


@pytest.fixture(scope="module")
def base():
    return BaseModel(max_length=16)


def tuned(base, task, **kw):
    config = TuningConfig(method="prompt", batch_size=8, max_length=16, prompt_length=5, **{"epochs": 1, **kw})
    keeper = keep_checkpoints(early_epoch=config.epochs)
    result = fine_tune(base, task, config, on_start=keeper.on_start, on_epoch_end=keeper if config.epochs else None)
    return result, result.checkpoints["init"], {k: v.detach().numpy() for k, v in result.model.named_parameters()}


def test_label_initialisation_repeats_the_class_names_tokens(base, task):
    _, init, _ = tuned(base, task, prompt_init="labels", epochs=0)
    tokenizer, encoder = base.load()
    ids = tokenizer("negative", add_special_tokens=False)["input_ids"] + tokenizer("positive", add_special_tokens=False)["input_ids"]
    words = encoder.embeddings.word_embeddings.weight.detach().numpy()
    expected = words[(ids * 5)[:5]]
    np.testing.assert_array_equal(init[PROMPT], expected)


def test_random_initialisation_has_the_vocabulary_scale_and_no_vocabulary_rows(base, task):
    _, init, _ = tuned(base, task, prompt_init="random", epochs=0)
    words = base.load()[1].embeddings.word_embeddings.weight.detach().numpy()
    assert init[PROMPT].std() == pytest.approx(words.std(), rel=0.1)
    assert all(np.abs(words - row).sum(1).min() > 1e-3 for row in init[PROMPT])
    again = tuned(base, task, prompt_init="random", epochs=0)[1]
    np.testing.assert_array_equal(init[PROMPT], again[PROMPT])  # seeded


def test_head_phase_trains_the_head_and_leaves_the_prompt_alone(base, task):
    result, init, after = tuned(base, task, head_epochs=2, epochs=0)
    np.testing.assert_array_equal(after[PROMPT], init[PROMPT])
    assert np.abs(after["head.weight"] - init["head.weight"]).max() > 1e-3
    assert result.head_steps == len(result.step_losses) == 2 * 3  # 18 examples in batches of 8
    result, init, after = tuned(base, task, head_epochs=1, epochs=1)
    assert result.head_steps == 3 and len(result.step_losses) == 6 and len(result.history) == 1
    assert np.abs(after[PROMPT] - init[PROMPT]).max() > 1e-3


def test_head_learning_rate_is_the_heads_own(base, task):
    _, init, after = tuned(base, task, head_lr=0.0, lr=0.3)
    np.testing.assert_array_equal(after["head.weight"], init["head.weight"])
    assert np.abs(after[PROMPT] - init[PROMPT]).max() > 1e-2


def test_new_options_stay_out_of_earlier_run_keys():
    assert not {"prompt_init", "head_epochs", "head_lr"} & set(TuningConfig(method="prompt").to_dict())
    assert TuningConfig(method="prompt", head_epochs=2).to_dict()["head_epochs"] == 2
    with pytest.raises(ValueError, match="prompt_init must be one of vocab, labels, random"):
        TuningConfig(method="prompt", prompt_init="text")


def test_default_prompt_is_20_tokens_and_the_earlier_100_keeps_its_ids():
    default, earlier = get_estimator("prompt-max"), get_estimator("prompt-max", prompt_length=100)
    assert default.prompt_length == 20 and default.tuning_config(prompt_length=20).epochs == 2
    # the artefacts made with the earlier default (the shipped pools' prompt artefacts) keep their ids
    assert earlier.artefact_id == "prompt-f0a69908" and earlier.target_artefact_id == "prompt-max.target-808171b4"
    assert default.artefact_id != earlier.artefact_id


def test_estimator_tunes_a_prompt_of_its_length_that_moves(base, task):
    est = get_estimator("prompt-feature", model=base, n_examples=18, batch_size=8, prompt_length=4)
    state, init, info = est.tune(task, prompt_length=4)
    assert state[PROMPT].shape == (4, 384) and info["epoch"] == 2 and len(info["history"]) == 2
    assert np.abs(state[PROMPT] - init[PROMPT]).max() > 1e-2
