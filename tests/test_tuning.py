"""The tuning loop's parameter-efficient methods: what trains, determinism, checkpoints (tiny, offline)."""

import numpy as np
import pandas as pd
import pytest
import torch

from taskrank.models import BaseModel
from taskrank.tasks import Task, TaskSpec
from taskrank.tuning import (
    TuningConfig, build_task_model, encoder_state, fine_tune, keep_checkpoints, prepare_parameters, trainable_state,
    wrap_for_method,
)

WORDS = ["good", "great", "fine", "bad", "awful", "poor"]


@pytest.fixture(scope="module")
def task():
    rows = [{"text": f"a {w} film number {i}", "label": "pos" if w in WORDS[:3] else "neg"}
            for i in range(3) for w in WORDS]
    df = pd.DataFrame(rows)
    return Task(TaskSpec(name="toy", type="classification", labels=("neg", "pos")), {"train": df, "validation": df})


@pytest.fixture(scope="module")
def base():
    return BaseModel(max_length=16)


def small(method, **kw):
    return TuningConfig(method=method, epochs=1, batch_size=8, max_length=16, prefix_length=4, prompt_length=4, **kw)


def _model(base, config):
    torch.manual_seed(config.seed)
    model = wrap_for_method(build_task_model(base.fresh_encoder(), 2, base.pooling), config)
    prepare_parameters(model, config)
    return model


def test_each_method_trains_only_its_parameters(base):
    layers, hidden = 6, 384
    lora = trainable_state(_model(base, small("lora")))
    assert set(lora) - {"head.weight", "head.bias"} == {n for n in lora if ".lora_A." in n or ".lora_B." in n}
    assert len([n for n in lora if "lora_" in n]) == layers * 2 * 2  # query/value x A/B
    assert lora[next(n for n in lora if "query.lora_A" in n)].shape == (8, hidden)  # r = 8

    prefix = trainable_state(_model(base, small("prefix")))
    assert {n: v.shape for n, v in prefix.items() if "prompt" in n} == {
        "encoder.prompt_encoder.default.embedding.weight": (4, layers * 2 * hidden)}

    prompt_model = _model(base, small("prompt"))
    prompt = trainable_state(prompt_model)
    matrix = prompt["encoder.prompt_encoder.default.embedding.weight"]
    assert matrix.shape == (4, hidden) and set(prompt) - {"encoder.prompt_encoder.default.embedding.weight"} == {
        "head.weight", "head.bias"}
    vocab = base.load()[1].embeddings.word_embeddings.weight.detach().numpy()
    assert all(np.abs(vocab - row).sum(1).min() < 1e-6 for row in matrix)  # initialised from vocabulary tokens

    bitfit = trainable_state(_model(base, small("bitfit")))
    assert all(n.endswith(".bias") or n.startswith("head.") for n in bitfit)


def test_prefix_matches_hand_written_attention(base):
    """peft's prefix under transformers 5 == concatenating learned keys/values in every attention
    (with positions shifted by the prefix length, as in P-Tuning v2 on BERT)."""
    import types

    config = small("prefix")
    model = _model(base, config).eval()
    with torch.no_grad():
        model.encoder.prompt_encoder.default.embedding.weight.normal_()
    batch = base.tokenize(["hello world", "a somewhat longer sentence"])
    with torch.no_grad():
        out = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    weight = model.encoder.prompt_encoder.default.embedding.weight.detach().view(4, 6, 2, 12, 32)
    plain = base.fresh_encoder().eval()
    mask = torch.cat([batch["attention_mask"].new_ones(2, 4), batch["attention_mask"]], 1).bool()[:, None, None]
    for i, layer in enumerate(plain.encoder.layer):
        def forward(self, hidden, attention_mask=None, pk=weight[:, i, 0].transpose(0, 1),
                    pv=weight[:, i, 1].transpose(0, 1), **kwargs):
            b, s, _ = hidden.shape
            q, k, v = (f(hidden).view(b, s, 12, 32).transpose(1, 2) for f in (self.query, self.key, self.value))
            k = torch.cat([pk.expand(b, -1, -1, -1), k], 2)
            v = torch.cat([pv.expand(b, -1, -1, -1), v], 2)
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return o.transpose(1, 2).reshape(b, s, -1), None
        layer.attention.self.forward = types.MethodType(forward, layer.attention.self)
    positions = torch.arange(4, 4 + batch["input_ids"].shape[1])[None]
    with torch.no_grad():
        ref = plain(**batch, position_ids=positions).last_hidden_state
    keep = batch["attention_mask"].bool()
    assert torch.allclose(out[keep], ref[keep], atol=1e-4)


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_same_seed_same_parameters(base, task, method):
    a = fine_tune(base, task, small(method, seed=3), on_epoch_end=keep_checkpoints())
    b = fine_tune(base, task, small(method, seed=3), on_epoch_end=keep_checkpoints())
    sa, sb = a.checkpoints["last"], b.checkpoints["last"]
    assert sa.keys() == sb.keys()
    assert all(np.array_equal(sa[n], sb[n]) for n in sa)
    if method == "lora":
        c = fine_tune(base, task, small(method, seed=4))
        assert not all(np.array_equal(sa[n], v) for n, v in trainable_state(c.model).items())


def test_checkpoints_early_best_last_and_init(base, task):
    keeper = keep_checkpoints(early_epoch=2, metric="accuracy")
    result = fine_tune(base, task, TuningConfig(method="bitfit", epochs=3, batch_size=8, max_length=16, lr=1e-2),
                       eval_frame=task.split("validation"), on_epoch_end=keeper, on_start=keeper.on_start)
    info = result.checkpoint_info
    assert info["init"]["epoch"] == 0 and info["early"]["epoch"] == 2 and info["last"]["epoch"] == 3
    values = [h["accuracy"] for h in result.history]
    assert info["best"]["epoch"] == 1 + int(np.argmax(values))  # first of ties
    assert set(result.checkpoints) == {"init", "early", "best", "last"}
    name = "encoder.encoder.layer.0.attention.self.query.bias"
    assert not np.array_equal(result.checkpoints["init"][name], result.checkpoints["last"][name])


def test_lora_encoder_state_is_merged_plain_weights(base, task):
    result = fine_tune(base, task, small("lora", lr=1e-2))
    state = encoder_state(result.model)
    fresh = base.fresh_encoder()
    fresh.load_state_dict(state)  # same keys as a plain encoder
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(state[key], base.load()[1].state_dict()[key])  # LoRA merged in


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="tuning method must be one of"):
        TuningConfig(method="adapter")
