"""ESM training, hfselect-format ESMs, and ESM-LogME end to end on small real tasks."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from taskrank.estimators.esm import EsmLogme, load_hfselect_esm, train_esm
from taskrank.estimators.logme import score_linear_maps
from taskrank.ranking import rank
from taskrank.pool import Pool
from taskrank.tasks import load_task


def test_train_esm_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    a, c = rng.normal(size=(8, 8)), rng.normal(size=8)
    y = (x @ a.T + c).astype(np.float32)
    weight, bias = train_esm(x, y, epochs=40, lr=1e-2)
    residual = np.mean((x @ weight.T + bias - y) ** 2) / np.var(y)
    assert residual < 0.01
    w2, b2 = train_esm(x, y, epochs=40, lr=1e-2)
    np.testing.assert_array_equal(weight, w2)  # seeded


@pytest.mark.parametrize("version,prefix", [("0.1.0", "sequential.0"), ("0.2.1", "model")])
def test_hfselect_format_esm_loads_and_scores(tmp_path, version, prefix):
    rng = np.random.default_rng(1)
    d = 16
    weight, bias = rng.normal(size=(d, d)).astype(np.float32), rng.normal(size=d).astype(np.float32)
    save_file({f"{prefix}.weight": weight, f"{prefix}.bias": bias}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({
        "base_model_name": "bert-base-multilingual-uncased", "task_id": "imdb", "task_subset": None,
        "text_column": "text", "label_column": "label", "task_split": "train", "num_examples": 10000, "seed": 42,
        "esm_architecture": "linear", "esm_embedding_dim": d, "version": version}))
    artefact = load_hfselect_esm(tmp_path)
    assert artefact.config["base_model"] == "bert-base-multilingual-uncased" and artefact.task == "imdb"
    features = rng.normal(size=(60, d))
    labels = rng.integers(0, 3, size=60)
    target = EsmLogme().artefact(load_fake_target(tmp_path), {"features": features, "labels": labels})
    got = EsmLogme().score(target, [artefact])
    want = score_linear_maps(features, labels, weight[None].astype(np.float64), bias[None].astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-10)


def load_fake_target(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\na,x\nb,y\nc,z\n")
    return load_task(tmp_path / "t.csv")


def test_esm_logme_end_to_end_reuses_fine_tuned_models(shared_tasks, tmp_path):
    small = dict(source_examples=48, source_epochs=1, esm_epochs=2, target_examples=48,
                 finetuned_dir=str(tmp_path / "finetuned"), max_length=32)
    estimator = EsmLogme(**small)
    sources = [load_task(shared_tasks / n) for n in ("mr", "trec")]
    pool = Pool(tmp_path / "pool")
    pool.build(sources, [estimator])
    models = sorted((tmp_path / "finetuned" / "sources").iterdir())
    assert len(models) == 2 and all((m / "head.safetensors").exists() for m in models)
    stamps = [m.stat().st_mtime_ns for m in models]
    artefact = pool.store.load(estimator.artefact_id, estimator.model.model_id, sources[0].fingerprint)
    assert artefact.tensors["model.weight"].shape == (384, 384)
    # float32: float16 reorders near-ties (benchmarks/results/esm_precision.json)
    assert artefact.tensors["model.weight"].dtype == np.float32
    assert artefact.config["esm_architecture"] == "linear" and artefact.config["num_examples"] == 48
    # the same recipe with another target size shares the artefacts and the fine-tuned models
    again = EsmLogme(**{**small, "target_examples": 40})
    assert again.artefact_id == estimator.artefact_id
    ranking = rank(load_task(shared_tasks / "sst2"), Pool.open(tmp_path / "pool"), again)
    assert list(ranking.table["source"]) and np.isfinite(ranking.table["score"]).all()
    assert [m.stat().st_mtime_ns for m in models] == stamps
