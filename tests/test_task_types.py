"""Multiple-choice and generation tasks: loading, validation, what each layer reads of them."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from taskrank.tasks import TaskError, load_task

MC_ROWS = [
    {"text": "The ground was wet because", "choices": ["it rained", "it was sunny", "of the moon"], "label": 0},
    {"text": "She put on a coat because", "choices": ["it was cold", "it was hot"], "label": "it was cold"},
    {"text": "He was thirsty so", "choices": ["he drank water", "he ran", "he slept", "he sang"], "label": 0},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_multiple_choice_from_jsonl_and_csv(tmp_path):
    task = load_task(_jsonl(tmp_path / "mc.jsonl", MC_ROWS))
    assert task.spec.type == "multiple_choice" and task.num_labels == 1
    assert task.label_ids().tolist() == [0, 0, 0]  # an index, or the right choice's text
    frame = task.split("train")
    pairs, offsets = task.choice_pairs(frame)
    assert offsets.tolist() == [0, 3, 5, 9] and pairs[3] == ("She put on a coat because", "it was cold")
    assert task.encoder_labels(frame).tolist() == [1, 0, 0, 1, 0, 1, 0, 0, 0]
    assert task.texts()[1] == "She put on a coat because\nit was cold\nit was hot"
    # the same content from CSV (choices as a JSON list) is the same task
    pd.DataFrame([{**r, "choices": json.dumps(r["choices"])} for r in MC_ROWS]).to_csv(tmp_path / "mc.csv", index=False)
    assert load_task(tmp_path / "mc.csv").fingerprint == task.fingerprint


def test_choices_from_several_columns(tmp_path):
    rows = [{"goal": "open a jar", "sol1": "twist the lid", "sol2": "eat the jar", "label": 0},
            {"goal": "dry hair", "sol1": "use a towel", "sol2": "use water", "label": 0}]
    pd.DataFrame(rows).to_csv(tmp_path / "piqa.csv", index=False)
    task = load_task(tmp_path / "piqa.csv", text="goal", choices="sol1,sol2")
    assert task.spec.type == "multiple_choice" and task.split("train")["choices"][1] == ("use a towel", "use water")


def test_same_choices_everywhere_is_classification(taskweb_tasks):
    rte = load_task(taskweb_tasks / "rte")
    assert rte.spec.type == "classification" and rte.spec.labels == ("Yes", "No")
    copa = load_task(taskweb_tasks / "copa")
    assert copa.spec.type == "multiple_choice" and copa.size == 400
    squad = load_task(taskweb_tasks / "squad_v2")
    assert squad.spec.type == "generation" and squad.split("train")["label"].str.len().gt(0).all()
    with pytest.raises(TaskError, match="generation task has answers"):
        squad.label_ids()


def test_folders_with_only_roe_inputs_load(taskweb_tasks):
    imdb = load_task(taskweb_tasks / "imdb")
    assert imdb.spec.type == "multiple_choice" and imdb.size == 320  # the 320 entries with an answer
    stsb = load_task(taskweb_tasks / "stsb")  # generation templates without answers: texts only
    assert stsb.spec.type == "generation" and stsb.size == 160 and len(stsb.extras["roe32"]) == 160


@pytest.mark.parametrize("rows, message", [
    ([{"text": "a", "choices": ["x"], "label": 0}], "1 choice"),
    ([{"text": "a", "choices": ["x", "y"], "label": 2}], "index 2 out of range for 2 choices"),
    ([{"text": "a", "choices": ["x", "y"], "label": "z"}], "neither a choice index nor one of the choices"),
    ([{"text": "a", "choices": "x or y", "label": 0}], "must hold a list of choices, row 1"),
    ([{"text": "a", "choices": ["x", ""], "label": 0}], "not a non-empty text"),
    ([{"text": "a", "choices": ["x", ["y"]], "label": 0}], "not a non-empty text"),
])
def test_multiple_choice_errors_are_one_line(tmp_path, rows, message):
    path = _jsonl(tmp_path / "bad.jsonl", rows + MC_ROWS)
    with pytest.raises(TaskError, match=message) as e:
        load_task(path)
    assert "\n" not in str(e.value) and "bad.jsonl" in str(e.value)


def test_declared_classification_with_differing_choices_is_refused(tmp_path):
    with pytest.raises(TaskError, match="choices differ"):
        load_task(_jsonl(tmp_path / "mc.jsonl", MC_ROWS), task_type="classification")


def test_copy_of_a_pool_task_is_the_same_task(shared_tasks, tmp_path):
    """Declared class order (tasks.json beside the folder) must not change the fingerprint."""
    original = load_task(shared_tasks / "tweeteval-stance-atheism")
    shutil.copytree(shared_tasks / "tweeteval-stance-atheism", tmp_path / "myatheism")
    copy = load_task(tmp_path / "myatheism")
    assert copy.spec.labels != original.spec.labels  # sorted vs declared order
    assert copy.fingerprint == original.fingerprint


def test_two_files_for_one_split_is_an_error(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(6)]
    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    _jsonl(folder / "train.jsonl", rows)
    with pytest.raises(TaskError, match="both train.csv and train.jsonl"):
        load_task(folder)
