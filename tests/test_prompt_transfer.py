"""Prompt transfer (2407.16245) in the ground-truth runner: with prefix or prompt tuning the target's
prompt starts from the source's trained one, so a pair is no longer the baseline run again."""

from pathlib import Path

import numpy as np
import pytest
import torch

from taskrank.finetuned import load_ref, train
from taskrank.models import BaseModel
from taskrank.tasks import load_task_folder
from taskrank.transfer.runner import TransferSetting, execute_run, plan, source_start, target_frames
from taskrank.tuning import (
    PromptTransferError, build_task_model, fine_tune, keep_checkpoints, load_prompt_state, predict, set_prompt_state,
    wrap_for_method,
)


def tiny(shared_tasks, root: Path) -> Path:
    for name in ("cr", "trec"):
        (root / name).mkdir(parents=True)
        for split, n in (("train", 24), ("validation", 16)):
            lines = (shared_tasks / name / f"{split}.jsonl").read_text().splitlines()[:n]
            (root / name / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_target_prompt_starts_from_the_source_prompt(shared_tasks, tmp_path, method):
    setting = TransferSetting.flat(method=method, source_examples=24, target_examples=24, eval_examples=16,
                                   source_epochs=1, max_length=32, batch_size=8)
    baseline, pair = plan(load_task_folder(tiny(shared_tasks, tmp_path / "tasks")), [0], setting,
                          sources=["trec"], targets=["cr"])
    assert baseline.source is None and pair.source.name == "trec"
    work = tmp_path / "work"
    start = source_start(work, pair, threads=1)
    source_prompt = load_prompt_state(train(work, setting.source_recipe(), pair.source, 0))["embedding.weight"]
    assert torch.equal(start["prompt_state"]["embedding.weight"], source_prompt)

    target = load_ref(pair.target)
    base = BaseModel(setting.model, max_length=setting.target.max_length)
    config = setting.target_tuning(0)
    train_frame, eval_frame = target_frames(target, setting)
    runs = {}
    for name, kwargs in (("baseline", {}), ("pair", start)):
        keeper = keep_checkpoints()
        result = fine_tune(base, target, config, train=train_frame, on_start=keeper.on_start, on_epoch_end=keeper,
                           **kwargs)
        init = next(v for k, v in result.checkpoints["init"].items() if "prompt_encoder" in k)
        runs[name] = (init, predict(base, target, result.model, eval_frame, config))
    # the pair's prompt starts exactly where the source's training left it; the baseline's does not
    np.testing.assert_array_equal(runs["pair"][0], source_prompt.numpy())
    assert not np.allclose(runs["baseline"][0], source_prompt.numpy(), atol=1e-3)
    # so the pair's target model is another model than the baseline's (before, they were identical)
    assert np.abs(runs["pair"][1] - runs["baseline"][1]).max() > 1e-3
    assert baseline.key != pair.key
    row = execute_run(work, pair, threads=1)
    assert row["source"] == "trec" and 0.0 <= row["value"] <= 1.0


def test_prompts_that_cannot_transfer_are_refused(tmp_path):
    from taskrank.tuning import TuningConfig

    base = BaseModel(max_length=16)
    config = TuningConfig(method="prompt", prompt_length=10)
    model = wrap_for_method(build_task_model(base.fresh_encoder(), 2), config)
    with pytest.raises(PromptTransferError, match="the source prompt embedding.weight is 20 x 384, the target's is 10 x 384"):
        set_prompt_state(model, {"embedding.weight": torch.zeros(20, 384)}, config)
    with pytest.raises(PromptTransferError, match="same tuning method"):
        set_prompt_state(model, {"lora_A": torch.zeros(2, 2)}, config)
    full = build_task_model(base.fresh_encoder(), 2)
    with pytest.raises(PromptTransferError, match="only a prefix or prompt run"):
        set_prompt_state(full, {"embedding.weight": torch.zeros(10, 384)}, TuningConfig(method="full"))
    with pytest.raises(PromptTransferError, match="no prompt.safetensors"):
        load_prompt_state(tmp_path)
