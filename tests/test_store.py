import json

import numpy as np
import pytest

from taskrank.store import Artefact, ArtefactError, Store


def make(model="m/one"):
    return Artefact({"embedding": np.arange(6, dtype=np.float32).reshape(2, 3)},
                    {"estimator": "textemb", "base_model": model, "task": "t", "fingerprint": "abc"})


@pytest.mark.parametrize("url", ["local", "memory://taskrank-test-store"])
def test_round_trip_local_and_fsspec(tmp_path, url):
    store = Store(tmp_path / "store" if url == "local" else url)
    assert store.load("textemb", "m/one", "abc") is None
    store.save("textemb", "m/one", "abc", make())
    got = store.load("textemb", "m/one", "abc")
    np.testing.assert_array_equal(got.tensors["embedding"], make().tensors["embedding"])
    assert got.config["task"] == "t" and store.has("textemb", "m/one", "abc")


def test_files_are_safetensors_and_json_only(tmp_path):
    store = Store(tmp_path)
    store.save("textemb", "m/one", "abc", make())
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["artefact.safetensors", "config.json"]
    config = next(tmp_path.rglob("config.json"))
    assert json.loads(config.read_text())["base_model"] == "m/one"


def test_other_base_model_is_a_clear_error(tmp_path):
    store = Store(tmp_path)
    store.save("textemb", "m/one", "abc", make())
    directory = next(tmp_path.rglob("config.json")).parent
    # an artefact copied under another model's folder must not be used silently
    other = tmp_path / "textemb" / "m--two" / "abc"
    other.parent.mkdir(parents=True)
    directory.rename(other)
    with pytest.raises(ArtefactError, match="made with base model 'm/one', not 'm/two'"):
        store.load("textemb", "m/two", "abc")
    with pytest.raises(ArtefactError, match="not 'm/two'"):
        store.save("textemb", "m/two", "xyz", make("m/one"))
