import json

import numpy as np
import pandas as pd
import pytest

from taskrank.tasks import TaskError, load_task


def test_shared_folder_layout(shared_tasks, extra_tasks):
    sst2 = load_task(shared_tasks / "sst2")
    assert sst2.name == "sst2" and sst2.spec.type == "classification"
    assert sst2.spec.labels == ("negative", "positive") and sst2.spec.group == "sentiment"
    assert sst2.size == 6920 and set(sst2.splits) == {"train", "validation", "test"}
    rte = load_task(shared_tasks / "rte")
    assert rte.spec.is_pair and isinstance(rte.texts()[0], tuple)
    stsb = load_task(extra_tasks / "stsb")
    assert stsb.is_regression and stsb.num_labels == 1
    assert stsb.label_ids().dtype == np.float64 and stsb.label_ids().max() <= 5.0


def test_stratified_seeded_sample(shared_tasks):
    trec = load_task(shared_tasks / "trec")
    a, b = trec.sample(300, seed=3), trec.sample(300, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(trec.sample(300, seed=4))
    full = trec.split("train")["label"].value_counts(normalize=True)
    got = a["label"].value_counts(normalize=True)
    assert len(a) == 300 and set(got.index) == set(full.index)
    assert np.allclose(got.reindex(full.index), full, atol=1 / 300 + 1e-9)


def test_fingerprint_tracks_content_not_name(tmp_path):
    rows = [{"text": f"sentence {i}", "label": "a" if i % 2 else "b"} for i in range(40)]
    pd.DataFrame(rows).to_csv(tmp_path / "one.csv", index=False)
    pd.DataFrame(rows).to_json(tmp_path / "two.jsonl", orient="records", lines=True)
    rows[5]["text"] = "changed"
    pd.DataFrame(rows).to_csv(tmp_path / "three.csv", index=False)
    one, two, three = (load_task(tmp_path / n) for n in ("one.csv", "two.jsonl", "three.csv"))
    assert one.fingerprint == two.fingerprint != three.fingerprint
    assert one.fingerprint == load_task(tmp_path / "one.csv", name="renamed").fingerprint


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_file_formats_and_column_mapping(tmp_path, suffix):
    df = pd.DataFrame({"premise": ["p1", "p2", "p3", "p4"], "claim": ["h1", "h2", "h3", "h4"], "y": [0, 1, 1, 0]})
    path = tmp_path / f"pairs.{suffix}"
    {"csv": lambda: df.to_csv(path, index=False), "tsv": lambda: df.to_csv(path, sep="\t", index=False),
     "jsonl": lambda: df.to_json(path, orient="records", lines=True),
     "parquet": lambda: df.to_parquet(path)}[suffix]()
    task = load_task(path, text="premise", text_pair="claim", label="y")
    assert task.texts()[1] == ("p2", "h2")
    assert task.spec.labels == ("0", "1") and list(task.label_ids()) == [0, 1, 1, 0]


def test_regression_inferred_from_float_labels(tmp_path):
    pd.DataFrame({"text": list("abcd"), "score": [0.5, 1.25, 3.0, 2.5]}).to_csv(tmp_path / "r.csv", index=False)
    task = load_task(tmp_path / "r.csv")
    assert task.is_regression and task.spec.label == "score"


BAD_INPUTS = {
    # name: (file content, extra args, words the message must contain)
    "misspelled column": ("text,lable\nhello,a\nbye,b\n", {"label": "label"}, ["bad.csv", "'label'", "did you mean 'lable'"]),
    "empty file": ("", {}, ["bad.csv", "empty"]),
    "header only": ("text,label\n", {}, ["bad.csv", "no rows"]),
    "single class": ("text,label\nx,pos\ny,pos\nz,pos\n", {}, ["bad.csv", "single class", "'pos'"]),
    "non-numeric regression": ("text,label\nx,1.5\ny,high\nz,2.5\n", {"task_type": "regression"},
                               ["bad.csv", "'label'", "'high'", "row 2"]),
    "nan regression": ("text,label\nx,1.5\ny,nan\nz,2.5\n", {"task_type": "regression"}, ["bad.csv", "row 2"]),
    "inf regression": ("text,label\nx,1.5\ny,2.0\nz,inf\n", {"task_type": "regression"}, ["bad.csv", "row 3"]),
    "empty text": ("text,label\nx,a\n,b\nz,a\n", {}, ["bad.csv", "'text'", "row 2"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_malformed_input_names_file_column_value(tmp_path, case):
    content, kwargs, words = BAD_INPUTS[case]
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TaskError) as err:
        load_task(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unreadable_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9,a\nthé,b\n".encode("latin-1"))
    with pytest.raises(TaskError, match=r"latin.csv: not valid UTF-8"):
        load_task(path)


def test_missing_split_file_and_bad_tasks_json(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "validation.jsonl").write_text(json.dumps({"text": "a", "label": "x"}) + "\n")
    with pytest.raises(TaskError, match="no train split"):
        load_task(tmp_path / "t")
    with pytest.raises(TaskError, match="no such file"):
        load_task(tmp_path / "missing.csv")
