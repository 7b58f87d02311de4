"""hf-dataset-selector's ESMs end to end: `pool import-esms` (a folder, or the Hub cache offline)
records hfselect's pooling and pair joining, and esm-logme on the pool embeds the target that way."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from typer.testing import CliRunner

from taskrank.cli import app
from taskrank.estimators.logme import logme
from taskrank.models import default_model_path
from taskrank.pool import Pool
from taskrank.tasks import load_task

runner = CliRunner()
HIDDEN = 32


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    """A tiny random BERT (with its pooler) and the default model's tokenizer, saved as a folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         vocab_size=30522)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(folder)
    return folder


def write_esm(folder: Path, base: str, task: str, seed: int, dim: int = HIDDEN, legacy: bool = False) -> None:
    """An ESM folder as hfselect writes it (ESMConfig fields; 0.1.0 names its layer sequential.0)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    prefix = "sequential.0" if legacy else "model"
    save_file({f"{prefix}.weight": rng.normal(scale=0.3, size=(dim, dim)).astype(np.float32) + np.eye(dim, dtype=np.float32),
               f"{prefix}.bias": rng.normal(scale=0.1, size=dim).astype(np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "base_model_name": base, "task_id": task, "task_subset": None, "text_column": "sentence",
        "label_column": "label", "task_split": "train", "num_examples": 1000, "seed": 42, "language": None,
        "esm_architecture": "linear", "esm_embedding_dim": dim, "version": "0.1.0" if legacy else "0.2.1"}))


@pytest.fixture(scope="module")
def esms(bert, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("esms")
    for i, (task, legacy) in enumerate((("glue-sst2", False), ("imdb", True), ("snli", False))):
        write_esm(root / f"esm-{task}", str(bert), task, i, legacy=legacy)
    return root


@pytest.fixture(scope="module")
def rte(shared_tasks, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rte") / "rte"
    folder.mkdir()
    lines = (shared_tasks / "rte" / "train.jsonl").read_text().splitlines()[:60]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_import_then_rank_embeds_the_target_as_hfselect(bert, esms, rte, tmp_path, isolated_cache):
    out = tmp_path / "pool"
    result = invoke("pool", "import-esms", esms, "--out", out)
    assert result.exit_code == 0, result.stderr
    pool = Pool.open(out)
    assert [t["name"] for t in pool.tasks] == ["glue-sst2", "imdb", "snli"]
    # a BERT model without "sentence-transformers" in its name: hfselect uses its pooler output
    assert pool.meta["pooling"] == "pooler" and pool.meta["pairs"] == "sep-joined"

    result = invoke("rank", "--target", rte, "--pool", out, "--method", "esm-logme", "--model", bert, "--format", "json")
    assert result.exit_code == 0, result.stderr
    got = {r["source"]: r["score"] for r in json.loads(result.stdout)}

    # directly: "a [SEP] b" texts, the BERT pooler output, each ESM, LogME
    from transformers import AutoTokenizer, BertModel

    task = load_task(rte)
    frame = task.sample(1000, 0)
    texts = [f"{a} [SEP] {b}" for a, b in zip(frame["text"], frame["text_pair"])]
    tokenizer, model = AutoTokenizer.from_pretrained(bert), BertModel.from_pretrained(bert).eval()
    with torch.inference_mode():
        batch = tokenizer(texts, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
        pooled = model(**batch).pooler_output.double().numpy()
    labels = task.encoder_labels(frame)
    from safetensors.numpy import load_file

    for name, folder, prefix in (("glue-sst2", "esm-glue-sst2", "model"), ("imdb", "esm-imdb", "sequential.0"),
                                 ("snli", "esm-snli", "model")):
        t = load_file(str(esms / folder / "model.safetensors"))
        mapped = pooled @ t[f"{prefix}.weight"].T.astype(np.float64) + t[f"{prefix}.bias"]
        assert got[name] == pytest.approx(logme(mapped, labels), rel=1e-6, abs=1e-6)


def test_from_hub_finds_the_esms_in_the_hub_cache_offline(bert, esms, rte, tmp_path, monkeypatch, isolated_cache):
    cache = tmp_path / "hub"
    for i, folder in enumerate(sorted(esms.iterdir())):
        snapshot = cache / f"models--someone--{folder.name}" / "snapshots" / f"{i:040x}"
        shutil.copytree(folder, snapshot)
    # not an ESM: a model repository in the same cache is passed over
    other = cache / "models--someone--a-model" / "snapshots" / ("f" * 40)
    shutil.copytree(bert, other)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    result = invoke("pool", "import-esms", "--from-hub", "--model", bert, "--out", tmp_path / "hubpool")
    assert result.exit_code == 0, result.stderr
    from_hub = Pool.open(tmp_path / "hubpool")
    assert sorted(t["name"] for t in from_hub.tasks) == ["glue-sst2", "imdb", "snli"]
    from_folder = tmp_path / "folderpool"
    assert invoke("pool", "import-esms", esms, "--out", from_folder).exit_code == 0
    ranks = [json.loads(invoke("rank", "--target", rte, "--pool", p, "--method", "esm-logme", "--model", bert,
                               "--format", "json").stdout) for p in (tmp_path / "hubpool", from_folder)]
    assert ranks[0] == ranks[1]

    # a base model with no ESMs in the cache: one line, exit 2
    result = invoke("pool", "import-esms", "--from-hub", "--model", "someone/other-model", "--out", tmp_path / "none")
    assert result.exit_code == 2 and "no ESM" in result.stderr and not (tmp_path / "none" / "pool.json").exists()


def test_esms_that_cannot_make_a_pool_are_refused(bert, tmp_path):
    mixed = tmp_path / "mixed"
    write_esm(mixed / "a", str(bert), "a", 0)
    write_esm(mixed / "b", "bert-base-uncased", "b", 1)
    result = invoke("pool", "import-esms", mixed, "--out", tmp_path / "p1")
    assert result.exit_code == 2 and "2 base models" in result.stderr and "--model" in result.stderr
    assert not (tmp_path / "p1" / "pool.json").exists()

    wrong = tmp_path / "wrong"
    write_esm(wrong / "a", str(bert), "a", 0, dim=16)
    result = invoke("pool", "import-esms", wrong, "--out", tmp_path / "p2")
    assert result.exit_code == 2 and "maps 16 to 16 dimensions" in result.stderr
    assert not (tmp_path / "p2" / "pool.json").exists()

    result = invoke("pool", "import-esms", tmp_path / "empty-nothing", "--out", tmp_path / "p3")
    assert result.exit_code == 2 and "no such folder" in result.stderr
    result = invoke("pool", "import-esms", "--out", tmp_path / "p4")
    assert result.exit_code == 2 and "either a FOLDER" in result.stderr
