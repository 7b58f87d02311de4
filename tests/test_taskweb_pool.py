"""The shipped TaskWeb pool: its 22 tasks, TaskWeb's own RoE construction, TaskShop on TaskWeb's
released matrix, and TaskWeb's folders as targets."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from taskrank.cli import app
from taskrank.pool import Pool
from taskrank.taskweb import TASKWEB_TASKS


def rank(*args):
    return CliRunner().invoke(app, ["rank", *args])


def test_pool_has_taskwebs_22_tasks_and_its_transfer_table():
    pool = Pool.open("taskweb")
    assert sorted(t["name"] for t in pool.tasks) == sorted(TASKWEB_TASKS)
    assert {t["name"]: t["type"] for t in pool.tasks}["squad_v2"] == "generation"
    assert pool.method_params["roe"] == {"inputs": "taskweb"}
    import pandas as pd

    tw = pd.read_csv(pool.method_params["taskshop"]["transfer"])
    assert len(tw) == 21 * 21  # 21 targets (squad_v2 is source-only) x their 21 sources
    assert set(tw["target"]) == set(TASKWEB_TASKS) - {"squad_v2"}


def test_prompt_artefacts_are_the_20_token_default():
    """The pool's soft prompts were tuned with the estimator's default length (no override left in
    method_params), for every task a prompt can be tuned on."""
    pool = Pool.open("taskweb")
    assert all("prompt_length" not in pool.method_params.get(f"prompt-{c}", {})
               for c in ("feature", "unigram", "flatten", "bigram", "max"))
    est = pool.estimator("prompt-feature")
    arts = pool.artefacts(est, [t for t in pool.tasks if est.supports(t["type"])])
    assert len(arts) == 21 and {a.tensors["prompt"].shape for a in arts} == {(20, 384)}


@pytest.mark.parametrize("method", ["roe", "textemb", "vocab", "taskshop:roe", "esm-logme", "tupate-bitfit"])
def test_copa_ranks_on_the_taskweb_pool(taskweb_tasks, isolated_cache, method):
    result = rank("--target", str(taskweb_tasks / "copa"), "--pool", "taskweb", "--method", method, "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 21 and "copa" not in [r["source"] for r in rows]
    assert "left out copa" in result.stderr


def test_roe_taskweb_strings_and_embeddings_match_a_direct_computation(taskweb_tasks):
    """TaskWeb's RoE embeds f"{choices}</s>{text}", mean-pooled over the mask and L2-normalised."""
    import torch

    from taskrank.estimators import get_estimator
    from taskrank.estimators.roe import taskweb_strings
    from taskrank.models import BaseModel
    from taskrank.tasks import load_task

    copa = load_task(taskweb_tasks / "copa")
    strings = taskweb_strings(copa)
    first = json.loads((taskweb_tasks / "copa" / "roe32.jsonl").read_text().splitlines()[0])
    assert len(strings) == 384 and strings[0] == f"{first['choices']}</s>{first['text']}"
    artefact = get_estimator("roe", inputs="taskweb").prepare(copa)
    tokenizer, model = BaseModel().load()
    batch = tokenizer(strings[:4], padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    assert np.allclose(artefact.tensors["embeddings"][:4], ref, atol=1e-5)


def test_taskweb_folders_all_load_as_targets_for_text_methods(taskweb_tasks, isolated_cache):
    for name in ("imdb", "stsb", "story_cloze"):
        result = rank("--target", str(taskweb_tasks / name), "--pool", "taskweb", "--method", "roe", "--format", "json")
        assert result.exit_code == 0, (name, result.stderr)
    refused = rank("--target", str(taskweb_tasks / "stsb"), "--pool", "taskweb", "--method", "tupate-bitfit")
    assert refused.exit_code == 2 and "stsb" in refused.stderr and "generation" in refused.stderr
